//! A stream function that reports every record it handles (`key sequence` lines) to an HTTP
//! collector (the URL in its `collector` config value), so a test can check order and delivery
//! from outside the host, across crashes. A record whose key is `poison` fails the batch from
//! that record on.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:stream-recorder;
        world stream-recorder {
            import wasi:config/store@0.2.0-rc.1;
            export wasmfn:platform/stream-handler@0.1.0;
        }
    ",
    world: "test:stream-recorder/stream-recorder",
    generate_all,
});

use ::wasi::http::outgoing_handler;
use ::wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use exports::wasmfn::platform::stream_handler::{BatchFailure, Guest, StreamEvent};

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
    fn handle(events: Vec<StreamEvent>) -> Result<(), BatchFailure> {
        let fail = |reason: String| BatchFailure {
            reason,
            first_failed_sequence: None,
        };
        let url = crate::wasi::config::store::get("collector")
            .map_err(|e| fail(format!("{e:?}")))?
            .ok_or_else(|| fail("no `collector` config value".into()))?;
        let mut report = String::new();
        let mut failure = None;
        for e in &events {
            let (key, sequence) = match e {
                StreamEvent::Change(c) => (&c.key, &c.sequence),
                StreamEvent::Object(o) => (&o.key, &o.sequence),
            };
            if key == "poison" {
                failure = Some(BatchFailure {
                    reason: format!("poison record {sequence}"),
                    first_failed_sequence: Some(sequence.clone()),
                });
                break;
            }
            report.push_str(&format!("{key} {sequence}\n"));
        }
        if !report.is_empty() {
            post(&url, report.as_bytes()).map_err(fail)?;
        }
        failure.map_or(Ok(()), Err)
    }
}

export!(Recorder);
