//! A schedule function that reports each run (`SCHEDULE SCHEDULED-TIME-MS`) to an HTTP collector
//! (the URL in its `collector` config value), so a test can count firings across a cluster of
//! hosts from outside them.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:schedule-recorder;
        world recorder {
            import wasi:config/store@0.2.0-rc.1;
            export wasmfn:platform/schedule-handler@0.1.0;
        }
    ",
    world: "test:schedule-recorder/recorder",
    generate_all,
});

use exports::wasmfn::platform::schedule_handler::{Guest, ScheduledEvent};

struct Recorder;

impl Guest for Recorder {
    fn handle(event: ScheduledEvent) -> Result<(), String> {
        let url = crate::wasi::config::store::get("collector")
            .map_err(|e| format!("{e:?}"))?
            .ok_or("no `collector` config value")?;
        let report = format!("{} {}\n", event.schedule, event.scheduled_time);
        http_post::post(&url, report.as_bytes())
    }
}

export!(Recorder);
