//! Serving an [`App`] over HTTP/1.1 and HTTP/2 with hyper, with graceful shutdown: on the
//! shutdown signal the listener closes, in-flight requests (bodies included) finish, then
//! [`serve`] returns.
//!
//! [`serve_threads`] runs one single-threaded runtime per core, each accepting on its own
//! `SO_REUSEPORT` socket: a request, its guest and its response body then live on one thread,
//! with no cross-thread wake-ups (which cost more than running the guest does). New
//! connections are evened out over the threads ([`crate::spread`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use wasmfn_host_core::HttpResponse;

use crate::app::App;
use crate::spread::{Slot, Spread, ThreadAccept};

/// How long in-flight requests may take to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's head (HTTP/1), and to send its first byte
/// on a new connection: a trickling or silent client is disconnected instead of holding a
/// socket forever. Also the keep-alive idle limit, since hyper times the wait for the next
/// request head the same way.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts a connection in `wasmfn_open_connections` until it closes.
struct OpenConnection(metrics::Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What one server accepts at most.
#[derive(Clone)]
pub struct ServerLimits {
    /// Open connections; further clients wait in the kernel's backlog until one closes.
    connections: Arc<tokio::sync::Semaphore>,
    max: usize,
    /// The `listener` label of its connection metrics.
    listener: &'static str,
}

impl ServerLimits {
    /// At most `max` open connections.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            connections: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            listener: "public",
        }
    }

    /// The same limits, counted under `listener` in the metrics instead of `public`.
    pub fn for_listener(mut self, listener: &'static str) -> Self {
        self.listener = listener;
        self
    }

    /// Connections from the process's descriptor limit: all but 256 kept for files, stores and
    /// outbound requests.
    pub fn from_descriptor_limit() -> Self {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur as usize
        } else {
            1024
        };
        Self::new(soft.saturating_sub(256).clamp(64, 100_000))
    }

    /// Raise this process's soft descriptor limit to its hard limit (as nginx's
    /// `worker_rlimit_nofile` and Go's runtime do): distributions default the soft limit to
    /// 1024, which a few hundred hostile idle sockets would exhaust. Returns the soft limit
    /// in force afterwards.
    pub fn raise_descriptor_limit() -> usize {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
        }
        limit.rlim_cur as usize
    }

    /// Connections that may still be opened.
    pub fn available(&self) -> usize {
        self.connections.available_permits()
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from_descriptor_limit()
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with_limits(app, listener, shutdown, ServerLimits::default()).await
}

/// [`serve`] with explicit [`ServerLimits`] (shared by every listener given the same ones).
pub async fn serve_with_limits(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    limits: ServerLimits,
) -> Result<()> {
    serve_listener(app, listener, shutdown, limits, None).await
}

/// [`serve_with_limits`], as one of [`serve_threads`]' threads when `spread` is given.
async fn serve_listener(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    limits: ServerLimits,
    spread: Option<ThreadAccept>,
) -> Result<()> {
    let sweeper = tokio::spawn({
        let app = app.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let evicted = app.evict_idle();
                if evicted > 0 {
                    tracing::debug!(evicted, "discarded idle warm instances");
                }
                let created = app.prewarm().await;
                if created > 0 {
                    tracing::debug!(created, "pre-warmed instances");
                }
            }
        }
    });
    // Owned by `accept`, so that the socket closes (new clients are refused) the moment the
    // loop stops accepting, not after the drain.
    let listener = Arc::new(listener);
    // Only this thread's accept loop takes it, one call at a time: never contended.
    let spread = spread.map(|s| Arc::new(tokio::sync::Mutex::new(s)));
    let accept = move || {
        let listener = listener.clone();
        let spread = spread.clone();
        async move {
            let (stream, peer, slot) = match spread {
                Some(spread) => {
                    let (stream, peer, slot) = spread.lock().await.next(&listener).await?;
                    (stream, peer, Some(slot))
                }
                None => {
                    let (stream, peer) = listener.accept().await?;
                    (stream, peer, None)
                }
            };
            // Responses are small and latency-bound; don't let Nagle hold them back.
            let _ = stream.set_nodelay(true);
            Ok((stream, peer.to_string(), slot))
        }
    };
    let handle = move |request| {
        let app = app.clone();
        async move { app.handle(request).await }
    };
    serve_connections(accept, handle, shutdown, &limits).await;
    sweeper.abort();
    Ok(())
}

