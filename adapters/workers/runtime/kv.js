// Key-value (`wasi:keyvalue` store/atomics/batch, `wasmfn:platform/kv-extensions`) on Workers KV.
//
// Every call returns a Promise, which jco's JSPI mode turns into a suspension of the guest: the
// guest sees an ordinary synchronous call.
//
// Expiry: KV's own `expirationTtl` has a 60 s floor and whole seconds, so the exact expiry
// instant is kept in the key's metadata (`expiresAt`, ms) and checked on every read; KV's
// expiry (rounded up, at least 60 s) only reclaims the space. Workers KV is eventually
// consistent and has no transactions: `increment` and `compare-and-swap` read then write, so
// they are atomic within one isolate's sequence of calls but not against writers elsewhere.

import { binding, message } from './platform.js';

/** The `error` variant of `wasi:keyvalue/store`. */
const other = (error) => ({ tag: 'other', val: message(error) });

async function guarded(work) {
  try {
    return await work();
  } catch (error) {
    throw error?.tag ? error : other(error);
  }
}

const live = (metadata) => !(metadata?.expiresAt <= Date.now());

/** A KV write with an optional expiry in milliseconds. */
function put(kv, key, value, ttlMs) {
  if (ttlMs === undefined) return kv.put(key, value);
  const ms = Number(ttlMs);
  return kv.put(key, value, {
    expirationTtl: Math.max(60, Math.ceil(ms / 1000)),
    metadata: { expiresAt: Date.now() + ms },
  });
}

/** The value and metadata of `key`, or undefined when absent or expired. */
async function read(kv, key) {
  const { value, metadata } = await kv.getWithMetadata(key, { type: 'arrayBuffer' });
  if (value === null || !live(metadata)) return undefined;
  return { value: new Uint8Array(value), metadata };
}

/** A bucket: one KV namespace binding. */
export class Bucket {
  #kv;
  constructor(kv) {
    this.#kv = kv;
  }
  static kv(bucket) {
    return bucket.#kv;
  }
  get(key) {
    return guarded(async () => (await read(this.#kv, key))?.value);
  }
  set(key, value) {
    return guarded(() => put(this.#kv, key, value));
  }
  delete(key) {
    return guarded(() => this.#kv.delete(key));
  }
  exists(key) {
    return guarded(async () => (await read(this.#kv, key)) !== undefined);
  }
  /** `cursor` counts the keys already returned: KV's own cursors are strings. */
  listKeys(cursor) {
    return guarded(async () => {
      const skip = Number(cursor ?? 0n);
      const keys = [];
      let page = { list_complete: false, cursor: undefined };
      let seen = 0;
      while (!page.list_complete && keys.length < 1000) {
        page = await this.#kv.list({ cursor: page.cursor, limit: 1000 });
        for (const k of page.keys) {
          if (!live(k.metadata)) continue;
          if (seen++ >= skip && keys.length < 1000) keys.push(k.name);
        }
      }
      const more = !page.list_complete || seen > skip + keys.length;
      return { keys, cursor: more ? BigInt(skip + keys.length) : undefined };
    });
  }
}

/** `wasi:keyvalue/store`. */
export const store = {
  Bucket,
  open(name) {
    const kv = binding('kv', name);
    if (!kv) throw { tag: 'no-such-store' };
    return new Bucket(kv);
  },
};

/** `wasi:keyvalue/atomics`: read, add, write (see the note at the top on atomicity). */
export const atomics = {
  increment(bucket, key, delta) {
    return guarded(async () => {
      const kv = Bucket.kv(bucket);
      const current = await read(kv, key);
      const text = current ? new TextDecoder().decode(current.value) : '0';
      if (!/^\d+$/.test(text)) throw other(`the value of \`${key}\` is not a number`);
      const next = BigInt(text) + delta;
      await put(kv, key, String(next), remaining(current?.metadata));
      return next;
    });
  },
};

/** Milliseconds left of an expiry, or undefined. */
function remaining(metadata) {
  if (metadata?.expiresAt === undefined) return undefined;
  return BigInt(Math.max(1, metadata.expiresAt - Date.now()));
}

/** `wasi:keyvalue/batch`: the calls run concurrently. */
export const batch = {
  getMany(bucket, keys) {
    const kv = Bucket.kv(bucket);
    return guarded(() =>
      Promise.all(keys.map(async (k) => {
        const found = await read(kv, k);
        return found ? [k, found.value] : undefined;
      })),
    );
  },
  setMany(bucket, entries) {
    const kv = Bucket.kv(bucket);
    return guarded(async () => {
      await Promise.all(entries.map(([k, v]) => put(kv, k, v)));
    });
  },
  deleteMany(bucket, keys) {
    const kv = Bucket.kv(bucket);
    return guarded(async () => {
      await Promise.all(keys.map((k) => kv.delete(k)));
    });
  },
};

/** `wasmfn:platform/kv-extensions`. */
export const kvExtensions = {
  setWithTtl(bucket, key, value, ttlMs) {
    return guarded(() => put(Bucket.kv(bucket), key, value, ttlMs));
  },
  ttl(bucket, key) {
    return guarded(async () => remaining((await read(Bucket.kv(bucket), key))?.metadata));
  },
  persist(bucket, key) {
    return guarded(async () => {
      const kv = Bucket.kv(bucket);
      const current = await read(kv, key);
      if (!current) return false;
      if (current.metadata?.expiresAt !== undefined) await put(kv, key, current.value);
      return true;
    });
  },
  listPrefix(bucket, prefix, cursor, limit) {
    return guarded(async () => {
      const page = await Bucket.kv(bucket).list({ prefix, cursor, limit: Math.min(Math.max(limit, 1), 1000) });
      return {
        keys: page.keys.filter((k) => live(k.metadata)).map((k) => k.name),
        cursor: page.list_complete ? undefined : page.cursor,
      };
    });
  },
  compareAndSwap(bucket, key, expected, value, ttlMs) {
    return guarded(async () => {
      const kv = Bucket.kv(bucket);
      const current = await read(kv, key);
      if (!same(current?.value, expected)) return false;
      await put(kv, key, value, ttlMs);
      return true;
    });
  },
};

function same(a, b) {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
