//! Who may call the admin API: the checks every admin request passes before it is routed.
//!
//! On TCP: the request names this listener in `Host` (DNS rebinding gives a foreign name), is
//! not a cross-site browser request (`Origin`, `Sec-Fetch-Site`), and carries the bearer token,
//! compared in constant time. On a Unix socket the kernel vouches for the peer (its uid must
//! be ours), so no token is asked for.

use std::net::SocketAddr;

use http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use subtle::ConstantTimeEq as _;
use wasmfn_host_core::{text_response, HttpResponse};

/// The checks of one admin listener.
#[derive(Clone)]
pub struct AdminGuard {
    /// `None` on a Unix socket.
    token: Option<String>,
    /// The `Host` values this listener answers to, lowercase.
    hosts: Vec<String>,
}

impl AdminGuard {
    /// A TCP listener bound to `bound`, answering to loopback names, the bound address and
    /// `extra_hosts` (`NAME` or `NAME:PORT`).
    pub fn tcp(token: String, bound: SocketAddr, extra_hosts: &[String]) -> Self {
        let port = bound.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            bound.to_string(),
        ];
        for h in extra_hosts {
            let h = h.to_ascii_lowercase();
            hosts.push(if h.contains(':') && !h.ends_with(']') {
                h
            } else {
                format!("{h}:{port}")
            });
        }
        hosts.sort();
        hosts.dedup();
        Self {
            token: Some(token),
            hosts,
        }
    }

    /// A Unix socket listener: the peer's uid was checked when it connected.
    pub fn unix() -> Self {
        Self {
            token: None,
            hosts: Vec::new(),
        }
    }

    /// The bearer token a TCP listener asks for.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `Ok` when the request may reach the admin API, else the answer to send.
    pub fn check(&self, head: &http::request::Parts) -> Result<(), Refused> {
        self.check_page(head)?;
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = head
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(Refused {
                status: StatusCode::UNAUTHORIZED,
                text: "the admin API needs `Authorization: Bearer TOKEN`; the token is in the state folder's `admin-token` (or WASMFN_ADMIN_TOKEN), and the wasmfn CLI sends it itself".into(),
                challenge: true,
            });
        };
        if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
            return Err(Refused {
                status: StatusCode::UNAUTHORIZED,
                text: "wrong admin token".into(),
                challenge: false,
            });
        }
        Ok(())
    }

    /// The checks short of the token, for the console's static files (which hold no data):
    /// not a cross-site browser request, and on TCP a `Host` naming this listener.
    pub fn check_page(&self, head: &http::request::Parts) -> Result<(), Refused> {
        let refuse = |status, text: String| {
            Err(Refused {
                status,
                text,
                challenge: false,
            })
        };
        if let Some(site) = head.headers.get("sec-fetch-site") {
            if !matches!(site.as_bytes(), b"same-origin" | b"none") {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "the admin API refuses cross-site browser requests".into(),
                );
            }
        }
        if let Some(origin) = head.headers.get(ORIGIN) {
            let own = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|host| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)));
            if !own {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "the admin API refuses requests from other origins (Origin: {})",
                        String::from_utf8_lossy(origin.as_bytes())
                    ),
                );
            }
        }
        if self.token.is_none() {
            return Ok(());
        }
        // HTTP/1.1 sends `Host`; HTTP/2 the `:authority` that hyper puts in the URI.
        let host = head
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| head.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default();
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host `{host}` is not this admin listener ({}); connect by one of those names or add yours with --admin-host",
                    self.hosts.join(", ")
                ),
            );
        }
        Ok(())
    }
}

/// Why a request may not reach the admin API.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    text: String,
    /// Whether to ask for the bearer token (`WWW-Authenticate`).
    challenge: bool,
}

impl Refused {
    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer to send.
    pub fn into_response(self) -> HttpResponse {
        let mut r = text_response(self.status, self.text);
        if self.challenge {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wasmfn admin\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn guard() -> AdminGuard {
        AdminGuard::tcp(
            TOKEN.into(),
            "127.0.0.1:4000".parse().unwrap(),
            &["ops.internal".into()],
        )
    }

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::get("/_wasmfn/queues");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn status(r: Result<(), Refused>) -> u16 {
        r.map_or_else(|r| r.status().as_u16(), |()| 200)
    }

    #[test]
    fn token_host_and_origin() {
        let g = guard();
        let bearer = format!("Bearer {TOKEN}");
        let ok = [
            ("host", "127.0.0.1:4000"),
            ("authorization", bearer.as_str()),
        ];
        assert_eq!(status(g.check(&parts(&ok))), 200);
        assert_eq!(
            status(g.check(&parts(&[("host", "localhost:4000"), ok[1]]))),
            200
        );
        assert_eq!(
            status(g.check(&parts(&[("host", "OPS.internal:4000"), ok[1]]))),
            200
        );
        assert_eq!(status(g.check(&parts(&[ok[0]]))), 401);
        let wrong = [
            ok[0],
            ("authorization", "Bearer 0123456789abcdef0123456789abcdeX"),
        ];
        assert_eq!(status(g.check(&parts(&wrong))), 401);
        // DNS rebinding: the attacker's name with our address.
        assert_eq!(
            status(g.check(&parts(&[("host", "evil.example:4000"), ok[1]]))),
            421
        );
        let cross = [ok[0], ok[1], ("origin", "http://evil.example")];
        assert_eq!(status(g.check(&parts(&cross))), 403);
        let same = [ok[0], ok[1], ("origin", "http://127.0.0.1:4000")];
        assert_eq!(status(g.check(&parts(&same))), 200);
        let site = [ok[0], ok[1], ("sec-fetch-site", "cross-site")];
        assert_eq!(status(g.check(&parts(&site))), 403);
    }

    #[test]
    fn unix_needs_no_token_but_refuses_origins() {
        let g = AdminGuard::unix();
        assert_eq!(status(g.check(&parts(&[]))), 200);
        assert_eq!(
            status(g.check(&parts(&[("origin", "http://evil.example")]))),
            403
        );
    }
}
