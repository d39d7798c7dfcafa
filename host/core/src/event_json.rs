//! JSON forms of events and results, for `wasmfn invoke` and other tools: one event in, one
//! result out, in the shapes documented in `wit/README.md`.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::invoke::events::{queue, schedule, stream};

/// An HTTP request described in JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpEvent {
    /// Method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path with query (default `/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Header name to value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body as UTF-8 text.
    pub body: Option<String>,
    /// Body as base64 (binary bodies).
    pub body_base64: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

fn default_path() -> String {
    "/".into()
}

impl HttpEvent {
    /// The request body bytes.
    pub fn body_bytes(&self) -> Result<Vec<u8>> {
        body_bytes(self.body.as_deref(), self.body_base64.as_deref())
    }
}

fn body_bytes(text: Option<&str>, b64: Option<&str>) -> Result<Vec<u8>> {
    match (text, b64) {
        (Some(_), Some(_)) => bail!("give either `body` or `bodyBase64`, not both"),
        (Some(t), None) => Ok(t.as_bytes().to_vec()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .context("`bodyBase64` is not valid base64"),
        (None, None) => Ok(Vec::new()),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct QueueJson {
    #[serde(default = "default_queue")]
    queue: String,
    messages: Vec<MessageJson>,
}

fn default_queue() -> String {
    "local".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MessageJson {
    id: Option<String>,
    body: Option<String>,
    body_base64: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default = "one")]
    attempt: u32,
    enqueued_at: Option<u64>,
}

fn one() -> u32 {
    1
}

/// Parse a queue batch: `{"queue": "orders", "messages": [{"id": "1", "body": "..."}]}`.
pub fn parse_queue_batch(json: &str) -> Result<queue::Batch> {
    let parsed: QueueJson = serde_json::from_str(json).context("not a queue batch event")?;
    if parsed.messages.is_empty() {
        bail!("a queue batch needs at least one message in `messages`");
    }
    let now = now_ms();
    let messages = parsed
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(queue::Message {
                id: m.id.unwrap_or_else(|| format!("msg-{}", i + 1)),
                body: body_bytes(m.body.as_deref(), m.body_base64.as_deref())
                    .with_context(|| format!("message {}", i + 1))?,
                attributes: m.attributes.into_iter().collect(),
                attempt: m.attempt,
                enqueued_at: m.enqueued_at.unwrap_or(now),
            })
        })
        .collect::<Result<_>>()?;
    Ok(queue::Batch {
        queue: parsed.queue,
        messages,
    })
}

