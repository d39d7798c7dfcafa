//! A scheduled job that takes 2.5 s, logging when it starts and ends: to show that runs of one
//! schedule do not overlap.

wit_bindgen::generate!({ path: "../../../wit", world: "wasmfn:platform/schedule", generate_all });

use exports::wasmfn::platform::schedule_handler::{Guest, ScheduledEvent};
use wasi::logging::logging::{log, Level};

struct Slow;

impl Guest for Slow {
    fn handle(event: ScheduledEvent) -> Result<(), String> {
        log(
            Level::Info,
            "slow",
            &format!("run-start {}", event.scheduled_time),
        );
        std::thread::sleep(std::time::Duration::from_millis(2500));
        log(
            Level::Info,
            "slow",
            &format!("run-end {}", event.scheduled_time),
        );
        Ok(())
    }
}

export!(Slow);
