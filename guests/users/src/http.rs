//! The little HTTP layer of the example: parse a `wasi:http` request, write a response with the
//! CORS headers every answer carries.

use std::io::{Read as _, Write as _};

use ::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// A request, read whole (bodies here are small JSON documents or one avatar).
pub struct Request {
    pub method: Method,
    /// Path segments after the function's route (`/users/42/avatar` → `["42", "avatar"]`).
    pub segments: Vec<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn read(request: IncomingRequest) -> Request {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .skip(1) // the route prefix, `users`
            .map(str::to_string)
            .collect();
        let content_type = request
            .headers()
            .get("content-type")
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let method = request.method();
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume() {
            if let Ok(mut stream) = incoming.stream() {
                let _ = stream.read_to_end(&mut body);
            }
        }
        Request {
            method,
            segments,
            content_type,
            body,
        }
    }
}

/// A response to send.
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "text/plain".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn send(self, out: ResponseOutparam) {
        let headers = Fields::new();
        let set = |k: &str, v: &str| {
            let _ = headers.append(k, v.as_bytes());
        };
        set("content-type", &self.content_type);
        set("access-control-allow-origin", "*");
        set(
            "access-control-allow-methods",
            "GET, POST, PUT, DELETE, OPTIONS",
        );
        set(
            "access-control-allow-headers",
            "Content-Type, Authorization",
        );
        for (k, v) in &self.headers {
            set(k, v);
        }
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(self.status);
        let body = response.body().expect("response body");
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body.write().expect("body stream");
        for chunk in self.body.chunks(4096) {
            let _ = stream.write_all(chunk);
        }
        let _ = stream.flush();
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}
