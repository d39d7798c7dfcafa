//! A cluster's change feed, in PostgreSQL. Each stream is split into key partitions (a key's
//! records always land in the same one); appending takes the partition's head row, so within
//! a partition sequences are given, and committed, in order. Partitions are leased to hosts:
//! each host takes a fair share (partitions / live hosts), renews its leases every third of the
//! lease, and delivers its partitions' records in order from their checkpoints. A checkpoint is
//! written only by the lease holder (fenced on the owner), so a host that lost a lease (it
//! paused, or was cut off) cannot move a partition on; a dead host's partitions are taken over
//! once its leases expire, and their in-flight batches are delivered again from the checkpoint.
//!
//! A record's sequence is `partition × 10^17 + its sequence in the partition`: one number, as
//! on the embedded feed, ordered within a partition (and so per key).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmfn_host_capabilities::changes::ChangeRecorder;
use wasmfn_host_core::stream::StreamEvent;
use wasmfn_host_core::{Invoker, Service};

use super::{
    now_ms, process, sequence_text, Backlog, Cursor, Feed, ParkedRecord, Record, StreamConfig,
};
use crate::postgres::NOW_MS;

mod append;

/// A feed operation slower than this is logged while it waits (a stalled append blocks the
/// writer's thread).
const SLOW_FEED: Duration = Duration::from_secs(5);

/// Key partitions per stream: the most hosts that consume one stream at once.
pub const PARTITIONS: i32 = 16;
/// One partition's sequences in a record's number.
const PART_STRIDE: i64 = 100_000_000_000_000_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wasmfn_stream_records (
    stream TEXT NOT NULL,
    part INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    appended_at BIGINT NOT NULL,
    trace TEXT,
    PRIMARY KEY (stream, part, seq)
);
-- A relayed record's id at its origin (an outbox row), by which one relayed twice is skipped.
ALTER TABLE wasmfn_stream_records ADD COLUMN IF NOT EXISTS origin TEXT;
CREATE INDEX IF NOT EXISTS wasmfn_stream_records_by_origin
    ON wasmfn_stream_records (stream, part, origin) WHERE origin IS NOT NULL;
CREATE TABLE IF NOT EXISTS wasmfn_stream_heads (
    stream TEXT NOT NULL,
    part INTEGER NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, part)
);
CREATE TABLE IF NOT EXISTS wasmfn_stream_leases (
    stream TEXT NOT NULL,
    part INTEGER NOT NULL,
    checkpoint BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, part)
);
CREATE TABLE IF NOT EXISTS wasmfn_stream_members (
    stream TEXT NOT NULL,
    owner TEXT NOT NULL,
    seen_until BIGINT NOT NULL,
    PRIMARY KEY (stream, owner)
);
CREATE TABLE IF NOT EXISTS wasmfn_stream_parked (
    stream TEXT NOT NULL,
    part INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (stream, part, seq)
);
";

/// The partition of `key`: FNV-1a, stable across hosts, builds and restarts.
fn partition_of(key: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % PARTITIONS as u32) as i32
}

fn record_id(part: i32, seq: i64) -> i64 {
    i64::from(part) * PART_STRIDE + seq
}

fn split_id(id: i64) -> (i32, i64) {
    ((id / PART_STRIDE) as i32, id % PART_STRIDE)
}

/// The change feed of a cluster.
pub struct PostgresFeed {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The runtime the pool's connections live on; synchronous callers (stores recording a
    /// write) block on it.
    runtime: tokio::runtime::Handle,
    owner: String,
    namespace: String,
    lease: Duration,
    configs: Vec<StreamConfig>,
    /// Wakes this host's consumers after an append here (others poll).
    appended: tokio::sync::Notify,
}

