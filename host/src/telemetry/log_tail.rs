//! The live log tail behind the admin listener's `GET /_wasmfn/logs`: a `tracing` layer keeps
//! the latest log records in a ring with sequence numbers, and each tail is a server-sent
//! event stream of them, filtered by function and level, that resumes after a reconnect from
//! `Last-Event-ID`.
//!
//! Recording costs nothing until someone tails: the ring fills only while a tail is open and
//! for [`KEEP_RECORDING`] after the last one closed, so a reconnect finds what it missed.
//! While every open tail is sampled (the console's), the ring keeps only a sample too: each
//! server thread records at most the highest rate a tail asked for of each function's INFO
//! lines, and counts the rest on the next line of that function it records (warnings and
//! errors are always recorded). A busy host then encodes a few hundred lines a second for
//! the page instead of every one of tens of thousands. A tail that wants every line
//! (`wasmfn logs --follow`) turns this off while it is open and for [`KEEP_RECORDING`] after.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
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
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Its position in the host's log, from 1; the SSE event id.
    pub seq: u64,
    /// How severe it is.
    pub level: tracing::Level,
    /// The function it is about, if any.
    pub function: Option<Box<str>>,
    /// INFO lines of the same function this thread left out of the ring since the last one it
    /// recorded (only while every open tail was sampled).
    pub dropped: u64,
    /// The record as one server-sent event, from `id:` to the blank line after `data:` (JSON
    /// with seq, time_ms, level, target, function, message and fields), encoded once for
    /// every tail.
    pub frame: Bytes,
}

struct Ring {
    records: VecDeque<Arc<LogRecord>>,
    next: u64,
}

struct Tail {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<LogRecord>>,
    /// Record until this time (ms since the epoch), or while a tail is open.
    recording_until: AtomicU64,
    /// Open tails that want every line.
    full_tails: AtomicUsize,
    /// Record every line until this time (ms since the epoch), or while `full_tails` > 0.
    full_until: AtomicU64,
    /// The highest rate a sampled tail asked for: what the ring keeps per function and thread
    /// while only sampled tails are open.
    sample_rate: AtomicU32,
}

/// The most lines a second per function and thread the ring samples, whatever a tail asks:
/// above this a sample saves nothing worth its bookkeeping.
const MAX_SAMPLE_RATE: u32 = 10_000;

static TAIL: OnceLock<Tail> = OnceLock::new();

