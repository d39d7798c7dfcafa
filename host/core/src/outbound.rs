//! The gate in front of `wasi:http/outgoing-handler`: outbound HTTP is denied unless a
//! capability ([`OutboundGate`], set as a function's context) sends the request: it decides
//! whether the function may, and to which address it connects.

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// What sending an outbound request yields: the response, and a future that ends with the
/// connection (its error, if any, reaches the guest through the request's body).
pub type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

/// Sends a function's outbound requests, or refuses them. Set as `Arc<dyn OutboundGate>` in the
/// function's contexts (see [`crate::capability`]); without one every request is denied.
pub trait OutboundGate: Send + Sync {
    /// Send `request` from `function`, or fail (with `HTTP-request-denied` when the function
    /// may not reach that host; a refusal should log how to allow it).
    fn send(
        &self,
        function: &str,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Box<dyn Future<Output = SendResult> + Send>;
}

/// The `wasi:http` hooks of one instance: its function's gate.
pub(crate) struct OutboundHooks {
    pub(crate) function: Arc<str>,
    pub(crate) gate: Option<Arc<dyn OutboundGate>>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        match &self.gate {
            Some(gate) if crate::trace::enabled() => {
                let host = request.uri().host().unwrap_or_default().to_string();
                let span = crate::host_call_span!(
                    format!("{} {host}", request.method()),
                    "http",
                    host.as_str()
                );
                // The callee continues this trace, unless the guest propagates its own.
                if !request.headers().contains_key(crate::trace::TRACEPARENT) {
                    crate::trace::inject(
                        &span,
                        &mut crate::trace::HeadersMut(request.headers_mut()),
                    );
                }
                let sent = Box::into_pin(gate.send(&self.function, request, options));
                Box::new(async move {
                    use tracing::Instrument as _;
                    let result = sent.instrument(span.clone()).await;
                    match &result {
                        Ok((response, _)) if response.status().is_server_error() => {
                            crate::trace::record_error(&span, &response.status())
                        }
                        Ok(_) => {}
                        Err(e) => crate::trace::record_error(&span, e),
                    }
                    result
                })
            }
            Some(gate) => gate.send(&self.function, request, options),
            None => {
                tracing::warn!(target: "guest", function = %self.function,
                    "outbound request to {} denied: this host allows no outbound HTTP", request.uri());
                Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
            }
        }
    }
}
