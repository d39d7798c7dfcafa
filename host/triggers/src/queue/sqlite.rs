//! The embedded queue backend: one SQLite database in WAL mode, owned by one writer thread.
//!
//! Every operation is a message to that thread, which drains whatever is pending and commits
//! it in one transaction (group commit): many producers and consumers share one commit, so
//! throughput does not collapse to one commit per message. An operation's reply is sent only
//! after its transaction committed, so an accepted message is in the database file (WAL) before
//! the producer hears back and survives a crash of the process.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use rusqlite::{params, Connection, OptionalExtension as _};
use tokio::sync::{oneshot, Notify};

use super::{
    now_ms, BackendFuture, DeadLetter, FailOutcome, NewMessage, QueueBackend, QueueStats, Received,
};

/// Most operations committed in one transaction.
const MAX_GROUP: usize = 512;

/// How often idle consumers look for delayed or timed-out messages becoming visible.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

type Reply<T> = oneshot::Sender<Result<T>>;

/// Sends an operation's answer once its transaction's commit succeeded or failed.
type Answer = Box<dyn FnOnce(Option<&anyhow::Error>)>;

enum Op {
    Enqueue(String, Vec<NewMessage>, Reply<Vec<String>>),
    Receive(String, usize, Duration, Reply<Vec<Received>>),
    Ack(String, Vec<String>, Reply<()>),
    Release(String, Vec<String>, Duration, Reply<()>),
    Fail {
        queue: String,
        id: String,
        reason: String,
        backoff: Duration,
        max_receives: u32,
        dead_letter_queue: String,
        reply: Reply<FailOutcome>,
    },
    Stats(String, Reply<QueueStats>),
    Peek(String, usize, Reply<Vec<DeadLetter>>),
    Redrive(String, String, Reply<u64>),
}

/// Durable queues in one SQLite file.
pub struct SqliteQueues {
    ops: mpsc::Sender<Op>,
    enqueued: Arc<Notify>,
    path: PathBuf,
}

impl SqliteQueues {
    /// Open (or create) the queue database at `path`.
    ///
    /// `fsync`: with `true` every commit is flushed to stable storage (survives power loss);
    /// with `false` (default) commits survive a crash of the process but the last ones may be
    /// lost on power failure (SQLite WAL with `synchronous=NORMAL`).
    pub fn open(path: &Path, fsync: bool) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening queue database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("initialising queue database {}", path.display()))?;
        let (ops, rx) = mpsc::channel();
        let enqueued = Arc::new(Notify::new());
        let notify = enqueued.clone();
        std::thread::Builder::new()
            .name("wasmfn-queues".into())
            .spawn(move || writer(conn, rx, notify))?;
        Ok(Self {
            ops,
            enqueued,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Op) -> BackendFuture<T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.ops.send(make(tx));
        Box::pin(async move {
            sent.map_err(|_| anyhow!("the queue database thread has stopped"))?;
            rx.await
                .map_err(|_| anyhow!("the queue database thread has stopped"))?
        })
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    body          BLOB    NOT NULL,
    attributes    TEXT    NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    in_flight     INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at, seq);
";

fn writer(mut conn: Connection, rx: mpsc::Receiver<Op>, enqueued: Arc<Notify>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut done: Vec<Answer> = Vec::with_capacity(ops.len());
        let mut any_enqueue = false;
        let commit = (|| -> Result<()> {
            let tx = conn.transaction()?;
            for op in ops {
                any_enqueue |= matches!(op, Op::Enqueue(..));
                done.push(apply(&tx, op));
            }
            tx.commit()?;
            Ok(())
        })();
        // Replies go out only now: after the commit, or with the commit's error.
        for reply in done {
            reply(commit.as_ref().err());
        }
        if any_enqueue && commit.is_ok() {
            enqueued.notify_waiters();
        }
    }
}

