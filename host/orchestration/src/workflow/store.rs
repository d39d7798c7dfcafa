//! What an execution store keeps: executions (where each one is) and their history (every
//! step taken), and the [`ExecutionStore`] trait the embedded and distributed stores implement.
//!
//! A step and the position it leads to are written in one transaction, so after a crash an
//! execution resumes exactly after its last completed step.
//!
//! A store shared by several hosts hands each running execution to one of them at a time: a
//! host [claims](ExecutionStore::claim) it for a lease it keeps renewing, and its writes are
//! refused once another host has taken over an expired lease (fencing).

use serde::Serialize;

/// A pending store operation.
pub type BackendFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send>>;

/// Where an execution is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Still going (or waiting, or interrupted by a host stop and resumed at the next start).
    Running,
    /// Ended in `End`, a `Succeed` state or the end of a branch.
    Succeeded,
    /// Ended in a `Fail` state or an uncaught error.
    Failed,
}

impl Status {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Status {
        match s {
            "SUCCEEDED" => Status::Succeeded,
            "FAILED" => Status::Failed,
            _ => Status::Running,
        }
    }
}

/// The state an execution is about to run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The state's name.
    pub state: String,
    /// Its input (JSON text).
    pub input: String,
    /// Attempts of this state already made (retries).
    pub attempt: u32,
    /// Not before this time (ms since the epoch): a Wait or a retry's backoff.
    pub wake_at: Option<u64>,
}

/// One execution.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Its id (unique in the store).
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The execution whose Parallel state runs this one as a branch.
    pub parent: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// The input it started with (JSON text).
    pub input: String,
    /// The final output (JSON text) once succeeded.
    pub output: Option<String>,
    /// The error once failed.
    pub error: Option<String>,
    /// The error's cause once failed.
    pub cause: Option<String>,
    /// The next state while running.
    pub position: Option<Position>,
    /// Start time, ms since the epoch.
    pub started_at: u64,
    /// End time, ms since the epoch.
    pub ended_at: Option<u64>,
    /// Steps in its history so far.
    pub steps: u64,
    /// The trace context of whatever started it (`traceparent`, then a newline and the
    /// `tracestate` if there is one): each step's span continues that trace.
    #[serde(skip)]
    pub trace: Option<String>,
}

/// One step of the history: a state run (or one failed attempt of it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Order in the execution, from 1 (assigned by the store).
    pub seq: u64,
    /// The state's name.
    pub state: String,
    /// The state's type (`Task`, `Pass`, `Choice`, `Wait`, `Parallel`, `Succeed`, `Fail`).
    pub kind: String,
    /// The attempt (1 unless retried).
    pub attempt: u32,
    /// Input (JSON text).
    pub input: String,
    /// Output (JSON text) when it succeeded.
    pub output: Option<String>,
    /// Error name when it failed.
    pub error: Option<String>,
    /// Error cause when it failed.
    pub cause: Option<String>,
    /// When it started, ms since the epoch.
    pub started_at: u64,
    /// When it ended, ms since the epoch.
    pub ended_at: u64,
}

/// Where a step leads.
#[derive(Clone, Debug)]
pub enum Transition {
    /// To this state next.
    Continue(Position),
    /// The execution ends.
    Finish {
        /// Succeeded or failed.
        status: Status,
        /// Output when succeeded.
        output: Option<String>,
        /// Error when failed.
        error: Option<String>,
        /// Cause when failed.
        cause: Option<String>,
    },
}

/// A new execution to store.
#[derive(Clone, Debug)]
pub struct NewExecution {
    /// Its id (a given name, or generated).
    pub id: String,
    /// The workflow.
    pub workflow: String,
    /// Parent execution, for branches.
    pub parent: Option<String>,
    /// Input (JSON text).
    pub input: String,
    /// The first state.
    pub start_at: String,
    /// The starter's trace context (see [`Execution::trace`]).
    pub trace: Option<String>,
}

/// Where executions live. Every write is durable when its future resolves.
pub trait ExecutionStore: Send + Sync + 'static {
    /// Store a new execution positioned at its first state. Returns `false` (and changes
    /// nothing) when an execution with that id exists: starts by name are idempotent.
    fn create(&self, execution: NewExecution) -> BackendFuture<bool>;
    /// Append `step` (if any) to the history of `id` and move it to `next`, atomically. Fails,
    /// writing nothing, when another host has taken the execution over.
    fn record(&self, id: &str, step: Option<Step>, next: Transition) -> BackendFuture<()>;
    /// One execution.
    fn get(&self, id: &str) -> BackendFuture<Option<Execution>>;
    /// Its history, oldest step first.
    fn history(&self, id: &str) -> BackendFuture<Vec<Step>>;
    /// Running top-level executions no other host holds a live lease on (to resume).
    fn unfinished(&self) -> BackendFuture<Vec<Execution>>;
    /// Take (or renew) this store's lease on execution `id`; `false` when another host holds
    /// a live lease on it.
    fn claim(&self, id: &str) -> BackendFuture<bool>;
    /// How long a lease lasts (`None`: the store belongs to one host and needs none).
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }
    /// The newest executions, of `workflow` if given.
    fn list(&self, workflow: Option<&str>, limit: usize) -> BackendFuture<Vec<Execution>>;
}
