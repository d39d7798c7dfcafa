//! The distributed key-value backend: Redis, through one multiplexed, auto-reconnecting
//! connection per binding (`redis::aio::ConnectionManager`), shared by every instance.

use std::time::Duration;

use anyhow::{Context as _, Result};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};

use super::{KeyPage, KvBackend};
use crate::stores::StoreFuture;

/// Redis key-value backend; every key is stored as `prefix + key`.
pub struct RedisKv {
    conn: ConnectionManager,
    prefix: String,
    cas: Script,
    persist: Script,
}

/// Compare-and-swap in one server-side step. ARGV: expect-present flag, expected value, new
/// value, TTL in ms ("" for none).
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
";

/// PERSIST answers 0 both for "absent" and "had no expiry"; the interface needs "absent" only.
const PERSIST_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
";

impl RedisKv {
    /// Connect to `url`; fails when the server is unreachable (at load, not on first use).
    pub async fn connect(url: &str, prefix: String) -> Result<Self> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .map_err(|_| anyhow::anyhow!("Redis server did not answer within 5 s"))?
            .context("connecting to Redis")?;
        Ok(Self {
            conn,
            prefix,
            cas: Script::new(CAS_SCRIPT),
            persist: Script::new(PERSIST_SCRIPT),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Escape glob characters so that a prefix matches literally in `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl KvBackend for RedisKv {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { Ok(self.conn.clone().get(self.key(key)).await?) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            match ttl {
                Some(t) => {
                    conn.pset_ex::<_, _, ()>(self.key(key), value, t.as_millis() as u64)
                        .await?
                }
                None => conn.set::<_, _, ()>(self.key(key), value).await?,
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.conn.clone().del::<_, ()>(self.key(key)).await?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.conn.clone().exists(self.key(key)).await?) })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> StoreFuture<'a, KeyPage> {
        Box::pin(async move {
            let pattern = format!("{}*", glob_escape(&self.key(prefix)));
            let mut scan_cursor: u64 = match cursor {
                Some(c) => c.parse().context("not a cursor returned by list")?,
                None => 0,
            };
            let mut keys = Vec::new();
            // SCAN may return few or no keys per call; keep going until a page is filled or the
            // keyspace is done, so that an empty page always means "no more keys".
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(scan_cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(limit.clamp(10, 1000))
                    .query_async(&mut self.conn.clone())
                    .await?;
                keys.extend(
                    batch
                        .into_iter()
                        .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string)),
                );
                scan_cursor = next;
                if next == 0 || keys.len() >= limit as usize {
                    break;
                }
            }
            Ok(KeyPage {
                keys,
                cursor: (scan_cursor != 0).then(|| scan_cursor.to_string()),
            })
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            self.conn
                .clone()
                .incr(self.key(key), delta)
                .await
                .with_context(|| format!("incrementing `{key}`"))
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
            let swapped: i64 = self
                .cas
                .key(self.key(key))
                .arg(if expected.is_some() { "1" } else { "0" })
                .arg(expected.unwrap_or_default())
                .arg(new)
                .arg(ttl.map(|t| t.as_millis().to_string()).unwrap_or_default())
                .invoke_async(&mut self.conn.clone())
                .await?;
            Ok(swapped == 1)
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Duration>> {
        Box::pin(async move {
            let ms: i64 = redis::cmd("PTTL")
                .arg(self.key(key))
                .query_async(&mut self.conn.clone())
                .await?;
            Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
        })
    }

    fn persist<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let existed: i64 = self
                .persist
                .key(self.key(key))
                .invoke_async(&mut self.conn.clone())
                .await?;
            Ok(existed == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_escape() {
        assert_eq!(super::glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
