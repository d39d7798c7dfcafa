//! `{{name}}`: an HTTP function (the standard `wasi:http` incoming handler). It echoes the request:
//! the status comes from `?status=NNN` (default 200), request headers named `x-*` come back
//! with `x-method` and `x-path`, and the body is streamed back. Edit `handle` to do real work.

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

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

impl wasi::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let mut headers: Vec<(String, Vec<u8>)> = request
            .headers()
            .entries()
            .into_iter()
            .filter(|(name, _)| name.starts_with("x-"))
            .collect();
        headers.push(("x-method".into(), method_name(&request.method()).into_bytes()));
        headers.push(("x-path".into(), path.clone().into_bytes()));
        let response = OutgoingResponse::new(Fields::from_list(&headers).unwrap());
        let status = query_param(&path, "status").and_then(|s| s.parse().ok()).unwrap_or(200);
        response.set_status_code(status).unwrap();
        let out_body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));

        let in_body = request.consume().unwrap();
        let input = in_body.stream().unwrap();
        let output = out_body.write().unwrap();
        loop {
            match output.blocking_splice(&input, 1 << 20) {
                Ok(_) => {}
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => panic!("echo failed: {}", e.to_debug_string()),
            }
        }
        output.blocking_flush().unwrap();
        drop(input);
        drop(output);
        let _ = IncomingBody::finish(in_body);
        OutgoingBody::finish(out_body, None).unwrap();
    }
}

wasi::http::proxy::export!(Handler);
