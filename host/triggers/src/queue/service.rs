//! The queues of an app: accepting messages, and the consumer loops that receive batches from
//! a queue, invoke its function, acknowledge what succeeded, and retry or dead-letter what
//! failed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmfn_host_capabilities::queues::QueueSender;
use wasmfn_host_core::queue::{Batch, Message, MessageFailure};
use wasmfn_host_core::{Admission, Function, InvokeError, Invoker, Service, World};

use super::{FailOutcome, NewMessage, QueueBackend, QueueConfig, QueueStats, Received, SendError};

/// The queues of an app: their backend and their configuration.
pub struct QueueService {
    backend: Arc<dyn QueueBackend>,
    configs: BTreeMap<String, QueueConfig>,
}

impl QueueService {
    /// Queues over `backend`. Dead-letter queues named by a config are declared implicitly.
    pub fn new(backend: Arc<dyn QueueBackend>, configs: Vec<QueueConfig>) -> Self {
        let mut all: BTreeMap<String, QueueConfig> =
            configs.into_iter().map(|c| (c.name.clone(), c)).collect();
        let dlqs: Vec<String> = all
            .values()
            .filter(|c| c.function.is_some())
            .map(|c| c.dead_letter_queue.clone())
            .collect();
        for dlq in dlqs {
            // A dead-letter queue is a plain queue with no consumer and no further DLQ.
            all.entry(dlq.clone()).or_insert_with(|| QueueConfig {
                dead_letter_queue: String::new(),
                ..QueueConfig::new(&dlq)
            });
        }
        Self {
            backend,
            configs: all,
        }
    }

    /// Check every consumer function exists and implements the `queue` world. A queue whose
    /// consumer is wrong keeps accepting messages (nothing is lost) but is not consumed until
    /// the manifest is fixed; the returned errors say why.
    pub fn validate(&mut self, functions: &dyn Invoker) -> Vec<String> {
        let mut errors = Vec::new();
        for c in self.configs.values_mut() {
            let Some(name) = &c.function else { continue };
            let problem = match functions.function(name) {
                None => Some(format!(
                    "function `{name}` is not loaded{}",
                    functions
                        .load_error(name)
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )),
                // Rules deliver to `http` functions too (each event POSTed), through their
                // implicit queues; a declared queue's consumer implements the `queue` world.
                Some(f) if f.world() == World::Http && c.rule_delivery => None,
                Some(f) if f.world() != World::Queue => Some(format!(
                    "function `{name}` implements world `{}`, but {}",
                    f.world(),
                    if c.rule_delivery {
                        "an event rule delivers only to functions of the `queue` world (a batch) \
                         or the `http` world (each event POSTed)"
                    } else {
                        "a queue consumer must implement world `queue` (export \
                         wasmfn:platform/queue-handler)"
                    }
                )),
                Some(_) => None,
            };
            if let Some(p) = problem {
                errors.push(format!(
                    "[queues.{}]: {p}; messages are accepted and kept but not delivered until this is fixed",
                    c.name
                ));
                c.function = None;
            }
        }
        errors
    }

    /// The declared queues.
    pub fn configs(&self) -> impl Iterator<Item = &QueueConfig> {
        self.configs.values()
    }

    /// Accept messages into `queue`: checked, then durably stored, then acknowledged.
    pub async fn send(
        &self,
        queue: &str,
        mut messages: Vec<NewMessage>,
    ) -> Result<Vec<String>, SendError> {
        let Some(config) = self.configs.get(queue) else {
            return Err(SendError::UnknownQueue(
                queue.to_string(),
                self.configs.keys().cloned().collect(),
            ));
        };
        for m in &messages {
            m.validate()
                .map_err(|why| SendError::Invalid(format!("queue `{queue}`: {why}")))?;
        }
        if let Some(m) = messages
            .iter()
            .find(|m| m.body.len() > config.max_message_bytes)
        {
            return Err(SendError::TooLarge {
                queue: queue.to_string(),
                size: m.body.len(),
                limit: config.max_message_bytes,
            });
        }
        // Reserved attributes: the consumer's invocation continues the producer's trace.
        if wasmfn_host_core::trace::enabled() {
            for m in &mut messages {
                wasmfn_host_core::trace::inject_into_attributes(&mut m.attributes);
            }
        }
        self.backend
            .enqueue(queue, messages)
            .await
            .map_err(SendError::Backend)
    }

    /// Depth figures of every declared queue.
    pub async fn stats(&self) -> Result<Vec<QueueStats>> {
        let mut out = Vec::new();
        for name in self.configs.keys() {
            out.push(self.backend.stats(name).await?);
        }
        Ok(out)
    }

