//! The admin listener: the host API (`/_wasmfn/...`, in `control_api/`) and the web console
//! that reads it (`/ui/`, in `console/`) on a socket of their own, never on the public one.
//!
//! `wasmfn serve` binds it to `127.0.0.1:3001` unless told otherwise (`--admin-listen
//! HOST:PORT` or `--admin-listen unix:PATH`). Every request passes the [`AdminGuard`] first;
//! the listener's address goes into the state folder's `admin-endpoint` so that the CLI
//! commands that talk to a running host find it (and, on TCP, the token beside it).

mod guard;
pub mod token;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tokio::net::{TcpListener, UnixListener};

pub use guard::{AdminGuard, Refused};

use crate::app::App;

/// Where `wasmfn serve` puts the admin listener unless told otherwise: loopback only, the port
/// after the public listener's default.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:3001";

/// Where the admin listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddress {
    /// A TCP address; requests need the bearer token.
    Tcp(SocketAddr),
    /// A Unix socket (mode 0600, peers of another uid refused); no token needed.
    Unix(PathBuf),
}

impl FromStr for AdminAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs a socket path, e.g. `unix:/run/wasmfn/admin.sock`".into(),
                );
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(Self::Tcp)
            .map_err(|_| format!("`{s}` is neither HOST:PORT (e.g. 127.0.0.1:3001) nor unix:PATH"))
    }
}

impl fmt::Display for AdminAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "http://{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A bound admin listener, ready to serve an app's host API.
pub struct AdminServer {
    listener: Listener,
    guard: AdminGuard,
    endpoint: AdminAddress,
}

impl AdminServer {
    /// Bind `address` for the app whose state lives in `state_dir`: on TCP with the admin token
    /// (see [`token::load_or_create`]) and answering to `extra_hosts` besides loopback names.
    /// Records the bound address in `STATE/admin-endpoint`.
    pub async fn bind(
        address: &AdminAddress,
        state_dir: &Path,
        extra_hosts: &[String],
    ) -> Result<AdminServer> {
        let (listener, guard, endpoint) = match address {
            AdminAddress::Tcp(addr) => {
                let token = token::load_or_create(state_dir)?;
                let listener = TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} for the admin API; pick another address with --admin-listen")
                })?;
                let bound = listener.local_addr()?;
                (
                    Listener::Tcp(listener),
                    AdminGuard::tcp(token, bound, extra_hosts),
                    AdminAddress::Tcp(bound),
                )
            }
            AdminAddress::Unix(path) => (
                Listener::Unix(bind_unix(path)?),
                AdminGuard::unix(),
                AdminAddress::Unix(path.clone()),
            ),
        };
        token::write_endpoint(state_dir, &endpoint.to_string())?;
        Ok(AdminServer {
            listener,
            guard,
            endpoint,
        })
    }

    /// Where it listens (the bound port when asked for port 0).
    pub fn address(&self) -> &AdminAddress {
        &self.endpoint
    }

    /// The web console's address on a TCP listener (browsers cannot reach a Unix socket),
    /// with the token in the fragment when `with_token` (which browsers never send; the page
    /// keeps it in the tab's session storage).
    pub fn console_url(&self, with_token: bool) -> Option<String> {
        let AdminAddress::Tcp(addr) = &self.endpoint else {
            return None;
        };
        let mut url = format!("http://{addr}{}", crate::console::PATH);
        if let (true, Some(token)) = (with_token, self.guard.token()) {
            url.push_str("#token=");
            url.push_str(token);
        }
        Some(url)
    }

    /// Serve `app`'s host API until `shutdown` resolves.
    pub async fn serve(self, app: Arc<App>, shutdown: impl Future<Output = ()>) -> Result<()> {
        let guard = Arc::new(self.guard);
        let _history = AbortOnDrop(crate::status::keep_history(&app));
        // Log tails are endless responses: they end when serving stops, so the drain ends.
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        let handle = move |request: http::Request<hyper::body::Incoming>| {
            let (app, guard, stop) = (app.clone(), guard.clone(), stop.clone());
            async move {
                let (head, body) = request.into_parts();
                // Liveness tells nothing to hide, and probes (load balancers, kubelets) may
                // not carry the token.
                let liveness = head.method == http::Method::GET && head.uri.path() == "/healthz";
                if crate::console::is_console(head.uri.path()) {
                    return match guard.check_page(&head) {
                        Ok(()) => crate::console::respond(&head),
                        Err(refused) => refused.into_response(),
                    };
                }
                if let (false, Err(refused)) = (liveness, guard.check(&head)) {
                    // Readiness without the token is one bit (kubelets cannot send a secret
                    // header); which check failed, and why, needs the token.
                    if head.method == http::Method::GET && head.uri.path() == "/readyz" {
                        return ready_bit(&app).await;
                    }
                    return refused.into_response();
                }
                if head.method == http::Method::GET && head.uri.path() == "/_wasmfn/logs" {
                    return log_tail_response(&head, stop);
                }
                app.handle_admin(http::Request::from_parts(head, body))
                    .await
            }
        };
        // Operators and their scripts, not the internet: a few connections are plenty.
        let limits = crate::server::ServerLimits::new(64).for_listener("admin");
        match self.listener {
            Listener::Tcp(listener) => {
                // Owned by `accept`: the socket closes when serving stops, not after the drain.
                let listener = Arc::new(listener);
                let accept = move || {
                    let listener = listener.clone();
                    async move {
                        let (stream, peer) = listener.accept().await?;
                        Ok((stream, peer.to_string(), None))
                    }
                };
                crate::server::serve_connections(accept, handle, shutdown, &limits).await;
            }
            Listener::Unix(listener) => {
                let listener = Arc::new(listener);
                let accept = move || {
                    let listener = listener.clone();
                    async move {
                        let (stream, peer) = accept_own_uid(&listener).await?;
                        Ok((stream, peer, None))
                    }
                };
                crate::server::serve_connections(accept, handle, shutdown, &limits).await;
            }
        }
        Ok(())
    }
}

