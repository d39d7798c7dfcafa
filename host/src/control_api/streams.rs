//! `/_wasmfn/streams`: appending records to a stream and inspecting its progress.

use http::{Method, StatusCode};
use serde_json::json;
use wasmfn_host_core::{text_response, HttpResponse};

use super::json_response;
use crate::app::App;

pub(super) fn streams(app: &App, method: &Method, parts: &[&str], body: &[u8]) -> HttpResponse {
    let Some(feed) = app.streams() else {
        return text_response(
            StatusCode::NOT_FOUND,
            "no streams are declared: add [streams.NAME] to wasmfn.toml",
        );
    };
    match (method, parts) {
        (&Method::POST, ["streams", name, "records"]) => {
            if !feed.has_stream(name) {
                return text_response(StatusCode::NOT_FOUND, format!("no stream named `{name}`: declare it as [streams.{name}]"));
            }
            let events = match std::str::from_utf8(body).map_err(|e| anyhow::anyhow!(e)).and_then(wasmfn_host_core::event_json::parse_stream_events) {
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