fn tail() -> &'static Tail {
    TAIL.get_or_init(|| Tail {
        ring: Mutex::new(Ring {
            records: VecDeque::with_capacity(RING),
            next: 1,
        }),
        live: broadcast::channel(1024).0,
        recording_until: AtomicU64::new(0),
        full_tails: AtomicUsize::new(0),
        full_until: AtomicU64::new(0),
        sample_rate: AtomicU32::new(0),
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

/// An event's fields, the ordinary ones written straight into a JSON object (no map, no
/// intermediate values: the layer runs for every line a busy host logs while a tail is open).
#[derive(Default)]
struct Fields {
    message: String,
    function: Option<String>,
    /// `{"name":value,...` without the closing brace; empty when there are none.
    other: Vec<u8>,
}

impl Fields {
    fn key(&mut self, name: &str) {
        self.other
            .push(if self.other.is_empty() { b'{' } else { b',' });
        json_string(&mut self.other, name);
        self.other.push(b':');
    }

    fn number(&mut self, field: &Field, value: impl std::fmt::Display) {
        self.key(field.name());
        let _ = std::io::Write::write_fmt(&mut self.other, format_args!("{value}"));
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "function" => self.function = Some(value.to_string()),
            name => {
                self.key(name);
                json_string(&mut self.other, value);
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
    }
}

impl Fields {
    /// The JSON after `"seq":N,`: time, level, target, function, message, fields, `}`.
    fn encode(self, time_ms: u64, level: &str, target: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.message.len() + self.other.len());
        let _ = std::io::Write::write_fmt(
            &mut out,
            format_args!("\"time_ms\":{time_ms},\"level\":\"{level}\",\"target\":"),
        );
        json_string(&mut out, target);
        if let Some(function) = &self.function {
            out.extend_from_slice(b",\"function\":");
            json_string(&mut out, function);
        }
        out.extend_from_slice(b",\"message\":");
        json_string(&mut out, &self.message);
        out.extend_from_slice(b",\"fields\":");
        if self.other.is_empty() {
            out.extend_from_slice(b"{}");
        } else {
            out.extend_from_slice(&self.other);
            out.push(b'}');
        }
        out.push(b'}');
        out
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
        let sampling = tail.full_tails.load(Ordering::Relaxed) == 0
            && now > tail.full_until.load(Ordering::Relaxed);
        let dropped = if sampling {
            let rate = tail.sample_rate.load(Ordering::Relaxed);
            match sample(event, *metadata.level() == tracing::Level::INFO, rate) {
                Some(dropped) => dropped,
                None => return,
            }
        } else {
            0
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let function = fields.function.as_deref().map(Box::from);
        let body = fields.encode(now, metadata.level().as_str(), metadata.target());
        let mut ring = tail.ring.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered under the lock, so the ring and the live channel are in sequence order.
        let seq = ring.next;
        ring.next += 1;
        let mut frame = BytesMut::with_capacity(body.len() + 64);
        let _ = write!(frame, "id: {seq}\nevent: log\ndata: {{\"seq\":{seq},");
        frame.extend_from_slice(&body);
        frame.extend_from_slice(b"\n\n");
        let record = Arc::new(LogRecord {
            seq,
            level: *metadata.level(),
            function,
            dropped,
            frame: frame.freeze(),
        });
        if ring.records.len() == RING {
            ring.records.pop_front();
        }
        ring.records.push_back(record.clone());
        // Sent under the ring's lock, so a tail that reads the ring then subscribes misses
        // nothing and sees nothing twice.
        let _ = tail.live.send(record);
    }
}

/// One function's sample on one thread.
struct FunctionSample {
    budget: Budget,
    /// INFO lines left out since the last one recorded.
    dropped: u64,
}

/// This thread's samples, by function (`""` for lines about none), and a buffer for names.
#[derive(Default)]
struct Samples {
    by_function: HashMap<Box<str>, FunctionSample>,
    name: String,
}

/// More functions than any app has: past this the map starts over rather than grow.
const MAX_SAMPLED_FUNCTIONS: usize = 4096;

thread_local! {
    static SAMPLES: RefCell<Samples> = RefCell::default();
}

/// Whether the ring records `event` while only sampled tails are open: `None` leaves it out
/// (an INFO line over its function's budget on this thread, counted), `Some(n)` records it
/// with the `n` lines of its function left out before it.
fn sample(event: &tracing::Event<'_>, routine: bool, rate: u32) -> Option<u64> {
    SAMPLES.with(|samples| {
        let mut samples = samples.borrow_mut();
        let Samples { by_function, name } = &mut *samples;
        name.clear();
        event.record(&mut FunctionName(name));
        let rate = rate.clamp(1, MAX_SAMPLE_RATE);
        if !by_function.contains_key(name.as_str()) {
            if by_function.len() >= MAX_SAMPLED_FUNCTIONS {
                by_function.clear();
            }
            let fresh = FunctionSample {
                budget: Budget::new(rate),
                dropped: 0,
            };
            by_function.insert(name.as_str().into(), fresh);
        }
        let entry = by_function.get_mut(name.as_str())?;
        if entry.budget.rate != f64::from(rate) {
            entry.budget = Budget::new(rate);
        }
        if routine && !entry.budget.take(Instant::now()) {
            entry.dropped += 1;
            return None;
        }
        Some(std::mem::take(&mut entry.dropped))
    })
}

/// Finds an event's `function` field, written into the buffer it holds.
struct FunctionName<'a>(&'a mut String);

impl Visit for FunctionName<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "function" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "function" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// What a tail wants: one function's lines, lines at `level` or worse, after `after`, at
/// most `rate` a second.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    /// Only this function's lines.
    pub function: Option<String>,
    /// The least severe level wanted (`INFO` by default).
    pub level: Option<tracing::Level>,
    /// Resume after this sequence number (`Last-Event-ID`).
    pub after: u64,
    /// Sample: at most this many INFO lines a second, and as many WARN and ERROR lines
    /// (counted apart, so routine lines never crowd out an error); the lines left out are
    /// counted in `event: sampled` notices. Every line when unset.
    pub rate: Option<u32>,
}

impl TailFilter {
    fn wants(&self, r: &LogRecord) -> bool {
        r.seq > self.after
            && self.level.is_none_or(|l| r.level <= l)
            && self
                .function
                .as_deref()
                .is_none_or(|f| r.function.as_deref() == Some(f))
    }
}

/// A token bucket: `rate` lines a second, bursts of up to `rate`.
struct Budget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(rate: u32) -> Self {
        Budget {
            rate: rate as f64,
            tokens: rate as f64,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One tail's state between chunks: its filter, its sampling budgets and what it left out.
struct Reader {
    filter: TailFilter,
    /// INFO lines, then WARN and ERROR lines; `None` without sampling.
    budgets: Option<(Budget, Budget)>,
    skipped: u64,
}

impl Reader {
    fn admit(&mut self, r: &LogRecord) -> bool {
        if !self.filter.wants(r) {
            return false;
        }
        self.count_left_out(r);
        let Some((routine, severe)) = &mut self.budgets else {
            return true;
        };
        let budget = if r.level < tracing::Level::INFO {
            severe
        } else {
            routine
        };
        let taken = budget.take(Instant::now());
        self.skipped += u64::from(!taken);
        taken
    }

    /// Count the lines the ring left out before `r` (INFO lines of its function), if this
    /// tail wants INFO lines.
    fn count_left_out(&mut self, r: &LogRecord) {
        if self.filter.level.is_none_or(|l| l >= tracing::Level::INFO) {
            self.skipped += r.dropped;
        }
    }

    /// The `sampled` notice for what was left out since the last one, if anything was.
    fn notice(&mut self, chunk: &mut BytesMut) {
        if self.skipped > 0 {
            let _ = write!(
                chunk,
                "event: sampled\ndata: {{\"skipped\": {}}}\n\n",
                self.skipped
            );
            self.skipped = 0;
        }
    }
}

fn gap(chunk: &mut BytesMut, missed: u64) {
    let _ = write!(chunk, "event: gap\ndata: {{\"missed\": {missed}}}\n\n");
}

/// The server-sent event stream of one tail: the buffered records it has not seen, then the
/// live ones, until `stop` turns true (the admin listener shutting down).
pub fn stream(
    filter: TailFilter,
    stop: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Bytes> + Send {
    let tail = tail();
    // Every line from now on, or a sample of at least this tail's rate.
    let full = match filter.rate {
        None => Some(FullTail::open()),
        Some(rate) => {
            tail.sample_rate.fetch_max(rate, Ordering::Relaxed);
            None
        }
    };
    let mut reader = Reader {
        budgets: filter.rate.map(|r| (Budget::new(r), Budget::new(r))),
        filter,
        skipped: 0,
    };
    let (backlog, live, last) = {
        let ring = tail.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut backlog = Vec::new();
        for r in &ring.records {
            if reader.filter.wants(r) {
                reader.count_left_out(r);
                backlog.push(r.frame.clone());
            }
        }
        (backlog, tail.live.subscribe(), ring.next - 1)
    };
    // A reconnect may come a while later: keep recording meanwhile.
    let keep = keep_recording;
    keep();
    // Tells the client how long to wait before reconnecting.
    let opening = std::iter::once(Bytes::from_static(b"retry: 1000\n\n"));
    // What the ring left out before the backlog's lines, told right after them.
    let mut left_out = BytesMut::new();
    reader.notice(&mut left_out);
    let left_out = Some(left_out.freeze()).filter(|b| !b.is_empty());
    let first = futures::stream::iter(opening.chain(backlog).chain(left_out));
    if reader.budgets.is_some() {
        return futures::StreamExt::boxed(futures::StreamExt::chain(
            first,
            sampled(reader, live, stop, last),
        ));
    }
    let rest =
        futures::stream::unfold((live, reader, full), move |(mut live, mut reader, full)| {
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
                            let beat = Bytes::from_static(b": keep-alive\n\n");
                            return Some((beat, (live, reader, full)));
                        }
                    };
                    let mut chunk = BytesMut::new();
                    let mut first = match next {
                        Ok(r) => Some(r).filter(|r| reader.admit(r)),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            gap(&mut chunk, n);
                            None
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    };
                    // A sampled tail leaves most lines out: pass over those already waiting here,
                    // rather than going back to the select (and its heartbeat timer) per line.
                    while first.is_none() && chunk.is_empty() {
                        match live.try_recv() {
                            Ok(r) => first = Some(r).filter(|r| reader.admit(r)),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => gap(&mut chunk, n),
                            Err(_) => break,
                        }
                    }
                    if let Some(r) = first {
                        // Lines come in bursts under load: gather what arrives in the next few
                        // milliseconds into one chunk, so a busy host writes tens of chunks a
                        // second to each tail rather than one per line.
                        chunk.extend_from_slice(&r.frame);
                        tokio::time::sleep(COALESCE).await;
                        for _ in 0..MAX_BATCH {
                            match live.try_recv() {
                                Ok(r) if reader.admit(&r) => chunk.extend_from_slice(&r.frame),
                                Ok(_) => {}
                                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                    gap(&mut chunk, n)
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    reader.notice(&mut chunk);
                    return Some((chunk.freeze(), (live, reader, full)));
                }
            }
        });
    futures::StreamExt::boxed(futures::StreamExt::chain(first, rest))
}

/// How often a sampled tail reads the ring.
const POLL: Duration = Duration::from_millis(100);

/// A sampled tail: it reads the ring every [`POLL`] instead of being woken for every line (a
/// busy host logs tens of thousands a second, of which it keeps a few hundred). Lines that
/// left the ring between two reads are counted as left out, like the sample's. `live` is
/// held unread, only to keep the ring recording; `sent_up_to` is the last record the
/// backlog covered.
fn sampled(
    reader: Reader,
    live: broadcast::Receiver<Arc<LogRecord>>,
    stop: watch::Receiver<bool>,
    sent_up_to: u64,
) -> impl futures::Stream<Item = Bytes> + Send {
    let state = (sent_up_to, live, stop, Instant::now());
    futures::stream::unfold(
        (reader, state),
        |(mut reader, (mut after, live, mut stop, mut sent))| async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    keep_recording();
                    return None;
                }
                // Sampled under the ring's lock, in place: only the few lines admitted are
                // copied out, not every line the host logged since the last read.
                let mut chunk = BytesMut::new();
                {
                    let ring = tail().ring.lock().unwrap_or_else(|p| p.into_inner());
                    let front = ring.records.front().map_or(ring.next, |r| r.seq);
                    // Gone from the ring before this read: left out of the sample.
                    reader.skipped += front.saturating_sub(after + 1);
                    let start = (after + 1).saturating_sub(front) as usize;
                    for r in ring.records.iter().skip(start) {
                        after = r.seq;
                        if reader.admit(r) {
                            chunk.extend_from_slice(&r.frame);
                        }
                    }
                }
                reader.notice(&mut chunk);
                if chunk.is_empty() {
                    if sent.elapsed() < HEARTBEAT {
                        continue;
                    }
                    chunk.extend_from_slice(b": keep-alive\n\n");
                }
                sent = Instant::now();
                return Some((chunk.freeze(), (reader, (after, live, stop, sent))));
            }
        },
    )
}

