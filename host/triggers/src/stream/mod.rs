//! The stream trigger: a durable change feed that delivers change records and object events,
//! in order, in batches, to `stream` functions, with a checkpoint per stream.
//!
//! Producers append to the feed: the platform's key-value, SQL and blob stores (as they land),
//! the `/_wasmfn/streams/NAME/records` API, or embedders through [`StreamFeed::append`]. One
//! consumer task per stream reads records after its checkpoint in sequence order, so records of
//! one key are always delivered in the order they were written. After a restart delivery
//! resumes after the checkpoint: nothing is skipped (a batch in flight at a crash is delivered
//! again). A failing batch is retried with backoff; when retries are exhausted the poison
//! record is isolated by bisecting the batch (or the whole batch is parked, per the manifest),
//! recorded with its reason, and the stream moves on.

pub mod manifest;
mod operator;
#[cfg(feature = "streams-postgres")]
mod postgres;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use rusqlite::{params, Connection, OptionalExtension as _};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use wasmfn_host_capabilities::changes::ChangeRecorder;
use wasmfn_host_core::stream::{BatchFailure, StreamEvent};
use wasmfn_host_core::{Function, Invoker, Service, World};

pub use manifest::{StreamManifest, StreamSection};
pub use operator::ParkedRecord;
#[cfg(feature = "streams-postgres")]
pub use postgres::PostgresFeed;

/// A stream feed as the admin API, the metrics and readiness see it: the embedded one
/// ([`StreamFeed`], SQLite) or a cluster's (`PostgresFeed`). Producers append through
/// [`ChangeRecorder`]; [`Service::start`] runs the consumers.
pub trait Feed: ChangeRecorder + Service {
    /// The declared (valid) streams.
    fn configs(&self) -> &[StreamConfig];
    /// Whether `stream` is declared (and valid).
    fn has_stream(&self, stream: &str) -> bool {
        self.configs().iter().any(|c| c.name == stream)
    }
    /// How far `stream`'s consumers are behind, and what they set aside.
    fn backlog(&self, stream: &str) -> Result<Backlog>;
    /// Records appended to `stream` and not yet delivered.
    fn lag(&self, stream: &str) -> Result<u64> {
        Ok(self.backlog(stream)?.records)
    }
    /// Where `stream`'s consumers are: the last sequence finished with (one per partition
    /// on a partitioned feed).
    fn checkpoint(&self, stream: &str) -> Result<String>;
    /// Records set aside on `stream`, with their events.
    fn parked_records(&self, stream: &str) -> Result<Vec<ParkedRecord>>;
    /// Take parked record `sequence` out of the parked set and append its event again;
    /// `Ok(None)`: no such parked record.
    fn redeliver(&self, stream: &str, sequence: &str) -> Result<Option<String>>;
}

/// Where a consumer records its progress through one run of records (a stream, or one
/// partition of it).
pub(crate) trait Cursor: Send + Sync {
    /// Every record up to `to` is done.
    fn advance(&self, to: i64) -> futures::future::BoxFuture<'_, Result<()>>;
    /// `records` kept failing with `reason`: set them aside.
    fn park<'a>(
        &'a self,
        records: &'a [Record],
        reason: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>>;
}

/// What to do with a batch that still fails after its retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Split the batch in halves until the failing record is alone, then park only it
    /// (like Lambda's `BisectBatchOnFunctionError`).
    #[default]
    Bisect,
    /// Park the whole remaining batch.
    Park,
}

/// A `[streams.NAME]` manifest entry.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Stream name.
    pub name: String,
    /// The `stream` function consuming it.
    pub function: String,
    /// Records per batch, at most (default 100).
    pub batch_size: usize,
    /// Retries of a failing batch before it is bisected or parked (default 2).
    pub max_retries: u32,
    /// Delay before the first retry; doubles per retry (default 200 ms).
    pub retry_backoff: Duration,
    /// Failure policy.
    pub on_failure: OnFailure,
}

