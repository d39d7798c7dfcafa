//! Saga workflows: Step Functions-style state machines whose tasks are wasmfn functions.
//!
//! - [`definition`]: the Amazon States Language subset, read from JSON or TOML and checked
//!   before anything runs.
//! - [`paths`]: reference paths, `ResultPath`, error matching and Choice rules.
//! - [`ExecutionStore`]: where executions live, persisted after every step.
//!   [`SqliteExecutions`] is the embedded default, [`PostgresExecutions`] the distributed one
//!   (shared by several hosts, each execution leased to one of them at a time).
//! - [`Workflows`] (`executor.rs`): starts executions, resumes unfinished ones when the host
//!   starts (a completed step is never run again) and leases them on a shared store;
//!   `runner.rs` runs one execution state by state and keeps its history.

pub mod definition;
mod executor;
pub mod paths;
mod postgres;
mod runner;
mod sqlite;
pub mod store;

pub use definition::{Definition, DefinitionError};
pub(crate) use executor::new_id;
pub use executor::{StartError, WorkflowConfig, Workflows};
pub use postgres::PostgresExecutions;
pub use sqlite::SqliteExecutions;
pub use store::{Execution, ExecutionStore, Status, Step};
