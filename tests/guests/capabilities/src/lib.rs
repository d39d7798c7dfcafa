//! Exposes every platform capability over HTTP so that the integration tests can drive them
//! from outside, on the embedded and the distributed backends alike:
//!
//! - `/caps/kv/STORE/KEY` GET, PUT (`?ttl=MS`), DELETE; `/caps/kv-exists|kv-ttl|kv-persist/STORE/KEY`;
//!   `/caps/kv-incr/STORE/KEY?by=N`; `/caps/kv-cas/STORE/KEY?expect=V|absent` (body: new value);
//!   `/caps/kv-list/STORE?prefix=&cursor=&limit=`; `/caps/kv-keys/STORE` (standard `list-keys`).
//! - `/caps/sql/DB` POST `{"sql", "params"}`; `/caps/sql-batch/DB` POST (statements);
//!   `/caps/sql-tx/DB` POST `{"statements": [...], "end": "commit|rollback|drop|trap"}`.
//! - `/caps/blob/STORE/KEY` PUT (content-type, `x-meta-*`; `?stream=1` uploads through a
//!   body stream), GET (`?offset=&length=`, `?stream=1`), DELETE; `/caps/blob-head/STORE/KEY`;
//!   `/caps/blob-list/STORE?prefix=&cursor=&limit=`.
//! - `/caps/config/KEY` (wasi:config), `/caps/fetch?url=` (outbound HTTP), `/caps/log?msg=`
//!   (the message through wasi:logging, stdout and stderr).
//! - `/caps/bench/STORE?op=none|kv-get|kv-set|sql-get&n=N`: N operations in one invocation
//!   (for `benches/capabilities.rs`).
//!
//! Keys in paths are percent-decoded, so `..%2F` reaches the store as `../`.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:capabilities;
        world capabilities {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasmfn:platform/kv-extensions@0.1.0;
            import wasmfn:platform/sql@0.1.0;
            import wasmfn:platform/blob@0.1.0;
            import wasi:config/store@0.2.0-rc.1;
            import wasi:logging/logging@0.1.0-draft;
        }
    ",
    world: "test:capabilities/capabilities",
    generate_all,
});

mod stores;

use std::io::{Read as _, Write as _};

use ::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// What a route answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply { status, headers: Vec::new(), body: body.into() }
    }

    pub fn json(status: u16, v: serde_json::Value) -> Self {
        Reply::new(status, v.to_string()).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// An interface error as `{"error": KIND, "message": ...}`.
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        Reply::json(status, serde_json::json!({"error": kind, "message": message}))
    }
}

/// The parsed request.
pub struct Request {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Path segments from `from` on, joined with `/` (a key may contain slashes).
    pub fn rest(&self, from: usize) -> String {
        self.segments.get(from..).map(|s| s.join("/")).unwrap_or_default()
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(request: &IncomingRequest) -> Request {
    let pq = request.path_with_query().unwrap_or_default();
    let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
    // Split before decoding so that an encoded `/` stays inside its segment.
    let segments = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    Request { method: request.method(), segments, query, headers, body: Vec::new() }
}

fn route(req: &Request) -> Reply {
    let seg = |i: usize| req.segments.get(i).map(String::as_str).unwrap_or("");
    match seg(1) {
        "config" => match crate::wasi::config::store::get(seg(2)) {
            Ok(Some(v)) => Reply::new(200, v),
            Ok(None) => Reply::new(404, "no such config key"),
            Err(e) => Reply::new(500, format!("{e:?}")),
        },
        "fetch" => fetch(req.param("url").unwrap_or_default()),
        "log" => {
            let msg = req.param("msg").unwrap_or_default();
            use crate::wasi::logging::logging::{log, Level};
            log(Level::Warn, "caps", &format!("structured {msg}"));
            println!("stdout {msg}");
            eprintln!("stderr {msg}");
            Reply::new(200, "logged")
        }
        "kv" | "kv-exists" | "kv-ttl" | "kv-persist" | "kv-incr" | "kv-cas" | "kv-list" | "kv-keys" => {
            stores::kv(req, seg(1), seg(2), &req.rest(3))
        }
        "sql" | "sql-batch" | "sql-tx" => stores::sql(req, seg(1), seg(2)),
        "bench" => stores::bench(req, seg(2)),
        "blob" | "blob-head" | "blob-list" => stores::blob(req, seg(1), seg(2), &req.rest(3)),
        other => Reply::new(404, format!("unknown capability route `{other}`")),
    }
}

/// GET `url` through wasi:http and report the status, or the error the host gave.
fn fetch(url: &str) -> Reply {
    use ::wasi::http::outgoing_handler;
    use ::wasi::http::types::{OutgoingRequest, Scheme};
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", r)) => (Scheme::Http, r),
        Some(("https", r)) => (Scheme::Https, r),
        _ => return Reply::new(400, "url must start with http:// or https://"),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(&format!("/{path}"))).unwrap();
    let pending = match outgoing_handler::handle(request, None) {
        Ok(p) => p,
        Err(e) => return Reply::new(403, format!("refused: {e:?}")),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(resp))) => Reply::new(200, format!("status {}", resp.status())),
        Some(Ok(Err(e))) => Reply::new(403, format!("refused: {e:?}")),
        _ => Reply::new(500, "no response"),
    }
}

struct Capabilities;

impl ::wasi::exports::http::incoming_handler::Guest for Capabilities {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let mut req = parse(&request);
        let incoming = request.consume().unwrap();
        incoming.stream().unwrap().read_to_end(&mut req.body).unwrap();
        let reply = route(&req);
        let headers = Fields::new();
        for (k, v) in &reply.headers {
            headers.append(k, v.as_bytes()).unwrap();
        }
        let response = OutgoingResponse::new(headers);
        response.set_status_code(reply.status).unwrap();
        let out = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let mut stream = out.write().unwrap();
        for chunk in reply.body.chunks(4096) {
            let _ = stream.write_all(chunk);
        }
        let _ = stream.flush();
        drop(stream);
        OutgoingBody::finish(out, None).unwrap();
    }
}

::wasi::http::proxy::export!(Capabilities with_types_in ::wasi);
