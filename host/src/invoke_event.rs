//! One event through one function, as JSON in and JSON out: what `wasmfn invoke` prints and
//! what the admin API's `POST /_wasmfn/functions/NAME/invoke` (the console's Invoke button)
//! answers. The event forms are those of the README's `wasmfn invoke` section.

use anyhow::{Context as _, Result};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use wasmfn_host_core::{event_json, full_body, Function, InvokeError, World};

/// Run `event` (JSON text; `None`: the world's empty event) through `function`. Returns the
/// result as JSON and whether it succeeded. `Err` means the event itself was malformed.
/// A task's context names `execution` as its execution id.
pub async fn invoke_json(
    function: &Function,
    event: Option<&str>,
    execution: &str,
) -> Result<(Value, bool)> {
    Ok(match function.world() {
        World::Http => invoke_http(function, event).await?,
        World::Queue => {
            let batch =
                event_json::parse_queue_batch(event.unwrap_or(r#"{"messages":[{"body":""}]}"#))?;
            match function.invoke_queue(&batch).await {
                Ok(r) => (event_json::queue_result_json(&r), r.is_ok()),
                Err(e) => (error_json(&e), false),
            }
        }
        World::Stream => {
            let events = event_json::parse_stream_events(event.unwrap_or(r#"{"events":[]}"#))?;
            match function.invoke_stream(&events).await {
                Ok(r) => (event_json::stream_result_json(&r), r.is_ok()),
                Err(e) => (error_json(&e), false),
            }
        }
        World::Schedule => {
            let ev = event_json::parse_scheduled_event(event.unwrap_or("{}"))?;
            match function.invoke_schedule(&ev).await {
                Ok(r) => (event_json::schedule_result_json(&r), r.is_ok()),
                Err(e) => (error_json(&e), false),
            }
        }
        World::Task => {
            let input = event.unwrap_or("{}");
            serde_json::from_str::<Value>(input).context("a task's input must be JSON")?;
            let context = wasmfn_host_core::task::TaskContext {
                execution: execution.into(),
                workflow: String::new(),
                state: function.name().to_string(),
                attempt: 1,
            };
            match function.invoke_task(&context, input).await {
                Ok(Ok(output)) => (
                    json!({ "output": serde_json::from_str::<Value>(&output)
                        .unwrap_or(Value::String(output)) }),
                    true,
                ),
                Ok(Err(e)) => (json!({ "error": e.error, "cause": e.cause }), false),
                Err(e) => (error_json(&e), false),
            }
        }
    })
}

/// An example event of `world` for a function called `name`, in the form [`invoke_json`]
/// reads: what the console's Invoke box starts with.
pub fn sample_event(world: World, name: &str) -> Value {
    // An HTTP function's default route is `/<name>`; the others take their world's event.
    match world {
        World::Http => {
            json!({ "method": "GET", "path": format!("/{name}"), "headers": {}, "body": "" })
        }
        World::Queue => json!({
            "queue": name,
            "messages": [{ "body": "{\"hello\":\"world\"}", "attributes": { "source": "console" } }]
        }),
        World::Stream => json!({ "events": [{
            "type": "change", "source": "items", "key": "1", "operation": "insert",
            "newImage": { "id": 1, "name": "example" }
        }] }),
        World::Schedule => json!({ "schedule": name, "expression": "*/5 * * * *" }),
        World::Task => json!({ "orderId": "o-1", "total": 42 }),
    }
}

async fn invoke_http(function: &Function, event: Option<&str>) -> Result<(Value, bool)> {
    let ev: event_json::HttpEvent = match event {
        Some(text) => serde_json::from_str(text).context("not an HTTP event")?,
        None => serde_json::from_value(json!({ "path": format!("/{}", function.name()) }))?,
    };
    let mut request = http::Request::builder()
        .method(ev.method.as_str())
        .uri(format!("http://localhost{}", ev.path));
    for (k, v) in &ev.headers {
        request = request.header(k, v);
    }
    let request = request
        .body(full_body(ev.body_bytes()?))
        .context("invalid HTTP event")?;
    let response = match function.handle_http(request).await {
        Ok(r) => r,
        Err(e) => return Ok((error_json(&e), false)),
    };
    let status = response.status().as_u16();
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response body: {e:?}"))?
        .to_bytes();
    let mut out = json!({ "status": status, "headers": headers });
    match std::str::from_utf8(&body) {
        Ok(text) => out["body"] = json!(text),
        Err(_) => {
            out["bodyBase64"] = json!(base64::engine::general_purpose::STANDARD.encode(&body))
        }
    }
    Ok((out, status < 500))
}

fn error_json(e: &InvokeError) -> Value {
    json!({ "errorType": e.kind(), "errorMessage": e.to_string() })
}
