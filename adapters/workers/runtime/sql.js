// SQL (`wasmfn:platform/sql`) on Cloudflare D1.
//
// Values: parameters bind as D1 takes them (64-bit integers beyond 2^53 as text, which SQLite
// converts back in INTEGER columns); results come back as JavaScript numbers, so a whole number
// reads as `integer` and any other as `real`. D1 names columns only through rows, so a query
// returning no rows reports no columns.
//
// Transactions: D1 has no interactive transactions (`BEGIN` is refused). `begin` returns a
// transaction whose writes are queued and run as one atomic `batch()` at `commit` (dropped
// without commit, nothing runs). Their results are not known before `commit`, so `query` on a
// transaction answers an empty row set with `rows-affected` 0, and refuses reads and
// `RETURNING`, naming the fix. `execute-batch` also runs as one atomic batch.

import { binding, message } from './platform.js';

/** D1's error text to the interface's error variant. */
function failure(error) {
  if (error?.tag) return error;
  const text = message(error).replace(/^D1_ERROR:\s*/, '');
  if (/constraint failed/i.test(text)) return { tag: 'constraint-violation', val: text };
  if (/syntax error|no such (table|column|function)|incomplete input|has no column/i.test(text)) {
    return { tag: 'invalid-statement', val: text };
  }
  if (/type|bind/i.test(text)) return { tag: 'invalid-parameter', val: text };
  return { tag: 'other', val: text };
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function bindValue(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'integer':
      return v.val <= MAX_SAFE && v.val >= -MAX_SAFE ? Number(v.val) : v.val.toString();
    case 'real':
    case 'text':
      return v.val;
    case 'blob':
      return v.val;
  }
  throw { tag: 'invalid-parameter', val: `unknown value ${v.tag}` };
}

function fromColumn(x) {
  if (x === null || x === undefined) return { tag: 'null' };
  if (typeof x === 'number') {
    return Number.isInteger(x) ? { tag: 'integer', val: BigInt(x) } : { tag: 'real', val: x };
  }
  if (typeof x === 'bigint') return { tag: 'integer', val: x };
  if (typeof x === 'string') return { tag: 'text', val: x };
  if (x instanceof ArrayBuffer) return { tag: 'blob', val: new Uint8Array(x) };
  if (ArrayBuffer.isView(x)) return { tag: 'blob', val: new Uint8Array(x.buffer, x.byteOffset, x.byteLength) };
  if (Array.isArray(x)) return { tag: 'blob', val: Uint8Array.from(x) };
  return { tag: 'text', val: String(x) };
}

function rowSet(result) {
  const rows = result.results ?? [];
  const columns = rows.length > 0 ? Object.keys(rows[0]) : [];
  const changes = result.meta?.changes ?? 0;
  return {
    columns,
    rows: rows.map((row) => columns.map((c) => fromColumn(row[c]))),
    rowsAffected: BigInt(changes),
    lastInsertId: changes > 0 && result.meta?.last_row_id != null ? BigInt(result.meta.last_row_id) : undefined,
  };
}

const prepare = (db, statement, params) => db.prepare(statement).bind(...params.map(bindValue));

/**
 * Statements separated by `;`, outside quotes and comments (D1's `exec` would split on
 * newlines instead, breaking multi-line statements).
 */
export function splitStatements(text) {
  const out = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"' || c === '`') {
      const end = text.indexOf(c, i + 1);
      i = end < 0 ? text.length : end;
    } else if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
    } else if (c === ';') {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

export class Connection {
  #db;
  constructor(db) {
    this.#db = db;
  }
  static open(name) {
    const db = binding('sql', name);
    if (!db) throw { tag: 'no-such-database', val: name };
    return new Connection(db);
  }
  async query(statement, params) {
    try {
      return rowSet(await prepare(this.#db, statement, params).all());
    } catch (error) {
      throw failure(error);
    }
  }
  async executeBatch(statements) {
    const list = splitStatements(statements);
    if (list.length === 0) return;
    try {
      await this.#db.batch(list.map((s) => this.#db.prepare(s)));
    } catch (error) {
      throw failure(error);
    }
  }
  begin() {
    return new Transaction(this.#db);
  }
}

export class Transaction {
  #db;
  #queued = [];
  constructor(db) {
    this.#db = db;
  }
  query(statement, params) {
    if (/^\s*(select|with|pragma|explain)\b/i.test(statement) || /\breturning\b/i.test(statement)) {
      throw {
        tag: 'other',
        val: 'D1 runs a transaction as one batch at commit, so reads and RETURNING inside it have no result yet: read before `begin` or after `commit`',
      };
    }
    try {
      this.#queued.push(prepare(this.#db, statement, params));
    } catch (error) {
      throw failure(error);
    }
    return { columns: [], rows: [], rowsAffected: 0n, lastInsertId: undefined };
  }
  static async commit(tx) {
    const queued = tx.#queued.splice(0);
    if (queued.length === 0) return;
    try {
      await tx.#db.batch(queued);
    } catch (error) {
      throw failure(error);
    }
  }
  static rollback(tx) {
    tx.#queued.length = 0;
  }
}

/** `wasmfn:platform/sql`. */
export const sql = { Connection, Transaction };
