//! Example: configuration and secrets through `wasi:config`.
//!
//! Answers `{"greeting": ...}` from the `greeting` config value, but only to callers presenting
//! `Authorization: Bearer <api-token>`, where `api-token` is a secret (from a file in
//! development, an environment variable in production: see `wasmfn.toml`). The secret is
//! compared, never echoed; the host never logs it.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package example:config-demo;
        world config-demo { import wasi:config/store@0.2.0-rc.1; }
    ",
    world: "example:config-demo/config-demo",
    generate_all,
});

use std::io::Write as _;

use crate::wasi::config::store::get;
use ::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct ConfigDemo;

/// Compare without an early exit, so response time does not reveal how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ::wasi::exports::http::incoming_handler::Guest for ConfigDemo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let presented = request.headers().get("authorization").first().map(|v| {
            String::from_utf8_lossy(v)
                .trim_start_matches("Bearer ")
                .to_string()
        });
        let (status, body) = match (get("api-token"), presented) {
            (Ok(Some(token)), Some(p)) if same(token.as_bytes(), p.as_bytes()) => {
                let greeting = get("greeting")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "hello".into());
                (200, format!("{{\"greeting\":\"{greeting}\"}}"))
            }
            (Ok(None), _) => (500, "{\"error\":\"api-token is not configured\"}".into()),
            _ => (401, "{\"error\":\"missing or wrong bearer token\"}".into()),
        };
        let headers =
            Fields::from_list(&[("content-type".into(), b"application/json".to_vec())]).unwrap();
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).unwrap();
        let body_out = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body_out.write().unwrap();
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
        drop(stream);
        OutgoingBody::finish(body_out, None).unwrap();
    }
}

::wasi::http::proxy::export!(ConfigDemo with_types_in ::wasi);