impl PostgresFeed {
    /// Connect to `url`, create the tables and each stream's partitions. `namespace` keeps this
    /// app's streams apart from other apps' in the database; `lease` is how long a host holds
    /// a partition without renewing it.
    pub async fn connect(
        url: &str,
        namespace: &str,
        lease: Duration,
        configs: Vec<StreamConfig>,
    ) -> Result<Self> {
        // Appends from concurrent guest writes, plus each consumed partition's reads.
        let pool = crate::postgres::pool(url, 8, SCHEMA).await?;
        let client = pool.get().await.context("no PostgreSQL connection")?;
        for c in &configs {
            let stream = format!("{namespace}/{}", c.name);
            for table in ["wasmfn_stream_heads", "wasmfn_stream_leases"] {
                client
                    .execute(
                        &format!(
                            "INSERT INTO {table} (stream, part) SELECT $1, p FROM generate_series(0, $2 - 1) p \
                             ON CONFLICT DO NOTHING"
                        ),
                        &[&stream, &PARTITIONS],
                    )
                    .await?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                runtime: tokio::runtime::Handle::current(),
                owner: crate::postgres::host_id(),
                namespace: namespace.to_string(),
                lease,
                configs,
                appended: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Run `f(inner, stream)` to completion for a synchronous caller ([`Inner::blocking`]).
    fn on_stream<T: Send + 'static, F>(
        &self,
        stream: &str,
        f: impl FnOnce(Arc<Inner>, String) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        self.inner
            .blocking(f(self.inner.clone(), stream.to_string()))
    }

    /// Disable (and report) streams whose function is missing or not of the `stream` world.
    pub fn validate(&mut self, functions: &dyn Invoker) -> Vec<String> {
        let inner = Arc::get_mut(&mut self.inner).expect("validated before it is shared");
        super::validate_configs(&mut inner.configs, functions)
    }
}

impl Inner {
    fn key(&self, stream: &str) -> String {
        format!("{}/{stream}", self.namespace)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.context("no PostgreSQL connection")
    }

    /// Run `f` to completion from synchronous code (the admin API, metrics, a store's write):
    /// on the pool's runtime, the caller's thread waiting. The caller may be on a
    /// single-threaded runtime (the HTTP threads' own), which must not run it itself.
    fn blocking<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        let wait = || {
            let started = std::time::Instant::now();
            loop {
                match rx.recv_timeout(SLOW_FEED) {
                    Ok(result) => return result,
                    // Said, not given up on: the caller's write already happened, and its
                    // change record must not be dropped.
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "a stream feed operation (a change record's append, the admin API) is \
                         still waiting for PostgreSQL; the thread that asked waits with it"
                    ),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(anyhow::anyhow!("the stream feed's runtime stopped"))
                    }
                }
            }
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            // A worker of a multi-threaded runtime hands its other tasks over while it waits.
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }

