//! # wasmfn-host
//!
//! The embeddable wasmfn host: loads WASI components as serverless functions and invokes
//! them: HTTP requests through the standard `wasi:http` incoming handler, and queue batches,
//! stream change records, scheduled events and workflow steps through the `wasmfn:platform`
//! worlds in `wit/`.
//!
//! This crate is the composition root. It puts the layers below together (see
//! `host/README.md`):
//!
//! 1. [`wasmfn_host_core`]: engine, compile cache, worlds, function loading, limits, invoking;
//! 2. [`wasmfn_host_capabilities`]: the imports guests use (stores, config, outbound HTTP...);
//! 3. [`wasmfn_host_triggers`] and [`wasmfn_host_orchestration`]: queues, streams, schedules,
//!    the event bus and workflows;
//! 4. here: the registry of what this build contains (`registry.rs`), the [`manifest`] assembled from
//!    every section, loading a folder as an [`App`], routing, the [`server`] and the host API.
//!
//! Compiled code is cached on disk, instances come from wasmtime's pooling allocator and each
//! invocation gets a fresh, isolated instance (or, opted in per function, a warm one).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let host = wasmfn_host::Host::builder().build()?;
//! let app = host.load_dir("guests")?;
//! let request = http::Request::get("http://localhost/hello")
//!     .body(wasmfn_host::full_body(""))?;
//! let response = app.handle(request).await;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! With `default-features = false` only the core and the http path are built (config, secrets,
//! logging, outbound HTTP); each embedded store, trigger and distributed backend is a feature.

pub mod admin;
mod app;
pub mod cluster;
pub mod console;
mod control_api;
mod host;
mod invoke_event;
mod load;
pub mod manifest;
mod registry;
mod router;
pub mod server;
mod spread;
mod status;
pub mod telemetry;
#[cfg(any(
    feature = "queues",
    feature = "schedules",
    feature = "streams",
    feature = "workflows",
    feature = "events"
))]
mod wiring;
#[cfg(not(any(
    feature = "queues",
    feature = "schedules",
    feature = "streams",
    feature = "workflows",
    feature = "events"
)))]
mod wiring {
    //! This build has no triggers or orchestration: nothing to start.
    pub(crate) fn start_services(
        _app: &mut crate::App,
        _manifest: &crate::manifest::Manifest,
        _state: &std::path::Path,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

pub use app::App;
pub use host::{Host, HostBuilder};
pub use invoke_event::{invoke_json, sample_event};
pub use load::{app_functions, AppFunction};
pub use router::Route;
#[cfg(not(feature = "queues"))]
pub use wasmfn_host_core::queue;
pub use wasmfn_host_core::{
    error_response, event_json, full_body, opaque_error_response, parse_duration, parse_size,
    schedule, secrets, stream, task, text_response, trace, Allocator, CacheOutcome, CompileCache,
    EngineOptions, Extensions, Function, FunctionSettings, HttpFailure, HttpResponse, InstanceMode,
    InstanceState, InvokeError, Invoker, Limits, LoadError, RequestBody, ReusePolicy, Usage,
    UsageTotals, World, WorldError,
};

/// The layers below, for embedders that need more than the re-exports.
pub use {
    wasmfn_host_capabilities, wasmfn_host_core, wasmfn_host_orchestration, wasmfn_host_triggers,
};

/// Config values and secrets (`wasi:config`).
pub use wasmfn_host_capabilities::config;
/// Config values from environment variables.
pub use wasmfn_host_capabilities::config::env as config_env;
/// Outbound HTTP allow-lists.
pub use wasmfn_host_capabilities::outbound;

/// Blob stores.
#[cfg(feature = "blob")]
pub use wasmfn_host_capabilities::blob;
/// Key-value stores.
#[cfg(feature = "kv")]
pub use wasmfn_host_capabilities::kv;
/// SQL databases.
#[cfg(feature = "sql")]
pub use wasmfn_host_capabilities::sql;
/// What the store kinds share.
#[cfg(any(feature = "kv", feature = "sql", feature = "blob"))]
pub use wasmfn_host_capabilities::stores;

/// The event bus and topics.
#[cfg(feature = "events")]
pub use wasmfn_host_orchestration::eventbus;
/// Saga workflows.
#[cfg(any(feature = "events", feature = "workflows"))]
pub use wasmfn_host_orchestration::workflow;
/// Queues.
#[cfg(feature = "queues")]
pub use wasmfn_host_triggers::queue;
/// Schedules.
#[cfg(feature = "schedules")]
pub use wasmfn_host_triggers::schedule as scheduler;
/// Change streams.
#[cfg(feature = "streams")]
pub use wasmfn_host_triggers::stream as stream_feed;
