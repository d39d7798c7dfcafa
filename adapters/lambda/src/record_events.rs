//! Record-style events to the `queue`, `stream` and `schedule` worlds, and their answers:
//! SQS (with `batchItemFailures`), SNS, DynamoDB Streams (with `batchItemFailures` by sequence
//! number), S3 object notifications and EventBridge scheduled events.

use anyhow::{bail, Context as _, Result};
use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sns::SnsEvent;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{json, Map, Value};
pub use wasmfn_host::queue::MessageFailure;
use wasmfn_host::queue::{Batch, Message};
use wasmfn_host::schedule::ScheduledEvent;
use wasmfn_host::stream::{
    BatchFailure, ChangeRecord, ImageFormat, ObjectEvent, ObjectEventKind, Operation, StreamEvent,
};

/// The prefix the generated SAM template puts before queue and schedule names
/// (`${AWS::StackName}-`, in `WASMFN_RESOURCE_PREFIX`) so stacks do not collide; the function
/// sees the names of its manifest.
fn resource_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| std::env::var("WASMFN_RESOURCE_PREFIX").unwrap_or_default())
}

/// `name` without the stack's resource prefix.
fn manifest_name(name: &str) -> String {
    name.strip_prefix(resource_prefix())
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
        .to_string()
}

/// The last `/`- or `:`-separated part of an ARN (`...:queue-name`, `...table/NAME/stream/...`).
fn arn_name(arn: Option<&str>, after: &str) -> String {
    let arn = arn.unwrap_or_default();
    let name = match arn.split_once(after) {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => arn.rsplit(':').next().unwrap_or(arn),
    };
    manifest_name(name)
}

/// An SQS event as a queue batch.
pub fn sqs_batch(event: Value) -> Result<Batch> {
    let e: SqsEvent = serde_json::from_value(event).context("malformed SQS event")?;
    let queue = arn_name(
        e.records
            .first()
            .and_then(|r| r.event_source_arn.as_deref()),
        "\u{0}",
    );
    let messages = e
        .records
        .into_iter()
        .map(|r| {
            let mut attributes: Vec<(String, String)> = r
                .message_attributes
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            let mut body = r.body.unwrap_or_default();
            // A topic's message arrives in SNS's envelope; the function gets the message
            // and its attributes, as from a wasmfn topic.
            if let Some((message, from_topic)) = from_topic(&body) {
                body = message;
                attributes.extend(from_topic);
            }
            attributes.sort();
            Message {
                id: r.message_id.unwrap_or_default(),
                body: body.into_bytes(),
                attempt: r
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                enqueued_at: r
                    .attributes
                    .get("SentTimestamp")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                attributes,
            }
        })
        .collect();
    Ok(Batch { queue, messages })
}

/// The message inside an SQS body that is an SNS notification (a topic's subscription queue,
/// raw message delivery off), and its attributes: the message attributes, `subject`, and
/// `topic` and `topic-message-id` as wasmfn's topics set them. `None` for any other body.
fn from_topic(body: &str) -> Option<(String, Vec<(String, String)>)> {
    if !body.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(body).ok()?;
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    if field("Type") != Some("Notification") || field("Timestamp").is_none() {
        return None;
    }
    let (message, id, topic_arn) = (field("Message")?, field("MessageId")?, field("TopicArn")?);
    let mut attributes = vec![
        ("topic".to_string(), arn_name(Some(topic_arn), "\u{0}")),
        ("topic-message-id".to_string(), id.to_string()),
    ];
    if let Some(subject) = field("Subject") {
        attributes.push(("subject".into(), subject.to_string()));
    }
    if let Some(Value::Object(attrs)) = v.get("MessageAttributes") {
        for (k, a) in attrs {
            if let Some(value) = a.get("Value").and_then(Value::as_str) {
                attributes.push((k.clone(), value.to_string()));
            }
        }
    }
    Some((message.to_string(), attributes))
}

/// The SQS answer (`ReportBatchItemFailures`): the failed message ids; a whole-batch failure
/// lists every message.
pub fn sqs_response(batch: &Batch, result: Result<Vec<MessageFailure>, String>) -> Value {
    let ids: Vec<String> = match result {
        Ok(failures) => failures.into_iter().map(|f| f.id).collect(),
        Err(_) => batch.messages.iter().map(|m| m.id.clone()).collect(),
    };
    json!({ "batchItemFailures": ids.into_iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>() })
}

