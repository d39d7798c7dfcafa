//! `{{name}}`: a queue consumer. It handles a batch and reports the messages it could not
//! process: here, those whose body contains `fail`, so partial failure can be seen (the host
//! retries them alone, then parks them in the dead-letter queue). Edit `handle`.
//!
//! The world is `wit/world.wit`: add imports there (key-value, SQL, blobs, ...) to use them.

wit_bindgen::generate!({ path: "wit", world: "guest", generate_all });

use exports::wasmfn::platform::queue_handler::{Batch, Guest, MessageFailure};
use wasi::logging::logging::{log, Level};

struct Handler;

impl Guest for Handler {
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
            "{{name}}",
            &format!("queue {}: {} messages, {} failed", batch.queue, batch.messages.len(), failures.len()),
        );
        Ok(failures)
    }
}

export!(Handler);
