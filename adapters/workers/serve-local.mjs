// Serve a bundle made by `wasmfn package workers` in real workerd, through Miniflare, on
// loopback, without a Cloudflare account: `node serve-local.mjs BUNDLE_DIR [PORT]`.
// Prints `listening on http://127.0.0.1:PORT` once workerd accepts requests, then
// `control on http://127.0.0.1:PORT2`: a small API to fire the Worker's other handlers,
//   POST /scheduled?cron=EXPR             -> {"outcome": "ok" | "exception", ...}
//   POST /queue?name=Q  [{"id","body"}]   -> {"outcome", "explicitRetries", "explicitAcks", ...}
// Miniflare comes from the tools folder `scripts/lib.sh` installs (WASMFN_WORKERS_TOOLS).

import http from 'node:http';
import path from 'node:path';
import os from 'node:os';
import { pathToFileURL } from 'node:url';

const [bundle, port = '0'] = process.argv.slice(2);
if (!bundle) {
  console.error('usage: node serve-local.mjs BUNDLE_DIR [PORT]');
  process.exit(2);
}
const tools = process.env.WASMFN_WORKERS_TOOLS ?? path.join(os.homedir(), '.cache/wasmfn/workers-tools');
const { Miniflare } = await import(
  pathToFileURL(path.join(tools, 'node_modules/miniflare/dist/src/index.js')).href
);
const root = path.resolve(bundle);
const mf = new Miniflare({
  // The same module rules as the generated wrangler.toml.
  modules: true,
  scriptPath: path.join(root, 'worker.js'),
  modulesRoot: root,
  modulesRules: [
    { type: 'ESModule', include: ['**/*.js'] },
    { type: 'CompiledWasm', include: ['**/*.wasm'] },
  ],
  compatibilityDate: '2026-04-01',
  host: '127.0.0.1',
  port: Number(port),
});
const url = await mf.ready;
console.log(`listening on ${url.href.replace(/\/$/, '')}`);

const control = http.createServer(async (req, res) => {
  try {
    const target = new URL(req.url, 'http://localhost');
    let body = '';
    for await (const chunk of req) body += chunk;
    const worker = await mf.getWorker();
    let result;
    if (target.pathname === '/scheduled') {
      result = await worker.scheduled({ cron: target.searchParams.get('cron') ?? '', scheduledTime: new Date() });
    } else if (target.pathname === '/queue') {
      const messages = JSON.parse(body || '[]').map((m) => ({
        id: m.id, body: m.body, timestamp: new Date(), attempts: m.attempts ?? 1,
      }));
      result = await worker.queue(target.searchParams.get('name') ?? 'queue', messages);
    } else {
      res.writeHead(404).end('POST /scheduled?cron= or /queue?name=\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result));
  } catch (error) {
    res.writeHead(500).end(String(error?.stack ?? error));
  }
});
control.listen(0, '127.0.0.1', () => {
  console.log(`control on http://127.0.0.1:${control.address().port}`);
});
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
