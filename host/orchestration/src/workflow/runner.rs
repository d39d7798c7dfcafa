//! Running one execution: state by state, each step persisted with the position it leads to
//! (see [`super::executor`] for the service that starts, resumes and leases executions).
//!
//! A step that completed is never run again. A Task interrupted by a crash runs again from
//! its start (its attempt number is unchanged), so tasks with side effects should be idempotent
//! on `execution` + `state`, as with Step Functions.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::definition::{Catcher, Definition, ResultPath, Retry, State};
use super::executor::Workflows;
use super::now_ms;
use super::paths;
use super::store::{Execution, NewExecution, Position, Status, Step, Transition};
use wasmfn_host_core::{InvokeError, Invoker};

/// An error a state ended with.
struct Failure {
    error: String,
    cause: String,
}

/// What running one execution needs.
pub(super) struct Runner {
    pub(super) workflows: Arc<Workflows>,
    pub(super) functions: Arc<dyn Invoker>,
    pub(super) shutdown: watch::Receiver<bool>,
}

impl Runner {
    /// Run a top-level execution to its end (or to shutdown).
    pub(super) async fn run_top(self: Arc<Self>, id: String) {
        if !self.workflows.running.lock().unwrap().insert(id.clone()) {
            return;
        }
        struct Done<'a>(&'a Workflows, &'a str);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.running.lock().unwrap().remove(self.1);
            }
        }
        let _done = Done(&self.workflows, &id);
        let execution = match self.workflows.store.get(&id).await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(execution = %id, error = %format!("{e:#}"), "reading the execution failed; it resumes at the next start");
                return;
            }
        };
        let Some(config) = self.workflows.configs.get(&execution.workflow) else {
            tracing::error!(execution = %id, workflow = %execution.workflow,
                "the execution's workflow is no longer declared; it stays RUNNING until it is declared again");
            return;
        };
        let definition = config.definition.clone();
        // Executions this host runs now (waiting or retrying included), by workflow.
        struct Running(metrics::Gauge);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.decrement(1.0);
            }
        }
        let running = Running(metrics::gauge!("wasmfn_workflow_executions_running",
            "workflow" => execution.workflow.clone()));
        running.0.increment(1.0);
        if let Err(e) = self.run(execution, &definition).await {
            tracing::error!(execution = %id, error = %format!("{e:#}"), "the workflow store failed; the execution resumes at the next start");
        }
    }

    /// Run `execution` over `definition` until it ends; `Ok(None)` when stopped by shutdown.
    async fn run(
        &self,
        execution: Execution,
        definition: &Definition,
    ) -> anyhow::Result<Option<Execution>> {
        let store = &self.workflows.store;
        let id = execution.id.clone();
        let workflow = execution.workflow.clone();
        let mut steps = execution.steps;
        let Some(mut position) = execution.position.clone() else {
            return Ok(Some(execution));
        };
        let mut shutdown = self.shutdown.clone();
        // Shared stores: hold a lease while running, renewed in the background (also while a
        // long task runs) well before it lapses.
        let renew_every = store.lease().map(|l| l / 3);
        if !store.claim(&id).await? {
            return Ok(None);
        }
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _renewal = renew_every.map(|every| {
            let (store, id, lost) = (store.clone(), id.clone(), lost.clone());
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if !matches!(store.claim(&id).await, Ok(true)) {
                        lost.store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            }))
        });
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            if lost.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(execution = %id, "lost the lease on this execution; another host runs it");
                return Ok(None);
            }
            if let Some(wake_at) = position.wake_at {
                let wait = Duration::from_millis(wake_at.saturating_sub(now_ms()));
                if !wait.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        changed = shutdown.changed() => {
                            // No shutdown signal any more (its sender is gone): just wait.
                            if changed.is_err() {
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                    continue;
                }
            }
            let Some(state) = definition.states.get(&position.state) else {
                anyhow::bail!(
                    "execution `{id}` is at state `{}`, which its workflow no longer has",
                    position.state
                );
            };
            let started_at = now_ms();
            let input: Value = serde_json::from_str(&position.input).unwrap_or(Value::Null);
            // A Wait that only stores its deadline is no step yet.
            let step_span = match state {
                State::Wait { .. } if position.wake_at.is_none() => tracing::Span::none(),
                _ => super::spans::step(
                    &execution,
                    &position.state,
                    kind_of(state),
                    position.attempt,
                ),
            };
            let outcome: Result<Value, Failure> = match state {
                State::Task {
                    resource,
                    timeout_seconds,
                    ..
                } => {
                    let effective =
                        select(&input, &state.flow().and_then(|f| f.input_path.clone()));
                    self.task(
                        &execution,
                        &position,
                        resource,
                        *timeout_seconds,
                        &effective,
                    )
                    .instrument(step_span.clone())
                    .await
                }
                State::Pass {
                    result,
                    result_path,
                    flow,
                } => {
                    let effective = select(&input, &flow.input_path);
                    place(&input, result_path, result.clone().unwrap_or(effective))
                }
                State::Choice { choices, default } => {
                    let next = choices
                        .iter()
                        .find(|c| paths::evaluate(c.variable.as_deref(), &c.test, &input))
                        .map(|c| c.next.clone())
                        .or_else(|| default.clone());
                    let (step, next) = match next {
                        Some(next) => (
                            step(&position, "Choice", started_at, Ok(position.input.clone())),
                            Transition::Continue(Position {
                                state: next,
                                input: position.input.clone(),
                                attempt: 0,
                                wake_at: None,
                            }),
                        ),
                        None => {
                            let f = Failure {
                                error: "States.NoChoiceMatched".into(),
                                cause: format!(
                                    "no rule of Choice `{}` matched and it has no Default",
                                    position.state
                                ),
                            };
                            (
                                step(&position, "Choice", started_at, Err(&f)),
                                finish_failed(&f),
                            )
                        }
                    };
                    store.record(&id, Some(step), next.clone()).await?;
                    steps += 1;
                    match next {
                        Transition::Continue(p) => {
                            position = p;
                            continue;
                        }
                        Transition::Finish { .. } => return self.ended(&id).await,
                    }
                }
                State::Wait {
                    seconds, timestamp, ..
                } if position.wake_at.is_none() => {
                    let until = match (seconds, timestamp) {
                        (Some(s), _) => now_ms() + s * 1000,
                        (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
                            .map(|t| t.timestamp_millis().max(0) as u64)
                            .unwrap_or_else(|_| now_ms()),
                        (None, None) => now_ms(),
                    };
                    // Persist the deadline first, so a restart waits only what is left.
                    position.wake_at = Some(until);
                    store
                        .record(&id, None, Transition::Continue(position.clone()))
                        .await?;
                    continue;
                }
                State::Wait { .. } => Ok(input.clone()),
                State::Parallel { branches, flow, .. } => {
                    let effective = select(&input, &flow.input_path);
                    self.parallel(&execution, steps, branches, &effective)
                        .instrument(step_span.clone())
                        .await?
                }
                State::Succeed {} => Ok(input.clone()),
                State::Fail { error, cause } => Err(Failure {
                    error: error.clone().unwrap_or_else(|| "States.Fail".into()),
                    cause: cause.clone().unwrap_or_default(),
                }),
            };
            let Some(outcome) = self.settle(outcome, &input, state) else {
                // Shut down mid-Parallel: branches stopped; resume later.
                return Ok(None);
            };
            let kind = kind_of(state);
            let outcome = outcome.map(|o| match state.flow() {
                Some(flow) => select(&o, &flow.output_path),
                None => o,
            });
            let (step, next) = match outcome {
                Ok(output) => {
                    let text = output.to_string();
                    let next = match next_of(state) {
                        Some(next) => Transition::Continue(Position {
                            state: next.to_string(),
                            input: text.clone(),
                            attempt: 0,
                            wake_at: None,
                        }),
                        None => Transition::Finish {
                            status: Status::Succeeded,
                            output: Some(text.clone()),
                            error: None,
                            cause: None,
                        },
                    };
                    (step(&position, kind, started_at, Ok(text)), next)
                }
                Err(f) => {
                    wasmfn_host_core::trace::record_error(&step_span, &f.error);
                    let next = self.on_error(state, &position, &input, &f);
                    (step(&position, kind, started_at, Err(&f)), next)
                }
            };
            store.record(&id, Some(step), next.clone()).await?;
            steps += 1;
            let step_seconds = now_ms().saturating_sub(started_at) as f64 / 1000.0;
            metrics::histogram!("wasmfn_workflow_step_duration_seconds",
                "workflow" => workflow.clone(), "state" => position.state.clone())
            .record(step_seconds);
            if let Transition::Continue(p) = &next {
                if p.state == position.state && p.attempt > position.attempt {
                    metrics::counter!("wasmfn_workflow_retries_total",
                        "workflow" => workflow.clone(), "state" => position.state.clone())
                    .increment(1);
                }
            }
            match next {
                Transition::Continue(p) => position = p,
                Transition::Finish { .. } => return self.ended(&id).await,
            }
        }
    }

    /// Apply a successful state's ResultPath (Task/Parallel), passing failures through.
    /// `None` when the state was interrupted by shutdown.
    fn settle(
        &self,
        outcome: Result<Value, Failure>,
        input: &Value,
        state: &State,
    ) -> Option<Result<Value, Failure>> {
        if *self.shutdown.borrow() && matches!(&outcome, Err(f) if f.error == STOPPED) {
            return None;
        }
        Some(match (outcome, state.recovery()) {
            (Ok(result), Some(r)) => place(input, &r.result_path, result),
            (other, _) => other,
        })
    }

    /// Where a failed state goes: a retry after backoff, a catcher, or the end.
    fn on_error(
        &self,
        state: &State,
        position: &Position,
        input: &Value,
        f: &Failure,
    ) -> Transition {
        let (retry, catch): (&[Retry], &[Catcher]) = match state.recovery() {
            Some(r) => (&r.retry, &r.catch),
            None => (&[], &[]),
        };
        if let Some(r) = retry
            .iter()
            .find(|r| paths::error_matches(&r.error_equals, &f.error))
        {
            if position.attempt < r.max_attempts {
                let delay = r.interval_seconds * r.backoff_rate.powi(position.attempt as i32);
                return Transition::Continue(Position {
                    state: position.state.clone(),
                    input: position.input.clone(),
                    attempt: position.attempt + 1,
                    wake_at: Some(now_ms() + (delay * 1000.0) as u64),
                });
            }
        }
        if let Some(c) = catch
            .iter()
            .find(|c| paths::error_matches(&c.error_equals, &f.error))
        {
            let error = json!({ "Error": f.error, "Cause": f.cause });
            let input = place(input, &c.result_path, error.clone()).unwrap_or(error);
            return Transition::Continue(Position {
                state: c.next.clone(),
                input: input.to_string(),
                attempt: 0,
                wake_at: None,
            });
        }
        finish_failed(f)
    }

    async fn ended(&self, id: &str) -> anyhow::Result<Option<Execution>> {
        let e = self.workflows.store.get(id).await?;
        if let Some(e) = &e {
            if e.parent.is_none() {
                metrics::counter!("wasmfn_workflow_executions_total",
                    "workflow" => e.workflow.clone(), "status" => e.status.as_str())
                .increment(1);
                tracing::info!(execution = %id, workflow = %e.workflow, status = e.status.as_str(),
                    error = e.error.as_deref().unwrap_or(""), "execution ended");
            }
        }
        self.workflows.finished.notify_waiters();
        Ok(e)
    }

    /// Invoke a Task's function.
    async fn task(
        &self,
        execution: &Execution,
        position: &Position,
        resource: &str,
        timeout_seconds: Option<u64>,
        input: &Value,
    ) -> Result<Value, Failure> {
        let Some(function) = self.functions.function(resource) else {
            return Err(Failure {
                error: "States.TaskFailed".into(),
                cause: format!("function `{resource}` is not loaded"),
            });
        };
        let context = wasmfn_host_core::task::TaskContext {
            execution: execution.id.clone(),
            workflow: execution.workflow.clone(),
            state: position.state.clone(),
            attempt: position.attempt + 1,
        };
        let input = input.to_string();
        let call = function.invoke_task(&context, &input);
        let result = match timeout_seconds {
            Some(s) => match tokio::time::timeout(Duration::from_secs(s), call).await {
                Ok(r) => r,
                Err(_) => Err(InvokeError::Timeout {
                    function: resource.to_string(),
                    after: Duration::from_secs(s),
                }),
            },
            None => call.await,
        };
        match result {
            Ok(Ok(output)) => serde_json::from_str(&output).map_err(|e| Failure {
                error: "States.Runtime".into(),
                cause: format!("function `{resource}` returned a result that is not JSON: {e}"),
            }),
            Ok(Err(e)) => Err(Failure {
                error: e.error,
                cause: e.cause,
            }),
            Err(e @ InvokeError::Timeout { .. }) => Err(Failure {
                error: "States.Timeout".into(),
                cause: e.to_string(),
            }),
            Err(e) => Err(Failure {
                error: "States.TaskFailed".into(),
                cause: e.to_string(),
            }),
        }
    }

    /// Run a Parallel state's branches as child executions (ids derived from the parent's
    /// step count, so a resumed parent finds them) and collect their outputs in order.
    async fn parallel(
        &self,
        execution: &Execution,
        steps: u64,
        branches: &[Definition],
        input: &Value,
    ) -> anyhow::Result<Result<Value, Failure>> {
        let store = &self.workflows.store;
        let mut runs = Vec::new();
        for (i, branch) in branches.iter().enumerate() {
            let child = super::branch_id(&execution.id, steps + 1, i);
            store
                .create(NewExecution {
                    id: child.clone(),
                    workflow: execution.workflow.clone(),
                    parent: Some(execution.id.clone()),
                    input: input.to_string(),
                    start_at: branch.start_at.clone(),
                    // Branch steps continue under the Parallel step's span.
                    trace: super::spans::current().or_else(|| execution.trace.clone()),
                })
                .await?;
            let e = store
                .get(&child)
                .await?
                .ok_or_else(|| anyhow::anyhow!("branch execution `{child}` vanished"))?;
            runs.push(Box::pin(self.run(e, branch)));
        }
        let mut outputs = Vec::new();
        let mut failure = None;
        for result in futures::future::join_all(runs).await {
            match result? {
                None => {
                    return Ok(Err(Failure {
                        error: STOPPED.into(),
                        cause: String::new(),
                    }))
                }
                Some(e) if e.status == Status::Succeeded => outputs.push(
                    e.output
                        .as_deref()
                        .and_then(|o| serde_json::from_str(o).ok())
                        .unwrap_or(Value::Null),
                ),
                Some(e) => {
                    failure.get_or_insert(Failure {
                        error: e.error.unwrap_or_else(|| "States.BranchFailed".into()),
                        cause: e.cause.unwrap_or_default(),
                    });
                }
            }
        }
        Ok(match failure {
            Some(f) => Err(f),
            None => Ok(Value::Array(outputs)),
        })
    }
}

