//! The queue trigger: durable named queues whose messages are delivered in batches to `queue`
//! functions, at least once, with per-message failure, retries with backoff and dead-letter
//! queues (SQS semantics).
//!
//! - [`QueueBackend`]: where messages live. [`SqliteQueues`] is the embedded default (one file,
//!   WAL mode, group commit); [`NatsQueues`] keeps them in NATS JetStream (`queues-nats`).
//! - [`QueueConfig`]: one `[queues.NAME]` manifest entry; [`manifest`] reads them.
//! - [`QueueService`] (`service.rs`): the app's queues, accepting messages (it is the
//!   [`QueueSender`](wasmfn_host_capabilities::queues::QueueSender) guests publish through) and
//!   running the consumer loops that receive batches and invoke functions.

pub mod manifest;
#[cfg(feature = "queues-nats")]
mod nats;
mod service;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

pub use manifest::{QueueBackendChoice, QueueManifest};
#[cfg(feature = "queues-nats")]
pub use nats::NatsQueues;
pub use service::QueueService;
pub use sqlite::SqliteQueues;
/// Messages to enqueue and why they may be refused (shared with the publishing import).
pub use wasmfn_host_capabilities::queues::{NewMessage, SendError};
/// Types of the `queue` world (`wasmfn:platform/queue-handler`).
pub use wasmfn_host_core::queue::{Batch, Message, MessageFailure};

/// A message handed to a consumer.
#[derive(Clone, Debug)]
pub struct Received {
    /// Stable id.
    pub id: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Producer attributes.
    pub attributes: Vec<(String, String)>,
    /// Deliveries so far, this one included.
    pub attempt: u32,
    /// Enqueue time, ms since the epoch.
    pub enqueued_at: u64,
}

/// What happened to a message reported as failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOutcome {
    /// It will be delivered again after the backoff.
    Retried,
    /// It reached the maximum receive count and moved to the dead-letter queue.
    DeadLettered,
}

/// Depth figures of one queue.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Messages waiting to be delivered (visible now or delayed).
    pub waiting: u64,
    /// Messages delivered and not yet acknowledged.
    pub in_flight: u64,
    /// How long ago the oldest message still in the queue (waiting or in flight) was accepted.
    pub oldest_age: Option<Duration>,
}

/// A message in a dead-letter queue.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// Message id.
    pub id: String,
    /// Body as text (lossy) for display.
    pub body: String,
    /// The producer's attributes.
    pub attributes: Vec<(String, String)>,
    /// How many times it was delivered.
    pub receive_count: u32,
    /// The last failure reason.
    pub last_error: Option<String>,
}

/// A pending backend operation.
pub type BackendFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// Where queues live. Every operation is durable when its future resolves.
pub trait QueueBackend: Send + Sync + 'static {
    /// Append messages to `queue`; resolves to their ids once they are on disk.
    fn enqueue(&self, queue: &str, messages: Vec<NewMessage>) -> BackendFuture<Vec<String>>;
    /// Take up to `max` visible messages, hiding them for `visibility`.
    fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> BackendFuture<Vec<Received>>;
    /// Delete processed messages.
    fn ack(&self, queue: &str, ids: Vec<String>) -> BackendFuture<()>;
    /// Put delivered messages back, visible again after `delay`, without counting this
    /// delivery towards their receive count: the function had no capacity to run them, so
    /// they did not fail.
    fn release(&self, queue: &str, ids: Vec<String>, delay: Duration) -> BackendFuture<()>;
    /// Record a failure: retry after `backoff`, or move to `dead_letter_queue` once the message
    /// was received `max_receives` times.
    fn fail(
        &self,
        queue: &str,
        id: &str,
        reason: &str,
        backoff: Duration,
        max_receives: u32,
        dead_letter_queue: &str,
    ) -> BackendFuture<FailOutcome>;
    /// Depth figures.
    fn stats(&self, queue: &str) -> BackendFuture<QueueStats>;
    /// Messages in `queue` with their failure history (for dead-letter queues).
    fn peek(&self, queue: &str, limit: usize) -> BackendFuture<Vec<DeadLetter>>;
    /// Move every message of `from` back to `to`, with a fresh receive count.
    fn redrive(&self, from: &str, to: &str) -> BackendFuture<u64>;
    /// Resolves when something may have been enqueued, or after a short poll interval.
    fn wait_for_work(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A `[queues.NAME]` manifest entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue name.
    pub name: String,
    /// The `queue` function consuming it (`None`: a queue only produced to, e.g. a DLQ).
    pub function: Option<String>,
    /// Messages per batch, at most (1-10000, default 10).
    pub batch_size: usize,
    /// How long to wait to fill a batch once one message is there (default 0).
    pub batch_window: Duration,
    /// How long a delivered message stays hidden before redelivery. It must be longer than
    /// the consumer's timeout, or a batch still running is delivered again; unless set, it is
    /// the consumer's timeout plus 30 s (see [`fit_visibility`]).
    pub visibility_timeout: Duration,
    /// Whether the manifest set `visibility_timeout` (else [`fit_visibility`] derives it).
    pub visibility_timeout_set: bool,
    /// Deliveries before a failing message moves to the dead-letter queue (default 3).
    pub max_receive_count: u32,
    /// The dead-letter queue (default `NAME-dlq`).
    pub dead_letter_queue: String,
    /// First retry delay; doubles per attempt, capped at the visibility timeout (default 1 s).
    pub retry_backoff: Duration,
    /// Batches processed at once (default 2).
    pub concurrency: usize,
    /// Largest accepted message body (default 256 KiB, as SQS).
    pub max_message_bytes: usize,
    /// An implicit queue through which event rules deliver to `function`, which may then be
    /// an `http` function too (each message POSTed to it).
    pub rule_delivery: bool,
}

