// What every capability module shares: the Worker's `env` (bindings, vars, secrets) and the
// packaged function's table of which wasmfn name maps to which binding. `worker.js` calls
// `configure` before the guest first runs.

let env = {};
let settings = {
  kv: {},
  sql: {},
  blob: {},
  queues: {},
  config: {},
  secrets: 'WASMFN_SECRETS',
  outbound: 'WASMFN_ALLOWED_OUTBOUND_HOSTS',
};

/** Remember the Worker's bindings and the generated name -> binding tables. */
export function configure(workerEnv, platform) {
  env = workerEnv ?? {};
  settings = { ...settings, ...platform };
}

/** The binding behind wasmfn store `name` of `kind` (`kv`, `sql`, `blob`, `queues`), if bound. */
export function binding(kind, name) {
  const variable = settings[kind]?.[name];
  return variable === undefined ? undefined : env[variable];
}

/** A var or secret of the Worker. */
export function variable(name) {
  return env[name];
}

/** A var holding structured data: wrangler passes TOML tables as objects, `.dev.vars` as text. */
export function structured(name) {
  const raw = env[name];
  if (raw === undefined || raw === null) return undefined;
  return typeof raw === 'string' ? JSON.parse(raw) : raw;
}

/** The generated tables (config keys; the vars naming secrets and the allow-list). */
export function tables() {
  return settings;
}

/** A thrown error's message, for the `other(string)` cases of the interfaces. */
export const message = (error) => (error instanceof Error ? error.message : String(error));
