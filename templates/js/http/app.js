// {{name}}: an HTTP function (the standard wasi:http incoming handler, through the fetch event
// of componentize-js's engine). It echoes the request: the status comes from `?status=NNN`
// (default 200), request headers named `x-*` come back with `x-method` and `x-path`, and the
// body is sent back. Edit `handle` to do real work.
//
// The world is wit/world.wit: add imports there to use the platform services, then import them
// here (`import { open } from 'wasi:keyvalue/store@0.2.0-draft';`).

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    if (name.startsWith('x-')) headers.set(name, value);
  }
  headers.set('x-method', request.method);
  headers.set('x-path', url.pathname + url.search);
  const status = Number(url.searchParams.get('status') ?? 200);
  const body = await request.arrayBuffer();
  return new Response(body, { status, headers });
}