/// The JSON result of a queue invocation (`batchItemFailures` in SQS terms).
pub fn queue_result_json(result: &Result<Vec<queue::MessageFailure>, String>) -> Value {
    match result {
        Ok(failures) => json!({
            "failures": failures.iter().map(|f| json!({"id": f.id, "reason": f.reason})).collect::<Vec<_>>()
        }),
        Err(reason) => json!({ "error": reason }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StreamJson {
    events: Vec<StreamEventJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "type")]
enum StreamEventJson {
    #[serde(rename = "change", rename_all = "camelCase")]
    Change {
        source: String,
        sequence: Option<String>,
        key: String,
        operation: String,
        #[serde(default)]
        old_image: Option<Value>,
        #[serde(default)]
        new_image: Option<Value>,
        /// `raw` or `json`, for images given as base64.
        format: Option<String>,
        old_image_base64: Option<String>,
        new_image_base64: Option<String>,
        timestamp: Option<u64>,
    },
    #[serde(rename = "object", rename_all = "camelCase")]
    Object {
        source: String,
        sequence: Option<String>,
        key: String,
        kind: String,
        #[serde(default)]
        size: u64,
        content_type: Option<String>,
        etag: Option<String>,
        timestamp: Option<u64>,
    },
}

/// Parse stream events: `{"events": [{"type": "change", "source": "users", "key": "1",
/// "operation": "insert", "newImage": {...}}, {"type": "object", ...}]}`. Images given as JSON
/// values are passed as JSON; images given as strings are passed as raw bytes.
pub fn parse_stream_events(json: &str) -> Result<Vec<stream::StreamEvent>> {
    let parsed: StreamJson = serde_json::from_str(json).context("not a stream event batch")?;
    let now = now_ms();
    parsed
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let seq = |s: Option<String>| s.unwrap_or_else(|| format!("{:020}", i + 1));
            Ok(match e {
                StreamEventJson::Change {
                    source,
                    sequence,
                    key,
                    operation,
                    old_image,
                    new_image,
                    format,
                    old_image_base64,
                    new_image_base64,
                    timestamp,
                } => {
                    let operation = match operation.as_str() {
                        "insert" => stream::Operation::Insert,
                        "modify" => stream::Operation::Modify,
                        "remove" => stream::Operation::Remove,
                        other => bail!(
                            "event {}: unknown operation `{other}` (insert, modify or remove)",
                            i + 1
                        ),
                    };
                    let raw = matches!(old_image, Some(Value::String(_)) | None)
                        && matches!(new_image, Some(Value::String(_)) | None);
                    let image = |v: Option<Value>| {
                        v.map(|v| match v {
                            Value::String(s) if raw => s.into_bytes(),
                            other => other.to_string().into_bytes(),
                        })
                    };
                    let b64 = |v: Option<String>| -> Result<Option<Vec<u8>>> {
                        v.map(|s| {
                            base64::engine::general_purpose::STANDARD
                                .decode(s)
                                .context("image is not valid base64")
                        })
                        .transpose()
                    };
                    let (format, old_image, new_image) =
                        if old_image_base64.is_some() || new_image_base64.is_some() {
                            let format = match format.as_deref() {
                                Some("json") => stream::ImageFormat::Json,
                                _ => stream::ImageFormat::Raw,
                            };
                            (format, b64(old_image_base64)?, b64(new_image_base64)?)
                        } else {
                            let format = if raw {
                                stream::ImageFormat::Raw
                            } else {
                                stream::ImageFormat::Json
                            };
                            (format, image(old_image), image(new_image))
                        };
                    stream::StreamEvent::Change(stream::ChangeRecord {
                        source,
                        sequence: seq(sequence),
                        key,
                        operation,
                        format,
                        old_image,
                        new_image,
                        timestamp: timestamp.unwrap_or(now),
                    })
                }
                StreamEventJson::Object {
                    source,
                    sequence,
                    key,
                    kind,
                    size,
                    content_type,
                    etag,
                    timestamp,
                } => {
                    let kind = match kind.as_str() {
                        "created" => stream::ObjectEventKind::Created,
                        "deleted" => stream::ObjectEventKind::Deleted,
                        other => bail!(
                            "event {}: unknown object event kind `{other}` (created or deleted)",
                            i + 1
                        ),
                    };
                    stream::StreamEvent::Object(stream::ObjectEvent {
                        source,
                        sequence: seq(sequence),
                        key,
                        kind,
                        size,
                        content_type,
                        etag,
                        timestamp: timestamp.unwrap_or(now),
                    })
                }
            })
        })
        .collect()
}

/// One stream event as JSON, in the form [`parse_stream_events`] reads (images as base64, so
/// any bytes survive the round trip).
pub fn stream_event_to_json(event: &stream::StreamEvent) -> Value {
    let b64 = |v: &Option<Vec<u8>>| {
        v.as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
    };
    match event {
        stream::StreamEvent::Change(c) => json!({
            "type": "change", "source": c.source, "sequence": c.sequence, "key": c.key,
            "operation": match c.operation {
                stream::Operation::Insert => "insert",
                stream::Operation::Modify => "modify",
                stream::Operation::Remove => "remove",
            },
            "format": match c.format { stream::ImageFormat::Raw => "raw", stream::ImageFormat::Json => "json" },
            "oldImageBase64": b64(&c.old_image), "newImageBase64": b64(&c.new_image), "timestamp": c.timestamp,
        }),
        stream::StreamEvent::Object(o) => json!({
            "type": "object", "source": o.source, "sequence": o.sequence, "key": o.key,
            "kind": match o.kind { stream::ObjectEventKind::Created => "created", stream::ObjectEventKind::Deleted => "deleted" },
            "size": o.size, "contentType": o.content_type, "etag": o.etag, "timestamp": o.timestamp,
        }),
    }
}

