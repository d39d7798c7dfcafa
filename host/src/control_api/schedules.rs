//! `/_wasmfn/schedules`: listing schedules (expression in words, next firings, last runs) and
//! running one now.

use http::{Method, StatusCode};
use serde_json::json;
use wasmfn_host_core::{text_response, HttpResponse};

use super::json_response;
use crate::app::App;

pub(super) async fn schedules(app: &App, method: &Method, parts: &[&str]) -> HttpResponse {
    // A listing of none is an empty list (as rules and topics are), not an error.
    if method == Method::GET && parts == ["schedules"] && app.scheduler().is_none() {
        return json_response(StatusCode::OK, json!({ "schedules": [] }));
    }
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
                    let upcoming: Vec<String> = s
                        .expression
                        .next_n(now, 5)
                        .iter()
                        .map(|t| t.to_rfc3339())
                        .collect();
                    json!({
                        "name": s.name, "function": s.function, "expression": s.expression_text,
                        "description": s.expression.describe(),
                        "next": upcoming.first(), "upcoming": upcoming,
                        "overlap": s.overlap, "lastRuns": scheduler.runs(&s.name),
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
