//! `bootstrap`: the Lambda custom runtime. Loads the one function packaged beside it
//! (`wasmfn.toml`, `NAME.wasm`, `compiled/` with its precompiled form) and serves the Runtime API.
//!
//! The function is `_HANDLER` (the template's `Handler`), or the only function in the package.
//! Embedded stores, if any are bound, live in `/tmp` and vanish with the execution environment:
//! on Lambda, bind distributed stores (see `adapters/lambda/README.md`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;
use wasmfn_lambda::{handle, InvocationError};

#[derive(Debug)]
struct LambdaError(InvocationError);

impl From<LambdaError> for Diagnostic {
    fn from(e: LambdaError) -> Diagnostic {
        Diagnostic {
            error_type: e.0.kind,
            error_message: e.0.message,
        }
    }
}

/// Time left before the invocation's deadline, minus a margin to report a timeout in time.
fn remaining(deadline_ms: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Lambda sends Unix milliseconds. Some emulators (cargo-lambda's) send a duration instead
    // (600000); anything before 2001 is read as one.
    let left = if deadline_ms < 978_307_200_000 {
        deadline_ms
    } else {
        deadline_ms.saturating_sub(now)
    };
    Duration::from_millis(left).saturating_sub(wasmfn_lambda::dispatch::DEADLINE_MARGIN)
}

/// The engine for one Lambda execution environment, which runs one invocation at a time.
fn engine_options() -> Result<wasmfn_host::EngineOptions, String> {
    let allocator = match std::env::var("WASMFN_ALLOCATOR").as_deref() {
        Err(_) | Ok("pooling") => wasmfn_host::Allocator::Pooling,
        // For emulated CPUs (qemu-user), where reserving the pool's address space is slow.
        Ok("on-demand") => wasmfn_host::Allocator::OnDemand,
        Ok(other) => {
            return Err(format!(
                "WASMFN_ALLOCATOR is `{other}`; use `pooling` (default) or `on-demand`"
            ))
        }
    };
    Ok(wasmfn_host::EngineOptions {
        allocator,
        // One invocation at a time plus pre-warmed instances: a small pool reserves less
        // address space at start than the server's 1000 slots.
        pool_instances: 16,
        ..Default::default()
    })
}

/// Log lines to stdout (CloudWatch), and traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set (e.g. the ADOT collector extension's `http://localhost:4318`).
fn init_logging() -> Option<wasmfn_host::telemetry::otlp::TraceExport> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMFN_LOG")
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    let hint = filter.max_level_hint();
    let lines = tracing_subscriber::fmt::layer()
        .without_time() // CloudWatch stamps every line
        .with_ansi(false)
        .with_filter(wasmfn_host::telemetry::log_line_filter(filter));
    let settings = wasmfn_host::telemetry::otlp::ExportSettings::resolve(None);
    let (otel, export) = wasmfn_host::telemetry::otlp::optional_layer(settings.as_ref());
    tracing_subscriber::registry().with(lines).with(otel).init();
    wasmfn_host::telemetry::cap_log_facade(hint);
    export
}

/// The span of one Lambda invocation: it continues the X-Ray trace Lambda gives the
/// invocation (`_X_AMZN_TRACE_ID`), and the function's invocation span is its child.
fn invocation_span(context: &lambda_runtime::Context) -> tracing::Span {
    use wasmfn_host::trace;
    if !trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: "wasmfn::trace",
        "lambda invocation",
        otel.name = "lambda invoke",
        otel.kind = "server",
        faas.invocation_id = %context.request_id,
        cloud.provider = "aws",
        cloud.resource_id = %context.invoked_function_arn,
    );
    let header = context
        .xray_trace_id
        .clone()
        .or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
    if let Some(parent) = header.as_deref().and_then(wasmfn_lambda::xray::traceparent) {
        trace::set_remote_parent(
            &span,
            &trace::Stored {
                parent: &parent,
                state: None,
            },
        );
    }
    span
}

fn main() -> Result<(), lambda_runtime::Error> {
    let traces = init_logging();
    let root = std::env::var_os("LAMBDA_TASK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    // One thread: a Lambda environment handles one invocation at a time, so the Runtime API
    // client, the handler and the guest's tasks share it without cross-thread wake-ups.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let host = wasmfn_host::Host::builder()
            .engine_options(engine_options()?)
            .read_only_cache(root.join("compiled"))
            .state_dir(std::env::temp_dir().join("wasmfn"))
            // Config values can be changed on the function's environment variables.
            .config_from_env("WASMFN_CONFIG_")
            .build()?;
        let app = host.load_dir(&root)?;
        if let Some(e) = app.load_errors().first() {
            return Err(format!("cannot load the packaged function: {e}").into());
        }
        for problem in app.queue_errors() {
            tracing::error!("{problem}");
        }
        let wanted = std::env::var("_HANDLER").ok().filter(|h| !h.is_empty());
        let function = match &wanted {
            Some(name) => app.function(name).ok_or_else(|| {
                format!("_HANDLER names `{name}`, which is not in the package")
            })?,
            None => {
                let mut all = app.functions();
                match (all.next(), all.next()) {
                    (Some(f), None) => f,
                    _ => return Err("the package must hold exactly one function (or set _HANDLER)".into()),
                }
            }
        };
        tracing::info!(function = function.name(), world = %function.world(), "wasmfn function ready");
        let function = &function;
        let traces = &traces;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            use tracing::Instrument as _;
            let deadline = remaining(event.context.deadline);
            tracing::debug!(remaining_ms = deadline.as_millis() as u64, "invocation");
            let span = invocation_span(&event.context);
            let result = handle(function, event.payload, &event.context.request_id, deadline)
                .instrument(span)
                .await
                .map_err(LambdaError);
            // The environment may be frozen once the response is sent: export now.
            if let Some(traces) = traces {
                traces.flush();
            }
            result
        }))
        .await
    })
}
