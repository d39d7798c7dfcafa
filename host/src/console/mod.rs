//! The web console at `/ui/` on the admin listener: a few static files compiled into the
//! binary (no CDN, works offline) that read the same host API (`/_wasmfn/...`) as the CLI.
//!
//! The files hold no data and no secret, so they are served without the token (the listener's
//! `Host` and cross-site checks still apply); every request the page makes for data carries
//! the token as a bearer header, which a page on another site cannot add, so there is no
//! cookie to forge. `wasmfn serve` prints the console's address with the token in the URL's
//! fragment, which browsers never send; the page moves it into the tab's session storage.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    VARY,
};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use wasmfn_host_core::{text_response, HttpResponse};

/// Where the console is served.
pub const PATH: &str = "/ui/";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("logs.js", JS),
    asset!("functions.js", JS),
    asset!("queues.js", JS),
    asset!("triggers.js", JS),
    asset!("workflows.js", JS),
    asset!("graph.js", JS),
];

/// Scripts and styles from this origin only, no inline code, no framing, data requests only
/// to this origin: a guest's log line that looks like HTML stays text.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The gzip form and entity tag of each asset, made on first request.
struct Prepared {
    gzip: Bytes,
    etag: HeaderValue,
}

fn prepared(index: usize) -> &'static Prepared {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    &PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                use std::hash::{Hash as _, Hasher as _};
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(a.body.as_bytes())
                    .expect("writing to a Vec cannot fail");
                let mut h = std::collections::hash_map::DefaultHasher::new();
                a.body.hash(&mut h);
                Prepared {
                    gzip: Bytes::from(gz.finish().expect("writing to a Vec cannot fail")),
                    etag: HeaderValue::try_from(format!("\"{:016x}\"", h.finish()))
                        .expect("hex is a valid header value"),
                }
            })
            .collect()
    })[index]
}

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == "/ui" || path.starts_with(PATH)
}

/// Answer a request for a console path.
pub fn respond(head: &http::request::Parts) -> HttpResponse {
    if head.method != Method::GET && head.method != Method::HEAD {
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "the console's files are read with GET",
        );
    }
    let path = head.uri.path();
    if path == "/ui" {
        let mut r = text_response(StatusCode::PERMANENT_REDIRECT, "the console is at /ui/");
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static(PATH));
        return r;
    }
    let name = match &path[PATH.len()..] {
        "" => "index.html",
        n => n,
    };
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return text_response(
            StatusCode::NOT_FOUND,
            format!("the console has no file `{name}`; open {PATH}"),
        );
    };
    let asset = &ASSETS[index];
    let prepared = prepared(index);
    let mut builder = http::Response::builder()
        .header(CONTENT_TYPE, asset.content_type)
        // Revalidated each load (a new binary brings new files), answered 304 when unchanged.
        .header(CACHE_CONTROL, "no-cache")
        .header(ETAG, prepared.etag.clone())
        .header(VARY, "accept-encoding")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cross-origin-opener-policy", "same-origin");
    if head.headers.get(IF_NONE_MATCH) == Some(&prepared.etag) {
        let body = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync();
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(body)
            .expect("static response parts are valid");
    }
    let gzip = head
        .headers
        .get(ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let bytes = if gzip {
        builder = builder.header(CONTENT_ENCODING, "gzip");
        prepared.gzip.clone()
    } else {
        Bytes::from_static(asset.body.as_bytes())
    };
    let body = Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync();
    builder.body(body).expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let mut b = http::Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        respond(&b.body(()).unwrap().into_parts().0)
    }

    #[test]
    fn serves_every_asset_and_redirects_the_bare_path() {
        assert_eq!(get("/ui", &[]).status(), StatusCode::PERMANENT_REDIRECT);
        let index = get("/ui/", &[]);
        assert_eq!(index.status(), StatusCode::OK);
        assert!(index.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        for a in ASSETS {
            let r = get(
                &format!("/ui/{}", a.name),
                &[("accept-encoding", "gzip, br")],
            );
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
            let tag = r.headers()[ETAG].to_str().unwrap().to_string();
            let again = get(&format!("/ui/{}", a.name), &[("if-none-match", &tag)]);
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
        assert_eq!(get("/ui/secret.txt", &[]).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get("/ui/../admin-token", &[]).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit("\"./").next().unwrap().trim_end_matches("\";");
                assert!(
                    ASSETS.iter().any(|x| x.name == from),
                    "{} imports {from}, which is not in ASSETS",
                    a.name
                );
            }
        }
    }
}
