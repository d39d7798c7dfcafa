//! The host's own HTTP API under `/_wasmfn/`: producing to queues and inspecting them.
//!
//! | request | does |
//! |---|---|
//! | `GET /_wasmfn/queues` | every queue with its waiting and in-flight counts |
//! | `POST /_wasmfn/queues/NAME/messages` | enqueue the body as one message; attributes from `x-wasmfn-attr-KEY` headers, delay from `x-wasmfn-delay-ms` |
//! | `POST /_wasmfn/queues/NAME/batch` | enqueue `{"messages": [{"body" \| "bodyBase64", "attributes", "delayMs"}]}` all or nothing |
//! | `GET /_wasmfn/queues/NAME/messages?limit=N` | read messages without consuming them (dead-letter queues) |
//! | `POST /_wasmfn/queues/NAME/redrive?to=QUEUE` | move every message of NAME (a dead-letter queue) back to QUEUE |
//! | `GET /_wasmfn/schedules` | every schedule with its next firing |
//! | `POST /_wasmfn/streams/NAME/records` | append `{"events": [...]}` (the `wasmfn invoke` stream form) to a stream's feed |
//! | `GET /_wasmfn/streams/NAME` | records not yet delivered |
//! | `GET /_wasmfn/streams/NAME/parked` | records set aside after repeated failures |
//! | `POST /_wasmfn/schedules/NAME/trigger` | run a schedule once now and answer with its result |
//!
//! A `202` means the messages are durably stored. The event bus, topic and workflow routes are
//! in [`routing`].

mod routing;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::http_invoke::{text_response, HttpResponse};
use crate::queue::dispatcher::SendError;
use crate::queue::NewMessage;

/// Paths under this prefix belong to the host, never to functions.
pub const PREFIX: &str = "/_wasmfn/";

fn json_response(status: StatusCode, value: serde_json::Value) -> HttpResponse {
    let mut r = text_response(status, value.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BatchJson {
    messages: Vec<MessageJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MessageJson {
    body: Option<String>,
    body_base64: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    delay_ms: u64,
}

pub(crate) async fn handle<B>(app: &App, request: http::Request<B>) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let path = request
        .uri()
        .path()
        .trim_start_matches(PREFIX)
        .trim_end_matches('/')
        .to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let parts: Vec<&str> = path.split('/').collect();
    if matches!(
        parts.first(),
        Some(&("events" | "rules" | "topics" | "workflows" | "executions"))
    ) {
        let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let (head, body) = request.into_parts();
        let body = body.map_err(|e| -> wasmtime_wasi_http::Error { e.into() });
        let body = match Limited::new(body, 64 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return text_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "host API requests are limited to 64 MiB",
                )
            }
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        return routing::handle(app, &head.method, &parts, &query, &head.headers, body).await;
    }
    if parts.first() == Some(&"schedules") {
        return schedules(app, request.method(), &parts).await;
    }
    if parts.first() == Some(&"streams") {
        let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let method = request.method().clone();
        let body = request
            .into_body()
            .map_err(|e| -> wasmtime_wasi_http::Error { e.into() });
        let body = match Limited::new(body, 64 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return text_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "stream records are limited to 64 MiB per request",
                )
            }
        };
        return streams(app, &method, &parts, &body);
    }
    let Some(queues) = app.queues() else {
        return text_response(
            StatusCode::NOT_FOUND,
            "no queues are declared: add [queues.NAME] to wasmfn.toml",
        );
    };
    match (request.method().clone(), parts.as_slice()) {
        (Method::GET, ["queues"]) => match queues.stats().await {
            Ok(stats) => {
                let list: Vec<_> = stats
                    .iter()
                    .map(|s| {
                        let c = queues.config(&s.name);
                        json!({
                            "name": s.name, "waiting": s.waiting, "inFlight": s.in_flight,
                            "function": c.and_then(|c| c.function.clone()),
                            "deadLetterQueue": c.map(|c| c.dead_letter_queue.clone()).filter(|d| !d.is_empty()),
                        })
                    })
                    .collect();
                json_response(StatusCode::OK, json!({ "queues": list }))
            }
            Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        },
        (Method::POST, ["queues", name, kind @ ("messages" | "batch")]) => {
            let Some(config) = queues.config(name) else {
                return send_error(SendError::UnknownQueue(
                    name.to_string(),
                    queues.configs().map(|c| c.name.clone()).collect(),
                ));
            };
            // Whole batches may hold many messages; a single body is capped at the queue's limit.
            let limit = if *kind == "batch" {
                64 << 20
            } else {
                config.max_message_bytes + 1
            };
            let headers = request.headers().clone();
            let body = request
                .into_body()
                .map_err(|e| -> wasmtime_wasi_http::Error { e.into() });
            let body = match Limited::new(body, limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return send_error(SendError::TooLarge {
                        queue: name.to_string(),
                        size: limit,
                        limit: config.max_message_bytes,
                    })
                }
            };
            let messages = if *kind == "messages" {
                let attributes = header_attributes(&headers);
                let delay_ms = headers
                    .get("x-wasmfn-delay-ms")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                vec![NewMessage {
                    body: body.to_vec(),
                    attributes,
                    delay: Duration::from_millis(delay_ms),
                }]
            } else {
                match parse_batch(&body) {
                    Ok(m) => m,
                    Err(e) => {
                        return text_response(
                            StatusCode::BAD_REQUEST,
                            format!("malformed batch: {e}"),
                        )
                    }
                }
            };
            match queues.send(name, messages).await {
                Ok(ids) => json_response(StatusCode::ACCEPTED, json!({ "ids": ids })),
                Err(e) => send_error(e),
            }
        }
        (Method::GET, ["queues", name, "messages"]) => {
            let limit = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("limit=")?.parse().ok())
                .unwrap_or(100usize);
            match queues.backend().peek(name, limit).await {
                Ok(list) => json_response(StatusCode::OK, json!({ "messages": list })),
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        (Method::POST, ["queues", name, "redrive"]) => {
            let source = queues
                .configs()
                .find(|c| c.dead_letter_queue == *name)
                .map(|c| c.name.clone());
            let to = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("to=").map(str::to_string))
                .or(source);
            let Some(to) = to else {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "`{name}` is no queue's dead-letter queue; say where to with ?to=QUEUE"
                    ),
                );
            };
            match queues.backend().redrive(name, &to).await {
                Ok(n) => json_response(StatusCode::OK, json!({ "moved": n, "to": to })),
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            format!("no host API at `{PREFIX}{path}` (see the README's queue API)"),
        ),
    }
}