/// Serve every connection `accept` yields with `handle` (HTTP/1.1 and HTTP/2) until `shutdown`
/// resolves; then stop accepting and let in-flight requests finish (for [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve_connections<A, AF, I, H, HF>(
    mut accept: A,
    handle: H,
    shutdown: impl Future<Output = ()>,
    limits: &ServerLimits,
) where
    A: FnMut() -> AF,
    AF: Future<Output = std::io::Result<(I, String, Option<Slot>)>>,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<hyper::body::Incoming>) -> HF + Clone + Send + Sync + 'static,
    HF: Future<Output = HttpResponse> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Request heads larger than this are refused (431): 64 KiB is 8x what browsers send.
        .max_buf_size(64 << 10);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Dead peers are found by ping; streams per connection are bounded.
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10))
        .max_concurrent_streams(256)
        .max_header_list_size(64 << 10);
    let graceful = GracefulShutdown::new();
    let listener = limits.listener;
    metrics::gauge!("wasmfn_connection_limit", "listener" => listener).set(limits.max as f64);
    let open = metrics::gauge!("wasmfn_open_connections", "listener" => listener);
    tokio::pin!(shutdown);
    loop {
        // A free connection slot first: at the cap, new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = limits.connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer, slot) = tokio::select! {
            accepted = accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let handle = handle.clone();
        let service = service_fn(move |request| {
            let response = handle(request);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let (stream, heard) = FirstByte::new(stream);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            let _held = (permit, slot);
            let _open = OpenConnection(open);
            tokio::pin!(connection);
            // Until the protocol is known nothing times a silent client out: do it here.
            let result = tokio::select! {
                r = &mut connection => r,
                () = tokio::time::sleep(HEADER_READ_TIMEOUT) => {
                    if !heard.load(Ordering::Relaxed) {
                        tracing::debug!(%peer, "closed a connection that sent nothing");
                        return;
                    }
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(accept);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; exiting anyway");
        }
    }
}

/// Serve `app` on `addr` with `threads` single-threaded runtimes sharing the port through
/// `SO_REUSEPORT`. `ready` receives the bound address (useful with port 0) once every thread
/// listens. Returns after `shutdown` flips to `true` and every thread has drained. Raises the
/// process's soft descriptor limit to its hard limit first
/// ([`ServerLimits::raise_descriptor_limit`]).
pub fn serve_threads(
    app: Arc<App>,
    addr: SocketAddr,
    threads: usize,
    shutdown: watch::Receiver<bool>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let threads = threads.max(1);
    ServerLimits::raise_descriptor_limit();
    let limits = ServerLimits::default();
    let mut bound = addr;
    let mut handles = Vec::with_capacity(threads);
    let (spread, inboxes) = Spread::new(threads);
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let accept = ThreadAccept {
            spread: spread.clone(),
            me: i,
            inbox,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let app = app.clone();
        let limits = limits.clone();
        let mut shutdown = shutdown.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wasmfn-http-{i}"))
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = match reuseport_listener(bound) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = tx.send(listener.local_addr().map_err(Into::into));
                    let stop = async move {
                        while !*shutdown.borrow_and_update() {
                            if shutdown.changed().await.is_err() {
                                break;
                            }
                        }
                    };
                    serve_listener(app, listener, stop, limits, Some(accept)).await
                })
            })?;
        // The first thread picks the port (port 0 means any); the others join it.
        bound = rx
            .recv()
            .map_err(|_| anyhow::anyhow!("server thread died while binding"))??;
        handles.push(handle);
    }
    ready(bound);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a server thread panicked"))??;
    }
    Ok(())
}

/// A connection's stream that notes when the client first sent something.
struct FirstByte<I> {
    inner: I,
    heard: Arc<AtomicBool>,
}

impl<I> FirstByte<I> {
    fn new(inner: I) -> (Self, Arc<AtomicBool>) {
        let heard = Arc::new(AtomicBool::new(false));
        (
            Self {
                inner,
                heard: heard.clone(),
            },
            heard,
        )
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstByte<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstByte<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn reuseport_listener(addr: SocketAddr) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(1024)?)
}
