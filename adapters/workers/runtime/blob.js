// Blob storage (`wasmfn:platform/blob`) on Cloudflare R2: content type as R2's
// `httpMetadata.contentType`, metadata as `customMetadata`, ranges as R2 ranged reads. Keys are
// checked by the same rules as on the host (relative, no `.`/`..` segments), so a function
// behaves alike everywhere. Streams are buffered: R2 takes and returns whole bodies here, and a
// Worker's memory bounds an object anyway.

import { binding, message } from './platform.js';
import { inputStreamCreate, outputStreamCreate, pollableCreate } from '../shim/io.js';

const other = (error) => (error?.tag ? error : { tag: 'other', val: message(error) });

/** The host's key rules (`host/src/blob/mod.rs`, `validate_key`). */
function checkKey(key) {
  const bad = (why) => {
    throw { tag: 'invalid-key', val: `\`${key}\`: ${why}` };
  };
  if (key.length === 0) bad('keys must not be empty');
  if (new TextEncoder().encode(key).length > 1024) bad('keys are at most 1024 bytes');
  if (key.startsWith('/')) bad('keys are relative: remove the leading `/`');
  if (key.includes('\0') || key.includes('\\')) bad('keys must not contain NUL or `\\`');
  for (const segment of key.split('/')) {
    if (segment === '') bad('empty path segment (`//` or a trailing `/`)');
    if (segment === '.' || segment === '..') bad('`.` and `..` segments are not allowed');
    if (segment.length > 255) bad('a path segment is longer than 255 bytes');
  }
  if (key === '.wasmfn' || key.startsWith('.wasmfn/')) bad('`.wasmfn/` is reserved for the store\'s own index');
}

function info(object) {
  return {
    key: object.key,
    size: BigInt(object.size),
    contentType: object.httpMetadata?.contentType,
    etag: object.etag,
    lastModified: BigInt(object.uploaded.getTime()),
    metadata: Object.entries(object.customMetadata ?? {}),
  };
}

function putOptions(options) {
  const put = { customMetadata: Object.fromEntries(options.metadata) };
  if (options.contentType !== undefined) put.httpMetadata = { contentType: options.contentType };
  return put;
}

/** Read `key` (a range of it) whole: [object, bytes]. */
async function fetchObject(bucket, key, range) {
  checkKey(key);
  const head = await bucket.head(key);
  if (!head) throw { tag: 'not-found', val: key };
  if (!range) {
    const object = await bucket.get(key);
    if (!object) throw { tag: 'not-found', val: key };
    return [object, new Uint8Array(await object.arrayBuffer())];
  }
  const offset = Number(range.offset);
  if (offset > head.size || (offset === head.size && head.size > 0)) throw { tag: 'invalid-range' };
  const rest = head.size - offset;
  const length = range.length === undefined ? rest : Math.min(Number(range.length), rest);
  if (length === 0) return [head, new Uint8Array()];
  const object = await bucket.get(key, { range: { offset, length } });
  if (!object) throw { tag: 'not-found', val: key };
  return [object, new Uint8Array(await object.arrayBuffer())];
}

/** An input stream over bytes already read. */
function bytesStream(bytes) {
  let offset = 0;
  const read = (len) => {
    if (offset >= bytes.length) throw { tag: 'closed' };
    const chunk = bytes.slice(offset, offset + Number(len));
    offset += chunk.length;
    return chunk;
  };
  return inputStreamCreate({ read, blockingRead: read, subscribe: () => pollableCreate() });
}

export class Container {
  #bucket;
  constructor(bucket) {
    this.#bucket = bucket;
  }
  static open(name) {
    const bucket = binding('blob', name);
    if (!bucket) throw { tag: 'no-such-container', val: name };
    return new Container(bucket);
  }
  static bucket(container) {
    return container.#bucket;
  }
  async put(key, data, options) {
    checkKey(key);
    try {
      return info(await this.#bucket.put(key, data, putOptions(options)));
    } catch (error) {
      throw other(error);
    }
  }
  async get(key, range) {
    try {
      const [object, bytes] = await fetchObject(this.#bucket, key, range);
      return [info(object), bytes];
    } catch (error) {
      throw other(error);
    }
  }
  async read(key, range) {
    const [object, bytes] = await this.get(key, range);
    return [object, bytesStream(bytes)];
  }
  write(key, options) {
    checkKey(key);
    return new ObjectWriter(this.#bucket, key, options);
  }
  async head(key) {
    checkKey(key);
    try {
      const object = await this.#bucket.head(key);
      return object ? info(object) : undefined;
    } catch (error) {
      throw other(error);
    }
  }
  async delete(key) {
    checkKey(key);
    try {
      await this.#bucket.delete(key);
    } catch (error) {
      throw other(error);
    }
  }
  async listObjects(prefix, cursor, limit) {
    try {
      const page = await this.#bucket.list({
        prefix,
        cursor,
        limit: Math.min(Math.max(limit, 1), 1000),
        include: ['httpMetadata', 'customMetadata'],
      });
      return { objects: page.objects.map(info), cursor: page.truncated ? page.cursor : undefined };
    } catch (error) {
      throw other(error);
    }
  }
}

/** A streamed upload: the body is gathered, then put in one request at `finish`. */
export class ObjectWriter {
  #bucket;
  #key;
  #options;
  #chunks = [];
  #taken = false;
  constructor(bucket, key, options) {
    this.#bucket = bucket;
    this.#key = key;
    this.#options = options;
  }
  body() {
    if (this.#taken) throw undefined;
    this.#taken = true;
    const chunks = this.#chunks;
    return outputStreamCreate({
      checkWrite: () => 1n << 20n,
      write: (buf) => chunks.push(buf.slice()),
      blockingFlush() {},
      flush() {},
    });
  }
  static async finish(writer) {
    const size = writer.#chunks.reduce((n, c) => n + c.length, 0);
    const data = new Uint8Array(size);
    let at = 0;
    for (const c of writer.#chunks) {
      data.set(c, at);
      at += c.length;
    }
    try {
      return info(await writer.#bucket.put(writer.#key, data, putOptions(writer.#options)));
    } catch (error) {
      throw other(error);
    }
  }
}

/** `wasmfn:platform/blob`. */
export const blob = { Container, ObjectWriter };