    /// Keep this host in `stream`'s members and its leases renewed, take free partitions up to
    /// a fair share, and say which partitions it holds and which it should give back.
    async fn rebalance(&self, stream: &str, held: &HashSet<i32>) -> Result<(Vec<i32>, Vec<i32>)> {
        let stream = self.key(stream);
        let lease = self.lease.as_millis() as i64;
        let client = self.client().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO wasmfn_stream_members (stream, owner, seen_until) VALUES ($1, $2, {NOW_MS} + $3) \
                     ON CONFLICT (stream, owner) DO UPDATE SET seen_until = excluded.seen_until"
                ),
                &[&stream, &self.owner, &lease],
            )
            .await?;
        let members: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM wasmfn_stream_members WHERE stream = $1 AND seen_until >= {NOW_MS}"
                ),
                &[&stream],
            )
            .await?
            .get(0);
        let share = (i64::from(PARTITIONS) + members.max(1) - 1) / members.max(1);
        let mut owned: Vec<i32> = client
            .query(
                &format!(
                    "UPDATE wasmfn_stream_leases SET lease_until = {NOW_MS} + $3 \
                     WHERE stream = $1 AND owner = $2 RETURNING part"
                ),
                &[&stream, &self.owner, &lease],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let wanted = share - owned.len() as i64;
        if wanted > 0 {
            let taken = client
                .query(
                    &format!(
                        "UPDATE wasmfn_stream_leases SET owner = $2, lease_until = {NOW_MS} + $3 \
                         WHERE stream = $1 AND part IN (SELECT part FROM wasmfn_stream_leases \
                             WHERE stream = $1 AND (owner IS NULL OR lease_until < {NOW_MS}) \
                             ORDER BY part LIMIT $4 FOR UPDATE SKIP LOCKED) \
                         RETURNING part"
                    ),
                    &[&stream, &self.owner, &lease, &wanted],
                )
                .await?;
            owned.extend(taken.iter().map(|r| r.get::<_, i32>(0)));
        }
        owned.sort_unstable();
        // Above the share (another host joined): give back the last ones, once their
        // workers have stopped (they release the lease themselves).
        let surplus = owned.len().saturating_sub(share as usize);
        let give_back: Vec<i32> = owned
            .iter()
            .rev()
            .filter(|p| held.contains(p))
            .take(surplus)
            .copied()
            .collect();
        Ok((owned, give_back))
    }

    /// Give partition `part` of `stream` back, keeping its checkpoint.
    async fn release(&self, stream: &str, part: i32) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE wasmfn_stream_leases SET owner = NULL, lease_until = 0 \
                 WHERE stream = $1 AND part = $2 AND owner = $3",
                &[&self.key(stream), &part, &self.owner],
            )
            .await?;
        Ok(())
    }

    async fn read(&self, stream: &str, part: i32, limit: usize) -> Result<Vec<Record>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT r.seq, r.event, r.trace FROM wasmfn_stream_records r \
                 JOIN wasmfn_stream_leases l ON l.stream = r.stream AND l.part = r.part \
                 WHERE r.stream = $1 AND r.part = $2 AND r.seq > l.checkpoint AND l.owner = $3 \
                 ORDER BY r.seq LIMIT $4",
                &[&self.key(stream), &part, &self.owner, &(limit as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let id = record_id(part, r.get(0));
                let json: String = r.get(1);
                let mut event = wasmfn_host_core::event_json::stream_event_from_json(&json)?;
                match &mut event {
                    StreamEvent::Change(c) => c.sequence = sequence_text(id),
                    StreamEvent::Object(o) => o.sequence = sequence_text(id),
                }
                Ok((id, event, r.get(2)))
            })
            .collect()
    }

    /// Run `part` of `c` while this host holds it and wants it.
    async fn consume_partition(
        self: Arc<Self>,
        function: wasmfn_host_core::Function,
        c: StreamConfig,
        part: i32,
        wanted: Arc<Mutex<HashSet<i32>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let cursor = PartitionCursor {
            inner: &self,
            stream: &c.name,
            part,
        };
        loop {
            if *shutdown.borrow() || !wanted.lock().unwrap().contains(&part) {
                break;
            }
            let batch = match self.read(&c.name, part, c.batch_size).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(stream = %c.name, part, error = %format!("{e:#}"), "reading the stream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                // Appends on this host wake it at once; other hosts' are seen within 100 ms.
                tokio::select! {
                    _ = tokio::time::timeout(Duration::from_millis(100), self.appended.notified()) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if let Err(e) = process(&cursor, &function, &c, batch).await {
                if format!("{e:#}").contains(LOST) {
                    tracing::warn!(stream = %c.name, part, "the partition's lease moved to another host; it delivers from the checkpoint");
                    wanted.lock().unwrap().remove(&part);
                    return;
                }
                tracing::error!(stream = %c.name, part, error = %format!("{e:#}"), "recording stream progress failed; the batch will be delivered again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        wanted.lock().unwrap().remove(&part);
        if let Err(e) = self.release(&c.name, part).await {
            tracing::warn!(stream = %c.name, part, error = %format!("{e:#}"), "cannot give the partition back; it moves on when its lease expires");
        }
    }

    /// Keep `c`'s share of partitions consumed on this host until `shutdown`.
    async fn run_stream(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        c: StreamConfig,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let function = functions.function(&c.function).expect("validated at load");
        let wanted: Arc<Mutex<HashSet<i32>>> = Arc::default();
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        let every = self.lease / 3;
        loop {
            let held = wanted.lock().unwrap().clone();
            match self.rebalance(&c.name, &held).await {
                Ok((owned, give_back)) => {
                    let mut w = wanted.lock().unwrap();
                    for part in give_back {
                        w.remove(&part);
                    }
                    // Leases that lapsed (this host paused, or lost the database, longer than
                    // the lease) and went to another host: their workers stop.
                    for part in held.iter().filter(|p| !owned.contains(p)) {
                        if w.remove(part) {
                            tracing::warn!(stream = %c.name, part, "the partition's lease moved to another host; it delivers from the checkpoint");
                        }
                    }
                    for part in owned {
                        if !held.contains(&part) && w.insert(part) {
                            tracing::info!(stream = %c.name, part, "consuming partition");
                            workers.push(tokio::spawn(self.clone().consume_partition(
                                function.clone(),
                                c.clone(),
                                part,
                                wanted.clone(),
                                shutdown.clone(),
                            )));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(stream = %c.name, error = %format!("{e:#}"), "renewing the stream's partition leases failed; retrying");
                }
            }
            workers.retain(|w| !w.is_finished());
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
        }
        for w in workers {
            let _ = w.await;
        }
    }
}

/// The marker of a checkpoint write refused because the lease moved.
const LOST: &str = "no longer holds the partition";

struct PartitionCursor<'a> {
    inner: &'a Inner,
    stream: &'a str,
    part: i32,
}

impl Cursor for PartitionCursor<'_> {
    fn advance(&self, to: i64) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (part, seq) = split_id(to);
            debug_assert_eq!(part, self.part);
            let n = self
                .inner
                .client()
                .await?
                .execute(
                    "UPDATE wasmfn_stream_leases SET checkpoint = GREATEST(checkpoint, $3) \
                     WHERE stream = $1 AND part = $2 AND owner = $4",
                    &[
                        &self.inner.key(self.stream),
                        &self.part,
                        &seq,
                        &self.inner.owner,
                    ],
                )
                .await?;
            anyhow::ensure!(n == 1, "this host {LOST} {} of {}", self.part, self.stream);
            Ok(())
        })
    }

    fn park<'a>(
        &'a self,
        records: &'a [Record],
        reason: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let client = self.inner.client().await?;
            for (id, e, _) in records {
                let key = match e {
                    StreamEvent::Change(c) => &c.key,
                    StreamEvent::Object(o) => &o.key,
                };
                client
                    .execute(
                        "INSERT INTO wasmfn_stream_parked (stream, part, seq, key, reason) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        &[
                            &self.inner.key(self.stream),
                            &self.part,
                            &split_id(*id).1,
                            key,
                            &reason,
                        ],
                    )
                    .await?;
            }
            Ok(())
        })
    }
}