    /// The backend (dead-letter inspection and redrive).
    pub fn backend(&self) -> &Arc<dyn QueueBackend> {
        &self.backend
    }

    /// Whether `queue` is declared.
    pub fn config(&self, queue: &str) -> Option<&QueueConfig> {
        self.configs.get(queue)
    }
}

impl QueueSender for QueueService {
    fn send<'a>(
        &'a self,
        queue: &'a str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'a, Result<Vec<String>, SendError>> {
        Box::pin(QueueService::send(self, queue, messages))
    }
}

impl Service for QueueService {
    /// Start the consumers of every queue bound to a function. They stop receiving when
    /// `shutdown` turns true and finish the batches they hold.
    fn start(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        for config in self.configs.values() {
            if config.function.is_none() {
                continue;
            }
            for _ in 0..config.concurrency {
                let (service, functions, config, shutdown) = (
                    self.clone(),
                    functions.clone(),
                    config.clone(),
                    shutdown.clone(),
                );
                handles.push(tokio::spawn(async move {
                    consume(service, functions, config, shutdown).await
                }));
            }
        }
        handles
    }
}

async fn consume(
    service: Arc<QueueService>,
    functions: Arc<dyn Invoker>,
    config: QueueConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let backend = &service.backend;
    let function = functions
        .function(config.function.as_deref().unwrap_or_default())
        .expect("validated at start");
    while !*shutdown.borrow() {
        // A slot of the function first, then messages: a busy function slows its consumers
        // down instead of failing what they took (an `http` consumer takes its slots per
        // message, see `post_each`).
        let admission = match function.world() {
            World::Queue => tokio::select! {
                a = function.admission() => Some(a),
                _ = shutdown.changed() => break,
            },
            _ => None,
        };
        let mut batch = match backend
            .receive(&config.name, config.batch_size, config.visibility_timeout)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %config.name, error = %format!("{e:#}"), "receiving from the queue failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        if batch.is_empty() {
            backend.wait_for_work().await;
            continue;
        }
        if batch.len() < config.batch_size && !config.batch_window.is_zero() {
            tokio::time::sleep(config.batch_window).await;
            let more = config.batch_size - batch.len();
            if let Ok(extra) = backend
                .receive(&config.name, more, config.visibility_timeout)
                .await
            {
                batch.extend(extra);
            }
        }
        deliver(&service, &function, &config, admission, batch).await;
    }
}

/// How one batch settled: messages to acknowledge, to fail (counted towards the dead-letter
/// queue) and to put back uncounted (the function had no capacity for them).
#[derive(Debug, Default, PartialEq)]
struct Settlement {
    done: Vec<String>,
    failed: Vec<(String, String)>,
    released: Vec<String>,
}

impl Settlement {
    /// Sort the batch `ids` by the invocation's `outcome`.
    fn of(
        ids: Vec<String>,
        outcome: Result<Result<Vec<MessageFailure>, String>, InvokeError>,
        overloaded: Vec<String>,
    ) -> Self {
        let failed: Vec<(String, String)> = match outcome {
            Ok(Ok(failed)) => {
                let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
                failed
                    .into_iter()
                    .filter(|f| known.contains(f.id.as_str()))
                    .map(|f| (f.id, f.reason))
                    .collect()
            }
            Ok(Err(reason)) => ids
                .iter()
                .map(|id| (id.clone(), format!("batch failed: {reason}")))
                .collect(),
            Err(e) if e.is_overload() => {
                return Self {
                    released: ids,
                    ..Self::default()
                }
            }
            Err(e) => ids.iter().map(|id| (id.clone(), e.to_string())).collect(),
        };
        let unsettled: HashSet<&str> = failed
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(overloaded.iter().map(String::as_str))
            .collect();
        let done = ids
            .iter()
            .filter(|id| !unsettled.contains(id.as_str()))
            .cloned()
            .collect();
        Self {
            done,
            failed,
            released: overloaded,
        }
    }
}

