//! The host API for the event bus, topics and workflows.
//!
//! | request | does |
//! |---|---|
//! | `POST /_wasmfn/events` | publish `{"source", "type", "detail"}` or `{"entries": [...]}`; `202 {"ids"}` |
//! | `GET /_wasmfn/rules` | every rule with its targets |
//! | `POST /_wasmfn/topics/NAME/messages` | publish the body; attributes from `x-wasmfn-attr-KEY` headers; `202 {"id"}` |
//! | `GET /_wasmfn/topics` | every topic with its subscriptions |
//! | `GET /_wasmfn/workflows` | every workflow |
//! | `POST /_wasmfn/workflows/NAME/executions?name=N&wait=SECONDS` | start with the body as input; `201` (`200` when `name` existed), or the finished execution with `wait` |
//! | `GET /_wasmfn/workflows/NAME/executions?limit=N` | the newest executions |
//! | `GET /_wasmfn/executions/ID` | one execution with its history (each step's input, output, error, timing) |

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::json_response;
use crate::app::App;
use crate::eventbus::{NewEvent, PublishError};
use crate::http_invoke::{text_response, HttpResponse};
use crate::queue::dispatcher::SendError;
use crate::workflow::StartError;

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

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Handle `parts` (the path under `/_wasmfn/`) when it belongs to this API.
pub(super) async fn handle(
    app: &App,
    method: &Method,
    parts: &[&str],
    query: &str,
    headers: &http::HeaderMap,
    body: Bytes,
) -> HttpResponse {
    match (method, parts) {
        (&Method::POST, ["events"]) => {
            let Some(bus) = app.events() else {
                return text_response(StatusCode::NOT_FOUND, "no event rules are declared: add [rules.NAME] to wasmfn.toml");
            };
            let events = match serde_json::from_slice::<EventsJson>(&body) {
                Ok(EventsJson::Many { entries }) => entries,
                Ok(EventsJson::One(e)) => vec![e],
                Err(e) => return text_response(StatusCode::BAD_REQUEST, format!(
                    "malformed event: {e}; send {{\"source\": \"...\", \"type\": \"...\", \"detail\": {{...}}}} or {{\"entries\": [...]}}")),
            };
            let events = events
                .into_iter()
                .map(|e| NewEvent { source: e.source, r#type: e.kind, detail: e.detail })
                .collect();
            match bus.publish_events(events).await {
                Ok(ids) => json_response(StatusCode::ACCEPTED, json!({ "ids": ids })),
                Err(e) => publish_error(e),
            }
        }
        (&Method::GET, ["rules"]) => {
            let rules: Vec<_> = app.events().into_iter().flat_map(|b| b.rules()).map(|r| json!({
                "name": r.name, "targets": r.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            })).collect();
            json_response(StatusCode::OK, json!({ "rules": rules }))
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
                return text_response(StatusCode::NOT_FOUND, format!("no topic named `{name}`: declare it as [topics.{name}] in wasmfn.toml"));
            };
            let attributes = super::header_attributes(headers);
            match bus.publish(name, body.to_vec(), attributes).await {
                Ok(id) => json_response(StatusCode::ACCEPTED, json!({ "id": id })),
                Err(e) => publish_error(e),
            }
        }
        (&Method::GET, ["workflows"]) => {
            let list: Vec<_> = app.workflows().into_iter().flat_map(|w| w.configs()).map(|c| json!({
                "name": c.name, "startAt": c.definition.start_at, "states": c.definition.states.len(),
            })).collect();
            json_response(StatusCode::OK, json!({ "workflows": list }))
        }
        (&Method::POST, ["workflows", name, "executions"]) => {
            let Some(workflows) = app.workflows() else {
                return start_error(StartError::UnknownWorkflow(name.to_string(), Vec::new()));
            };
            let input = if body.iter().all(u8::is_ascii_whitespace) { "{}".to_string() } else { String::from_utf8_lossy(&body).into_owned() };
            let started = workflows.start_execution(name, &input, query_param(query, "name")).await;
            let (id, created) = match started {
                Ok(s) => s,
                Err(e) => return start_error(e),
            };
            let wait = query_param(query, "wait").and_then(|w| w.parse::<f64>().ok());
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            match wait {
                None => json_response(status, json!({ "executionId": id, "created": created })),
                Some(secs) => match workflows.wait(&id, Duration::from_secs_f64(secs.clamp(0.0, 3600.0))).await {
                    Ok(Some(e)) => json_response(status, json!({ "executionId": id, "created": created, "execution": e })),
                    Ok(None) => text_response(StatusCode::NOT_FOUND, format!("execution `{id}` vanished")),
                    Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
                },
            }
        }
        (&Method::GET, ["workflows", name, "executions"]) => {
            let Some(workflows) = app.workflows() else {
                return start_error(StartError::UnknownWorkflow(name.to_string(), Vec::new()));
            };
            let limit = query_param(query, "limit").and_then(|l| l.parse().ok()).unwrap_or(100);
            match workflows.store().list(Some(name), limit).await {
                Ok(list) => json_response(StatusCode::OK, json!({ "executions": list })),
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        (&Method::GET, ["executions", id]) => {
            let Some(workflows) = app.workflows() else {
                return text_response(StatusCode::NOT_FOUND, "no workflows are declared: add [workflows.NAME] to wasmfn.toml");
            };
            let store = workflows.store();
            match (store.get(id).await, store.history(id).await) {
                (Ok(Some(e)), Ok(history)) => json_response(StatusCode::OK, json!({ "execution": e, "history": history })),
                (Ok(None), _) => text_response(StatusCode::NOT_FOUND, format!("no execution `{id}`")),
                (Err(e), _) | (_, Err(e)) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        _ => text_response(StatusCode::NOT_FOUND, "see the README's host API: /_wasmfn/events, /_wasmfn/topics/NAME/messages, /_wasmfn/workflows/NAME/executions, /_wasmfn/executions/ID"),
    }
}

fn publish_error(e: PublishError) -> HttpResponse {
    let status = match &e {
        PublishError::UnknownTopic(..) => StatusCode::NOT_FOUND,
        PublishError::Invalid(_) => StatusCode::BAD_REQUEST,
        PublishError::Send(SendError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        PublishError::Send(SendError::UnknownQueue(..)) => StatusCode::INTERNAL_SERVER_ERROR,
        PublishError::Send(SendError::Backend(_)) | PublishError::Workflow(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    text_response(status, e.to_string())
}

fn start_error(e: StartError) -> HttpResponse {
    let status = match &e {
        StartError::UnknownWorkflow(..) => StatusCode::NOT_FOUND,
        StartError::Invalid(_) => StatusCode::BAD_REQUEST,
        StartError::NotRunnable(_) => StatusCode::CONFLICT,
        StartError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    text_response(status, e.to_string())
}
