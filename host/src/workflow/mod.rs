//! Saga workflows: Step Functions-style state machines whose tasks are wasmfn functions.
//!
//! - [`definition`]: the Amazon States Language subset, read from JSON or TOML and checked
//!   before anything runs.
//! - [`paths`]: reference paths, `ResultPath`, error matching and Choice rules.
//! - [`ExecutionStore`]: where executions live, persisted after every step.
//!   [`SqliteExecutions`] is the embedded default, [`PostgresExecutions`] the distributed one
//!   (shared by several hosts, each execution leased to one of them at a time).
//! - [`Workflows`]: the executor. It runs executions step by step, resumes unfinished ones when
//!   the host starts (a completed step is never run again), and keeps each one's history.

pub mod definition;
pub mod paths;

pub use definition::{Definition, DefinitionError};
mod executor;
mod postgres;
mod sqlite;
pub mod store;

pub(crate) use executor::new_id;
pub use executor::{StartError, WorkflowConfig, Workflows};
pub use postgres::PostgresExecutions;
pub use sqlite::SqliteExecutions;
pub use store::{Execution, ExecutionStore, Status, Step};
