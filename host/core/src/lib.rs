//! # wasmfn-host-core
//!
//! The bottom layer of the wasmfn host: the wasmtime engine and compile cache, the handler
//! worlds and how a component's exports identify its world, loading a component as a
//! [`Function`], its instance lifecycle and limits, and invoking it in each world. It knows no
//! capability backend and no trigger; instead it defines what they plug into:
//!
//! - [`capability`]: a capability links its imports and builds a per-function context that its
//!   host functions find in [`InstanceState::context`];
//! - [`manifest`]: a [`ManifestSection`](manifest::ManifestSection) owns tables and function
//!   keys of `wasmfn.toml` and parses them itself;
//! - [`services`]: late-bound services (a capability's trait, implemented by a higher layer);
//! - [`invoker`]: how triggers and orchestration reach functions, and run in the background.
//!
//! The `wasmfn-host` crate composes these with the capabilities, triggers and orchestration into
//! an app and a server.

pub mod bindings;
pub mod capability;
mod compile_cache;
pub mod discovery;
mod engine;
mod error;
pub mod event_json;
pub mod extensions;
mod function;
mod guest_output;
mod instances;
pub mod invoke;
pub mod invoker;
mod limits;
pub mod manifest;
pub mod outbound;
pub mod private_dir;
pub mod recent;
mod runtimes;
pub mod secrets;
pub mod services;
mod state;
pub mod trace;
pub mod usage;
mod world;

pub use capability::{AppCapability, AppContext, Capability, Context, FunctionInfo};
pub use compile_cache::{CacheOutcome, CompileCache};
pub use engine::{Allocator, EngineOptions, HostEngine, Wasi, EPOCH_TICK};
pub use error::{InvokeError, LoadError};
pub use extensions::Extensions;
pub use function::{Function, FunctionSettings, Loader};
pub use instances::Admission;
pub use invoke::events::{queue, schedule, stream, task};
pub use invoke::http::{
    error_response, full_body, opaque_error_response, text_response, HttpFailure, HttpResponse,
    RequestBody,
};
pub use invoker::{Invoker, Service};
pub use limits::{parse_duration, parse_size, ConcurrentPolicy, InstanceMode, Limits, ReusePolicy};
pub use runtimes::{Runtime, Runtimes};
pub use state::InstanceState;
pub use usage::{Usage, UsageTotals};
pub use world::{World, WorldError};

/// Build a linker with WASI 0.2 (no preopens, no sockets), `wasi:http` 0.2 (outbound requests
/// go through the [`outbound`] gate) and the imports of every capability in `capabilities`; on
/// an engine with concurrency support (see [`Wasi`]) also WASI and `wasi:http` 0.3, and the
/// capabilities add their `async func` imports.
pub fn build_linker(
    engine: &wasmtime::Engine,
    capabilities: &[std::sync::Arc<dyn Capability>],
) -> anyhow::Result<wasmtime::component::Linker<InstanceState>> {
    let mut linker = wasmtime::component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    if engine.get_concurrency_support() {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    }
    for c in capabilities {
        c.add_to_linker(&mut linker)
            .map_err(|e| e.context(format!("linking the `{}` capability", c.name())))?;
    }
    Ok(linker)
}