/// An SNS event as a queue batch (topic name as the queue, subject as an attribute).
pub fn sns_batch(event: Value) -> Result<Batch> {
    let e: SnsEvent = serde_json::from_value(event).context("malformed SNS event")?;
    let queue = arn_name(e.records.first().map(|r| r.sns.topic_arn.as_str()), "\u{0}");
    let messages = e
        .records
        .into_iter()
        .map(|r| {
            let mut attributes: Vec<(String, String)> = r
                .sns
                .message_attributes
                .into_iter()
                .map(|(k, v)| (k, v.value))
                .collect();
            if let Some(subject) = r.sns.subject {
                attributes.push(("subject".into(), subject));
            }
            attributes.sort();
            Message {
                id: r.sns.message_id,
                body: r.sns.message.into_bytes(),
                attributes,
                attempt: 1,
                enqueued_at: r.sns.timestamp.timestamp_millis().max(0) as u64,
            }
        })
        .collect();
    Ok(Batch { queue, messages })
}

/// A DynamoDB attribute value (`{"S": "x"}`, `{"N": "1"}`, `{"M": {...}}`...) as plain JSON.
fn unwrap_attribute(v: &Value) -> Value {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    let number = |s: &Value| {
        s.as_str()
            .and_then(|n| serde_json::from_str::<serde_json::Number>(n).ok())
            .map(Value::Number)
            .unwrap_or_else(|| s.clone())
    };
    match kind.as_str() {
        "S" | "B" | "BOOL" => inner.clone(),
        "N" => number(inner),
        "NULL" => Value::Null,
        "M" => unwrap_item(inner),
        "L" => Value::Array(
            inner
                .as_array()
                .map(|a| a.iter().map(unwrap_attribute).collect())
                .unwrap_or_default(),
        ),
        "SS" | "BS" => inner.clone(),
        "NS" => Value::Array(
            inner
                .as_array()
                .map(|a| a.iter().map(number).collect())
                .unwrap_or_default(),
        ),
        _ => inner.clone(),
    }
}

fn unwrap_item(item: &Value) -> Value {
    let mut out = Map::new();
    if let Some(o) = item.as_object() {
        for (k, v) in o {
            out.insert(k.clone(), unwrap_attribute(v));
        }
    }
    Value::Object(out)
}

