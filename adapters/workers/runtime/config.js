// `wasi:config/store` from the Worker's vars (the manifest's config values) and secrets (its
// secrets, set with `wrangler secret put`). The generated entry module names the variable behind
// each key, so `api-token` reads the secret `API_TOKEN` the manifest named.

import { structured, tables, variable } from './platform.js';

/** Config key -> the Worker secret holding it (the `WASMFN_SECRETS` var). */
const secretNames = () => structured(tables().secrets) ?? {};

function lookup(key) {
  const { config } = tables();
  const secrets = secretNames();
  const name = secrets[key] ?? config[key];
  if (name === undefined) return undefined;
  const value = variable(name);
  return value === undefined || value === null ? undefined : String(value);
}

export const store = {
  get(key) {
    return lookup(key);
  },
  getAll() {
    const keys = new Set([...Object.keys(tables().config), ...Object.keys(secretNames())]);
    return [...keys].flatMap((k) => {
      const v = lookup(k);
      return v === undefined ? [] : [[k, v]];
    });
  },
};
