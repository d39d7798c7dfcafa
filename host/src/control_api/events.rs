//! The host API for the event bus and topics.
//!
//! | request | does |
//! |---|---|
//! | `POST /_wasmfn/events` | publish `{"source", "type", "detail"}` or `{"entries": [...]}`; `202 {"ids"}` |
//! | `GET /_wasmfn/rules` | every rule with its pattern and targets |
//! | `POST /_wasmfn/rules/test` | which rules the body (an event) would match; publishes nothing |
//! | `GET /_wasmfn/events/deliveries` | the latest published events and topic messages and where they went |
//! | `POST /_wasmfn/topics/NAME/messages` | publish the body; attributes from `x-wasmfn-attr-KEY` headers; `202 {"id"}` |
//! | `GET /_wasmfn/topics` | every topic with its subscriptions |

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use wasmfn_host_core::{text_response, HttpResponse};
use wasmfn_host_orchestration::eventbus::{NewEvent, PublishError};
use wasmfn_host_triggers::queue::SendError;

use super::json_response;
use crate::app::App;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventJson {
    source: String,
    #[serde(rename = "type", alias = "detail-type", alias = "detailType")]
    kind: String,
    #[serde(default = "empty_object")]
    detail: Value,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EventsJson {
    Many { entries: Vec<EventJson> },
    One(EventJson),
}

/// Handle `parts` (the path under `/_wasmfn/`) of this API.
pub(super) async fn handle(
    app: &App,
    method: &Method,
    parts: &[&str],
    headers: &http::HeaderMap,
    body: Bytes,
) -> HttpResponse {
    match (method, parts) {
        (&Method::POST, ["events"]) => {
            let Some(bus) = app.events() else {
                return text_response(
                    StatusCode::NOT_FOUND,
                    "no event rules are declared: add [rules.NAME] to wasmfn.toml",
                );
            };
            let events = match serde_json::from_slice::<EventsJson>(&body) {
                Ok(EventsJson::Many { entries }) => entries,
                Ok(EventsJson::One(e)) => vec![e],
                Err(e) => return text_response(StatusCode::BAD_REQUEST, format!(
                    "malformed event: {e}; send {{\"source\": \"...\", \"type\": \"...\", \"detail\": {{...}}}} or {{\"entries\": [...]}}")),
            };
            let events = events
                .into_iter()
                .map(|e| NewEvent {
                    source: e.source,
                    r#type: e.kind,
                    detail: e.detail,
                })
                .collect();
            match bus.publish_events(events).await {
                Ok(ids) => json_response(StatusCode::ACCEPTED, json!({ "ids": ids })),
                Err(e) => publish_error(e),
            }
        }
        (&Method::GET, ["rules"]) => {
            let rules: Vec<_> = app.events().into_iter().flat_map(|b| b.rules()).map(|r| json!({
                "name": r.name, "targets": r.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "pattern": r.pattern_json, "inputPath": r.input_path,
            })).collect();
            json_response(StatusCode::OK, json!({ "rules": rules }))
        }
        (&Method::POST, ["rules", "test"]) => {
            let event = match serde_json::from_slice::<EventJson>(&body) {
                Ok(e) => e,
                Err(e) => return text_response(StatusCode::BAD_REQUEST, format!(
                    "malformed event: {e}; send {{\"source\": \"...\", \"type\": \"...\", \"detail\": {{...}}}}")),
            };
            let envelope =
                json!({ "source": event.source, "type": event.kind, "detail": event.detail });
            let Value::Object(map) = &envelope else {
                unreachable!()
            };
            let results: Vec<_> = app
                .events()
                .into_iter()
                .flat_map(|b| b.rules())
                .map(|r| {
                    json!({
                        "name": r.name, "matches": r.pattern.matches(map),
                        "targets": r.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json_response(StatusCode::OK, json!({ "rules": results }))
        }
        (&Method::GET, ["events", "deliveries"]) => {
            let list = app
                .events()
                .map(|b| b.recent_deliveries())
                .unwrap_or_default();
            json_response(StatusCode::OK, json!({ "deliveries": list }))
        }
        (&Method::GET, ["topics"]) => {
            let topics: Vec<_> = app.events().into_iter().flat_map(|b| b.topics()).map(|t| json!({
                "name": t.name,
                "subscriptions": t.subscriptions.iter().map(|s| json!({"queue": s.queue, "filtered": s.filter.is_some()})).collect::<Vec<_>>(),
            })).collect();
            json_response(StatusCode::OK, json!({ "topics": topics }))
        }
        (&Method::POST, ["topics", name, "messages"]) => {
            let Some(bus) = app.events() else {
                return text_response(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no topic named `{name}`: declare it as [topics.{name}] in wasmfn.toml"
                    ),
                );
            };
            let attributes = super::header_attributes(headers);
            match bus.publish(name, body.to_vec(), attributes).await {
                Ok(id) => json_response(StatusCode::ACCEPTED, json!({ "id": id })),
                Err(e) => publish_error(e),
            }
        }
        _ => text_response(StatusCode::NOT_FOUND, super::ROUTING_HELP),
    }
}

fn publish_error(e: PublishError) -> HttpResponse {
    let status = match &e {
        PublishError::UnknownTopic(..) => StatusCode::NOT_FOUND,
        PublishError::Invalid(_) => StatusCode::BAD_REQUEST,
        PublishError::Send(SendError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        PublishError::Send(SendError::Invalid(_)) => StatusCode::BAD_REQUEST,
        PublishError::Send(SendError::UnknownQueue(..)) => StatusCode::INTERNAL_SERVER_ERROR,
        PublishError::Send(SendError::Backend(_)) | PublishError::Workflow(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    text_response(status, e.to_string())
}
