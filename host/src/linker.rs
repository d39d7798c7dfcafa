//! The imports every function may use, linked once per host: WASI 0.2 (filesystem-less: no
//! preopens, no sockets unless granted), `wasi:http`, `wasi:config` and `wasi:logging`.
//!
//! Capabilities that are not implemented by this host are left out, so a component importing
//! them is refused at load with the import's name rather than failing at run time.

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;
use wasmtime_wasi_config::WasiConfig;

use crate::bindings::logging::wasi::logging::logging::{self, Level};
use crate::state::InstanceState;

/// Build the linker shared by all functions of a host.
pub fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut InstanceState| {
        WasiConfig::from(&*s.config)
    })?;
    logging::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
    Ok(linker)
}

impl logging::Host for InstanceState {
    fn log(&mut self, level: Level, context: String, message: String) {
        let function = &*self.function;
        match level {
            Level::Trace => tracing::trace!(target: "guest", function, context, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", function, context, "{message}"),
            Level::Info => tracing::info!(target: "guest", function, context, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", function, context, "{message}"),
            Level::Error | Level::Critical => {
                tracing::error!(target: "guest", function, context, critical = matches!(level, Level::Critical), "{message}")
            }
        }
    }
}
