// wasmfn's runtime inside a Worker: Workers events into calls of the jco-transpiled component,
// and the wasmfn imports Workers can provide. Copied into every bundle as `shim/wasmfn.js` by
// `wasmfn package workers`; the generated `worker.js` calls `worker()`.

import { handleIncomingRequest } from './http.js';

/** `wasi:logging/logging` on the console (Workers logs). */
export const logging = {
  log(level, context, message) {
    const line = context ? `[${level}] ${context}: ${message}` : `[${level}] ${message}`;
    if (level === 'error' || level === 'critical') console.error(line);
    else if (level === 'warn') console.warn(line);
    else console.log(line);
  },
};

/** `wasmfn:platform/types` declares types only. */
export const types = {};

const encoder = new TextEncoder();

/** A queue message body as bytes: text as UTF-8, binary as is, anything else as JSON. */
function bytes(body) {
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return encoder.encode(JSON.stringify(body));
}

/** A trap leaves the instance unusable: the next event gets a fresh one. */
const isTrap = (error) => error instanceof WebAssembly.RuntimeError;

/** What the component reported (`err` payloads of jco's ComponentError) or the trap. */
const describe = (error) => (error && error.payload !== undefined ? String(error.payload) : String(error));

/**
 * The Worker's handlers for a component of `world`: `load()` instantiates it (once per isolate,
 * again after a trap); `schedules` maps cron expressions to the manifest's schedule names.
 */
export function worker({ world, load, schedules = {} }) {
  let component;
  const instance = () => (component ??= load());
  const failed = (error) => {
    if (isTrap(error)) component = undefined;
  };
  if (world === 'http') {
    return {
      async fetch(request) {
        const inst = await instance();
        try {
          return await handleIncomingRequest(request, inst.incomingHandler.handle);
        } catch (error) {
          failed(error);
          console.error(`wasmfn: request failed: ${describe(error)}`);
          return new Response(`function trapped: ${describe(error)}\n`, {
            status: 500,
            headers: { 'x-wasmfn-error': isTrap(error) ? 'Trap' : 'HandlerError' },
          });
        }
      },
    };
  }
  if (world === 'queue') {
    return {
      async queue(batch) {
        const inst = await instance();
        const messages = batch.messages.map((m) => ({
          id: m.id,
          body: bytes(m.body),
          attributes: [],
          attempt: m.attempts ?? 1,
          enqueuedAt: BigInt(m.timestamp.getTime()),
        }));
        let failures;
        try {
          failures = inst.queueHandler.handle({ queue: batch.queue, messages });
        } catch (error) {
          failed(error);
          console.error(`wasmfn: batch of ${batch.queue} failed: ${describe(error)}`);
          batch.retryAll();
          return;
        }
        const retry = new Set(failures.map((f) => f.id));
        for (const f of failures) console.warn(`wasmfn: message ${f.id} failed: ${f.reason}`);
        for (const m of batch.messages) {
          if (retry.has(m.id)) m.retry();
          else m.ack();
        }
      },
    };
  }
  if (world === 'schedule') {
    return {
      async scheduled(controller) {
        const inst = await instance();
        const name = schedules[controller.cron] ?? controller.cron;
        try {
          inst.scheduleHandler.handle({
            schedule: name,
            expression: controller.cron,
            scheduledTime: BigInt(Math.trunc(controller.scheduledTime)),
            fireTime: BigInt(Date.now()),
          });
        } catch (error) {
          failed(error);
          const message = `schedule ${name} failed: ${describe(error)}`;
          console.error(`wasmfn: ${message}`);
          // Throwing marks the run failed in Workers' cron history.
          throw new Error(message);
        }
      },
    };
  }
  throw new Error(`wasmfn: no Workers handler for the ${world} world`);
}
