//! The gate in front of `wasi:http/outgoing-handler`: outbound HTTP is denied unless a
//! capability ([`OutboundGate`], set as a function's context) lets the request through. The
//! sending itself is wasmtime-wasi-http's.

use std::sync::Arc;

use wasmtime_wasi_http::{RequestOptions, WasiHttpHooks};

/// Decides whether a function may send a request. Set as `Arc<dyn OutboundGate>` in the
/// function's contexts (see [`crate::capability`]); without one every request is denied.
pub trait OutboundGate: Send + Sync {
    /// Whether `function` may request `uri`. A refusal should log how to allow it.
    fn allows(&self, function: &str, uri: &http::Uri) -> bool;
}

/// The `wasi:http` hooks of one instance: the gate, then the default sender.
pub(crate) struct OutboundHooks {
    pub(crate) function: Arc<str>,
    pub(crate) gate: Option<Arc<dyn OutboundGate>>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn std::future::Future<Output = SendResult> + Send> {
        drop(fut);
        let allowed = match &self.gate {
            Some(gate) => gate.allows(&self.function, request.uri()),
            None => {
                tracing::warn!(target: "guest", function = %self.function,
                    "outbound request to {} denied: this host allows no outbound HTTP", request.uri());
                false
            }
        };
        if !allowed {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io)
                    as Box<
                        dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                            + Send,
                    >,
            ))
        })
    }
}
