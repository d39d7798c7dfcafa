//! Invoking `http` functions through `wasi:http/incoming-handler`.
//!
//! The request body streams into the guest and the response body streams out while the guest
//! still runs; the guest's task ends (and its instance is freed or returned to the warm pool)
//! when it has finished writing.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;

use crate::error::InvokeError;
use crate::function::Function;
use crate::instances::{next_invocation_id, Bindings, Lease};
use crate::world::World;

/// The response type of HTTP functions: a streaming body fed by the guest.
pub type HttpResponse = http::Response<HyperOutgoingBody>;

impl Function {
    /// Handle one HTTP request with this function (which must be of the `http` world).
    ///
    /// Returns as soon as the guest has set the response head; the body keeps streaming.
    pub async fn handle_http<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<HttpResponse, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let inner = self.inner.clone();
        if inner.world != World::Http {
            return Err(InvokeError::BadInvocation {
                function: inner.name.to_string(),
                message: format!(
                    "is a `{}` function and cannot take HTTP requests",
                    inner.world
                ),
            });
        }
        let started = Instant::now();
        let invocation = next_invocation_id();
        let permit = inner
            .admit()
            .inspect_err(|e| log_failure(&inner.name, invocation, started, e))?;
        let deadline = started + inner.limits.timeout;
        let mut lease = inner
            .checkout(deadline, invocation)
            .await
            .inspect_err(|e| log_failure(&inner.name, invocation, started, e))?;

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let status = Arc::new(AtomicU16::new(0));
        let status_in_guest = status.clone();
        let (req, out) = {
            let mut http = lease.store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, request);
            let out = http.new_response_outparam_from_callback(move |result| {
                if let Ok(response) = &result {
                    status_in_guest.store(response.status().as_u16(), Ordering::Relaxed);
                }
                let _ = sender.send(result);
            });
            match (req, out) {
                (Ok(req), Ok(out)) => (req, out),
                (Err(e), _) | (_, Err(e)) => {
                    let error = InvokeError::BadInvocation {
                        function: inner.name.to_string(),
                        message: format!("malformed request: {e:#}"),
                    };
                    log_failure(&inner.name, invocation, started, &error);
                    return Err(error);
                }
            }
        };

        let task_inner = inner.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let result = {
                let Lease {
                    store, bindings, ..
                } = &mut lease;
                let Bindings::Http(proxy) = bindings else {
                    unreachable!("http functions hold http bindings")
                };
                let call = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(store, req, out);
                tokio::time::timeout_at(deadline.into(), call).await
            };
            let outcome = match result {
                Ok(Ok(())) => {
                    task_inner.checkin(lease, true);
                    Ok(())
                }
                Ok(Err(e)) => Err(task_inner.classify(&lease.store, e)),
                Err(_elapsed) => Err(task_inner.timeout()),
            };
            let code = status.load(Ordering::Relaxed);
            match &outcome {
                Ok(()) => tracing::info!(
                    target: "wasmfn::invocation",
                    function = %task_inner.name, world = "http", invocation, status = code,
                    duration_us = started.elapsed().as_micros() as u64, "invocation finished"
                ),
                Err(e) => log_failure(&task_inner.name, invocation, started, e),
            }
            outcome
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(InvokeError::Trap {
                function: inner.name.to_string(),
                message: format!("the guest answered with a wasi:http error instead of a response: {code:?}"),
                backtrace: None,
            }),
            // The guest ended (or died) without setting a response: its task says why.
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(InvokeError::Trap {
                    function: inner.name.to_string(),
                    message: "the guest returned without setting a response (`response-outparam.set` was never called)".into(),
                    backtrace: None,
                }),
                Err(join) => Err(InvokeError::Trap {
                    function: inner.name.to_string(),
                    message: format!("the guest task failed: {join}"),
                    backtrace: None,
                }),
            },
        }
    }
}

fn log_failure(function: &str, invocation: u64, started: Instant, error: &InvokeError) {
    tracing::warn!(
        target: "wasmfn::invocation",
        function, world = "http", invocation,
        status = error.http_status().as_u16(), error_kind = error.kind(),
        duration_us = started.elapsed().as_micros() as u64,
        backtrace = error.backtrace().unwrap_or_default(),
        "invocation failed: {error}"
    );
}

/// The request body type for embedders: any bytes, as a body the host can stream to a guest.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// A complete in-memory request body.
pub fn full_body(bytes: impl Into<Bytes>) -> RequestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A plain-text response (errors, 404s) in the same body type guests produce.
pub fn text_response(status: http::StatusCode, text: impl Into<String>) -> HttpResponse {
    let mut body = text.into();
    body.push('\n');
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .expect("static response parts are valid")
}

/// The response that reports a failed invocation to an HTTP client: the status for its kind,
/// the message as the body, the kind in `x-wasmfn-error`.
pub fn error_response(error: &InvokeError) -> HttpResponse {
    let mut response = text_response(error.http_status(), error.to_string());
    // The error's kind, machine-readable (the same names as the Lambda adapter's errorType).
    response.headers_mut().insert(
        "x-wasmfn-error",
        http::HeaderValue::from_static(error.kind()),
    );
    if matches!(error, InvokeError::Overloaded { .. }) {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}