impl Service for PostgresFeed {
    /// Consume each stream's share of partitions; stop when `shutdown` turns true.
    fn start(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        self.inner
            .configs
            .iter()
            .map(|c| {
                tokio::spawn(self.inner.clone().run_stream(
                    functions.clone(),
                    c.clone(),
                    shutdown.clone(),
                ))
            })
            .collect()
    }
}

impl ChangeRecorder for PostgresFeed {
    fn append(&self, stream: &str, events: Vec<StreamEvent>) -> Result<Vec<String>> {
        let events = events.into_iter().map(|e| (None, e)).collect();
        self.on_stream(stream, move |inner, stream| async move {
            inner.append(&stream, events).await
        })
    }

    fn append_once(&self, stream: &str, events: Vec<(String, StreamEvent)>) -> Result<Vec<String>> {
        let events = events.into_iter().map(|(o, e)| (Some(o), e)).collect();
        self.on_stream(stream, move |inner, stream| async move {
            inner.append(&stream, events).await
        })
    }
}

impl Feed for PostgresFeed {
    fn configs(&self) -> &[StreamConfig] {
        &self.inner.configs
    }

    fn backlog(&self, stream: &str) -> Result<Backlog> {
        self.on_stream(stream, move |inner, stream| async move {
            let stream = stream.as_str();
            let client = inner.client().await?;
            let key = inner.key(stream);
            let row = client
                .query_one(
                    "SELECT count(*), min(r.appended_at) FROM wasmfn_stream_records r \
                     JOIN wasmfn_stream_leases l ON l.stream = r.stream AND l.part = r.part \
                     WHERE r.stream = $1 AND r.seq > l.checkpoint",
                    &[&key],
                )
                .await?;
            let parked: i64 = client
                .query_one(
                    "SELECT count(*) FROM wasmfn_stream_parked WHERE stream = $1",
                    &[&key],
                )
                .await?
                .get(0);
            let (records, oldest): (i64, Option<i64>) = (row.get(0), row.get(1));
            Ok(Backlog {
                records: records as u64,
                oldest_age: oldest
                    .map(|t| Duration::from_millis(now_ms().saturating_sub(t).max(0) as u64)),
                parked: parked as u64,
            })
        })
    }