impl StreamConfig {
    /// A stream with default settings.
    pub fn new(name: &str, function: &str) -> Self {
        Self {
            name: name.to_string(),
            function: function.to_string(),
            batch_size: 100,
            max_retries: 2,
            retry_backoff: Duration::from_millis(200),
            on_failure: OnFailure::Bisect,
        }
    }
}

/// A record set aside after it kept failing.
#[derive(Clone, Debug, Serialize)]
pub struct Parked {
    /// Its sequence.
    pub sequence: String,
    /// Its key.
    pub key: String,
    /// The last failure.
    pub reason: String,
}

/// How far a stream's consumer is behind ([`StreamFeed::backlog`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// Records appended and not yet delivered.
    pub records: u64,
    /// How long ago the oldest of them was appended (`None`: none, or appended before
    /// records carried their time).
    pub oldest_age: Option<std::time::Duration>,
    /// Records set aside after repeated failures.
    pub parked: u64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The durable feed of every stream of an app.
pub struct StreamFeed {
    conn: Mutex<Connection>,
    appended: Notify,
    configs: Vec<StreamConfig>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stream_records (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    key    TEXT NOT NULL,
    event  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_records_by_stream ON stream_records (stream, seq);
CREATE TABLE IF NOT EXISTS stream_checkpoints (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stream_parked (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL
);
";

/// Sequences are zero-padded so that their text order is their numeric order.
fn sequence_text(seq: i64) -> String {
    format!("{seq:020}")
}

impl StreamFeed {
    /// Open (or create) the feed database at `path`.
    pub fn open(path: &Path, configs: Vec<StreamConfig>) -> Result<Self> {
        let conn = Connection::open(path)
            .with_context(|| format!("opening stream database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // Feeds written before records carried their append time gain the column (NULL for
        // the records already there).
        let dated = conn
            .prepare(
                "SELECT 1 FROM pragma_table_info('stream_records') WHERE name = 'appended_at'",
            )?
            .exists([])?;
        if !dated {
            conn.execute_batch("ALTER TABLE stream_records ADD COLUMN appended_at INTEGER")?;
        }
        // And before they carried their writer's trace context.
        let traced = conn
            .prepare("SELECT 1 FROM pragma_table_info('stream_records') WHERE name = 'trace'")?
            .exists([])?;
        if !traced {
            conn.execute_batch("ALTER TABLE stream_records ADD COLUMN trace TEXT")?;
        }
        // And before relayed records carried their origin (an outbox row's id).
        let relayed = conn
            .prepare("SELECT 1 FROM pragma_table_info('stream_records') WHERE name = 'origin'")?
            .exists([])?;
        if !relayed {
            conn.execute_batch("ALTER TABLE stream_records ADD COLUMN origin TEXT")?;
        }
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS stream_records_by_origin \
             ON stream_records (stream, origin) WHERE origin IS NOT NULL",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            appended: Notify::new(),
            configs,
        })
    }

    /// Disable (and report) streams whose function is missing or not of the `stream` world.
    pub fn validate(&mut self, functions: &dyn Invoker) -> Vec<String> {
        validate_configs(&mut self.configs, functions)
    }

    /// Whether `stream` is declared (and valid).
    pub fn has_stream(&self, stream: &str) -> bool {
        self.configs.iter().any(|c| c.name == stream)
    }

    /// Append events to `stream`, durably, in order. Their `sequence` fields are assigned here.
    pub fn append(&self, stream: &str, events: Vec<StreamEvent>) -> Result<Vec<String>> {
        self.append_records(stream, events.into_iter().map(|e| (None, e)))
    }

    /// Append events (each with its origin id, if relayed); one whose origin is already in
    /// the feed is not appended again, and has its earlier sequence.
    fn append_records(
        &self,
        stream: &str,
        events: impl Iterator<Item = (Option<String>, StreamEvent)>,
    ) -> Result<Vec<String>> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        let mut seqs = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO stream_records (stream, key, event, appended_at, trace, origin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut earlier = tx.prepare_cached(
                "SELECT seq FROM stream_records WHERE stream = ?1 AND origin = ?2",
            )?;
            let now_ms = now_ms();
            // The writer's span (a store call's): the consumer's invocation links to it.
            let trace = wasmfn_host_core::trace::current_context_fields().map(|(p, _)| p);
            for (origin, e) in events {
                if let Some(origin) = &origin {
                    let seq: Option<i64> = earlier
                        .query_row(params![stream, origin], |r| r.get(0))
                        .optional()?;
                    if let Some(seq) = seq {
                        seqs.push(sequence_text(seq));
                        continue;
                    }
                }
                let key = match &e {
                    StreamEvent::Change(c) => c.key.clone(),
                    StreamEvent::Object(o) => o.key.clone(),
                };
                insert.execute(params![
                    stream,
                    key,
                    wasmfn_host_core::event_json::stream_event_to_json(&e).to_string(),
                    now_ms,
                    trace,
                    origin
                ])?;
                seqs.push(sequence_text(tx.last_insert_rowid()));
            }
        }
        tx.commit()?;
        drop(conn);
        self.appended.notify_waiters();
        Ok(seqs)
    }

    /// Records set aside on `stream`.
    pub fn parked(&self, stream: &str) -> Result<Vec<Parked>> {
        let conn = self.conn.lock().unwrap();
        let mut q = conn
            .prepare("SELECT seq, key, reason FROM stream_parked WHERE stream = ?1 ORDER BY seq")?;
        let rows = q
            .query_map(params![stream], |r| {
                Ok(Parked {
                    sequence: sequence_text(r.get(0)?),
                    key: r.get(1)?,
                    reason: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records appended to `stream` and not yet delivered.
    pub fn lag(&self, stream: &str) -> Result<u64> {
        let conn = self.conn.lock().unwrap();
        let checkpoint = checkpoint(&conn, stream)?;
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM stream_records WHERE stream = ?1 AND seq > ?2",
            params![stream, checkpoint],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// How far `stream`'s consumer is behind, and what it set aside.
    pub fn backlog(&self, stream: &str) -> Result<Backlog> {
        let conn = self.conn.lock().unwrap();
        let checkpoint = checkpoint(&conn, stream)?;
        let (records, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MIN(appended_at) FROM stream_records WHERE stream = ?1 AND seq > ?2",
            params![stream, checkpoint],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let parked: i64 = conn.query_row(
            "SELECT COUNT(*) FROM stream_parked WHERE stream = ?1",
            params![stream],
            |r| r.get(0),
        )?;
        Ok(Backlog {
            records: records as u64,
            oldest_age: oldest.map(|t| {
                std::time::Duration::from_millis(now_ms().saturating_sub(t).max(0) as u64)
            }),
            parked: parked as u64,
        })
    }

    /// The declared (valid) streams' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.configs.iter().map(|c| c.name.as_str())
    }

    fn read(&self, stream: &str, limit: usize) -> Result<Vec<Record>> {
        let conn = self.conn.lock().unwrap();
        let after = checkpoint(&conn, stream)?;
        let mut q = conn.prepare_cached(
            "SELECT seq, event, trace FROM stream_records WHERE stream = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = q
            .query_map(params![stream, after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(seq, json, trace)| {
                let mut event = wasmfn_host_core::event_json::stream_event_from_json(&json)?;
                match &mut event {
                    StreamEvent::Change(c) => c.sequence = sequence_text(seq),
                    StreamEvent::Object(o) => o.sequence = sequence_text(seq),
                }
                Ok((seq, event, trace))
            })
            .collect()
    }

    fn advance(&self, stream: &str, to: i64) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO stream_checkpoints (stream, seq) VALUES (?1, ?2)
             ON CONFLICT (stream) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            params![stream, to],
        )?;
        Ok(())
    }

    fn park(&self, stream: &str, records: &[Record], reason: &str) -> Result<()> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        for (seq, e, _) in records {
            let key = match e {
                StreamEvent::Change(c) => &c.key,
                StreamEvent::Object(o) => &o.key,
            };
            tx.execute(
                "INSERT INTO stream_parked (stream, seq, key, reason) VALUES (?1, ?2, ?3, ?4)",
                params![stream, seq, key, reason],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    async fn consume(
        &self,
        functions: Arc<dyn Invoker>,
        c: StreamConfig,
        shutdown: watch::Receiver<bool>,
    ) {
        let function = functions.function(&c.function).expect("validated at load");
        while !*shutdown.borrow() {
            let batch = match self.read(&c.name, c.batch_size) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(stream = %c.name, error = %format!("{e:#}"), "reading the stream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                let _ = tokio::time::timeout(Duration::from_millis(100), self.appended.notified())
                    .await;
                continue;
            }
            let cursor = LocalCursor {
                feed: self,
                stream: &c.name,
            };
            if let Err(e) = process(&cursor, &function, &c, batch).await {
                tracing::error!(stream = %c.name, error = %format!("{e:#}"), "recording stream progress failed; the batch will be delivered again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Deliver `batch` until every record in it is processed or parked, recording progress in
/// `cursor`.
pub(crate) async fn process(
    cursor: &dyn Cursor,
    function: &Function,
    c: &StreamConfig,
    batch: Vec<Record>,
) -> Result<()> {
    // Work list of slices still to deliver, in order; bisecting replaces one with two halves.
    let mut pending: Vec<Vec<Record>> = vec![batch];
    while let Some(mut slice) = pending.pop() {
        let mut attempt = 0;
        loop {
            let events: Vec<StreamEvent> = slice.iter().map(|(_, e, _)| e.clone()).collect();
            let deliver = delivery_span(&c.name, &slice);
            let failure = match function.invoke_stream(&events).instrument(deliver).await {
                Ok(Ok(())) => None,
                Ok(Err(BatchFailure {
                    reason,
                    first_failed_sequence,
                })) => Some((reason, first_failed_sequence)),
                Err(e) => Some((e.to_string(), None)),
            };
            let Some((reason, first_failed)) = failure else {
                cursor
                    .advance(slice.last().expect("slices are never empty").0)
                    .await?;
                break;
            };
            // Records before the first failed one are done: checkpoint them, keep the rest.
            if let Some(first) = first_failed.and_then(|s| s.parse::<i64>().ok()) {
                let done: Vec<_> = slice
                    .iter()
                    .take_while(|(seq, _, _)| *seq < first)
                    .map(|(s, _, _)| *s)
                    .collect();
                if let Some(last_done) = done.last() {
                    cursor.advance(*last_done).await?;
                    slice.drain(..done.len());
                    attempt = 0;
                    continue;
                }
            }
            attempt += 1;
            if attempt <= c.max_retries {
                tracing::warn!(stream = %c.name, attempt, records = slice.len(), "stream batch failed; retrying: {reason}");
                tokio::time::sleep(c.retry_backoff * (1 << (attempt - 1).min(10))).await;
                continue;
            }
            if c.on_failure == OnFailure::Bisect && slice.len() > 1 {
                let second = slice.split_off(slice.len() / 2);
                // The first half goes next, then the second: order is kept.
                pending.push(second);
                pending.push(slice);
            } else {
                tracing::error!(stream = %c.name, first = slice[0].0, records = slice.len(), "parking records that keep failing: {reason}");
                cursor.park(&slice, &reason).await?;
                cursor
                    .advance(slice.last().expect("slices are never empty").0)
                    .await?;
            }
            break;
        }
    }
    Ok(())
}

/// The embedded feed's progress through one stream.
struct LocalCursor<'a> {
    feed: &'a StreamFeed,
    stream: &'a str,
}

impl Cursor for LocalCursor<'_> {
    fn advance(&self, to: i64) -> futures::future::BoxFuture<'_, Result<()>> {
        let r = self.feed.advance(self.stream, to);
        Box::pin(async move { r })
    }

    fn park<'a>(
        &'a self,
        records: &'a [Record],
        reason: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        let r = self.feed.park(self.stream, records, reason);
        Box::pin(async move { r })
    }
}

impl Service for StreamFeed {
    /// Start one consumer per stream; they stop when `shutdown` turns true.
    fn start(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        self.configs
            .iter()
            .map(|c| {
                let (feed, functions, c, shutdown) =
                    (self.clone(), functions.clone(), c.clone(), shutdown.clone());
                tokio::spawn(async move { feed.consume(functions, c, shutdown).await })
            })
            .collect()
    }
}

impl Feed for StreamFeed {
    fn configs(&self) -> &[StreamConfig] {
        StreamFeed::configs(self)
    }

    fn backlog(&self, stream: &str) -> Result<Backlog> {
        StreamFeed::backlog(self, stream)
    }

    fn lag(&self, stream: &str) -> Result<u64> {
        StreamFeed::lag(self, stream)
    }

    fn checkpoint(&self, stream: &str) -> Result<String> {
        StreamFeed::checkpoint(self, stream)
    }

    fn parked_records(&self, stream: &str) -> Result<Vec<ParkedRecord>> {
        StreamFeed::parked_records(self, stream)
    }

    fn redeliver(&self, stream: &str, sequence: &str) -> Result<Option<String>> {
        StreamFeed::redeliver(self, stream, sequence)
    }
}

impl ChangeRecorder for StreamFeed {
    fn append(&self, stream: &str, events: Vec<StreamEvent>) -> Result<Vec<String>> {
        StreamFeed::append(self, stream, events)
    }

    fn append_once(&self, stream: &str, events: Vec<(String, StreamEvent)>) -> Result<Vec<String>> {
        self.append_records(stream, events.into_iter().map(|(o, e)| (Some(o), e)))
    }
}

/// Drop (and report) the streams of `configs` whose function is missing or not of the
/// `stream` world.
pub(crate) fn validate_configs(
    configs: &mut Vec<StreamConfig>,
    functions: &dyn Invoker,
) -> Vec<String> {
    let mut errors = Vec::new();
    configs.retain(|c| {
        let problem = match functions.function(&c.function) {
            None => Some(format!("function `{}` is not loaded", c.function)),
            Some(f) if f.world() != World::Stream => Some(format!(
                "function `{}` implements world `{}`, but a stream consumer must implement world `stream`",
                c.function,
                f.world()
            )),
            Some(_) => None,
        };
        if let Some(p) = &problem {
            errors.push(format!("[streams.{}]: {p}; records are kept but not delivered until this is fixed", c.name));
        }
        problem.is_none()
    });
    errors
}

/// A record as read for delivery: its sequence, the event, its writer's `traceparent`.
pub(crate) type Record = (i64, StreamEvent, Option<String>);

/// The span of delivering `records` of `stream`: it continues the first writer's trace and
/// links to every writer (nothing when tracing is off).
pub(crate) fn delivery_span(stream: &str, records: &[Record]) -> tracing::Span {
    use wasmfn_host_core::trace;
    if !trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: "wasmfn::trace",
        "stream delivery",
        otel.name = format!("{stream} deliver"),
        otel.kind = "consumer",
        wasmfn.stream = stream,
        wasmfn.records = records.len(),
    );
    let carriers: Vec<Vec<(String, String)>> = records
        .iter()
        .filter_map(|(_, _, t)| Some(vec![(trace::TRACEPARENT.to_string(), t.clone()?)]))
        .collect();
    trace::set_batch_parents(&span, carriers.iter().map(Vec::as_slice));
    span
}

fn checkpoint(conn: &Connection, stream: &str) -> Result<i64> {
    Ok(conn
        .query_row(
            "SELECT seq FROM stream_checkpoints WHERE stream = ?1",
            params![stream],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}
