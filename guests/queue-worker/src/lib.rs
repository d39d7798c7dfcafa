//! Example `queue` function: processes a batch and reports the messages it could not handle.
//!
//! A message whose body contains `fail` is reported as failed (partial batch failure), so the
//! host retries it alone and finally parks it in the dead-letter queue. Everything else succeeds.

wit_bindgen::generate!({ path: "../../wit", world: "wasmfn:platform/queue", generate_all });

use exports::wasmfn::platform::queue_handler::{Batch, Guest, MessageFailure};
use wasi::logging::logging::{log, Level};

struct QueueWorker;

impl Guest for QueueWorker {
    fn handle(batch: Batch) -> Result<Vec<MessageFailure>, String> {
        let failures: Vec<MessageFailure> = batch
            .messages
            .iter()
            .filter(|m| m.body.windows(4).any(|w| w == b"fail"))
            .map(|m| MessageFailure {
                id: m.id.clone(),
                reason: format!("body asks to fail (attempt {})", m.attempt),
            })
            .collect();
        log(
            Level::Info,
            "queue-worker",
            &format!(
                "queue {}: {} messages, {} failed",
                batch.queue,
                batch.messages.len(),
                failures.len()
            ),
        );
        Ok(failures)
    }
}

export!(QueueWorker);
