//! Invoking `http` functions through `wasi:http/incoming-handler` (0.2), or through the worker
//! pool of a `wasi:http/handler` (0.3) component (`http_p3`).
//!
//! The request body streams into the guest and the response body streams out while the guest
//! still runs; the guest's task ends (and its instance is freed or returned to the warm pool)
//! when it has finished writing.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tracing::Instrument as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;

use crate::error::InvokeError;
use crate::function::{Function, FunctionInner};
use crate::instances::{next_invocation_id, Bindings, Handler, InFlight, Lease};
use crate::trace;
use crate::usage::{OnThread, Outcome, Usage};
use crate::world::World;

pin_project_lite::pin_project! {
    /// A request body cut off after the function's `max-request-body` bytes: the guest's read
    /// then fails with `HTTP-request-body-size` (a body without `Content-Length` is only known
    /// to be too large as it streams). Counts what the guest read in `read`.
    struct BodyLimit<B> {
        #[pin]
        inner: B,
        left: u64,
        read: Arc<AtomicU64>,
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
            this.read.fetch_add(n, Ordering::Relaxed);
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
        // The caller's trace continues from the request's `traceparent`, if it has one.
        let span = trace::http_invocation_span(
            &inner.name,
            invocation,
            request.method().as_str(),
            request.uri().path(),
        );
        // Inside an adapter's span (Lambda's, which holds the platform's trace) that one is
        // the parent; otherwise the caller's `traceparent`.
        if !span.is_disabled() && tracing::Span::current().is_none() {
            trace::set_remote_parent(&span, &trace::Headers(request.headers()));
        }
        let failed = |error: InvokeError| {
            let usage = Usage {
                wall: started.elapsed(),
                ..Usage::default()
            };
            let ended = crate::recent::Ended {
                invocation,
                status: Some(error.http_status().as_u16()),
                error: Some(error.to_string()),
                trace_id: trace::ids(&span).map(|(trace, _)| trace),
            };
            inner
                .metrics
                .record(Outcome::of_error(&error), &usage, ended);
            record_failure(&span, &error);
            log_failure(&inner.name, invocation, started, &error, &span);
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
        let bytes_in = Arc::new(AtomicU64::new(0));
        let request = request.map(|body| BodyLimit {
            inner: body,
            left: limit,
            read: bytes_in.clone(),
        });
        let permit = inner.admit().map_err(failed)?;
        let in_flight = InFlight::new(inner.clone());
        let deadline = started + inner.limits.timeout;
        if let Handler::HttpP3(pool) = &inner.handler {
            let handled = pool
                .handle(request.map(|b| b.boxed_unsync()), invocation, deadline)
                .instrument(span.clone())
                .await;
            let (response, report) = handled.map_err(failed)?;
            let usage = Usage {
                instantiation: *report.instantiated_in.lock().unwrap(),
                peak_memory: report.memory.load(Ordering::Relaxed),
                ..Usage::default()
            };
            let status = response.status().as_u16();
            let record = Arc::new(HttpRecord {
                inner: inner.clone(),
                invocation,
                ended: Mutex::new(Some((usage, status))),
                bytes_out: AtomicU64::new(0),
                span,
                streamed: Some(Streamed {
                    started,
                    bytes_in,
                    _held: (permit, in_flight),
                }),
            });
            return Ok(counted(response, record).await);
        }
        let mut cpu = Duration::ZERO;
        let checkout = OnThread::new(inner.checkout(deadline, invocation), &mut cpu)
            .instrument(span.clone())
            .await;
        let mut lease = checkout.map_err(failed)?;
        let instantiation = lease.instantiated_in;
        let record = Arc::new(HttpRecord {
            inner: inner.clone(),
            invocation,
            ended: Mutex::new(None),
            bytes_out: AtomicU64::new(0),
            span: span.clone(),
            streamed: None,
        });

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
        let task_record = record.clone();
        let task_span = span.clone();
        let task = tokio::spawn(
            async move {
                let (_permit, _in_flight, record) = (permit, in_flight, task_record);
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
                    let call = OnThread::new(call, &mut cpu);
                    tokio::time::timeout_at(deadline.into(), call).await
                };
                let mut usage = Usage {
                    cpu,
                    instantiation,
                    peak_memory: lease.store.data().limiter.total(),
                    bytes_in: bytes_in.load(Ordering::Relaxed),
                    ..Usage::default()
                };
                let outcome = match result {
                    Ok(Ok(())) => {
                        task_inner.checkin(lease, true);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(task_inner.classify(&lease.store, e)),
                    Err(_elapsed) => Err(task_inner.timeout()),
                };
                usage.wall = started.elapsed();
                match &outcome {
                    // Written when the response body is done too (with the bytes it sent).
                    Ok(()) => {
                        let code = status.load(Ordering::Relaxed);
                        *record.ended.lock().unwrap() = Some((usage, code));
                    }
                    Err(e) => {
                        usage.bytes_out = record.bytes_out.load(Ordering::Relaxed);
                        let ended = crate::recent::Ended {
                            invocation,
                            status: Some(e.http_status().as_u16()),
                            error: Some(e.to_string()),
                            trace_id: trace::ids(&record.span).map(|(trace, _)| trace),
                        };
                        task_inner
                            .metrics
                            .record(Outcome::of_error(e), &usage, ended);
                        record_failure(&record.span, e);
                        log_failure(&task_inner.name, invocation, started, e, &record.span);
                    }
                }
                outcome
            }
            .instrument(task_span),
        );

        match receiver.await {
            Ok(Ok(response)) => Ok(counted(response, record).await),
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

/// The guest's response as the client gets it: what the guest already wrote of its body taken
/// before the head goes out ([`super::ready_body`]), every byte counted into `record`.
async fn counted(response: HttpResponse, record: Arc<HttpRecord>) -> HttpResponse {
    let (head, body) = response.into_parts();
    let body = CountedBody {
        inner: super::ready_body::gather(body).await,
        record: Some(record),
    };
    http::Response::from_parts(head, body.boxed_unsync())
}

/// One HTTP invocation that succeeded, counted and logged when both the guest's task and the
/// response body are done with it (so that the line carries the bytes sent).
struct HttpRecord {
    inner: Arc<FunctionInner>,
    invocation: u64,
    /// Set by the guest's task when it ends well: what it used, and the response status.
    ended: Mutex<Option<(Usage, u16)>>,
    bytes_out: AtomicU64,
    /// The invocation's span: it ends when the last of the task and the body lets go.
    span: tracing::Span,
    /// For a WASI 0.3 invocation, whose guest task the host does not see end: what the body
    /// measures and holds until it is done.
    streamed: Option<Streamed>,
}

/// What a WASI 0.3 invocation's response body carries until it ends: its wall time and the
/// request bytes are measured then, and its concurrency slot is held until then.
struct Streamed {
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    _held: (
        tokio::sync::OwnedSemaphorePermit,
        InFlight<Arc<FunctionInner>>,
    ),
}

impl Drop for HttpRecord {
    fn drop(&mut self) {
        let Some((mut usage, status)) = self.ended.get_mut().unwrap().take() else {
            return;
        };
        usage.bytes_out = *self.bytes_out.get_mut();
        if let Some(streamed) = &self.streamed {
            usage.wall = streamed.started.elapsed();
            usage.bytes_in = streamed.bytes_in.load(Ordering::Relaxed);
        }
        // Formatted once (only when traces are on) for the ring and the log line.
        let trace_id = trace::ids(&self.span).map(|(trace, _)| trace);
        let ended = crate::recent::Ended {
            invocation: self.invocation,
            status: Some(status),
            error: None,
            trace_id: trace_id.clone(),
        };
        self.inner.metrics.record(Outcome::Ok, &usage, ended);
        if !self.span.is_disabled() {
            self.span.record("http.response.status_code", status);
            trace::record_outcome(&self.span, Outcome::Ok.label(), None);
        }
        tracing::info!(
            target: "wasmfn::invocation",
            function = %self.inner.name, world = "http", invocation = self.invocation, status,
            duration_us = usage.wall.as_micros() as u64, cpu_us = usage.cpu.as_micros() as u64,
            instantiate_us = usage.instantiation.map(|t| t.as_micros() as u64),
            peak_memory = usage.peak_memory, bytes_in = usage.bytes_in,
            bytes_out = usage.bytes_out, trace_id, "invocation finished"
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts the bytes it passes into its invocation's record, and lets
    /// go of the record when it ends.
    struct CountedBody {
        #[pin]
        inner: HyperOutgoingBody,
        record: Option<Arc<HttpRecord>>,
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_ref()) {
                    record
                        .bytes_out
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            std::task::Poll::Ready(_) => *this.record = None,
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn record_failure(span: &tracing::Span, error: &InvokeError) {
    if !span.is_disabled() {
        span.record("http.response.status_code", error.http_status().as_u16());
        trace::record_outcome(
            span,
            Outcome::of_error(error).label(),
            Some(&error.to_string()),
        );
    }
}

fn log_failure(
    function: &str,
    invocation: u64,
    started: Instant,
    error: &InvokeError,
    span: &tracing::Span,
) {
    let trace_id = trace::ids(span).map(|(trace, _)| trace);
    tracing::warn!(
        target: "wasmfn::invocation",
        function, world = "http", invocation,
        status = error.http_status().as_u16(), error_kind = error.kind(),
        duration_us = started.elapsed().as_micros() as u64, trace_id,
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
