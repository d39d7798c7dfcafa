//! The live log tail behind the admin listener's `GET /_wasmfn/logs`: a `tracing` layer keeps
//! the latest log records in a ring with sequence numbers, and each tail is a server-sent
//! event stream of them, filtered by function and level, that resumes after a reconnect from
//! `Last-Event-ID`.
//!
//! Recording costs nothing until someone tails: the ring fills only while a tail is open and
//! for [`KEEP_RECORDING`] after the last one closed, so a reconnect finds what it missed.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tracing::field::{Field, Visit};

/// Records kept for reconnecting tails.
const RING: usize = 2000;
/// How long the ring keeps filling after the last tail closed.
pub const KEEP_RECORDING: Duration = Duration::from_secs(300);
/// A comment line this often keeps idle connections (and proxies) from timing out.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a tail waits after a line for more to send with it: a few tens of chunks a
/// second at most, well inside the second a reader expects a line within.
const COALESCE: Duration = Duration::from_millis(25);
/// Lines per chunk, at most (the live channel holds 1024).
const MAX_BATCH: usize = 1000;

/// One log record as a tail sees it.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    /// Its position in the host's log, from 1; the SSE event id.
    pub seq: u64,
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    /// Where it came from (`guest` for a guest's own lines, `wasmfn::invocation` for each
    /// invocation's line).
    pub target: String,
    /// The function it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The message.
    pub message: String,
    /// Every other field, as text.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

struct Tail {
    ring: Mutex<VecDeque<Arc<LogRecord>>>,
    next: AtomicU64,
    live: broadcast::Sender<Arc<LogRecord>>,
    /// Record until this time (ms since the epoch), or while a tail is open.
    recording_until: AtomicU64,
}

static TAIL: OnceLock<Tail> = OnceLock::new();

fn tail() -> &'static Tail {
    TAIL.get_or_init(|| Tail {
        ring: Mutex::new(VecDeque::with_capacity(RING)),
        next: AtomicU64::new(1),
        live: broadcast::channel(1024).0,
        recording_until: AtomicU64::new(0),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The layer that feeds the tails; add it to the subscriber beside the log writer, with the
/// log's own filter (it keeps INFO and worse of what that lets through).
pub fn layer() -> TailLayer {
    TailLayer
}

/// See [`layer`].
pub struct TailLayer;

#[derive(Default)]
struct Fields {
    message: String,
    function: Option<String>,
    other: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "function" => self.function = Some(value.to_string()),
            name => {
                self.other.insert(name.to_string(), value.into());
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.other.insert(field.name().to_string(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.other.insert(field.name().to_string(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.other.insert(field.name().to_string(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TailLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let tail = tail();
        let now = now_ms();
        if tail.live.receiver_count() == 0 && now > tail.recording_until.load(Ordering::Relaxed) {
            return;
        }
        let metadata = event.metadata();
        if *metadata.level() > tracing::Level::INFO {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = Arc::new(LogRecord {
            seq: tail.next.fetch_add(1, Ordering::Relaxed),
            time_ms: now,
            level: metadata.level().as_str(),
            target: metadata.target().to_string(),
            function: fields.function,
            message: fields.message,
            fields: fields.other,
        });
        let mut ring = tail.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(record.clone());
        // Sent under the ring's lock, so a tail that reads the ring then subscribes misses
        // nothing and sees nothing twice.
        let _ = tail.live.send(record);
    }
}

/// What a tail wants: one function's lines, lines at `level` or worse, after `after`.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    /// Only this function's lines.
    pub function: Option<String>,
    /// The least severe level wanted (`INFO` by default).
    pub level: Option<tracing::Level>,
    /// Resume after this sequence number (`Last-Event-ID`).
    pub after: u64,
}

impl TailFilter {
    fn wants(&self, r: &LogRecord) -> bool {
        let level: tracing::Level = r.level.parse().unwrap_or(tracing::Level::INFO);
        r.seq > self.after
            && self.level.is_none_or(|l| level <= l)
            && self
                .function
                .as_deref()
                .is_none_or(|f| r.function.as_deref() == Some(f))
    }
}

fn event(r: &LogRecord) -> Bytes {
    let data = serde_json::to_string(r).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: log\ndata: {data}\n\n", r.seq))
}

/// The server-sent event stream of one tail: the buffered records it has not seen, then the
/// live ones, until `stop` turns true (the admin listener shutting down).
pub fn stream(
    filter: TailFilter,
    stop: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Bytes> + Send {
    let tail = tail();
    let (backlog, live) = {
        let ring = tail.ring.lock().unwrap_or_else(|p| p.into_inner());
        let backlog: Vec<Bytes> = ring
            .iter()
            .filter(|r| filter.wants(r))
            .map(|r| event(r))
            .collect();
        (backlog, tail.live.subscribe())
    };
    // A reconnect may come a while later: keep recording meanwhile.
    let keep = || {
        tail.recording_until.store(
            now_ms() + KEEP_RECORDING.as_millis() as u64,
            Ordering::Relaxed,
        )
    };
    keep();
    // Tells the client how long to wait before reconnecting.
    let opening = std::iter::once(Bytes::from_static(b"retry: 1000\n\n"));
    let first = futures::stream::iter(opening.chain(backlog));
    let rest = futures::stream::unfold((live, filter), move |(mut live, filter)| {
        let mut stop = stop.clone();
        async move {
            loop {
                if *stop.borrow() {
                    keep();
                    return None;
                }
                let next = tokio::select! {
                    r = live.recv() => r,
                    _ = stop.changed() => { keep(); return None; }
                    () = tokio::time::sleep(HEARTBEAT) => {
                        return Some((Bytes::from_static(b": keep-alive\n\n"), (live, filter)));
                    }
                };
                match next {
                    Ok(r) if filter.wants(&r) => {
                        // Lines come in bursts under load: gather what arrives in the next few
                        // milliseconds into one chunk, so a busy host writes tens of chunks a
                        // second to each tail rather than one per line.
                        let mut chunk = BytesMut::from(&event(&r)[..]);
                        tokio::time::sleep(COALESCE).await;
                        for _ in 0..MAX_BATCH {
                            match live.try_recv() {
                                Ok(r) if filter.wants(&r) => chunk.extend_from_slice(&event(&r)),
                                Ok(_) => {}
                                Err(broadcast::error::TryRecvError::Lagged(n)) => chunk
                                    .extend_from_slice(
                                        format!("event: gap\ndata: {{\"missed\": {n}}}\n\n")
                                            .as_bytes(),
                                    ),
                                Err(_) => break,
                            }
                        }
                        return Some((chunk.freeze(), (live, filter)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let gap = format!("event: gap\ndata: {{\"missed\": {n}}}\n\n");
                        return Some((Bytes::from(gap), (live, filter)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    futures::StreamExt::chain(first, rest)
}
