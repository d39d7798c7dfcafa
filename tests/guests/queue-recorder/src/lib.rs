//! A queue function that reports every message id it handles to an HTTP collector (the URL in
//! its `collector` config value), so a test can check delivery from outside the host, across
//! crashes. A batch whose report fails is failed whole, so it is retried.
//!
//! A message whose body contains `fail` is reported as failed; `slow` sleeps 200 ms first.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:recorder;
        world recorder {
            import wasi:config/store@0.2.0-rc.1;
            export wasmfn:platform/queue-handler@0.1.0;
        }
    ",
    world: "test:recorder/recorder",
    generate_all,
});

use exports::wasmfn::platform::queue_handler::{Batch, Guest, MessageFailure};

struct Recorder;

use http_post::post;

impl Guest for Recorder {
    fn handle(batch: Batch) -> Result<Vec<MessageFailure>, String> {
        let url = crate::wasi::config::store::get("collector")
            .map_err(|e| format!("{e:?}"))?
            .ok_or("no `collector` config value")?;
        if batch
            .messages
            .iter()
            .any(|m| m.body.windows(4).any(|w| w == b"slow"))
        {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let mut failures = Vec::new();
        let mut report = String::new();
        for m in &batch.messages {
            if m.body.windows(4).any(|w| w == b"fail") {
                failures.push(MessageFailure {
                    id: m.id.clone(),
                    reason: format!("asked to fail, attempt {}", m.attempt),
                });
            }
            report.push_str(&format!(
                "{} {} {}\n",
                m.id,
                m.attempt,
                String::from_utf8_lossy(&m.body)
            ));
        }
        post(&url, report.as_bytes())?;
        Ok(failures)
    }
}

export!(Recorder);
