//! A stream function that reports every record it handles (`key sequence` lines) to an HTTP
//! collector (the URL in its `collector` config value), so a test can check order and delivery
//! from outside the host, across crashes. A record whose key is `poison` fails the batch from
//! that record on. With config `detail = "json"` each line is instead a JSON object with the
//! record's source, key, operation (or object event kind) and images.

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

use exports::wasmfn::platform::stream_handler::{BatchFailure, Guest, StreamEvent};

struct Recorder;

use http_post::post;

impl Guest for Recorder {
    fn handle(events: Vec<StreamEvent>) -> Result<(), BatchFailure> {
        let fail = |reason: String| BatchFailure {
            reason,
            first_failed_sequence: None,
        };
        let url = crate::wasi::config::store::get("collector")
            .map_err(|e| fail(format!("{e:?}")))?
            .ok_or_else(|| fail("no `collector` config value".into()))?;
        let detailed = crate::wasi::config::store::get("detail").ok().flatten().as_deref() == Some("json");
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
            if detailed {
                report.push_str(&detail(e).to_string());
                report.push('\n');
            } else {
                report.push_str(&format!("{key} {sequence}\n"));
            }
        }
        if !report.is_empty() {
            post(&url, report.as_bytes()).map_err(fail)?;
        }
        failure.map_or(Ok(()), Err)
    }
}

/// A record as JSON: JSON images are embedded as values, raw ones as text.
fn detail(e: &StreamEvent) -> serde_json::Value {
    use exports::wasmfn::platform::stream_handler::{ImageFormat, ObjectEventKind, Operation};
    use serde_json::{json, Value};
    match e {
        StreamEvent::Change(c) => {
            let image = |i: &Option<Vec<u8>>| match (i, c.format) {
                (None, _) => Value::Null,
                (Some(b), ImageFormat::Json) => serde_json::from_slice(b).unwrap_or(Value::Null),
                (Some(b), ImageFormat::Raw) => Value::String(String::from_utf8_lossy(b).into()),
            };
            let operation = match c.operation {
                Operation::Insert => "insert",
                Operation::Modify => "modify",
                Operation::Remove => "remove",
            };
            json!({"source": c.source, "key": c.key, "operation": operation,
                   "oldImage": image(&c.old_image), "newImage": image(&c.new_image)})
        }
        StreamEvent::Object(o) => json!({
            "source": o.source, "key": o.key, "size": o.size,
            "kind": match o.kind { ObjectEventKind::Created => "created", ObjectEventKind::Deleted => "deleted" },
        }),
    }
}

export!(Recorder);
