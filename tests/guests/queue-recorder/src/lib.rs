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

use ::wasi::http::outgoing_handler;
use ::wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use exports::wasmfn::platform::queue_handler::{Batch, Guest, MessageFailure};

struct Recorder;

fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("collector must be an http:// URL")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let headers = Fields::from_list(&[(
        "content-length".to_string(),
        body.len().to_string().into_bytes(),
    )])
    .map_err(|e| format!("{e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|_| "method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|_| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|_| "authority")?;
    request
        .set_path_with_query(Some(&format!("/{}", path.trim_start_matches('/'))))
        .map_err(|_| "path")?;
    let out = request.body().map_err(|_| "body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    {
        let stream = out.write().map_err(|_| "stream")?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    OutgoingBody::finish(out, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    match response.status() {
        200..=299 => Ok(()),
        s => Err(format!("collector answered {s}")),
    }
}

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
