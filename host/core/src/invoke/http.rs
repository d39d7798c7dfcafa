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

pin_project_lite::pin_project! {
    /// A request body cut off after the function's `max-request-body` bytes: the guest's read
    /// then fails with `HTTP-request-body-size` (a body without `Content-Length` is only known
    /// to be too large as it streams).
    struct BodyLimit<B> {
        #[pin]
        inner: B,
        left: u64,
    }
}

impl<B> http_body::Body for BodyLimit<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let std::task::Poll::Ready(Some(Ok(frame))) = polled else {
            return polled.map(|f| f.map(|r| r.map_err(Into::into)));
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            if n > *this.left {
                return std::task::Poll::Ready(Some(Err(
                    wasmtime_wasi_http::Error::HttpRequestBodySize(None),
                )));
            }
            *this.left -= n;
        }
        std::task::Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a failed invocation for a client that may not see the host's internals (the
/// trap's text, file paths, settings): the error's kind, and the invocation id that the host's
/// log line carries (also in `x-wasmfn-invocation`). [`error_response`] gives the whole text.
pub fn opaque_error_response(failure: &HttpFailure) -> HttpResponse {
    let error = &failure.error;
    let mut response = text_response(
        error.http_status(),
        format!(
            "{}: invocation {} failed; its details are in the host's log",
            error.kind(),
            failure.invocation
        ),
    );
    let headers = response.headers_mut();
    headers.insert(
        "x-wasmfn-error",
        http::HeaderValue::from_static(error.kind()),
    );
    headers.insert(
        "x-wasmfn-invocation",
        http::HeaderValue::from(failure.invocation),
    );
    if error.is_overload() {
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// The response type of HTTP functions: a streaming body fed by the guest.
pub type HttpResponse = http::Response<HyperOutgoingBody>;

/// A failed HTTP invocation: what went wrong, and the invocation id its log line carries.
#[derive(Debug)]
pub struct HttpFailure {
    /// What went wrong.
    pub error: InvokeError,
    /// The id in the host's log line for this invocation.
    pub invocation: u64,
}

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
        self.handle_http_traced(request).await.map_err(|f| f.error)
    }

    /// [`Function::handle_http`], telling which invocation failed (to answer a client with
    /// the id instead of the error's text).
    pub async fn handle_http_traced<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<HttpResponse, HttpFailure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let invocation = next_invocation_id();
        self.invoke_http(request, invocation)
            .await
            .map_err(|error| HttpFailure { error, invocation })
    }

    async fn invoke_http<B>(
        &self,
        request: http::Request<B>,
        invocation: u64,
    ) -> Result<HttpResponse, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let inner = self.inner.clone();
        let started = Instant::now();
        let failed = |error: InvokeError| {
            log_failure(&inner.name, invocation, started, &error);
            error
        };
        if inner.world != World::Http {
            return Err(failed(InvokeError::BadInvocation {
                function: inner.name.to_string(),
                message: format!(
                    "is a `{}` function and cannot take HTTP requests",
                    inner.world
                ),
            }));
        }
        let limit = inner.limits.max_request_body;
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(failed(InvokeError::RequestTooLarge {
                function: inner.name.to_string(),
                limit,
            }));
        }
        let request = request.map(|body| BodyLimit {
            inner: body,
            left: limit,
        });
        let permit = inner.admit().map_err(failed)?;
        let deadline = started + inner.limits.timeout;
        let mut lease = inner.checkout(deadline, invocation).await.map_err(failed)?;

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
                    return Err(failed(InvokeError::BadInvocation {
                        function: inner.name.to_string(),
                        message: format!("malformed request: {e:#}"),
                    }));
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
    if error.is_overload() {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}
