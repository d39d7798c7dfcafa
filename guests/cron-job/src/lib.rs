//! Example `schedule` function: a periodic job that logs when it ran and how late it started.
//!
//! A schedule named `failing` returns an error, to show how failed runs are reported.

wit_bindgen::generate!({ path: "../../wit", world: "wasmfn:platform/schedule", generate_all });

use exports::wasmfn::platform::schedule_handler::{Guest, ScheduledEvent};
use wasi::logging::logging::{log, Level};

struct CronJob;

impl Guest for CronJob {
    fn handle(event: ScheduledEvent) -> Result<(), String> {
        if event.schedule == "failing" {
            return Err(format!("schedule {} is set up to fail", event.schedule));
        }
        let late_ms = event.fire_time.saturating_sub(event.scheduled_time);
        log(
            Level::Info,
            "cron-job",
            &format!(
                "{} ({}) ran {} ms after its due time",
                event.schedule, event.expression, late_ms
            ),
        );
        Ok(())
    }
}

export!(CronJob);
