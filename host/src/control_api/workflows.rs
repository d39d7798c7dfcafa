//! The host API for workflows.
//!
//! | request | does |
//! |---|---|
//! | `GET /_wasmfn/workflows` | every workflow |
//! | `GET /_wasmfn/workflows/NAME` | one workflow with its definition as a graph (states, edges, Parallel branches) |
//! | `POST /_wasmfn/workflows/NAME/executions?name=N&wait=SECONDS` | start with the body as input; `201` (`200` when `name` existed), or the finished execution with `wait` |
//! | `GET /_wasmfn/workflows/NAME/executions?limit=N&status=S` | the newest executions (of status `RUNNING`, `SUCCEEDED` or `FAILED`) |
//! | `GET /_wasmfn/executions/ID` | one execution with its history (each step's input, output, error, timing) and its Parallel states' branch executions |

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use wasmfn_host_core::{text_response, HttpResponse};
use wasmfn_host_orchestration::workflow::graph::Graph;
use wasmfn_host_orchestration::workflow::{
    branch_id, Execution, StartError, Status, Step, Workflows,
};

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
        (&Method::GET, ["workflows", name]) => {
            let Some(c) = app
                .workflows()
                .and_then(|w| w.configs().find(|c| c.name == *name))
            else {
                return start_error(StartError::UnknownWorkflow(name.to_string(), Vec::new()));
            };
            json_response(
                StatusCode::OK,
                json!({
                    "name": c.name, "comment": c.definition.comment,
                    "graph": Graph::of(&c.definition),
                }),
            )
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
            let status = query_param(query, "status").map(|s| s.to_ascii_uppercase());
            // With a status filter, look further back so that `limit` of that status show.
            let scan = if status.is_some() {
                super::MAX_LIST
            } else {
                limit
            };
            match workflows.store().list(Some(name), scan).await {
                Ok(mut list) => {
                    if let Some(s) = &status {
                        list.retain(|e| e.status.as_str() == s);
                    }
                    list.truncate(limit);
                    json_response(StatusCode::OK, json!({ "executions": list }))
                }
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
                (Ok(Some(e)), Ok(history)) => {
                    let branches = branches(workflows, &e, &history, 0).await;
                    json_response(
                        StatusCode::OK,
                        json!({ "execution": e, "history": history, "branches": branches }),
                    )
                }
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

/// The branch executions of `execution`'s Parallel states, by the step that ran them (its
/// history `seq`; for a running execution, also its next step, which may be a Parallel
/// running now): `{"SEQ": [{"execution",
/// "history", "branches"}, ...]}`. Nested Parallels are followed a few levels deep.
fn branches<'a>(
    workflows: &'a Workflows,
    execution: &'a Execution,
    history: &'a [Step],
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send + 'a>> {
    Box::pin(async move {
        let mut out = serde_json::Map::new();
        if depth > 3 {
            return Value::Object(out);
        }
        let mut seqs: Vec<u64> = history
            .iter()
            .filter(|s| s.kind == "Parallel")
            .map(|s| s.seq)
            .collect();
        // A running execution's next step may be a Parallel whose branches run now.
        if execution.status == Status::Running {
            seqs.push(execution.steps + 1);
        }
        let store = workflows.store();
        for seq in seqs {
            let mut lanes = Vec::new();
            for i in 0..64 {
                let child = branch_id(&execution.id, seq, i);
                let Ok(Some(e)) = store.get(&child).await else {
                    break;
                };
                let Ok(h) = store.history(&child).await else {
                    break;
                };
                let nested = branches(workflows, &e, &h, depth + 1).await;
                lanes.push(json!({ "execution": e, "history": h, "branches": nested }));
            }
            if !lanes.is_empty() {
                out.insert(seq.to_string(), Value::Array(lanes));
            }
        }
        Value::Object(out)
    })
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
