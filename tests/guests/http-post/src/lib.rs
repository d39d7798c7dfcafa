//! A blocking HTTP POST over `wasi:http/outgoing-handler`, shared by the recorder test guests
//! (they report what they handled to a collector outside the host).

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

/// POST `body` to `url` (`http://host:port/path`); an error unless the answer is 2xx.
pub fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("collector must be an http:// URL")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let headers = Fields::from_list(&[(
        "content-length".to_string(),
        body.len().to_string().into_bytes(),
    )])
    .map_err(|e| format!("{e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|_| "method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|_| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|_| "authority")?;
    request
        .set_path_with_query(Some(&format!("/{}", path.trim_start_matches('/'))))
        .map_err(|_| "path")?;
    let out = request.body().map_err(|_| "body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    {
        let stream = out.write().map_err(|_| "stream")?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    OutgoingBody::finish(out, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    match response.status() {
        200..=299 => Ok(()),
        s => Err(format!("collector answered {s}")),
    }
}
