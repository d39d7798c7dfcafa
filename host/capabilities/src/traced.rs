//! Spans for host calls that reach a store or another service: named by the operation, with
//! the store or target as an attribute and never the call's data (see `wasmfn_host_core::trace`).

use std::fmt::Display;
use std::future::Future;

use tracing::Instrument as _;
use wasmfn_host_core::trace;

/// Run `call` in a span `operation` (a child of the invocation's), marking it failed when the
/// call fails; with tracing off, just run it.
pub(crate) async fn call<T, E: Display>(
    operation: &'static str,
    system: &'static str,
    target: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if !trace::enabled() {
        return call.await;
    }
    let span = wasmfn_host_core::host_call_span!(operation, system, target);
    let result = call.instrument(span.clone()).await;
    if let Err(e) = &result {
        trace::record_error(&span, e);
    }
    result
}
