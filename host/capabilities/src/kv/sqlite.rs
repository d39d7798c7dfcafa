//! The embedded key-value store: one SQLite database per binding, durable across restarts.
//! Expired keys read as absent at once and are purged in the background.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{bail, Result};
use rusqlite::{params, Connection, OptionalExtension as _};

use super::{KeyPage, KvBackend};
use crate::sqlite_pool::SqlitePool;
use crate::stores::{now_ms, StoreFuture};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at INTEGER  -- Unix milliseconds; NULL: never
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
";

/// How often expired rows are deleted (they are invisible to reads in the meantime).
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// Embedded key-value backend.
pub struct SqliteKv {
    pool: Arc<SqlitePool>,
}

fn setup(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| (now_ms() + t.as_millis() as u64) as i64)
}

const LIVE: &str = "(expires_at IS NULL OR expires_at > ?2)";

fn get_live(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(&format!("SELECT value FROM kv WHERE key = ?1 AND {LIVE}"))?
        .query_row(params![key, now_ms() as i64], |r| r.get(0))
        .optional()
}

fn put(conn: &Connection, key: &str, value: &[u8], ttl: Option<Duration>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
    )?
    .execute(params![key, value, expiry(ttl)])?;
    Ok(())
}

impl SqliteKv {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let pool = Arc::new(SqlitePool::open(path, setup)?);
        let weak = Arc::downgrade(&pool);
        std::thread::Builder::new()
            .name("wasmfn-kv-purge".into())
            .spawn(move || purge_loop(weak))?;
        Ok(Self { pool })
    }

    /// Delete expired rows now; returns how many.
    pub fn purge_expired(&self) -> Result<usize> {
        purge(&self.pool)
    }
}

fn purge(pool: &SqlitePool) -> Result<usize> {
    pool.with(|c| {
        Ok(c.execute(
            "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            params![now_ms() as i64],
        )?)
    })
}

fn purge_loop(pool: Weak<SqlitePool>) {
    loop {
        std::thread::sleep(PURGE_EVERY);
        let Some(pool) = pool.upgrade() else { return };
        if let Err(e) = purge(&pool) {
            tracing::warn!(db = %pool.path().display(), "purging expired keys: {e:#}");
        }
    }
}

/// Run a read-modify-write atomically (`BEGIN IMMEDIATE` takes the write lock up front, so two
/// writers never both read the old value).
fn atomically<T>(
    pool: &SqlitePool,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    pool.with(|c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    })
}

impl KvBackend for SqliteKv {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.pool.with(|c| Ok(get_live(c, key)?)) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.pool.with(|c| Ok(put(c, key, value, ttl)?)) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.pool.with(|c| {
                c.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key])?;
                Ok(())
            })
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.pool.with(|c| {
                Ok(
                    c.prepare_cached(&format!("SELECT 1 FROM kv WHERE key = ?1 AND {LIVE}"))?
                        .exists(params![key, now_ms() as i64])?,
                )
            })
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> StoreFuture<'a, KeyPage> {
        Box::pin(async move {
            let limit = limit.clamp(1, 10_000);
            self.pool.with(|c| {
                // Keys in order, strictly after the cursor (the last key of the previous page).
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT key FROM kv WHERE key > ?1 AND substr(key, 1, length(?3)) = ?3
                     AND {LIVE} ORDER BY key LIMIT ?4"
                ))?;
                let after = cursor.unwrap_or("");
                let keys = stmt
                    .query_map(
                        params![after, now_ms() as i64, prefix, limit as i64 + 1],
                        |r| r.get::<_, String>(0),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut keys = keys;
                let cursor = if keys.len() > limit as usize {
                    keys.truncate(limit as usize);
                    keys.last().cloned()
                } else {
                    None
                };
                Ok(KeyPage { keys, cursor })
            })
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            atomically(&self.pool, |tx| {
                let current = match get_live(tx, key)? {
                    None => 0,
                    Some(v) => parse_counter(key, &v)?,
                };
                let Some(next) = current.checked_add(delta) else {
                    bail!("incrementing `{key}` by {delta} overflows a 64-bit integer");
                };
                // The expiry of an existing counter is kept, as Redis INCRBY does.
                tx.prepare_cached(
                    "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, NULL)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     expires_at = CASE WHEN kv.expires_at > ?3 THEN kv.expires_at ELSE NULL END",
                )?
                .execute(params![
                    key,
                    next.to_string().as_bytes(),
                    now_ms() as i64
                ])?;
                Ok(next)
            })
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            atomically(&self.pool, |tx| {
                if get_live(tx, key)?.as_deref() != expected {
                    return Ok(false);
                }
                put(tx, key, new, ttl)?;
                Ok(true)
            })
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Duration>> {
        Box::pin(async move {
            self.pool.with(|c| {
                let now = now_ms() as i64;
                let at: Option<Option<i64>> = c
                    .prepare_cached(&format!(
                        "SELECT expires_at FROM kv WHERE key = ?1 AND {LIVE}"
                    ))?
                    .query_row(params![key, now], |r| r.get(0))
                    .optional()?;
                Ok(at
                    .flatten()
                    .map(|t| Duration::from_millis((t - now).max(0) as u64)))
            })
        })
    }

    fn persist<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            self.pool.with(|c| {
                let n = c
                    .prepare_cached(&format!(
                        "UPDATE kv SET expires_at = NULL WHERE key = ?1 AND {LIVE}"
                    ))?
                    .execute(params![key, now_ms() as i64])?;
                Ok(n > 0)
            })
        })
    }
}

/// Counters are decimal text; anything else cannot be incremented.
pub(crate) fn parse_counter(key: &str, value: &[u8]) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("value of `{key}` is not an integer, cannot increment it"))
}