/// Invoke the function with one batch and settle every message of it.
async fn deliver(
    service: &QueueService,
    function: &Function,
    config: &QueueConfig,
    admission: Option<Admission>,
    batch: Vec<Received>,
) {
    let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
    let ids_len = ids.len();
    let wit_batch = Batch {
        queue: config.name.clone(),
        messages: batch
            .into_iter()
            .map(|m| Message {
                id: m.id,
                body: m.body,
                attributes: m.attributes,
                attempt: m.attempt,
                enqueued_at: m.enqueued_at,
            })
            .collect(),
    };
    let attempts: BTreeMap<&str, u32> = wit_batch
        .messages
        .iter()
        .map(|m| (m.id.as_str(), m.attempt))
        .collect();
    let settlement = match function.world() {
        World::Http => {
            let (failures, overloaded) = function.post_messages(&wit_batch).await;
            Settlement::of(ids, Ok(Ok(failures)), overloaded)
        }
        _ => {
            let outcome = function.invoke_queue_admitted(admission, &wit_batch).await;
            Settlement::of(ids, outcome, Vec::new())
        }
    };
    let backend = &service.backend;
    let counter = |name: &'static str| metrics::counter!(name, "queue" => config.name.clone());
    counter("wasmfn_queue_deliveries_total").increment(ids_len as u64);
    counter("wasmfn_queue_acknowledged_total").increment(settlement.done.len() as u64);
    counter("wasmfn_queue_released_total").increment(settlement.released.len() as u64);
    if !settlement.done.is_empty() {
        if let Err(e) = backend.ack(&config.name, settlement.done).await {
            // Not acknowledged means delivered again after the visibility timeout: at least once.
            tracing::error!(queue = %config.name, error = %format!("{e:#}"), "acknowledging failed; the messages will be redelivered");
        }
    }
    if !settlement.released.is_empty() {
        let count = settlement.released.len();
        match backend
            .release(&config.name, settlement.released, config.retry_backoff)
            .await
        {
            Ok(()) => tracing::info!(queue = %config.name, count,
                "function at capacity; messages put back without counting a delivery"),
            Err(e) => tracing::error!(queue = %config.name, error = %format!("{e:#}"),
                "putting messages back failed; they will be redelivered after their visibility timeout"),
        }
    }
    for (id, reason) in &settlement.failed {
        let attempt = attempts.get(id.as_str()).copied().unwrap_or(1);
        match backend
            .fail(
                &config.name,
                id,
                reason,
                config.backoff(attempt),
                config.max_receive_count,
                &config.dead_letter_queue,
            )
            .await
        {
            Ok(FailOutcome::DeadLettered) => {
                counter("wasmfn_queue_dead_lettered_total").increment(1);
                tracing::warn!(queue = %config.name, message_id = %id, attempt,
                dead_letter_queue = %config.dead_letter_queue, "message moved to the dead-letter queue: {reason}")
            }
            Ok(FailOutcome::Retried) => {
                counter("wasmfn_queue_retries_total").increment(1);
                tracing::info!(queue = %config.name, message_id = %id, attempt,
                "message failed; will retry: {reason}")
            }
            Err(e) => {
                tracing::error!(queue = %config.name, message_id = %id, error = %format!("{e:#}"),
                "recording the failure failed; the message will be redelivered after its visibility timeout")
            }
        }
    }
}

/// Deliver a batch to an `http` function: each message is a `POST /` with the body, its
/// attributes as `x-wasmfn-attr-NAME` headers (the trace context also as `traceparent` and
/// `tracestate`) and its id as `x-wasmfn-message-id`. A 2xx
/// response settles the message; anything else fails it with the status and body. Returns
/// the failures and the messages the function had no capacity for.
#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec!["1".into(), "2".into(), "3".into()]
    }

    #[test]
    fn an_overloaded_invocation_fails_no_message() {
        let busy = InvokeError::Overloaded {
            function: "f".into(),
            limit: 1,
        };
        let s = Settlement::of(ids(), Err(busy), Vec::new());
        assert_eq!(s.released, ids());
        assert!(s.done.is_empty() && s.failed.is_empty());
        let pool = InvokeError::HostBusy {
            function: "f".into(),
        };
        assert_eq!(Settlement::of(ids(), Err(pool), Vec::new()).released, ids());
    }

    #[test]
    fn a_trap_fails_every_message_and_reported_failures_fail_alone() {
        let trap = InvokeError::Trap {
            function: "f".into(),
            message: "unreachable".into(),
            backtrace: None,
        };
        let s = Settlement::of(ids(), Err(trap), Vec::new());
        assert_eq!(s.failed.len(), 3);
        let one = MessageFailure {
            id: "2".into(),
            reason: "bad".into(),
        };
        let s = Settlement::of(ids(), Ok(Ok(vec![one])), vec!["3".into()]);
        assert_eq!(s.done, ["1"]);
        assert_eq!(s.failed, [("2".to_string(), "bad".to_string())]);
        assert_eq!(s.released, ["3"]);
    }
}