/// Aborts the task when dropped (the lease renewal ends with its execution).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The pseudo-error of a Parallel state interrupted by shutdown (never stored).
const STOPPED: &str = "wasmfn.Stopped";

fn place(input: &Value, result_path: &ResultPath, result: Value) -> Result<Value, Failure> {
    match result_path {
        Some(None) => Ok(input.clone()),
        Some(Some(p)) => paths::place(input, Some(p), result),
        None => Ok(result),
    }
    .map_err(|cause| Failure {
        error: "States.ResultPathMatchFailure".into(),
        cause,
    })
}

/// Apply an `InputPath`/`OutputPath`: absent keeps the value, `null` gives `{}`.
fn select(value: &Value, path: &ResultPath) -> Value {
    match path {
        None => value.clone(),
        Some(None) => json!({}),
        Some(Some(p)) => paths::get(value, p).cloned().unwrap_or(Value::Null),
    }
}

fn finish_failed(f: &Failure) -> Transition {
    Transition::Finish {
        status: Status::Failed,
        output: None,
        error: Some(f.error.clone()),
        cause: Some(f.cause.clone()),
    }
}

fn step(
    position: &Position,
    kind: &str,
    started_at: u64,
    outcome: Result<String, &Failure>,
) -> Step {
    let (output, error, cause) = match outcome {
        Ok(text) => (Some(text), None, None),
        Err(f) => (None, Some(f.error.clone()), Some(f.cause.clone())),
    };
    Step {
        seq: 0,
        state: position.state.clone(),
        kind: kind.to_string(),
        attempt: position.attempt + 1,
        input: position.input.clone(),
        output,
        error,
        cause,
        started_at,
        ended_at: now_ms(),
    }
}

fn kind_of(state: &State) -> &'static str {
    match state {
        State::Task { .. } => "Task",
        State::Pass { .. } => "Pass",
        State::Choice { .. } => "Choice",
        State::Wait { .. } => "Wait",
        State::Parallel { .. } => "Parallel",
        State::Succeed {} => "Succeed",
        State::Fail { .. } => "Fail",
    }
}

/// The state after a successful one (`None`: the execution ends).
fn next_of(state: &State) -> Option<&str> {
    match state {
        State::Task { flow, .. }
        | State::Pass { flow, .. }
        | State::Wait { flow, .. }
        | State::Parallel { flow, .. } => flow.next.as_deref(),
        _ => None,
    }
}
