//! Saga workflows: Step Functions-style state machines whose tasks are wasmfn functions.
//!
//! - [`definition`]: the Amazon States Language subset, read from JSON or TOML and checked
//!   before anything runs.
//! - [`graph`]: a definition as states and edges, for drawing.
//! - [`paths`]: reference paths, `ResultPath`, error matching and Choice rules.
//! - [`ExecutionStore`]: where executions live, persisted after every step.
//!   [`SqliteExecutions`] is the embedded default, [`PostgresExecutions`] the distributed one
//!   (shared by several hosts, each execution leased to one of them at a time).
//! - [`Workflows`] (`executor.rs`): starts executions, resumes unfinished ones when the host
//!   starts (a completed step is never run again) and leases them on a shared store;
//!   `runner.rs` runs one execution state by state and keeps its history.

pub mod definition;
#[cfg(feature = "workflows")]
mod executor;
#[cfg(feature = "workflows")]
pub mod graph;
#[cfg(feature = "workflows")]
pub mod manifest;
pub mod paths;
#[cfg(feature = "workflows-postgres")]
mod postgres;
#[cfg(feature = "workflows")]
mod runner;
#[cfg(feature = "workflows")]
mod spans;
#[cfg(feature = "workflows")]
mod sqlite;
#[cfg(feature = "workflows")]
pub mod store;

pub use definition::{Definition, DefinitionError};
#[cfg(feature = "workflows")]
pub use executor::{WorkflowConfig, Workflows};
#[cfg(feature = "workflows")]
pub use manifest::{WorkflowManifest, WorkflowSection, WorkflowStoreChoice};
#[cfg(feature = "workflows-postgres")]
pub use postgres::PostgresExecutions;
#[cfg(feature = "workflows")]
pub use sqlite::SqliteExecutions;
#[cfg(feature = "workflows")]
pub use store::{Execution, ExecutionStore, Status, Step};
/// Why an execution could not start (shared with the workflow-start import).
pub use wasmfn_host_capabilities::workflows::StartError;

#[cfg(feature = "workflows")]
pub(crate) use crate::now_ms;

/// The id of branch `index` of the Parallel state that execution `parent` runs as its step
/// `seq` (the history's `seq` of that step): stable, so a resumed parent finds its branches.
pub fn branch_id(parent: &str, seq: u64, index: usize) -> String {
    format!("{parent}:{seq}:{index}")
}
