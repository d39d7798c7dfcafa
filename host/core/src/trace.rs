//! Distributed tracing: every invocation is a span, and W3C trace context (`traceparent`,
//! `tracestate`) is read from requests and message attributes and written into outbound
//! requests and the messages, events and executions a function produces.
//!
//! Spans are `tracing` spans of the target `wasmfn::trace`; an OpenTelemetry layer installed by
//! the embedder (the host's `telemetry::otlp` in `wasmfn serve`) turns them into OpenTelemetry
//! spans and exports them. Until someone calls [`enable`], no span is created at all, so the
//! hot path pays one relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::world::World;

/// The W3C trace context header and reserved message attribute carrying the trace and the
/// producing span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header and reserved attribute carrying vendor trace state.
pub const TRACESTATE: &str = "tracestate";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Create spans from now on: called by whoever installs an OpenTelemetry layer.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are being created (an exporter is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span of one invocation of `function`: a child of the current span unless a remote
/// parent is set on it ([`set_remote_parent`]); [`record_outcome`] completes it.
pub fn invocation_span(function: &str, world: World, invocation: u64) -> Span {
    if !enabled() {
        return Span::none();
    }
    // OpenTelemetry's FaaS conventions: the trigger kind and the span kind follow the world.
    let (trigger, kind) = match world {
        World::Http => ("http", "server"),
        World::Queue | World::Stream => ("pubsub", "consumer"),
        World::Schedule => ("timer", "internal"),
        World::Task => ("other", "internal"),
    };
    tracing::info_span!(
        target: "wasmfn::trace",
        "invocation",
        otel.name = function,
        otel.kind = kind,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        faas.trigger = trigger,
        wasmfn.world = world.name(),
        wasmfn.invocation = invocation,
        wasmfn.outcome = tracing::field::Empty,
    )
}

/// [`invocation_span`] for an HTTP request: with its method and path (set when the span is
/// made, which costs less than recording them after).
pub fn http_invocation_span(function: &str, invocation: u64, method: &str, path: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "wasmfn::trace",
        "invocation",
        otel.name = function,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        faas.trigger = "http",
        wasmfn.world = "http",
        wasmfn.invocation = invocation,
        wasmfn.outcome = tracing::field::Empty,
        http.request.method = method,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Write an invocation's outcome (an [`crate::usage::Outcome`] label) on its span; anything
/// but `ok` marks the span as an error with `description` (`ok` leaves the status unset).
pub fn record_outcome(span: &Span, outcome: &str, description: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("wasmfn.outcome", outcome);
    // Success leaves the status unset, as OpenTelemetry asks of instrumentation.
    if outcome != "ok" {
        span.record("otel.status_code", "error");
        if let Some(description) = description {
            span.record("otel.status_description", description);
        }
    }
}

/// A span for a host call that leaves the process (a store, outbound HTTP, a publish):
/// `operation` names it (`sql query`, `kv get`...), `system` is the backend kind and `target`
/// the store, queue or host it reaches; never the call's data.
#[macro_export]
macro_rules! host_call_span {
    ($operation:expr, $system:expr, $target:expr) => {
        if $crate::trace::enabled() {
            ::tracing::info_span!(
                target: "wasmfn::trace",
                "host call",
                otel.name = $operation,
                otel.kind = "client",
                otel.status_code = ::tracing::field::Empty,
                wasmfn.system = $system,
                wasmfn.target = $target,
            )
        } else {
            ::tracing::Span::none()
        }
    };
}

/// Mark a host-call span failed.
pub fn record_error(span: &Span, error: &dyn std::fmt::Display) {
    if !span.is_disabled() {
        span.record("otel.status_code", "error");
        span.set_status(opentelemetry::trace::Status::error(error.to_string()));
    }
}

/// The remote span context in `carrier` (a valid `traceparent`), if any.
pub fn remote_context(carrier: &dyn Extractor) -> Option<Context> {
    carrier.get(TRACEPARENT)?;
    let context = TraceContextPropagator::new().extract(carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Make the span described by `carrier`'s `traceparent` the parent of `span` (which must not
/// have started: call this right after creating it). Returns whether there was one.
pub fn set_remote_parent(span: &Span, carrier: &dyn Extractor) -> bool {
    if span.is_disabled() {
        return false;
    }
    match remote_context(carrier) {
        Some(context) => span.set_parent(context).is_ok(),
        None => false,
    }
}

/// Link `span` to the span described by `carrier` (a batch's consumer to each producer).
pub fn link(span: &Span, carrier: &dyn Extractor) {
    if span.is_disabled() {
        return;
    }
    if let Some(context) = remote_context(carrier) {
        span.add_link(context.span().span_context().clone());
    }
}

/// Give a batch's invocation span its producers: the first message that carries a trace
/// context is the parent (so that the trace continues), and every such message is linked.
pub fn set_batch_parents<'a>(
    span: &Span,
    messages: impl IntoIterator<Item = &'a [(String, String)]>,
) {
    if span.is_disabled() {
        return;
    }
    let mut parent_set = false;
    for attributes in messages {
        let Some(context) = remote_context(&Attributes(attributes)) else {
            continue;
        };
        let linked: SpanContext = context.span().span_context().clone();
        if !parent_set {
            parent_set = span.set_parent(context).is_ok();
        }
        span.add_link(linked);
    }
}

/// Write `span`'s trace context into `carrier` (nothing when tracing is off).
pub fn inject(span: &Span, carrier: &mut dyn Injector) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, carrier);
    }
}

