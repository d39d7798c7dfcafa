//! `{{name}}`: a scheduled job (cron and rate triggers in wasmfn.toml's `[schedules.NAME]`).
//! It logs each run; returning `Err` marks the run failed. Edit `handle`.
//!
//! The world is `wit/world.wit`: add imports there (key-value, SQL, blobs, ...) to use them.

wit_bindgen::generate!({ path: "wit", world: "guest", generate_all });

use exports::wasmfn::platform::schedule_handler::{Guest, ScheduledEvent};
use wasi::logging::logging::{log, Level};

struct Handler;

impl Guest for Handler {
    fn handle(event: ScheduledEvent) -> Result<(), String> {
        let late_ms = event.fire_time.saturating_sub(event.scheduled_time);
        log(
            Level::Info,
            "{{name}}",
            &format!("{} ({}) ran {} ms after its due time", event.schedule, event.expression, late_ms),
        );
        Ok(())
    }
}

export!(Handler);