/// `GET /readyz` without the token: `200 {"ready": true}` or `503 {"ready": false}`.
async fn ready_bit(app: &App) -> wasmfn_host_core::HttpResponse {
    let ready = crate::status::health::readiness(app).await.ready;
    let status = match ready {
        true => http::StatusCode::OK,
        false => http::StatusCode::SERVICE_UNAVAILABLE,
    };
    crate::app::json_text(status, serde_json::json!({ "ready": ready }))
}

/// `GET /_wasmfn/logs[?function=NAME&level=warn&since=SEQ&rate=N]`: the live log tail as
/// server-sent events, resuming after `Last-Event-ID` (or `since`), sampled to `rate` lines
/// a second when asked.
fn log_tail_response(
    head: &http::request::Parts,
    stop: tokio::sync::watch::Receiver<bool>,
) -> wasmfn_host_core::HttpResponse {
    use crate::telemetry::log_tail::{stream, TailFilter};
    use futures::StreamExt as _;
    use http_body_util::BodyExt as _;
    let mut filter = TailFilter::default();
    let query = head.uri.query().unwrap_or_default().as_bytes();
    for (key, value) in form_urlencoded::parse(query) {
        match &*key {
            "function" => filter.function = Some(value.into_owned()),
            "level" => match value.parse::<tracing::Level>() {
                Ok(level) if level <= tracing::Level::INFO => filter.level = Some(level),
                _ => {
                    return wasmfn_host_core::text_response(
                        http::StatusCode::BAD_REQUEST,
                        format!("level `{value}`: use error, warn or info"),
                    )
                }
            },
            "since" => filter.after = value.parse().unwrap_or(0),
            "rate" => match value.parse::<u32>() {
                Ok(rate) if rate > 0 => filter.rate = Some(rate),
                _ => {
                    return wasmfn_host_core::text_response(
                        http::StatusCode::BAD_REQUEST,
                        format!("rate `{value}`: lines a second, a whole number from 1"),
                    )
                }
            },
            _ => {}
        }
    }
    if let Some(id) = head.headers.get("last-event-id") {
        filter.after = id.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    let frames =
        stream(filter, stop).map(|b| Ok::<_, wasmtime_wasi_http::Error>(http_body::Frame::data(b)));
    let body = http_body_util::StreamBody::new(frames).boxed_unsync();
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("static response parts are valid")
}

/// Bind a Unix socket at `path` readable and writable by our user only, replacing a stale
/// socket left by an earlier run (but never another kind of file).
fn bind_unix(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "`{}` exists and is not a socket; pick another path for --admin-listen unix:PATH",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| {
        format!(
            "cannot listen on unix:{}; pick another path with --admin-listen",
            path.display()
        )
    })?;
    // Peers are also checked by uid on accept, which covers the moment before this chmod.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// The next connection from a process running as our user (or root); others are closed.
async fn accept_own_uid(
    listener: &UnixListener,
) -> std::io::Result<(tokio::net::UnixStream, String)> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        let (stream, _) = listener.accept().await?;
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me || cred.uid() == 0 => {
                return Ok((stream, format!("uid {}", cred.uid())));
            }
            Ok(cred) => tracing::warn!(
                uid = cred.uid(),
                "admin socket: refused a peer of another user"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: cannot tell the peer's user; refused")
            }
        }
    }
}

/// Stops a background task when the admin server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "127.0.0.1:3001".parse::<AdminAddress>().unwrap(),
            AdminAddress::Tcp("127.0.0.1:3001".parse().unwrap())
        );
        assert_eq!(
            "unix:/tmp/a.sock".parse::<AdminAddress>().unwrap(),
            AdminAddress::Unix("/tmp/a.sock".into())
        );
        assert!("unix:".parse::<AdminAddress>().is_err());
        assert!("localhost"
            .parse::<AdminAddress>()
            .unwrap_err()
            .contains("unix:PATH"));
    }
}
