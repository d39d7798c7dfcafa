//! The smallest useful HTTP function: answers every request with a greeting.
//!
//! Written against the standard `wasi:http/proxy` world only, so the same component also runs
//! under `wasmtime serve` and Spin.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("static header is valid");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let mut out = body.write().expect("stream is taken once");
        let _ = write!(out, "Hello from wasmfn! You asked for {path}\n");
        let _ = out.flush();
        drop(out);
        OutgoingBody::finish(body, None).expect("body finishes once");
    }
}

wasi::http::proxy::export!(Hello);