/// The current span's `traceparent` and `tracestate` as attributes, unless the producer set
/// its own: what a queue message, an event or a stream record carries to its consumers.
pub fn inject_into_attributes(attributes: &mut Vec<(String, String)>) {
    if !enabled() || attributes.iter().any(|(k, _)| k == TRACEPARENT) {
        return;
    }
    inject(&Span::current(), &mut AttributesMut(attributes));
}

/// The current span's trace context as a `traceparent` value (and `tracestate`, if any), to
/// store with something that runs later (a workflow execution, a stream record).
pub fn current_context_fields() -> Option<(String, Option<String>)> {
    let mut attributes = Vec::new();
    inject_into_attributes(&mut attributes);
    let mut parent = None;
    let mut state = None;
    for (k, v) in attributes {
        match k.as_str() {
            TRACEPARENT => parent = Some(v),
            TRACESTATE if !v.is_empty() => state = Some(v),
            _ => {}
        }
    }
    parent.map(|p| (p, state))
}

/// The trace and span ids of the current span (hex), for log lines; `None` when tracing is
/// off or nothing is being traced.
pub fn current_ids() -> Option<(String, String)> {
    if !enabled() {
        return None;
    }
    ids(&Span::current())
}

/// The trace and span ids (hex) of `span`, if it is being traced.
pub fn ids(span: &Span) -> Option<(String, String)> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// Message attributes (`name`, `value` pairs) read as a trace context carrier.
pub struct Attributes<'a>(pub &'a [(String, String)]);

impl Extractor for Attributes<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Message attributes written as a trace context carrier (replacing a key of the same name).
pub struct AttributesMut<'a>(pub &'a mut Vec<(String, String)>);

impl Injector for AttributesMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.0.push((key.to_string(), value));
    }
}

/// A stored `traceparent` (and `tracestate`) read as a carrier.
pub struct Stored<'a> {
    /// The `traceparent` value.
    pub parent: &'a str,
    /// The `tracestate` value, if any.
    pub state: Option<&'a str>,
}

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.parent),
            TRACESTATE => self.state,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// HTTP headers read as a carrier.
pub struct Headers<'a>(pub &'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// HTTP headers written as a carrier.
pub struct HeadersMut<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_traceparent_is_no_parent() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra-for-version-00",
        ] {
            let attrs = vec![(TRACEPARENT.to_string(), bad.to_string())];
            assert!(remote_context(&Attributes(&attrs)).is_none(), "{bad:?}");
        }
        let good = vec![(
            "Traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        )];
        let context = remote_context(&Attributes(&good)).expect("a valid traceparent");
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