/// A DynamoDB Streams event as change records (images with attribute values unwrapped).
pub fn dynamodb_events(event: Value) -> Result<Vec<StreamEvent>> {
    let e: DynamoDbEvent =
        serde_json::from_value(event).context("malformed DynamoDB Streams event")?;
    e.records
        .into_iter()
        .map(|r| {
            let operation = match r.event_name.as_str() {
                "INSERT" => Operation::Insert,
                "MODIFY" => Operation::Modify,
                "REMOVE" => Operation::Remove,
                other => bail!(
                    "DynamoDB record {} has unknown eventName `{other}`",
                    r.event_id
                ),
            };
            let image = |item: &serde_dynamo::Item| -> Result<Option<Vec<u8>>> {
                let v = serde_json::to_value(item)?;
                if v.as_object().is_none_or(|o| o.is_empty()) {
                    return Ok(None);
                }
                Ok(Some(serde_json::to_vec(&unwrap_item(&v))?))
            };
            // One key attribute: its value as text; a partition + sort key: both, joined by `/`
            // (the same convention as SQL primary keys in wasmfn's own change records).
            let keys = unwrap_item(&serde_json::to_value(&r.change.keys)?);
            let key = match keys.as_object() {
                Some(o) if !o.is_empty() => {
                    let mut parts: Vec<(&String, &Value)> = o.iter().collect();
                    parts.sort_by_key(|(k, _)| *k);
                    parts
                        .iter()
                        .map(|(_, v)| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("/")
                }
                _ => keys.to_string(),
            };
            Ok(StreamEvent::Change(ChangeRecord {
                source: arn_name(r.event_source_arn.as_deref(), ":table/"),
                sequence: r.change.sequence_number.clone().unwrap_or_default(),
                key,
                operation,
                format: ImageFormat::Json,
                old_image: image(&r.change.old_image)?,
                new_image: image(&r.change.new_image)?,
                timestamp: r
                    .change
                    .approximate_creation_date_time
                    .timestamp_millis()
                    .max(0) as u64,
            }))
        })
        .collect()
}

/// The DynamoDB Streams answer: the first failed sequence number, as `batchItemFailures`.
pub fn dynamodb_response(result: Result<(), BatchFailure>, events: &[StreamEvent]) -> Value {
    let failed = match result {
        Ok(()) => None,
        Err(f) => Some(f.first_failed_sequence.unwrap_or_else(|| {
            // Whole batch: report the first record, so Lambda retries from it.
            match events.first() {
                Some(StreamEvent::Change(c)) => c.sequence.clone(),
                _ => String::new(),
            }
        })),
    };
    json!({ "batchItemFailures": failed.into_iter().map(|s| json!({"itemIdentifier": s})).collect::<Vec<_>>() })
}

/// S3 keys arrive form-encoded (`+` for space, `%XX`); the stream world gets them decoded.
pub fn url_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&key[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An S3 notification as object events.
pub fn s3_events(event: Value) -> Result<Vec<StreamEvent>> {
    let e: S3Event = serde_json::from_value(event).context("malformed S3 event")?;
    e.records
        .into_iter()
        .map(|r| {
            let name = r.event_name.clone().unwrap_or_default();
            let kind = if name.starts_with("ObjectCreated") {
                ObjectEventKind::Created
            } else if name.starts_with("ObjectRemoved") {
                ObjectEventKind::Deleted
            } else {
                bail!("S3 event `{name}` is not an object creation or removal; subscribe the function to s3:ObjectCreated:* / s3:ObjectRemoved:* only")
            };
            Ok(StreamEvent::Object(ObjectEvent {
                source: r.s3.bucket.name.clone().unwrap_or_default(),
                sequence: r.s3.object.sequencer.clone().unwrap_or_default(),
                key: url_decode(r.s3.object.key.as_deref().unwrap_or_default()),
                kind,
                size: r.s3.object.size.unwrap_or(0).max(0) as u64,
                content_type: None,
                etag: r.s3.object.e_tag.clone(),
                timestamp: r.event_time.timestamp_millis().max(0) as u64,
            }))
        })
        .collect()
}

/// An EventBridge scheduled event (a rule's, or an EventBridge Scheduler schedule's input in the
/// same shape) as one schedule firing, named after the rule or schedule.
pub fn scheduled_event(event: Value) -> Result<ScheduledEvent> {
    let e: EventBridgeEvent<Value> =
        serde_json::from_value(event).context("malformed EventBridge event")?;
    let rule = e
        .resources
        .as_ref()
        .and_then(|r| r.first())
        // `...:rule/NAME` (rules; `rule/BUS/NAME` on custom buses) or `...:schedule/GROUP/NAME`
        // (EventBridge Scheduler): the last segment either way.
        .map(|arn| manifest_name(arn.rsplit('/').next().unwrap_or_default()))
        .unwrap_or_else(|| "eventbridge".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(ScheduledEvent {
        schedule: rule,
        expression: String::new(),
        scheduled_time: e
            .time
            .map(|t| t.timestamp_millis().max(0) as u64)
            .unwrap_or(now),
        fire_time: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_message_comes_out_of_its_envelope_with_its_attributes() {
        let body = json!({"Type": "Notification", "MessageId": "n-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:order-events", "Subject": "s",
            "Message": "{\"orderId\":\"o-1\"}", "Timestamp": "2026-12-07T10:00:00.000Z",
            "MessageAttributes": {"type": {"Type": "String", "Value": "OrderPlaced"},
                                  "n": {"Type": "Number", "Value": "3"}}})
        .to_string();
        let (message, mut attributes) = from_topic(&body).unwrap();
        assert_eq!(message, "{\"orderId\":\"o-1\"}");
        attributes.sort();
        let pairs: Vec<(&str, &str)> = attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("n", "3"),
                ("subject", "s"),
                ("topic", "order-events"),
                ("topic-message-id", "n-1"),
                ("type", "OrderPlaced")
            ]
        );
        // Anything else is the message itself.
        assert!(from_topic("{\"Type\": \"Notification\"}").is_none());
        assert!(from_topic("plain text").is_none());
        assert!(
            from_topic("{\"Message\": \"x\", \"MessageId\": \"1\", \"TopicArn\": \"a\"}").is_none()
        );
    }
}
