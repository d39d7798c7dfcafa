//! Traces across a workflow: an execution stores the trace context of whatever started it
//! (a rule, a guest, the host API), and every step's span continues that trace, so one trace
//! shows the request that started a saga and each of its steps, across restarts too.

use tracing::Span;
use wasmfn_host_core::trace;

use super::store::Execution;

/// The current span's trace context, in the form [`Execution::trace`] stores.
pub(super) fn current() -> Option<String> {
    let (parent, state) = trace::current_context_fields()?;
    Some(match state {
        Some(state) => format!("{parent}\n{state}"),
        None => parent,
    })
}

/// The span of one step (`state`, of type `kind`) of `execution`: a child of the span that
/// started the execution.
pub(super) fn step(execution: &Execution, state: &str, kind: &str, attempt: u32) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "wasmfn::trace",
        "workflow step",
        otel.name = format!("{} {state}", execution.workflow),
        otel.status_code = tracing::field::Empty,
        wasmfn.workflow = %execution.workflow,
        wasmfn.execution = %execution.id,
        wasmfn.state = state,
        wasmfn.state_type = kind,
        wasmfn.attempt = attempt + 1,
    );
    if let Some(stored) = &execution.trace {
        let (parent, state) = match stored.split_once('\n') {
            Some((parent, state)) => (parent, Some(state)),
            None => (stored.as_str(), None),
        };
        trace::set_remote_parent(&span, &trace::Stored { parent, state });
    }
    span
}
