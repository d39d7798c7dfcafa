//! `/_wasmfn/functions`: what each function is (world, routes, instance mode, limits,
//! bindings), how it has been doing (rate, error rate, duration percentiles, peak memory), its
//! last invocations, and invoking it once with an event.
//!
//! | request | does |
//! |---|---|
//! | `GET /_wasmfn/functions` | every function with its figures, and the functions that failed to load |
//! | `GET /_wasmfn/functions/NAME` | one function, with its last invocations (newest first) |
//! | `POST /_wasmfn/functions/NAME/invoke` | run the body (a `wasmfn invoke` event) through it once |

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use wasmfn_host_core::recent::quantile;
use wasmfn_host_core::{text_response, Function, HttpResponse, InstanceMode};

use super::json_response;
use crate::app::App;
use crate::manifest::Bindings;

/// The window `invocationsPerMinute` and `errorRate` cover (to the usage history's minute).
const RATE_WINDOW: Duration = Duration::from_secs(60);

pub(super) async fn handle(
    app: &App,
    method: &Method,
    parts: &[&str],
    body: Bytes,
) -> HttpResponse {
    match (method, parts) {
        (&Method::GET, ["functions"]) => {
            let window = RateWindow::now(app);
            let list: Vec<Value> = app
                .functions()
                .map(|f| describe(app, &window, &f, false))
                .collect();
            let failed: Vec<Value> = app
                .load_errors()
                .iter()
                .map(|e| json!({ "name": e.function, "error": e.to_string() }))
                .collect();
            json_response(StatusCode::OK, json!({ "functions": list, "failedToLoad": failed }))
        }
        (&Method::GET, ["functions", name]) => match find(app, name) {
            Ok(f) => json_response(StatusCode::OK, describe(app, &RateWindow::now(app), &f, true)),
            Err(r) => *r,
        },
        (&Method::POST, ["functions", name, "invoke"]) => {
            let f = match find(app, name) {
                Ok(f) => f,
                Err(r) => return *r,
            };
            let event = std::str::from_utf8(&body).ok().filter(|t| !t.trim().is_empty());
            if event.is_none() && !body.iter().all(u8::is_ascii_whitespace) {
                return text_response(StatusCode::BAD_REQUEST, "the event must be UTF-8 JSON");
            }
            match crate::invoke_json(&f, event, "console-invoke").await {
                Ok((result, ok)) => json_response(StatusCode::OK, json!({ "ok": ok, "result": result })),
                Err(e) => text_response(
                    StatusCode::BAD_REQUEST,
                    format!("malformed `{}` event for `{name}`: {e:#}; start from its sampleEvent (GET /_wasmfn/functions/{name})", f.world()),
                ),
            }
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "function API: GET /_wasmfn/functions, GET /_wasmfn/functions/NAME, POST /_wasmfn/functions/NAME/invoke",
        ),
    }
}

/// The function, or the 404 naming the loaded ones.
fn find(app: &App, name: &str) -> Result<Function, Box<HttpResponse>> {
    app.function(name).ok_or_else(|| {
        let names: Vec<String> = app.functions().map(|f| f.name().to_string()).collect();
        Box::new(text_response(
            StatusCode::NOT_FOUND,
            format!("no function named `{name}`; loaded: {}", names.join(", ")),
        ))
    })
}

/// The usage snapshot the rates are counted from, and how long ago it was taken.
struct RateWindow {
    seconds: f64,
    baseline: std::collections::BTreeMap<String, wasmfn_host_core::UsageTotals>,
}

impl RateWindow {
    fn now(app: &App) -> Self {
        let (start, baseline) = app.usage_history.baseline(RATE_WINDOW);
        let seconds = start.elapsed().unwrap_or_default().as_secs_f64();
        Self { seconds, baseline }
    }
}

/// One function as the API shows it; with `recent`, its last invocations too.
fn describe(app: &App, rates: &RateWindow, f: &Function, with_recent: bool) -> Value {
    let name = f.name();
    let limits = f.limits();
    let mode = match f.mode() {
        InstanceMode::Fresh => json!({ "kind": "fresh" }),
        InstanceMode::Reuse(p) => json!({
            "kind": "reuse", "maxUses": p.max_uses,
            "idleTimeoutMs": p.idle_timeout.as_millis() as u64, "prewarm": p.prewarm,
        }),
        InstanceMode::Concurrent(p) => json!({
            "kind": "concurrent", "maxConcurrent": p.max_concurrent, "maxUses": p.max_uses,
            "idleTimeoutMs": p.idle_timeout.as_millis() as u64,
        }),
    };
    let routes: Vec<&str> = app
        .routes()
        .iter()
        .filter(|r| r.function == name)
        .map(|r| r.pattern.as_str())
        .collect();
    let bindings = f.settings().get::<Bindings>().cloned().unwrap_or_default();
    let recent = f.recent_invocations();
    let mut durations: Vec<u64> = recent.iter().map(|r| r.duration_us).collect();
    let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
    let totals = f.usage_totals();
    let window = rates.seconds;
    let earlier = rates.baseline.get(name).copied().unwrap_or_default();
    let (count, failed) = (
        totals.invocations.saturating_sub(earlier.invocations),
        totals.failed.saturating_sub(earlier.failed),
    );
    let mut out = json!({
        "name": name,
        "world": f.world().name(),
        "wasiHttp": f.wasi_http_version(),
        "source": f.source().display().to_string(),
        "mode": mode,
        "limits": {
            "memoryBytes": limits.memory_bytes,
            "timeoutMs": limits.timeout.as_millis() as u64,
            "maxConcurrency": limits.max_concurrency,
            "maxRequestBodyBytes": limits.max_request_body,
        },
        "routes": routes,
        "bindings": bindings,
        "idleInstances": f.idle_instances(),
        "stats": {
            "windowSeconds": window,
            "invocationsPerMinute": if window >= 1.0 { Some(count as f64 * 60.0 / window) } else { None },
            "errorRate": (count > 0).then(|| failed as f64 / count as f64),
            "p50Ms": ms(quantile(&mut durations, 0.5)),
            "p99Ms": ms(quantile(&mut durations, 0.99)),
            "percentileOf": durations.len(),
            "peakMemoryBytes": totals.peak_memory,
            "total": totals,
        },
        "sampleEvent": crate::sample_event(f.world(), name),
    });
    if with_recent {
        out["recent"] = serde_json::to_value(&recent).unwrap_or_default();
    }
    out
}
