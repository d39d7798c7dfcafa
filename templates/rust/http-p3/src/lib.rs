//! `{{name}}`: an HTTP function on WASI 0.3 (the standard `wasi:http/handler@0.3`, built with the
//! `wasip3` crate). It echoes the request: the status comes from `?status=NNN` (default 200),
//! request headers named `x-*` come back with `x-method` and `x-path`, and the body (with its
//! trailers) is streamed back. `handle` is an async function: while it awaits, the same instance
//! can serve other requests (`instances = "concurrent"` in wasmfn.toml). Edit it to do real work.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Handler);

struct Handler;

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let mut headers: Vec<(String, Vec<u8>)> = request
            .get_headers()
            .copy_all()
            .into_iter()
            .filter(|(name, _)| name.starts_with("x-"))
            .collect();
        headers.push(("x-method".into(), method_name(&request.get_method()).into_bytes()));
        headers.push(("x-path".into(), path.clone().into_bytes()));
        let headers = Fields::from_list(&headers).map_err(|_| ErrorCode::InternalError(None))?;
        let status = query_param(&path, "status").and_then(|s| s.parse().ok()).unwrap_or(200);

        // The request body, read as it arrives, and its trailers after it.
        let (request_done_tx, request_done_rx) = wit_future::new(|| Ok(()));
        let (mut incoming, incoming_trailers) = Request::consume_body(request, request_done_rx);
        // The response body, written by a task that goes on after `handle` returns.
        let (mut outgoing, body) = wit_stream::new();
        let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body), trailers);
        response.set_status_code(status).map_err(|()| ErrorCode::InternalError(None))?;
        wit_bindgen::spawn_local(async move {
            loop {
                let (result, chunk) = incoming.read(Vec::with_capacity(64 * 1024)).await;
                if !chunk.is_empty() && !outgoing.write_all(chunk).await.is_empty() {
                    return; // the client went away
                }
                if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                    break;
                }
            }
            drop(outgoing);
            let request_trailers = incoming_trailers.await;
            let _ = request_done_tx.write(Ok(())).await;
            let _ = trailers_tx.write(request_trailers).await;
        });
        Ok(response)
    }
}
