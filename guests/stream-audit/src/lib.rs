//! Example `stream` function: an audit log of every change record and object event.
//!
//! A change record whose key is `poison` fails the batch from that record on, so the host's
//! retry-then-park policy can be seen working.

wit_bindgen::generate!({ path: "../../wit", world: "wasmfn:platform/%stream", generate_all });

use exports::wasmfn::platform::stream_handler::{BatchFailure, Guest, StreamEvent};
use wasi::logging::logging::{log, Level};

struct StreamAudit;

impl Guest for StreamAudit {
    fn handle(events: Vec<StreamEvent>) -> Result<(), BatchFailure> {
        for event in &events {
            let line = match event {
                StreamEvent::Change(c) => {
                    if c.key == "poison" {
                        return Err(BatchFailure {
                            reason: format!("record {} has a poison key", c.sequence),
                            first_failed_sequence: Some(c.sequence.clone()),
                        });
                    }
                    format!(
                        "{} {:?} {} (old {} bytes, new {} bytes)",
                        c.source,
                        c.operation,
                        c.key,
                        c.old_image.as_ref().map_or(0, Vec::len),
                        c.new_image.as_ref().map_or(0, Vec::len)
                    )
                }
                StreamEvent::Object(o) => {
                    format!("{} {:?} {} ({} bytes)", o.source, o.kind, o.key, o.size)
                }
            };
            log(Level::Info, "stream-audit", &line);
        }
        Ok(())
    }
}

export!(StreamAudit);
