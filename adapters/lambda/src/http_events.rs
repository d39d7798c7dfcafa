//! API Gateway REST (v1 proxy), HTTP API (v2, also Function URLs) and ALB events to and from
//! `wasi:http` requests and responses.

use anyhow::{Context as _, Result};
use aws_lambda_events::alb::{AlbTargetGroupRequest, AlbTargetGroupResponse};
use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body;
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use serde_json::Value;

/// Which HTTP event shape a request came in, so the response goes back in the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpShape {
    /// API Gateway REST API proxy integration (payload 1.0).
    RestV1,
    /// HTTP API payload 2.0 and Lambda Function URLs.
    HttpV2,
    /// Application Load Balancer target.
    Alb,
}

/// The parts of a request, shape-independent.
pub struct Incoming {
    pub method: http::Method,
    /// Path and query, as sent to the guest.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// ALB and v1 with multi-value headers on: answer with multi-value headers too.
    pub multi_value: bool,
}

fn body_bytes(body: Option<String>, base64: bool) -> Result<Vec<u8>> {
    let body = body.unwrap_or_default();
    if base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .context("the event's body is marked base64 but does not decode")
    } else {
        Ok(body.into_bytes())
    }
}

/// `k=v&k=v2` from (key, value) pairs, percent-encoding what needs it.
fn query_string<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    pairs
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query string from REST/ALB parameters: the multi-value map when present (it has every
/// value), else the single-value one.
fn query_of(single: &query_map::QueryMap, multi: &query_map::QueryMap) -> String {
    if multi.is_empty() {
        query_string(single.iter())
    } else {
        query_string(multi.iter())
    }
}

fn with_query(path: &str, query: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// Merge single- and multi-value headers (multi-value wins: it has every value).
fn merged(single: HeaderMap, multi: HeaderMap) -> HeaderMap {
    if multi.is_empty() {
        return single;
    }
    multi
}

/// Parse an HTTP event of `shape`.
pub fn parse(shape: HttpShape, event: Value) -> Result<Incoming> {
    Ok(match shape {
        HttpShape::RestV1 => {
            let e: ApiGatewayProxyRequest =
                serde_json::from_value(event).context("malformed API Gateway REST event")?;
            let multi = !e.multi_value_query_string_parameters.is_empty()
                || !e.multi_value_headers.is_empty();
            let query = query_of(
                &e.query_string_parameters,
                &e.multi_value_query_string_parameters,
            );
            Incoming {
                method: e.http_method,
                path_and_query: with_query(e.path.as_deref().unwrap_or("/"), &query),
                headers: merged(e.headers, e.multi_value_headers),
                body: body_bytes(e.body, e.is_base64_encoded)?,
                multi_value: multi,
            }
        }
        HttpShape::HttpV2 => {
            let e: ApiGatewayV2httpRequest =
                serde_json::from_value(event).context("malformed HTTP API / Function URL event")?;
            let mut headers = e.headers;
            // Payload 2.0 moves cookies out of the headers; the guest expects them back.
            if let Some(cookies) = e.cookies.filter(|c| !c.is_empty()) {
                if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
                    headers.insert(http::header::COOKIE, v);
                }
            }
            Incoming {
                method: e.request_context.http.method,
                path_and_query: with_query(
                    e.raw_path.as_deref().unwrap_or("/"),
                    e.raw_query_string.as_deref().unwrap_or(""),
                ),
                headers,
                body: body_bytes(e.body, e.is_base64_encoded)?,
                multi_value: false,
            }
        }
        HttpShape::Alb => {
            let e: AlbTargetGroupRequest =
                serde_json::from_value(event).context("malformed ALB event")?;
            let multi = !e.multi_value_headers.is_empty();
            let query = query_of(
                &e.query_string_parameters,
                &e.multi_value_query_string_parameters,
            );
            Incoming {
                method: e.http_method,
                path_and_query: with_query(e.path.as_deref().unwrap_or("/"), &query),
                headers: merged(e.headers, e.multi_value_headers),
                body: body_bytes(e.body, e.is_base64_encoded)?,
                multi_value: multi,
            }
        }
    })
}

/// Text bodies go back as text, anything else base64-encoded (binary responses).
fn response_body(headers: &HeaderMap, body: Vec<u8>) -> (Option<Body>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let textual = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| {
            ct.starts_with("text/")
                || ct.contains("json")
                || ct.contains("xml")
                || ct.contains("javascript")
                || ct.contains("x-www-form-urlencoded")
        });
    match String::from_utf8(body) {
        Ok(text) if textual => (Some(Body::Text(text)), false),
        Ok(text) => (Some(Body::Binary(text.into_bytes())), true),
        Err(e) => (Some(Body::Binary(e.into_bytes())), true),
    }
}

/// One value per header name (joined with `, `), except `set-cookie`, which cannot be joined.
fn single_valued(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in headers.keys() {
        if name == SET_COOKIE {
            if let Some(v) = headers.get(name) {
                out.insert(name.clone(), v.clone());
            }
            continue;
        }
        let joined = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            out.insert(HeaderName::clone(name), v);
        }
    }
    out
}

/// The response event for `shape`.
pub fn respond(
    shape: HttpShape,
    multi_value: bool,
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Value {
    let (body, is_base64_encoded) = response_body(&headers, body);
    let result = match shape {
        HttpShape::RestV1 => {
            let mut r = ApiGatewayProxyResponse::default();
            r.status_code = status.into();
            r.is_base64_encoded = is_base64_encoded;
            r.body = body;
            if multi_value {
                r.multi_value_headers = headers;
            } else {
                r.headers = single_valued(&headers);
            }
            serde_json::to_value(r)
        }
        HttpShape::HttpV2 => {
            let mut r = ApiGatewayV2httpResponse::default();
            r.status_code = status.into();
            r.is_base64_encoded = is_base64_encoded;
            r.body = body;
            // Payload 2.0 returns cookies in their own list; other headers single-valued.
            r.cookies = headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let mut rest = headers;
            rest.remove(SET_COOKIE);
            r.headers = single_valued(&rest);
            serde_json::to_value(r)
        }
        HttpShape::Alb => {
            let mut r = AlbTargetGroupResponse::default();
            r.status_code = status.into();
            r.status_description = Some(format!(
                "{status} {}",
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
            ));
            r.is_base64_encoded = is_base64_encoded;
            r.body = body;
            if multi_value {
                r.multi_value_headers = headers;
            } else {
                r.headers = single_valued(&headers);
            }
            serde_json::to_value(r)
        }
    };
    result.unwrap_or_else(|e| serde_json::json!({"statusCode": 500, "body": e.to_string()}))
}
