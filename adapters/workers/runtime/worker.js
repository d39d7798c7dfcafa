// wasmfn's runtime inside a Worker: Workers events into calls of the jco-transpiled component.
// Copied into every bundle as `wasmfn/worker.js` by `wasmfn package workers`, beside the
// capability modules (kv.js, sql.js, blob.js, config.js, queues.js, outbound.js) and trace.js
// (trace context passed through); the generated
// `worker.js` at the bundle's root calls `worker()`.

import { handleIncomingRequest } from '../shim/http.js';
import { configure } from './platform.js';
import { unwrap } from './queues.js';
import { fromAttributes, fromHeaders, withTrace } from './trace.js';

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
const isTrap = (error) => error instanceof WebAssembly.RuntimeError || error instanceof MemoryLimitExceeded;

/** What the component reported (`err` payloads of jco's ComponentError) or the trap. */
const describe = (error) => (error && error.payload !== undefined ? String(error.payload) : String(error));

/**
 * Instances of the component, one per event in flight. A guest suspended in a platform call
 * (JSPI) must not be re-entered by another event, so concurrent events in the isolate each take
 * their own instance; idle ones are kept for the next event, a trapped one is dropped.
 */
class Instances {
  #load;
  #memoryLimit;
  #idle = [];
  /** Each instance's failed-grow flags (globals the packager added), to tell a memory-limit trap. */
  #growFlags = new WeakMap();
  constructor(load, memoryLimit) {
    this.#load = load;
    this.#memoryLimit = memoryLimit;
  }
  async #create() {
    const flags = [];
    const instance = await this.#load(async (module, imports) => {
      const core = await WebAssembly.instantiate(module, imports);
      const flag = core.exports['wasmfn:grow-failed'];
      if (flag) flags.push(flag);
      return core;
    });
    this.#growFlags.set(instance, flags);
    return instance;
  }
  async run(call) {
    const instance = this.#idle.pop() ?? (await this.#create());
    try {
      const result = await call(instance);
      this.#idle.push(instance);
      return result;
    } catch (error) {
      if (!isTrap(error)) {
        this.#idle.push(instance);
        throw error;
      }
      // The packager capped every memory at the limit and flags a failed `memory.grow`: a trap
      // after one is the guest running out of memory there.
      const full = (this.#growFlags.get(instance) ?? []).some((flag) => flag.value === 1);
      throw full ? new MemoryLimitExceeded(this.#memoryLimit, error) : error;
    }
  }
}

/** A trap with the instance's memory at the manifest's limit. */
class MemoryLimitExceeded extends Error {
  constructor(limit, trap) {
    super(`memory limit of ${Math.round(limit / 1048576)} MiB exceeded (${trap.message})`);
  }
}

/** The `x-wasmfn-error` kind of a failure (the names the host and the Lambda adapter use). */
function kind(error) {
  if (error instanceof MemoryLimitExceeded) return 'MemoryLimitExceeded';
  return isTrap(error) ? 'Trap' : 'HandlerError';
}

/**
 * The Worker's handlers for a component of `world`: `load()` instantiates it; `schedules` maps
 * cron expressions to the manifest's schedule names; `platform` maps the manifest's store,
 * queue, config and secret names to the Worker's bindings and variables; `limits.memory` is
 * the manifest's memory limit in bytes.
 */
export function worker({ world, load, schedules = {}, platform = {}, limits = {} }) {
  const instances = new Instances(load, limits.memory ?? 128 * 1048576);
  const ready = (env) => configure(env, platform);
  if (world === 'http') {
    return {
      async fetch(request, env) {
        ready(env);
        try {
          // The caller's trace context rides on the guest's outbound requests and messages.
          return await withTrace(fromHeaders(request.headers), () =>
            instances.run((inst) => handleIncomingRequest(request, inst.incomingHandler.handle)),
          );
        } catch (error) {
          console.error(`wasmfn: request failed: ${describe(error)}`);
          return new Response(`function trapped: ${describe(error)}\n`, {
            status: 500,
            headers: { 'x-wasmfn-error': kind(error) },
          });
        }
      },
    };
  }
  if (world === 'queue') {
    return {
      async queue(batch, env) {
        ready(env);
        const delivered = batch.messages.map((m) => ({ message: m, ...unwrap(m) }));
        const messages = delivered.map((d) => ({
          id: d.id,
          body: bytes(d.body),
          attributes: d.attributes,
          attempt: d.message.attempts ?? 1,
          enqueuedAt: BigInt(d.message.timestamp.getTime()),
        }));
        let failures;
        try {
          // The first producer's trace context carries on (as on the host).
          const context = messages.map((m) => fromAttributes(m.attributes)).find(Boolean);
          failures = await withTrace(context, () =>
            instances.run((inst) => inst.queueHandler.handle({ queue: batch.queue, messages })),
          );
        } catch (error) {
          console.error(`wasmfn: batch of ${batch.queue} failed: ${describe(error)}`);
          batch.retryAll();
          return;
        }
        const retry = new Set(failures.map((f) => f.id));
        for (const f of failures) console.warn(`wasmfn: message ${f.id} failed: ${f.reason}`);
        for (const d of delivered) {
          if (retry.has(d.id)) d.message.retry();
          else d.message.ack();
        }
      },
    };
  }
  if (world === 'schedule') {
    return {
      async scheduled(controller, env) {
        ready(env);
        const name = schedules[controller.cron] ?? controller.cron;
        try {
          await instances.run((inst) =>
            inst.scheduleHandler.handle({
              schedule: name,
              expression: controller.cron,
              scheduledTime: BigInt(Math.trunc(controller.scheduledTime)),
              fireTime: BigInt(Date.now()),
            }),
          );
        } catch (error) {
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