async fn schedules(app: &App, method: &Method, parts: &[&str]) -> HttpResponse {
    let Some(scheduler) = app.scheduler() else {
        return text_response(
            StatusCode::NOT_FOUND,
            "no schedules are declared: add [schedules.NAME] to wasmfn.toml",
        );
    };
    match (method, parts) {
        (&Method::GET, ["schedules"]) => {
            let now = chrono::Utc::now();
            let list: Vec<_> = scheduler
                .schedules()
                .map(|s| {
                    json!({
                        "name": s.name, "function": s.function, "expression": s.expression_text,
                        "next": s.expression.next_after(now).map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            json_response(StatusCode::OK, json!({ "schedules": list }))
        }
        (&Method::POST, ["schedules", name, "trigger"]) => match scheduler.trigger(app, name).await
        {
            None => text_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no schedule named `{name}`; declared: {}",
                    scheduler
                        .schedules()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(Ok(Ok(()))) => json_response(StatusCode::OK, json!({ "ok": true })),
            Some(Ok(Err(reason))) => {
                json_response(StatusCode::OK, json!({ "ok": false, "error": reason }))
            }
            Some(Err(e)) => text_response(e.http_status(), e.to_string()),
        },
        _ => text_response(
            StatusCode::NOT_FOUND,
            "schedule API: GET /_wasmfn/schedules, POST /_wasmfn/schedules/NAME/trigger",
        ),
    }
}

fn streams(app: &App, method: &Method, parts: &[String], body: &[u8]) -> HttpResponse {
    let Some(feed) = app.streams() else {
        return text_response(
            StatusCode::NOT_FOUND,
            "no streams are declared: add [streams.NAME] to wasmfn.toml",
        );
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["streams", name, "records"]) => {
            if !feed.has_stream(name) {
                return text_response(StatusCode::NOT_FOUND, format!("no stream named `{name}`: declare it as [streams.{name}]"));
            }
            let events = match std::str::from_utf8(body).map_err(|e| anyhow::anyhow!(e)).and_then(crate::event_json::parse_stream_events) {
                Ok(e) => e,
                Err(e) => return text_response(StatusCode::BAD_REQUEST, format!("malformed stream records: {e:#}")),
            };
            match feed.append(name, events) {
                Ok(seqs) => json_response(StatusCode::ACCEPTED, json!({ "sequences": seqs })),
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        (&Method::GET, ["streams", name, "parked"]) => match feed.parked(name) {
            Ok(list) => json_response(StatusCode::OK, json!({ "parked": list })),
            Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        },
        (&Method::GET, ["streams", name]) => match feed.lag(name) {
            Ok(lag) => json_response(StatusCode::OK, json!({ "name": name, "undelivered": lag })),
            Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        },
        _ => text_response(StatusCode::NOT_FOUND, "stream API: POST /_wasmfn/streams/NAME/records, GET /_wasmfn/streams/NAME, GET /_wasmfn/streams/NAME/parked"),
    }
}

/// Message attributes sent as `x-wasmfn-attr-NAME` headers.
fn header_attributes(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("x-wasmfn-attr-")?;
            Some((key.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect()
}

fn parse_batch(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let batch: BatchJson = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    batch
        .messages
        .into_iter()
        .map(|m| {
            let body = match (m.body, m.body_base64) {
                (Some(t), None) => t.into_bytes(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("bodyBase64: {e}"))?,
                (None, None) => Vec::new(),
                (Some(_), Some(_)) => return Err("give either `body` or `bodyBase64`".into()),
            };
            Ok(NewMessage {
                body,
                attributes: m.attributes.into_iter().collect(),
                delay: Duration::from_millis(m.delay_ms),
            })
        })
        .collect()
}

fn send_error(e: SendError) -> HttpResponse {
    let status = match &e {
        SendError::UnknownQueue(..) => StatusCode::NOT_FOUND,
        SendError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        SendError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    text_response(status, e.to_string())
}
