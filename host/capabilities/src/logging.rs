//! `wasi:logging`: a guest's log records become the host's `tracing` events (target `guest`),
//! tagged with the function and the invocation.

use wasmfn_host_core::manifest::ManifestSection;
use wasmfn_host_core::{Capability, InstanceState};
use wasmtime::component::{HasSelf, Linker};

use bindings::wasi::logging::logging::{self, Level};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world logging-imports { import wasi:logging/logging@0.1.0-draft; }
        ",
        world: "wasmfn:host-bindings/logging-imports",
    });
}

/// The logging capability.
#[derive(Default)]
pub struct LoggingCapability;

impl ManifestSection for LoggingCapability {}

impl Capability for LoggingCapability {
    fn name(&self) -> &'static str {
        "logging"
    }

    fn add_to_linker(&self, linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
        logging::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
        Ok(())
    }
}

impl logging::Host for InstanceState {
    fn log(&mut self, level: Level, context: String, message: String) {
        let invocation = self.invocation();
        let function = self.function_name();
        // With tracing on, the line names the span it was written in.
        let (trace_id, span_id) = wasmfn_host_core::trace::current_ids().unzip();
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", function, invocation, context, trace_id, span_id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", function, invocation, context, trace_id, span_id, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", function, invocation, context, trace_id, span_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", function, invocation, context, trace_id, span_id, "{message}")
            }
            Level::Error | Level::Critical => {
                tracing::error!(target: "guest", function, invocation, context, trace_id, span_id, critical = matches!(level, Level::Critical), "{message}")
            }
        }
    }
}
