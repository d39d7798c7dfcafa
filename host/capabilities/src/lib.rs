//! # wasmfn-host-capabilities
//!
//! The second layer of the wasmfn host: the platform services guests reach only through
//! imports. Each capability is one module owning its part of `wasmfn.toml`, its linker entries,
//! the context its imports read, its backend trait and its backends (the way Spin's factors
//! do), built on [`wasmfn_host_core::Capability`]:
//!
//! | module | imports | manifest | backends (feature) |
//! |---|---|---|---|
//! | [`kv`] | `wasi:keyvalue/*`, `kv-extensions` | `[kv.NAME]`, `kv = [...]` | SQLite (`kv`), Redis (`kv-redis`) |
//! | [`sql`] | `wasmfn:platform/sql` | `[sql.NAME]`, `sql = [...]` | SQLite (`sql`), PostgreSQL (`sql-postgres`) |
//! | [`blob`] | `wasmfn:platform/blob` | `[blob.NAME]`, `blob = [...]` | folder (`blob`), S3 (`blob-s3`) |
//! | [`config`] | `wasi:config/store` | `config`, `secrets` | the manifest, environment variables, files |
//! | [`outbound`] | `wasi:http/outgoing-handler` | `allowed-outbound-hosts` | wasmtime-wasi-http's sender |
//! | [`logging`] | `wasi:logging` | – | `tracing` |
//! | [`queues`] | `queue-publisher` | – | the queue trigger ([`queues::QueueSender`]) |
//! | [`events`] | `events` | – | the event bus ([`events::EventPublisher`]) |
//! | [`workflows`] | `workflows` | – | the workflow executor ([`workflows::WorkflowStarter`]) |
//!
//! The three stores share [`stores`]: one generic capability over a [`stores::StoreKind`].

pub mod backend_tls;
#[cfg(feature = "blob")]
pub mod blob;
pub mod changes;
pub mod config;
pub mod events;
#[cfg(feature = "kv")]
pub mod kv;
pub mod logging;
pub mod outbound;
pub mod queues;
pub mod service_import;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite_pool;
#[cfg(any(feature = "kv", feature = "sql", feature = "blob"))]
pub mod stores;
mod traced;
pub mod workflows;