    fn checkpoint(&self, stream: &str) -> Result<String> {
        self.on_stream(stream, move |inner, stream| async move {
            let stream = stream.as_str();
            let rows = inner
                .client()
                .await?
                .query(
                    "SELECT part, checkpoint FROM wasmfn_stream_leases WHERE stream = $1 \
                     AND checkpoint > 0 ORDER BY part",
                    &[&inner.key(stream)],
                )
                .await?;
            let parts: Vec<String> = rows
                .iter()
                .map(|r| sequence_text(record_id(r.get(0), r.get(1))))
                .collect();
            Ok(parts.join(" "))
        })
    }

    fn parked_records(&self, stream: &str) -> Result<Vec<ParkedRecord>> {
        self.on_stream(stream, move |inner, stream| async move {
            let stream = stream.as_str();
            let rows = inner
                .client()
                .await?
                .query(
                    "SELECT p.part, p.seq, p.key, p.reason, r.event FROM wasmfn_stream_parked p \
                     LEFT JOIN wasmfn_stream_records r ON r.stream = p.stream AND r.part = p.part AND r.seq = p.seq \
                     WHERE p.stream = $1 ORDER BY p.part, p.seq",
                    &[&inner.key(stream)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ParkedRecord {
                    sequence: sequence_text(record_id(r.get(0), r.get(1))),
                    key: r.get(2),
                    reason: r.get(3),
                    event: r
                        .get::<_, Option<String>>(4)
                        .and_then(|e| serde_json::from_str(&e).ok())
                        .unwrap_or(serde_json::Value::Null),
                })
                .collect())
        })
    }

    fn redeliver(&self, stream: &str, sequence: &str) -> Result<Option<String>> {
        let Ok(id) = sequence.trim_start_matches('0').parse::<i64>() else {
            return Ok(None);
        };
        let (part, seq) = split_id(id);
        self.on_stream(stream, move |inner, stream| async move {
            let stream = stream.as_str();
            let key = inner.key(stream);
            // Appended again first, then taken out of the parked set: a failure in between
            // leaves it parked (and shown), never lost.
            let client = inner.client().await?;
            let Some(row) = client
                .query_opt(
                    "SELECT r.event FROM wasmfn_stream_parked p JOIN wasmfn_stream_records r \
                     ON r.stream = p.stream AND r.part = p.part AND r.seq = p.seq \
                     WHERE p.stream = $1 AND p.part = $2 AND p.seq = $3",
                    &[&key, &part, &seq],
                )
                .await?
            else {
                return Ok(None);
            };
            let event: String = row.get(0);
            let event = wasmfn_host_core::event_json::stream_event_from_json(&event)?;
            let ids = inner.append(stream, vec![(None, event)]).await?;
            client
                .execute(
                    "DELETE FROM wasmfn_stream_parked WHERE stream = $1 AND part = $2 AND seq = $3",
                    &[&key, &part, &seq],
                )
                .await?;
            Ok(ids.into_iter().next())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_partition_and_ids_round_trip() {
        assert_eq!(partition_of("user-1"), partition_of("user-1"));
        let spread: HashSet<i32> = (0..200).map(|i| partition_of(&format!("k{i}"))).collect();
        assert_eq!(
            spread.len(),
            PARTITIONS as usize,
            "200 keys over every partition"
        );
        let id = record_id(15, 123_456);
        assert_eq!(split_id(id), (15, 123_456));
        // Fits the embedded feed's 20-digit sequence text, ordered within a partition.
        assert_eq!(sequence_text(id).len(), 20);
        assert!(sequence_text(record_id(3, 9)) < sequence_text(record_id(3, 10)));
    }
}
