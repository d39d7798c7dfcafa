// Per-request time of a wasmfn Worker bundle against a plain JavaScript Worker giving the same
// response, both in the same workerd (Miniflare), driven worker-to-worker through service
// bindings so that Node and HTTP stay out of the measurement; plus each one's first request
// (isolate start, component instantiation) and the bundle size.
//
//   wasmfn package workers hello --dir guests --out /tmp/hello-worker
//   node benches/workers/compare.mjs /tmp/hello-worker [REQUESTS] [ROUNDS]
//
// The two run in alternating rounds of REQUESTS each (a shared machine drifts); the figures
// are each one's median round and the median of the per-round ratios. The bundle is loaded
// from its own wrangler.toml, read by wrangler's configuration code.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';

const [bundle, requests = '2000', rounds = '5'] = process.argv.slice(2);
if (!bundle) {
  console.error('usage: node compare.mjs BUNDLE_DIR [REQUESTS]');
  process.exit(2);
}
const tools = process.env.WASMFN_WORKERS_TOOLS ?? path.join(os.homedir(), '.cache/wasmfn/workers-tools');
const require = createRequire(path.join(tools, 'package.json'));
const { Miniflare } = require('miniflare');
const { unstable_getMiniflareWorkerOptions } = require('wrangler');
const root = path.resolve(bundle);
const { workerOptions } = unstable_getMiniflareWorkerOptions(path.join(root, 'wrangler.toml'), '');

const driver = `
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = env[url.searchParams.get('target')];
    const n = Number(url.searchParams.get('n'));
    let started = performance.now();
    let r = await target.fetch('http://worker/hello');
    const body = await r.text();
    const first = performance.now() - started;
    started = performance.now();
    for (let i = 0; i < n; i++) {
      r = await target.fetch('http://worker/hello');
      await r.arrayBuffer();
    }
    const each = (performance.now() - started) / n;
    return Response.json({ first, each, body });
  },
};`;
const plain = `
export default {
  async fetch(request) {
    return new Response('Hello from wasmfn! You asked for ' + new URL(request.url).pathname + '\\n');
  },
};`;

const mf = new Miniflare({
  workers: [
    { name: 'driver', modules: true, script: driver, compatibilityDate: '2026-04-01',
      serviceBindings: { WASMFN: 'wasmfn', PLAIN: 'plain' } },
    { ...workerOptions, name: 'wasmfn', modules: true, scriptPath: path.join(root, 'worker.js'), modulesRoot: root },
    { name: 'plain', modules: true, script: plain, compatibilityDate: '2026-04-01' },
  ],
});
const run = async (target) => (await mf.dispatchFetch(`http://driver/?target=${target}&n=${requests}`)).json();
// Each target's first request is its cold start; measure both before any warm-up.
const wasmfn = await run('WASMFN');
const js = await run('PLAIN');
// Then the per-request figures, warm, in alternating rounds.
const wasmfnRounds = [];
const jsRounds = [];
const ratios = [];
for (let i = 0; i < Number(rounds); i++) {
  const w = await run('WASMFN');
  const j = await run('PLAIN');
  wasmfnRounds.push(w.each);
  jsRounds.push(j.each);
  ratios.push(w.each / j.each);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const wasmfnWarm = { each: median(wasmfnRounds), body: wasmfn.body };
const jsWarm = { each: median(jsRounds), body: js.body };
await mf.dispose();

let raw = 0;
const gz = [];
const walk = (dir) => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.(js|wasm)$/.test(e.name)) {
      const data = fs.readFileSync(p);
      raw += data.length;
      gz.push(data);
    }
  }
};
walk(root);
const gzip = zlib.gzipSync(Buffer.concat(gz)).length;
const us = (ms) => `${(ms * 1000).toFixed(0)} µs`;
console.log(`responses: ${JSON.stringify(wasmfnWarm.body)} / ${JSON.stringify(jsWarm.body)}`);
console.log(`per request (${rounds} rounds of ${requests}, warm, medians): wasmfn ${us(wasmfnWarm.each)}, plain JS ${us(jsWarm.each)}, ratio ${median(ratios).toFixed(2)}x (rounds: ${ratios.map((r) => r.toFixed(2)).join(' ')})`);
console.log(`first request: wasmfn ${wasmfn.first.toFixed(1)} ms, plain JS ${js.first.toFixed(1)} ms`);
console.log(`bundle: ${(raw / 1024).toFixed(0)} KiB, ${(gzip / 1024).toFixed(0)} KiB gzip`);