/// An open tail that wants every line: while one is, and for [`KEEP_RECORDING`] after the
/// last closed (its reconnect resumes without a hole), the ring records every line.
struct FullTail;

impl FullTail {
    fn open() -> Self {
        tail().full_tails.fetch_add(1, Ordering::Relaxed);
        FullTail
    }
}

impl Drop for FullTail {
    fn drop(&mut self) {
        let tail = tail();
        let until = now_ms() + KEEP_RECORDING.as_millis() as u64;
        tail.full_until.store(until, Ordering::Relaxed);
        tail.full_tails.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keep the ring filling for [`KEEP_RECORDING`] from now (a reconnect may come a while later).
fn keep_recording() {
    tail().recording_until.store(
        now_ms() + KEEP_RECORDING.as_millis() as u64,
        Ordering::Relaxed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Every frame's kind and data in `chunks`.
    fn events(chunks: &[Bytes]) -> Vec<(String, serde_json::Value)> {
        let text: String = chunks
            .iter()
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        text.split("\n\n")
            .filter_map(|frame| {
                let kind = frame.lines().find_map(|l| l.strip_prefix("event: "))?;
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
                Some((kind.to_string(), serde_json::from_str(data).unwrap()))
            })
            .collect()
    }

    /// Log through the tail layer alone (the test's own subscriber, not the global one).
    fn logging(f: impl FnOnce()) {
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, f);
    }

    /// Read `stream` until `quiet` passes without a chunk.
    async fn drain(stream: impl futures::Stream<Item = Bytes>, quiet: Duration) -> Vec<Bytes> {
        let mut stream = std::pin::pin!(stream);
        let mut chunks = Vec::new();
        while let Ok(Some(chunk)) = tokio::time::timeout(quiet, stream.next()).await {
            chunks.push(chunk);
        }
        chunks
    }

    #[tokio::test]
    async fn a_record_is_one_json_event_with_its_fields_escaped() {
        let (_stop_tx, stop) = watch::channel(false);
        let filter = TailFilter {
            function: Some("json-test".into()),
            ..TailFilter::default()
        };
        let stream = stream(filter, stop);
        logging(|| {
            tracing::info!(
                function = "json-test",
                invocation = 7u64,
                delta = -3i64,
                cold = true,
                note = "a \"quoted\"\nline",
                "said {}",
                "hi\t!"
            )
        });
        let events = events(&drain(stream, Duration::from_millis(200)).await);
        let (kind, record) = events.last().unwrap();
        assert_eq!(kind, "log");
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["function"], "json-test");
        assert_eq!(record["message"], "said hi\t!");
        assert_eq!(record["target"], module_path!());
        assert!(record["seq"].as_u64().unwrap() > 0);
        assert!(record["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(
            record["fields"],
            serde_json::json!({"invocation": 7, "delta": -3, "cold": true, "note": "a \"quoted\"\nline"})
        );
    }

    #[tokio::test]
    async fn a_sampled_tail_counts_what_it_leaves_out_and_never_drops_an_error_for_routine_lines() {
        let (_stop_tx, stop) = watch::channel(false);
        let filter = TailFilter {
            function: Some("sampling-test".into()),
            rate: Some(20),
            ..TailFilter::default()
        };
        let stream = stream(filter, stop);
        logging(|| {
            for i in 0..300 {
                tracing::info!(function = "sampling-test", i, "routine");
            }
            tracing::error!(function = "sampling-test", "the one that matters");
        });
        let events = events(&drain(stream, Duration::from_millis(300)).await);
        let shown = events.iter().filter(|(k, _)| k == "log").count() as u64;
        let skipped: u64 = events
            .iter()
            .filter(|(k, _)| k == "sampled")
            .map(|(_, d)| d["skipped"].as_u64().unwrap())
            .sum();
        assert!(events.iter().all(|(k, _)| k != "gap"), "lagged: {events:?}");
        // A burst gets the bucket's size (and what refilled meanwhile), then nothing.
        assert!((20..=22).contains(&shown), "{shown} lines shown");
        assert_eq!(shown + skipped, 301, "every line shown or counted");
        assert!(events
            .iter()
            .any(|(_, d)| d["message"] == "the one that matters"));
    }

    #[test]
    fn a_budget_refills_at_its_rate_up_to_one_second_of_lines() {
        let start = Instant::now();
        let mut budget = Budget::new(10);
        assert_eq!((0..15).filter(|_| budget.take(start)).count(), 10);
        let later = start + Duration::from_millis(300);
        assert_eq!((0..15).filter(|_| budget.take(later)).count(), 3);
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..15).filter(|_| budget.take(much_later)).count(), 10);
    }
}
