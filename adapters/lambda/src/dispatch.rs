//! Recognise an event's source, check it fits the function's world, invoke, and answer in the
//! source's own shape, within the invocation's deadline.

use std::time::Duration;

use http_body_util::BodyExt as _;
use serde_json::Value;
use wasmfn_host::{full_body, Function, InvokeError, World};

use crate::http_events::{self, HttpShape};
use crate::record_events as records;
use crate::task_events as tasks;

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An HTTP event of some shape.
    Http(HttpShape),
    /// SQS messages.
    Sqs,
    /// SNS notifications.
    Sns,
    /// DynamoDB Streams records.
    DynamoDb,
    /// S3 object notifications.
    S3,
    /// EventBridge (CloudWatch Events) scheduled event.
    Schedule,
}

impl Source {
    /// The world a function needs to take this event.
    pub fn world(self) -> World {
        match self {
            Source::Http(_) => World::Http,
            Source::Sqs | Source::Sns => World::Queue,
            Source::DynamoDb | Source::S3 => World::Stream,
            Source::Schedule => World::Schedule,
        }
    }

    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Source::Http(HttpShape::RestV1) => "API Gateway REST",
            Source::Http(HttpShape::HttpV2) => "API Gateway HTTP API / Function URL",
            Source::Http(HttpShape::Alb) => "Application Load Balancer",
            Source::Sqs => "SQS",
            Source::Sns => "SNS",
            Source::DynamoDb => "DynamoDB Streams",
            Source::S3 => "S3",
            Source::Schedule => "EventBridge scheduled event",
        }
    }
}

/// An invocation failure, reported to Lambda as `errorType` and `errorMessage`.
#[derive(Debug)]
pub struct InvocationError {
    /// `errorType`, e.g. `wasmfn.Trap`, `wasmfn.UnsupportedEvent`.
    pub kind: String,
    /// `errorMessage`.
    pub message: String,
}

impl InvocationError {
    fn new(kind: &str, message: impl Into<String>) -> Self {
        Self::named(&format!("wasmfn.{kind}"), message)
    }