/// Run one operation inside the group transaction (in its own savepoint, so one failing
/// operation does not undo the others) and return how to answer it once the commit is known.
fn apply(tx: &rusqlite::Transaction<'_>, op: Op) -> Answer {
    fn answer<T: 'static>(reply: Reply<T>, result: Result<T>) -> Answer {
        Box::new(move |commit_error| {
            let _ = reply.send(match commit_error {
                Some(e) => Err(anyhow!("committing to the queue database: {e:#}")),
                None => result,
            });
        })
    }
    fn isolated<T>(tx: &rusqlite::Transaction<'_>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        tx.execute_batch("SAVEPOINT op")?;
        let result = f();
        tx.execute_batch(if result.is_ok() {
            "RELEASE op"
        } else {
            "ROLLBACK TO op; RELEASE op"
        })?;
        result
    }
    match op {
        Op::Enqueue(queue, messages, reply) => {
            answer(reply, isolated(tx, || enqueue(tx, &queue, messages)))
        }
        Op::Receive(queue, max, visibility, reply) => {
            answer(reply, isolated(tx, || receive(tx, &queue, max, visibility)))
        }
        Op::Ack(queue, ids, reply) => answer(reply, isolated(tx, || ack(tx, &queue, &ids))),
        Op::Release(queue, ids, delay, reply) => {
            answer(reply, isolated(tx, || release(tx, &queue, &ids, delay)))
        }
        Op::Fail {
            queue,
            id,
            reason,
            backoff,
            max_receives,
            dead_letter_queue,
            reply,
        } => answer(
            reply,
            isolated(tx, || {
                fail(
                    tx,
                    &queue,
                    &id,
                    &reason,
                    backoff,
                    max_receives,
                    &dead_letter_queue,
                )
            }),
        ),
        Op::Stats(queue, reply) => answer(reply, stats(tx, &queue)),
        Op::Peek(queue, limit, reply) => answer(reply, peek(tx, &queue, limit)),
        Op::Redrive(from, to, reply) => answer(reply, isolated(tx, || redrive(tx, &from, &to))),
    }
}

