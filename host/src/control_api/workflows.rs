//! The host API for workflows.
//!
//! | request | does |
//! |---|---|
//! | `GET /_wasmfn/workflows` | every workflow |
//! | `POST /_wasmfn/workflows/NAME/executions?name=N&wait=SECONDS` | start with the body as input; `201` (`200` when `name` existed), or the finished execution with `wait` |
//! | `GET /_wasmfn/workflows/NAME/executions?limit=N` | the newest executions |
//! | `GET /_wasmfn/executions/ID` | one execution with its history (each step's input, output, error, timing) |

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use wasmfn_host_core::{text_response, HttpResponse};
use wasmfn_host_orchestration::workflow::StartError;

use super::json_response;
use crate::app::App;

fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Handle `parts` (the path under `/_wasmfn/`) of this API.
pub(super) async fn handle(
    app: &App,
    method: &Method,
    parts: &[&str],
    query: &str,
    body: Bytes,
) -> HttpResponse {
    match (method, parts) {
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
            let input = if body.iter().all(u8::is_ascii_whitespace) {
                "{}".to_string()
            } else {
                String::from_utf8_lossy(&body).into_owned()
            };
            let started = workflows
                .start_execution(name, &input, query_param(query, "name"))
                .await;
            let (id, created) = match started {
                Ok(s) => s,
                Err(e) => return start_error(e),
            };
            // NaN and infinities are no number of seconds (and would panic in `Duration`).
            let wait = query_param(query, "wait")
                .and_then(|w| w.parse::<f64>().ok())
                .filter(|w| w.is_finite());
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            match wait {
                None => json_response(status, json!({ "executionId": id, "created": created })),
                Some(secs) => match workflows
                    .wait(&id, Duration::from_secs_f64(secs.clamp(0.0, 3600.0)))
                    .await
                {
                    Ok(Some(e)) => json_response(
                        status,
                        json!({ "executionId": id, "created": created, "execution": e }),
                    ),
                    Ok(None) => {
                        text_response(StatusCode::NOT_FOUND, format!("execution `{id}` vanished"))
                    }
                    Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
                },
            }
        }
        (&Method::GET, ["workflows", name, "executions"]) => {
            let Some(workflows) = app.workflows() else {
                return start_error(StartError::UnknownWorkflow(name.to_string(), Vec::new()));
            };
            let limit = query_param(query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100)
                .min(super::MAX_LIST);
            match workflows.store().list(Some(name), limit).await {
                Ok(list) => json_response(StatusCode::OK, json!({ "executions": list })),
                Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
            }
        }
        (&Method::GET, ["executions", id]) => {
            let Some(workflows) = app.workflows() else {
                return text_response(
                    StatusCode::NOT_FOUND,
                    "no workflows are declared: add [workflows.NAME] to wasmfn.toml",
                );
            };
            let store = workflows.store();
            match (store.get(id).await, store.history(id).await) {
                (Ok(Some(e)), Ok(history)) => json_response(
                    StatusCode::OK,
                    json!({ "execution": e, "history": history }),
                ),
                (Ok(None), _) => {
                    text_response(StatusCode::NOT_FOUND, format!("no execution `{id}`"))
                }
                (Err(e), _) | (_, Err(e)) => {
                    text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))
                }
            }
        }
        _ => text_response(StatusCode::NOT_FOUND, super::ROUTING_HELP),
    }
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
