//! The host's telemetry plumbing, independent of any app: Prometheus metrics at `/metrics`
//! ([`prometheus`]), the usage history behind `/_wasmfn/usage` ([`history`]), a live tail of
//! the log at `/_wasmfn/logs` ([`log_tail`]), the log filters, and OpenTelemetry traces through
//! [`otlp`] when configured. What is read from a running app (readiness at `/readyz`
//! ([`health`]), gauges from its backends, usage by function) is in `crate::status`, beside the
//! app it reads.
//!
//! Every layer records metrics through the `metrics` facade; nothing here is needed for that.

pub use crate::status::health;

pub mod history;
pub mod log_tail;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "prometheus")]
pub mod prometheus;

/// The filter of log lines: what `env` keeps, minus wasmfn's trace spans (those are for the
/// exporter; log lines carry trace ids as fields instead). It keeps `env`'s level hint: `And`
/// of a hinted and an unhinted filter has none, and without one the global max level is `trace`
/// and every `trace!` callsite in wasmtime is asked about on every call.
pub fn log_line_filter<S>(
    env: tracing_subscriber::EnvFilter,
) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::{filter_fn, FilterExt as _, LevelFilter};
    let hint = env.max_level_hint().unwrap_or(LevelFilter::TRACE);
    env.and(
        filter_fn(|m| !(m.is_span() && m.target() == "wasmfn::trace")).with_max_level_hint(hint),
    )
}

/// Let the `log` facade pass only what the installed filters keep (`hint`: their most verbose
/// level, from `EnvFilter::max_level_hint`). `SubscriberInitExt::init` bridges `log` at `trace`,
/// so every `log::trace!` on wasmtime's instantiation path would build a record for the filter
/// to drop: a few percent of a small guest's request time.
pub fn cap_log_facade(hint: Option<tracing::level_filters::LevelFilter>) {
    use tracing::level_filters::LevelFilter;
    let level = match hint {
        Some(LevelFilter::OFF) => log::LevelFilter::Off,
        Some(LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(LevelFilter::WARN) => log::LevelFilter::Warn,
        Some(LevelFilter::INFO) => log::LevelFilter::Info,
        Some(LevelFilter::DEBUG) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    log::set_max_level(level);
}
