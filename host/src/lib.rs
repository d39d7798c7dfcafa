//! # wasmfn-host
//!
//! The embeddable core of wasmfn: loads WASI components as serverless functions and invokes
//! them: HTTP requests through the standard `wasi:http` incoming handler, and queue batches,
//! stream change records and scheduled events through the `wasmfn:platform` worlds in `wit/`.
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

mod app;
mod bindings;
pub mod blob;
mod compile_cache;
pub mod config_env;
mod control_api;
mod discovery;
mod engine;
mod error;
pub mod event_json;
pub mod eventbus;
mod events;
mod function;
mod guest_output;
mod host;
mod http_invoke;
pub mod kv;
mod limits;
mod linker;
pub mod manifest;
pub mod outbound;
pub mod queue;
mod router;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod sql;
mod sqlite_pool;
mod state;
pub mod stores;
pub mod stream_feed;
pub mod workflow;
mod world;

pub use app::App;
pub use compile_cache::{CacheOutcome, CompileCache};
pub use engine::{Allocator, EngineOptions};
pub use error::{InvokeError, LoadError};
pub use events::{schedule, stream, task};
pub use function::{Function, FunctionSettings};
pub use host::{Host, HostBuilder};
pub use http_invoke::{error_response, full_body, text_response, HttpResponse, RequestBody};
pub use limits::{parse_duration, parse_size, InstanceMode, Limits, ReusePolicy};
pub use router::Route;
pub use state::{Grants, InstanceState, Platform};
pub use world::{World, WorldError};
