// W3C trace context passed through a Worker: the `traceparent` (and `tracestate`) of the event
// being handled (an incoming request's headers, a queue batch's first message that carries
// them) is what the guest's outbound requests and published messages carry on, unless the
// guest sets its own. Workers traces itself (Workers observability); wasmfn exports no spans
// here. The context is kept per event with AsyncLocalStorage (the `nodejs_als` flag), since
// one isolate interleaves many events.

import { AsyncLocalStorage } from 'node:async_hooks';

const current = new AsyncLocalStorage();

/** The trace context in request headers, if it has a `traceparent`. */
export function fromHeaders(headers) {
  const traceparent = headers.get('traceparent');
  return traceparent ? { traceparent, tracestate: headers.get('tracestate') ?? undefined } : undefined;
}

/** The trace context in message attributes (`[name, value]` pairs), if any. */
export function fromAttributes(attributes) {
  const get = (name) => attributes.find(([k]) => k.toLowerCase() === name)?.[1];
  const traceparent = get('traceparent');
  return traceparent ? { traceparent, tracestate: get('tracestate') } : undefined;
}

/** Run `f` with `context` as the current trace context. */
export function withTrace(context, f) {
  return context ? current.run(context, f) : f();
}

/** The current event's trace context, if any. */
export function currentTrace() {
  return current.getStore();
}

/** `attributes` with the current trace context added, unless they carry one. */
export function withTraceAttributes(attributes) {
  const context = currentTrace();
  if (!context || fromAttributes(attributes)) return attributes;
  const added = [['traceparent', context.traceparent]];
  if (context.tracestate) added.push(['tracestate', context.tracestate]);
  return [...attributes, ...added];
}

// The shim sends outbound requests with the global `fetch`: add the headers there.
const platformFetch = globalThis.fetch;
globalThis.fetch = function fetch(input, init) {
  const context = currentTrace();
  if (!context) return platformFetch(input, init);
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  if (!headers.has('traceparent')) {
    headers.set('traceparent', context.traceparent);
    if (context.tracestate) headers.set('tracestate', context.tracestate);
  }
  return platformFetch(input, { ...init, headers });
};
