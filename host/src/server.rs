//! Serving an [`App`] over HTTP/1.1 and HTTP/2 with hyper, with graceful shutdown: on the
//! shutdown signal the listener closes, in-flight requests (bodies included) finish, then
//! [`serve`] returns.
//!
//! [`serve_threads`] runs one single-threaded runtime per core, each accepting on its own
//! `SO_REUSEPORT` socket: a request, its guest and its response body then live on one thread,
//! with no cross-thread wake-ups (which cost more than running the guest does).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::app::App;

/// How long in-flight requests may take to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
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
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        // Responses are small and latency-bound; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    sweeper.abort();
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; exiting anyway");
        }
    }
    Ok(())
}

/// Serve `app` on `addr` with `threads` single-threaded runtimes sharing the port through
/// `SO_REUSEPORT`. `ready` receives the bound address (useful with port 0) once every thread
/// listens. Returns after `shutdown` flips to `true` and every thread has drained.
pub fn serve_threads(
    app: Arc<App>,
    addr: SocketAddr,
    threads: usize,
    shutdown: watch::Receiver<bool>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let threads = threads.max(1);
    let mut bound = addr;
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (tx, rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let app = app.clone();
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
                    serve(app, listener, stop).await
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
