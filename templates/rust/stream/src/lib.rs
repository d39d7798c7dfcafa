//! `{{name}}`: a change-stream consumer (key-value / SQL change records, blob object events).
//! It logs each event; returning `Err` with the first failed sequence number retries from
//! there. Edit `handle`.
//!
//! The world is `wit/world.wit`: add imports there (key-value, SQL, blobs, ...) to use them.

wit_bindgen::generate!({ path: "wit", world: "guest", generate_all });

use exports::wasmfn::platform::stream_handler::{BatchFailure, Guest, StreamEvent};
use wasi::logging::logging::{log, Level};

struct Handler;

impl Guest for Handler {
    fn handle(events: Vec<StreamEvent>) -> Result<(), BatchFailure> {
        for event in &events {
            let line = match event {
                StreamEvent::Change(c) => format!(
                    "{} {:?} {} (old {} bytes, new {} bytes)",
                    c.source,
                    c.operation,
                    c.key,
                    c.old_image.as_ref().map_or(0, Vec::len),
                    c.new_image.as_ref().map_or(0, Vec::len)
                ),
                StreamEvent::Object(o) => format!("{} {:?} {} ({} bytes)", o.source, o.kind, o.key, o.size),
            };
            log(Level::Info, "{{name}}", &line);
        }
        Ok(())
    }
}

export!(Handler);
