//! `/_wasmfn/queues`: producing to queues and inspecting them.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;
use serde_json::json;
use wasmfn_host_core::{text_response, HttpResponse, RequestBody};
use wasmfn_host_triggers::queue::{NewMessage, SendError};

use super::{header_attributes, json_response, MAX_LIST, PREFIX};
use crate::app::App;

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

pub(super) async fn handle(
    app: &App,
    request: http::Request<RequestBody>,
    parts: &[&str],
    path: &str,
    query: &str,
) -> HttpResponse {
    let Some(queues) = app.queues() else {
        return text_response(
            StatusCode::NOT_FOUND,
            "no queues are declared: add [queues.NAME] to wasmfn.toml",
        );
    };
    match (request.method().clone(), parts) {
        (Method::GET, ["queues"]) => match queues.stats().await {
            Ok(stats) => {
                let list: Vec<_> = stats
                    .iter()
                    .map(|s| {
                        let c = queues.config(&s.name);
                        json!({
                            "name": s.name, "waiting": s.waiting, "inFlight": s.in_flight,
                            "oldestAgeSeconds": s.oldest_age.map(|a| a.as_secs_f64()),
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
            let body = request.into_body();
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
                let delay_ms = match headers.get("x-wasmfn-delay-ms") {
                    None => 0,
                    Some(v) => match v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
                        Some(ms) => ms,
                        None => {
                            return text_response(
                                StatusCode::BAD_REQUEST,
                                "x-wasmfn-delay-ms must be a whole number of milliseconds",
                            )
                        }
                    },
                };
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
                .unwrap_or(100usize)
                .min(MAX_LIST);
            match queues.backend().peek(name, limit).await {
                Ok(list) => json_response(StatusCode::OK, json!({ "messages": list })),
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        (Method::POST, ["queues", name, "redrive"]) => {
            // Only a declared dead-letter queue is drained, and only into a declared queue
            // (by default the one whose dead-letter queue it is): a typo must not move live
            // messages into a queue nobody consumes.
            let Some(source) = queues
                .configs()
                .find(|c| c.function.is_some() && c.dead_letter_queue == *name)
                .map(|c| c.name.clone())
            else {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    format!("`{name}` is no queue's dead-letter queue; only dead-letter queues can be redriven"),
                );
            };
            let to = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("to=").map(str::to_string))
                .unwrap_or(source);
            if to == *name {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    format!("cannot redrive `{name}` into itself"),
                );
            }
            if !queues.configs().any(|c| c.name == to) {
                let declared: Vec<_> = queues.configs().map(|c| c.name.as_str()).collect();
                return text_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "cannot redrive into `{to}`: no such queue is declared (declared: {})",
                        declared.join(", ")
                    ),
                );
            }
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
        SendError::Invalid(_) => StatusCode::BAD_REQUEST,
        SendError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    text_response(status, e.to_string())
}
