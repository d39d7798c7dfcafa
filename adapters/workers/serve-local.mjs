// Serve a bundle made by `wasmfn package workers` in real workerd, through Miniflare, on
// loopback, without a Cloudflare account:
//
//   node serve-local.mjs BUNDLE_DIR [--port N] [--env NAME] [--persist DIR]
//
// The bundle's own `wrangler.toml` is read by wrangler's configuration code, so what runs here
// is what `wrangler deploy` would upload: its KV namespaces, D1 databases, R2 buckets and queues
// (simulated locally by Miniflare, in memory unless --persist), vars, cron triggers and queue
// consumers. Secrets come from `BUNDLE_DIR/.dev.vars` (wrangler's file for local secrets), or
// from this process's environment variables of the same name.
//
// Prints `listening on http://127.0.0.1:PORT` once workerd accepts requests, then
// `control on http://127.0.0.1:PORT2`: a small API to fire the Worker's other handlers and to
// see what it published,
//   POST /scheduled?cron=EXPR             -> {"outcome": "ok" | "exception", ...}
//   POST /queue?name=Q  [{"id","body"}]   -> {"outcome", "retryMessages", "explicitAcks", ...}
//   GET  /published?name=Q                -> [{"id", "body", "attributes"}] sent to Q so far
// Miniflare and wrangler come from the tools folder `scripts/lib.sh` installs
// (WASMFN_WORKERS_TOOLS).

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { port: { type: 'string', default: '0' }, env: { type: 'string' }, persist: { type: 'string' } },
});
const [bundle] = positionals;
if (!bundle) {
  console.error('usage: node serve-local.mjs BUNDLE_DIR [--port N] [--env NAME] [--persist DIR]');
  process.exit(2);
}
const tools = process.env.WASMFN_WORKERS_TOOLS ?? path.join(os.homedir(), '.cache/wasmfn/workers-tools');
const require = createRequire(path.join(tools, 'package.json'));
const { Miniflare } = require('miniflare');
const { unstable_getMiniflareWorkerOptions, unstable_readConfig } = require('wrangler');

const root = path.resolve(bundle);
const config = path.join(root, 'wrangler.toml');
const devVars = path.join(root, '.dev.vars');
const { workerOptions } = unstable_getMiniflareWorkerOptions(config, opts.env, {
  envFiles: fs.existsSync(devVars) ? [devVars] : [],
});

// Secrets: the names WASMFN_SECRETS lists, from the environment when .dev.vars lacks them.
const secretNames = Object.values(workerOptions.bindings?.WASMFN_SECRETS ?? {});
for (const name of secretNames) {
  if (workerOptions.bindings?.[name] === undefined && process.env[name] !== undefined) {
    workerOptions.bindings = { ...workerOptions.bindings, [name]: process.env[name] };
  }
}

// A recorder consuming every queue the Worker produces to but does not consume itself, so
// local runs can see what was published (GET /published).
const consumed = new Set(Object.keys(workerOptions.queueConsumers ?? {}));
const recorded = Object.values(workerOptions.queueProducers ?? {})
  .map((p) => p.queueName)
  .filter((q) => !consumed.has(q));
const recorder = {
  name: 'wasmfn-queue-recorder',
  modules: true,
  script: `
    const seen = {};
    export default {
      async queue(batch) {
        for (const m of batch.messages) {
          const b = m.body;
          const env = b && typeof b === 'object' && b.wasmfn === 1;
          const body = env ? b.body : b;
          (seen[batch.queue] ??= []).push({
            id: env ? b.id : m.id,
            body: typeof body === 'string' ? body : new TextDecoder().decode(body),
            attributes: env ? b.attributes : [],
          });
          m.ack();
        }
      },
      fetch(request) {
        const name = new URL(request.url).searchParams.get('name');
        return Response.json(seen[name] ?? []);
      },
    };`,
  queueConsumers: Object.fromEntries(recorded.map((q) => [q, { maxBatchTimeout: 0 }])),
};

const persist = opts.persist ? path.resolve(opts.persist) : false;
const mf = new Miniflare({
  workers: [
    {
      ...workerOptions,
      name: unstable_readConfig({ config, env: opts.env }).name,
      modules: true,
      modulesRoot: root,
      scriptPath: path.join(root, 'worker.js'),
    },
    ...(recorded.length > 0 ? [recorder] : []),
  ],
  host: '127.0.0.1',
  port: Number(opts.port),
  kvPersist: persist && path.join(persist, 'kv'),
  d1Persist: persist && path.join(persist, 'd1'),
  r2Persist: persist && path.join(persist, 'r2'),
  defaultPersistRoot: persist || undefined,
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
    } else if (target.pathname === '/published' && recorded.length > 0) {
      const rec = await mf.getWorker('wasmfn-queue-recorder');
      result = await (await rec.fetch(`http://recorder/?name=${target.searchParams.get('name')}`)).json();
    } else if (target.pathname === '/published') {
      result = [];
    } else {
      res.writeHead(404).end('POST /scheduled?cron=, POST /queue?name=, GET /published?name=\n');
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