    /// An error whose `errorType` is `kind` as it is (a task's own error name).
    pub fn named(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InvocationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for InvocationError {}

impl From<InvokeError> for InvocationError {
    fn from(e: InvokeError) -> Self {
        InvocationError::new(e.kind(), e.to_string())
    }
}

fn bad_event(source: Source, e: anyhow::Error) -> InvocationError {
    InvocationError::new("MalformedEvent", format!("{} event: {e:#}", source.name()))
}

/// Which source produced `event`, from its shape.
pub fn detect(event: &Value) -> Result<Source, InvocationError> {
    if let Some(first) = event.get("Records").and_then(|r| r.get(0)) {
        let source = first
            .get("eventSource")
            .or_else(|| first.get("EventSource"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return match source {
            "aws:sqs" => Ok(Source::Sqs),
            "aws:sns" => Ok(Source::Sns),
            "aws:dynamodb" => Ok(Source::DynamoDb),
            "aws:s3" => Ok(Source::S3),
            other => Err(InvocationError::new(
                "UnsupportedEvent",
                format!("records from event source `{other}` are not supported; wasmfn maps aws:sqs, aws:sns, aws:dynamodb and aws:s3"),
            )),
        };
    }
    let context = event.get("requestContext");
    if context.and_then(|c| c.get("elb")).is_some() {
        return Ok(Source::Http(HttpShape::Alb));
    }
    if context.and_then(|c| c.get("http")).is_some() {
        return Ok(Source::Http(HttpShape::HttpV2));
    }
    if event.get("httpMethod").is_some() && context.is_some() {
        return Ok(Source::Http(HttpShape::RestV1));
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Ok(Source::Schedule);
    }
    let keys: Vec<&str> = event
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    Err(InvocationError::new(
        "UnsupportedEvent",
        format!(
            "unrecognised event (top-level keys: {keys:?}); wasmfn maps API Gateway REST and HTTP \
             APIs, Function URLs, ALB, SQS, SNS, DynamoDB Streams, S3 and EventBridge scheduled events"
        ),
    ))
}

/// Handle one event with `function` in Lambda request `request_id`, giving up `remaining`
/// from now (the deadline less [`DEADLINE_MARGIN`]).
pub async fn handle(
    function: &Function,
    event: Value,
    request_id: &str,
    remaining: Duration,
) -> Result<Value, InvocationError> {
    if function.world() == World::Task {
        // Step Functions sends the state's input, whatever its shape.
        let payload = tasks::task_payload(event, function.name(), request_id)
            .map_err(|e| InvocationError::new("MalformedEvent", format!("task input: {e:#}")))?;
        return match tokio::time::timeout(remaining, tasks::run(function, payload)).await {
            Ok(result) => result,
            Err(_) => Err(tasks::timeout(format!(
                "function `{}` was interrupted {} ms before the Lambda deadline",
                function.name(),
                DEADLINE_MARGIN.as_millis()
            ))),
        };
    }
    let source = detect(&event)?;
    // An event rule's queue delivers to `http` functions too, each message POSTed.
    let posted = source == Source::Sqs && function.world() == World::Http;
    if function.world() != source.world() && !posted {
        return Err(InvocationError::new(
            "WrongWorld",
            format!(
                "function `{}` implements world `{}`, but {} events need a `{}` function",
                function.name(),
                function.world(),
                source.name(),
                source.world()
            ),
        ));
    }
    match tokio::time::timeout(remaining, dispatch(function, source, event)).await {
        Ok(result) => result,
        // Dropping the invocation stops the guest at its next epoch yield (within 5 ms).
        Err(_) => Err(InvocationError::new(
            "Timeout",
            format!(
                "function `{}` was interrupted {} ms before the Lambda deadline",
                function.name(),
                crate::dispatch::DEADLINE_MARGIN.as_millis()
            ),
        )),
    }
}

/// Time kept back from the Lambda deadline to report a timeout properly.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

async fn dispatch(
    function: &Function,
    source: Source,
    event: Value,
) -> Result<Value, InvocationError> {
    match source {
        Source::Http(shape) => {
            let incoming = http_events::parse(shape, event).map_err(|e| bad_event(source, e))?;
            let mut request = http::Request::builder()
                .method(incoming.method)
                .uri(format!("http://lambda{}", incoming.path_and_query));
            if let Some(h) = request.headers_mut() {
                *h = incoming.headers;
            }
            let request = request
                .body(full_body(incoming.body))
                .map_err(|e| bad_event(source, e.into()))?;
            let response = function.handle_http(request).await?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| InvocationError::new("ResponseBody", format!("{e:#}")))?
                .to_bytes();
            Ok(http_events::respond(
                shape,
                incoming.multi_value,
                parts.status.as_u16(),
                parts.headers,
                body.to_vec(),
            ))
        }
        Source::Sqs if function.world() == World::Http => {
            let batch = records::sqs_batch(event).map_err(|e| bad_event(source, e))?;
            let (mut failures, overloaded) = function.post_messages(&batch).await;
            // Not tried: SQS delivers them again.
            failures.extend(overloaded.into_iter().map(|id| records::MessageFailure {
                id,
                reason: "the function was at capacity".into(),
            }));
            Ok(records::sqs_response(&batch, Ok(failures)))
        }
        Source::Sqs => {
            let batch = records::sqs_batch(event).map_err(|e| bad_event(source, e))?;
            let result = function.invoke_queue(&batch).await?;
            Ok(records::sqs_response(&batch, result))
        }
        Source::Sns => {
            let batch = records::sns_batch(event).map_err(|e| bad_event(source, e))?;
            match function.invoke_queue(&batch).await? {
                Ok(failures) if failures.is_empty() => Ok(Value::Null),
                Ok(failures) => Err(InvocationError::new(
                    "MessagesFailed",
                    failures
                        .iter()
                        .map(|f| format!("{}: {}", f.id, f.reason))
                        .collect::<Vec<_>>()
                        .join("; "),
                )),
                Err(reason) => Err(InvocationError::new("BatchFailed", reason)),
            }
        }
        Source::DynamoDb => {
            let events = records::dynamodb_events(event).map_err(|e| bad_event(source, e))?;
            let result = function.invoke_stream(&events).await?;
            Ok(records::dynamodb_response(result, &events))
        }
        Source::S3 => {
            let events = records::s3_events(event).map_err(|e| bad_event(source, e))?;
            match function.invoke_stream(&events).await? {
                Ok(()) => Ok(Value::Null),
                Err(f) => Err(InvocationError::new("BatchFailed", f.reason)),
            }
        }
        Source::Schedule => {
            let scheduled = records::scheduled_event(event).map_err(|e| bad_event(source, e))?;
            match function.invoke_schedule(&scheduled).await? {
                Ok(()) => Ok(Value::Null),
                Err(reason) => Err(InvocationError::new("RunFailed", reason)),
            }
        }
    }
}
