//! The host's own HTTP API under `/_wasmfn/`: producing to queues and inspecting them. It is
//! served only by the admin listener ([`crate::admin`]), whose guard has checked the caller.
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
//! | `GET /_wasmfn/streams` | every stream with its lag, parked records and checkpoint |
//! | `GET /_wasmfn/streams/NAME/parked` | records set aside after repeated failures, with their events |
//! | `POST /_wasmfn/streams/NAME/parked/SEQ/redeliver` | append a parked record's event again and unpark it |
//! | `POST /_wasmfn/schedules/NAME/trigger` | run a schedule once now and answer with its result |
//!
//! A `202` means the messages are durably stored. The function routes are in [`functions`],
//! the event bus and topic routes in [`events`], the workflow routes in [`workflows`]. Each group exists when its feature is
//! part of the build.

#[cfg(feature = "events")]
mod events;
mod functions;
#[cfg(feature = "queues")]
mod queues;
#[cfg(feature = "schedules")]
mod schedules;
#[cfg(feature = "streams")]
mod streams;
#[cfg(feature = "workflows")]
mod workflows;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Limited};
use wasmfn_host_core::{text_response, HttpResponse, RequestBody};

use crate::app::App;

/// Paths under this prefix belong to the host, never to functions.
pub const PREFIX: &str = "/_wasmfn/";

/// The answer to an unknown path of the event bus and workflow APIs.
#[allow(dead_code)] // unused in builds without events and workflows
const ROUTING_HELP: &str = "see the README's host API: /_wasmfn/events, /_wasmfn/topics/NAME/messages, /_wasmfn/workflows/NAME/executions, /_wasmfn/executions/ID";

/// Most items one listing returns (`?limit=` asks for fewer).
#[allow(dead_code)] // unused in builds without queues and workflows
const MAX_LIST: usize = 1000;

/// Largest request body the host API reads whole.
const MAX_BODY: usize = 64 << 20;

#[allow(dead_code)] // unused in builds without any of the API's groups
fn json_response(status: StatusCode, value: serde_json::Value) -> HttpResponse {
    let mut r = text_response(status, value.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) async fn handle<B>(app: &App, request: http::Request<B>) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let request = request.map(|b| b.map_err(Into::into).boxed_unsync());
    let path = request
        .uri()
        .path()
        .trim_start_matches(PREFIX)
        .trim_end_matches('/')
        .to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let parts: Vec<&str> = path.split('/').collect();
    let _ = (&app, &query);
    match parts.first() {
        Some(&"functions") => {
            let (head, body) = request.into_parts();
            match read_body(body, "host API requests are limited to 64 MiB").await {
                Ok(body) => functions::handle(app, &head.method, &parts, body).await,
                Err(too_large) => too_large,
            }
        }
        #[cfg(feature = "events")]
        Some(&("events" | "rules" | "topics")) => {
            let (head, body) = request.into_parts();
            match read_body(body, "host API requests are limited to 64 MiB").await {
                Ok(body) => events::handle(app, &head.method, &parts, &head.headers, body).await,
                Err(too_large) => too_large,
            }
        }
        #[cfg(feature = "workflows")]
        Some(&("workflows" | "executions")) => {
            let (head, body) = request.into_parts();
            match read_body(body, "host API requests are limited to 64 MiB").await {
                Ok(body) => workflows::handle(app, &head.method, &parts, &query, body).await,
                Err(too_large) => too_large,
            }
        }
        #[cfg(feature = "schedules")]
        Some(&"schedules") => schedules::schedules(app, request.method(), &parts).await,
        #[cfg(feature = "streams")]
        Some(&"streams") => {
            let (head, body) = request.into_parts();
            match read_body(body, "stream records are limited to 64 MiB per request").await {
                Ok(body) => streams::streams(app, &head.method, &parts, &body),
                Err(too_large) => too_large,
            }
        }
        #[cfg(feature = "queues")]
        _ => queues::handle(app, request, &parts, &path, &query).await,
        #[cfg(not(feature = "queues"))]
        _ => text_response(
            StatusCode::NOT_FOUND,
            format!("no host API at `{PREFIX}{path}` in this build of wasmfn"),
        ),
    }
}

/// The whole body, or the `413` answering a larger one.
async fn read_body(body: RequestBody, too_large: &str) -> Result<Bytes, HttpResponse> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(text_response(StatusCode::PAYLOAD_TOO_LARGE, too_large)),
    }
}

/// Message attributes sent as `x-wasmfn-attr-NAME` headers.
#[allow(dead_code)] // unused in builds without queues and topics
fn header_attributes(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("x-wasmfn-attr-")?;
            Some((key.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect()
}
