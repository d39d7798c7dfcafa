//! `/_wasmfn/streams`: listing streams, appending records to one, inspecting its progress and
//! its parked records, and re-delivering a parked record.

use http::{Method, StatusCode};
use serde_json::json;
use wasmfn_host_core::{text_response, HttpResponse};

use super::json_response;
use crate::app::App;

pub(super) fn streams(app: &App, method: &Method, parts: &[&str], body: &[u8]) -> HttpResponse {
    // A listing of none is an empty list (as rules and topics are), not an error.
    if method == Method::GET && parts == ["streams"] && app.streams().is_none() {
        return json_response(StatusCode::OK, json!({ "streams": [] }));
    }
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
        (&Method::GET, ["streams"]) => {
            let mut list = Vec::new();
            for c in feed.configs() {
                let (backlog, checkpoint) = match (feed.backlog(&c.name), feed.checkpoint(&c.name)) {
                    (Ok(b), Ok(c)) => (b, c),
                    (Err(e), _) | (_, Err(e)) => return text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
                };
                list.push(json!({
                    "name": c.name, "function": c.function, "batchSize": c.batch_size,
                    "undelivered": backlog.records,
                    "oldestAgeSeconds": backlog.oldest_age.map(|a| a.as_secs_f64()),
                    "parked": backlog.parked, "checkpoint": checkpoint,
                }));
            }
            json_response(StatusCode::OK, json!({ "streams": list }))
        }
        (&Method::POST, ["streams", name, "parked", seq, "redeliver"]) => match feed.redeliver(name, seq) {
            Ok(Some(new)) => json_response(StatusCode::ACCEPTED, json!({ "sequence": new })),
            Ok(None) => text_response(StatusCode::NOT_FOUND, format!("stream `{name}` has no parked record {seq}; GET /_wasmfn/streams/{name}/parked lists them")),
            Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        },
        (&Method::GET, ["streams", name, "parked"]) => match feed.parked_records(name) {
            Ok(list) => json_response(StatusCode::OK, json!({ "parked": list })),
            Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        },
        (&Method::GET, ["streams", name]) => match feed.lag(name) {
            Ok(lag) => json_response(StatusCode::OK, json!({ "name": name, "undelivered": lag })),
            Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        },
        _ => text_response(StatusCode::NOT_FOUND, "stream API: GET /_wasmfn/streams, POST /_wasmfn/streams/NAME/records, GET /_wasmfn/streams/NAME, GET /_wasmfn/streams/NAME/parked, POST /_wasmfn/streams/NAME/parked/SEQ/redeliver"),
    }
}