/// Read back one event written by [`stream_event_to_json`].
pub fn stream_event_from_json(json: &str) -> Result<stream::StreamEvent> {
    parse_stream_events(&format!("{{\"events\":[{json}]}}"))?
        .pop()
        .context("empty stream event")
}

/// The JSON result of a stream invocation.
pub fn stream_result_json(result: &Result<(), stream::BatchFailure>) -> Value {
    match result {
        Ok(()) => json!({ "ok": true }),
        Err(f) => json!({ "error": f.reason, "firstFailedSequence": f.first_failed_sequence }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScheduleJson {
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "default_expression")]
    expression: String,
    scheduled_time: Option<u64>,
    fire_time: Option<u64>,
}

fn default_schedule() -> String {
    "manual".into()
}

fn default_expression() -> String {
    "rate(1 minute)".into()
}

/// Parse a scheduled event: `{"schedule": "nightly", "expression": "0 3 * * *"}` (times default
/// to now).
pub fn parse_scheduled_event(json: &str) -> Result<schedule::ScheduledEvent> {
    let parsed: ScheduleJson = serde_json::from_str(json).context("not a scheduled event")?;
    let now = now_ms();
    Ok(schedule::ScheduledEvent {
        schedule: parsed.schedule,
        expression: parsed.expression,
        scheduled_time: parsed.scheduled_time.unwrap_or(now),
        fire_time: parsed.fire_time.unwrap_or(now),
    })
}

/// The JSON result of a schedule invocation.
pub fn schedule_result_json(result: &Result<(), String>) -> Value {
    match result {
        Ok(()) => json!({ "ok": true }),
        Err(reason) => json!({ "error": reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_batch_defaults_and_errors() {
        let b = parse_queue_batch(r#"{"messages":[{"body":"hi"},{"id":"x","bodyBase64":"AAE="}]}"#)
            .unwrap();
        assert_eq!(b.queue, "local");
        assert_eq!(b.messages[0].id, "msg-1");
        assert_eq!(b.messages[0].attempt, 1);
        assert_eq!(b.messages[1].body, vec![0, 1]);
        let err = parse_queue_batch(r#"{"messages":[],"colour":1}"#).unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
        assert!(parse_queue_batch(r#"{"messages":[]}"#).is_err());
    }

    #[test]
    fn stream_images_keep_their_format() {
        let ev = parse_stream_events(
            r#"{"events":[{"type":"change","source":"users","key":"1","operation":"modify",
                "oldImage":{"name":"a"},"newImage":{"name":"b"}},
               {"type":"change","source":"kv","key":"k","operation":"insert","newImage":"raw"},
               {"type":"object","source":"uploads","key":"a b.txt","kind":"created","size":3}]}"#,
        )
        .unwrap();
        let stream::StreamEvent::Change(c) = &ev[0] else {
            panic!()
        };
        assert!(matches!(c.format, stream::ImageFormat::Json));
        assert_eq!(c.new_image.as_deref(), Some(&br#"{"name":"b"}"#[..]));
        let stream::StreamEvent::Change(c) = &ev[1] else {
            panic!()
        };
        assert!(matches!(c.format, stream::ImageFormat::Raw));
        assert_eq!(c.new_image.as_deref(), Some(&b"raw"[..]));
        assert!(matches!(ev[2], stream::StreamEvent::Object(_)));
        assert!(parse_stream_events(
            r#"{"events":[{"type":"change","source":"s","key":"k","operation":"upsert"}]}"#
        )
        .is_err());
    }

    #[test]
    fn scheduled_event_defaults() {
        let e = parse_scheduled_event(r#"{"schedule":"nightly"}"#).unwrap();
        assert_eq!(e.schedule, "nightly");
        assert_eq!(e.scheduled_time, e.fire_time);
        assert!(parse_scheduled_event(r#"{"when":"now"}"#).is_err());
    }
}