impl QueueConfig {
    /// A queue with default settings.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            function: None,
            batch_size: 10,
            batch_window: Duration::ZERO,
            visibility_timeout: Duration::from_secs(30),
            visibility_timeout_set: false,
            max_receive_count: 3,
            dead_letter_queue: format!("{name}-dlq"),
            retry_backoff: Duration::from_secs(1),
            concurrency: 2,
            max_message_bytes: 256 << 10,
            rule_delivery: false,
        }
    }

    /// The delay before delivery number `attempt + 1` of a message that failed `attempt` times.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.retry_backoff * factor).min(self.visibility_timeout)
    }
}

/// Slack between a consumer's timeout and its queue's derived visibility timeout: time to
/// settle the batch after the function returns.
pub const VISIBILITY_MARGIN: Duration = Duration::from_secs(30);

/// Give each consumed queue a visibility timeout longer than its consumer's timeout: derive
/// it (the timeout plus [`VISIBILITY_MARGIN`]) where the manifest did not set it, and report
/// one that was set no longer than the timeout. Such a queue keeps its messages but is not
/// consumed until the manifest is fixed. Run before the backend is built (JetStream consumers
/// take the visibility timeout as their `ack_wait`).
pub fn fit_visibility(
    configs: &mut [QueueConfig],
    functions: &dyn wasmfn_host_core::Invoker,
) -> Vec<String> {
    let mut problems = Vec::new();
    for c in configs {
        let Some(timeout) = c
            .function
            .as_deref()
            .and_then(|f| functions.function(f))
            .map(|f| f.limits().timeout)
        else {
            continue;
        };
        if !c.visibility_timeout_set {
            c.visibility_timeout = c.visibility_timeout.max(timeout + VISIBILITY_MARGIN);
        } else if c.visibility_timeout <= timeout {
            problems.push(format!(
                "[queues.{}] visibility-timeout = {:?} is not longer than function `{}`'s \
                 timeout ({timeout:?}): a batch still running would be delivered again; set \
                 visibility-timeout above the timeout (e.g. \"{}s\") or remove it; messages are \
                 accepted and kept but not delivered until this is fixed",
                c.name,
                c.visibility_timeout,
                c.function.as_deref().unwrap_or_default(),
                (timeout + VISIBILITY_MARGIN).as_secs()
            ));
            c.function = None;
        }
    }
    problems
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_visibility_timeout() {
        let mut q = QueueConfig::new("q");
        q.retry_backoff = Duration::from_millis(100);
        q.visibility_timeout = Duration::from_millis(500);
        assert_eq!(q.backoff(1), Duration::from_millis(100));
        assert_eq!(q.backoff(2), Duration::from_millis(200));
        assert_eq!(q.backoff(3), Duration::from_millis(400));
        assert_eq!(q.backoff(4), Duration::from_millis(500));
        assert_eq!(q.backoff(40), Duration::from_millis(500));
    }
}