fn enqueue(
    tx: &rusqlite::Transaction<'_>,
    queue: &str,
    messages: Vec<NewMessage>,
) -> Result<Vec<String>> {
    let now = now_ms();
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (queue, body, attributes, enqueued_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut ids = Vec::with_capacity(messages.len());
    for m in messages {
        let attributes = serde_json::to_string(&m.attributes)?;
        insert.execute(params![
            queue,
            m.body,
            attributes,
            now as i64,
            (now + m.delay.as_millis() as u64) as i64
        ])?;
        ids.push(tx.last_insert_rowid().to_string());
    }
    Ok(ids)
}

fn receive(
    tx: &rusqlite::Transaction<'_>,
    queue: &str,
    max: usize,
    visibility: Duration,
) -> Result<Vec<Received>> {
    let now = now_ms() as i64;
    let mut select = tx.prepare_cached(
        "SELECT seq, body, attributes, enqueued_at, receive_count FROM messages
         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
    )?;
    let rows = select
        .query_map(params![queue, now, max as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut hide = tx.prepare_cached(
        "UPDATE messages SET visible_at = ?2, receive_count = receive_count + 1, in_flight = 1 WHERE seq = ?1",
    )?;
    let hidden_until = now + visibility.as_millis() as i64;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, body, attributes, enqueued_at, count) in rows {
        hide.execute(params![seq, hidden_until])?;
        out.push(Received {
            id: seq.to_string(),
            body,
            attributes: serde_json::from_str(&attributes).unwrap_or_default(),
            attempt: count as u32 + 1,
            enqueued_at: enqueued_at as u64,
        });
    }
    Ok(out)
}

fn ack(tx: &rusqlite::Transaction<'_>, queue: &str, ids: &[String]) -> Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM messages WHERE seq = ?1 AND queue = ?2")?;
    for id in ids {
        let seq: i64 = id
            .parse()
            .with_context(|| format!("`{id}` is not a message id of this queue"))?;
        delete.execute(params![seq, queue])?;
    }
    Ok(())
}

/// Hide delivered messages for `delay` and take their delivery back off the receive count.
fn release(
    tx: &rusqlite::Transaction<'_>,
    queue: &str,
    ids: &[String],
    delay: Duration,
) -> Result<()> {
    let mut update = tx.prepare_cached(
        "UPDATE messages SET visible_at = ?3, in_flight = 0, receive_count = MAX(receive_count - 1, 0)
         WHERE seq = ?1 AND queue = ?2 AND in_flight",
    )?;
    let visible_at = now_ms() as i64 + delay.as_millis() as i64;
    for id in ids {
        let seq: i64 = id
            .parse()
            .with_context(|| format!("`{id}` is not a message id of this queue"))?;
        update.execute(params![seq, queue, visible_at])?;
    }
    Ok(())
}

fn fail(
    tx: &rusqlite::Transaction<'_>,
    queue: &str,
    id: &str,
    reason: &str,
    backoff: Duration,
    max_receives: u32,
    dead_letter_queue: &str,
) -> Result<FailOutcome> {
    let seq: i64 = id
        .parse()
        .with_context(|| format!("`{id}` is not a message id of this queue"))?;
    let count: Option<i64> = tx
        .query_row(
            "SELECT receive_count FROM messages WHERE seq = ?1 AND queue = ?2",
            params![seq, queue],
            |r| r.get(0),
        )
        .optional()?;
    let Some(count) = count else {
        // Already acknowledged or moved (a late report after a redelivery): nothing to do.
        return Ok(FailOutcome::Retried);
    };
    let now = now_ms() as i64;
    if count as u32 >= max_receives {
        tx.execute(
            "UPDATE messages SET queue = ?2, visible_at = ?3, in_flight = 0, last_error = ?4 WHERE seq = ?1",
            params![seq, dead_letter_queue, now, reason],
        )?;
        Ok(FailOutcome::DeadLettered)
    } else {
        tx.execute(
            "UPDATE messages SET visible_at = ?2, in_flight = 0, last_error = ?3 WHERE seq = ?1",
            params![seq, now + backoff.as_millis() as i64, reason],
        )?;
        Ok(FailOutcome::Retried)
    }
}

fn stats(tx: &rusqlite::Transaction<'_>, queue: &str) -> Result<QueueStats> {
    let now = now_ms() as i64;
    let (waiting, in_flight, oldest) = tx.query_row(
        "SELECT COALESCE(SUM(NOT (in_flight AND visible_at > ?2)), 0), COALESCE(SUM(in_flight AND visible_at > ?2), 0),
                MIN(enqueued_at)
         FROM messages WHERE queue = ?1",
        params![queue, now],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        },
    )?;
    Ok(QueueStats {
        name: queue.to_string(),
        waiting: waiting as u64,
        in_flight: in_flight as u64,
        oldest_age: oldest.map(|t| Duration::from_millis(now.saturating_sub(t).max(0) as u64)),
    })
}

fn peek(tx: &rusqlite::Transaction<'_>, queue: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    let mut select = tx.prepare_cached(
        "SELECT seq, body, receive_count, last_error, attributes FROM messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = select
        .query_map(params![queue, limit as i64], |r| {
            Ok(DeadLetter {
                id: r.get::<_, i64>(0)?.to_string(),
                body: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(1)?).into_owned(),
                attributes: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                receive_count: r.get::<_, i64>(2)? as u32,
                last_error: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn redrive(tx: &rusqlite::Transaction<'_>, from: &str, to: &str) -> Result<u64> {
    let moved = tx.execute(
        "UPDATE messages SET queue = ?2, visible_at = ?3, receive_count = 0, in_flight = 0 WHERE queue = ?1",
        params![from, to, now_ms() as i64],
    )?;
    Ok(moved as u64)
}

impl QueueBackend for SqliteQueues {
    fn enqueue(&self, queue: &str, messages: Vec<NewMessage>) -> BackendFuture<Vec<String>> {
        self.call(|r| Op::Enqueue(queue.to_string(), messages, r))
    }

    fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> BackendFuture<Vec<Received>> {
        self.call(|r| Op::Receive(queue.to_string(), max, visibility, r))
    }

    fn ack(&self, queue: &str, ids: Vec<String>) -> BackendFuture<()> {
        self.call(|r| Op::Ack(queue.to_string(), ids, r))
    }

    fn release(&self, queue: &str, ids: Vec<String>, delay: Duration) -> BackendFuture<()> {
        self.call(|r| Op::Release(queue.to_string(), ids, delay, r))
    }

    fn fail(
        &self,
        queue: &str,
        id: &str,
        reason: &str,
        backoff: Duration,
        max_receives: u32,
        dead_letter_queue: &str,
    ) -> BackendFuture<FailOutcome> {
        self.call(|reply| Op::Fail {
            queue: queue.to_string(),
            id: id.to_string(),
            reason: reason.to_string(),
            backoff,
            max_receives,
            dead_letter_queue: dead_letter_queue.to_string(),
            reply,
        })
    }

    fn stats(&self, queue: &str) -> BackendFuture<QueueStats> {
        self.call(|r| Op::Stats(queue.to_string(), r))
    }

    fn peek(&self, queue: &str, limit: usize) -> BackendFuture<Vec<DeadLetter>> {
        self.call(|r| Op::Peek(queue.to_string(), limit, r))
    }

    fn redrive(&self, from: &str, to: &str) -> BackendFuture<u64> {
        self.call(|r| Op::Redrive(from.to_string(), to.to_string(), r))
    }

    fn wait_for_work(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = tokio::time::timeout(POLL_INTERVAL, self.enqueued.notified()).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: BackendFuture<T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
            .unwrap()
    }

    fn message(body: &str) -> NewMessage {
        NewMessage {
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn receive_ack_fail_dead_letter_redrive() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueues::open(&dir.path().join("q.sqlite"), false).unwrap();
        let ids = run(q.enqueue("orders", vec![message("a"), message("b")]));
        assert_eq!(ids.len(), 2);
        let got = run(q.receive("orders", 10, Duration::from_secs(30)));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].attempt, 1);
        assert!(
            run(q.receive("orders", 10, Duration::from_secs(30))).is_empty(),
            "in flight"
        );
        assert_eq!(run(q.stats("orders")).in_flight, 2);
        run(q.ack("orders", vec![ids[0].clone()]));
        // Fail b until it dead-letters (max 2 receives).
        assert_eq!(
            run(q.fail("orders", &ids[1], "boom", Duration::ZERO, 2, "orders-dlq")),
            FailOutcome::Retried
        );
        let again = run(q.receive("orders", 10, Duration::from_secs(30)));
        assert_eq!((again.len(), again[0].attempt), (1, 2));
        assert_eq!(
            run(q.fail("orders", &ids[1], "boom 2", Duration::ZERO, 2, "orders-dlq")),
            FailOutcome::DeadLettered
        );
        assert_eq!(
            run(q.stats("orders")),
            QueueStats {
                name: "orders".into(),
                waiting: 0,
                in_flight: 0,
                oldest_age: None,
            }
        );
        let dead_stats = run(q.stats("orders-dlq"));
        assert_eq!(dead_stats.waiting, 1);
        assert!(dead_stats
            .oldest_age
            .is_some_and(|a| a < Duration::from_secs(60)));
        let dead = run(q.peek("orders-dlq", 10));
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom 2"));
        assert_eq!(run(q.redrive("orders-dlq", "orders")), 1);
        assert_eq!(
            run(q.receive("orders", 10, Duration::from_secs(30)))[0].attempt,
            1
        );
    }

    #[test]
    fn messages_survive_reopening_and_hidden_ones_reappear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        {
            let q = SqliteQueues::open(&path, false).unwrap();
            run(q.enqueue("jobs", vec![message("x")]));
            let got = run(q.receive("jobs", 1, Duration::from_millis(50)));
            assert_eq!(got.len(), 1);
        }
        let q = SqliteQueues::open(&path, false).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        let got = run(q.receive("jobs", 1, Duration::from_secs(30)));
        assert_eq!(got.len(), 1, "an unacknowledged message is delivered again");
        assert_eq!(got[0].attempt, 2);
    }

    #[test]
    fn delayed_messages_wait() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueues::open(&dir.path().join("q.sqlite"), false).unwrap();
        run(q.enqueue(
            "d",
            vec![NewMessage {
                delay: Duration::from_millis(100),
                ..message("later")
            }],
        ));
        assert!(run(q.receive("d", 1, Duration::from_secs(1))).is_empty());
        std::thread::sleep(Duration::from_millis(130));
        assert_eq!(run(q.receive("d", 1, Duration::from_secs(1))).len(), 1);
    }
}
