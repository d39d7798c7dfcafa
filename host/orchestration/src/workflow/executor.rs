//! The executor service: starts executions (durably, idempotent by name), resumes unfinished
//! ones when the host starts (and, on a shared store, those whose host died), and hands each to
//! a [`Runner`](super::runner) that runs it state by state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use wasmfn_host_capabilities::workflows::{StartError, WorkflowStarter};
use wasmfn_host_core::{Invoker, Service, World};

use super::definition::{Definition, State};
use super::runner::Runner;
use super::store::{Execution, ExecutionStore, NewExecution, Status};

/// A `[workflows.NAME]` entry: a name and its checked definition.
#[derive(Clone, Debug)]
pub struct WorkflowConfig {
    /// The workflow's name.
    pub name: String,
    /// Its definition.
    pub definition: Arc<Definition>,
}

/// The workflows of an app: their definitions, their store, and the executor.
pub struct Workflows {
    pub(super) store: Arc<dyn ExecutionStore>,
    pub(super) configs: BTreeMap<String, WorkflowConfig>,
    /// Workflows that cannot run, with the reason (checked against the app's functions).
    problems: BTreeMap<String, String>,
    queued: mpsc::UnboundedSender<String>,
    receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Woken whenever an execution ends (for callers waiting on a result).
    pub(super) finished: Notify,
    /// Top-level executions this host is running now.
    pub(super) running: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Workflows {
    /// Workflows over `store`.
    pub fn new(store: Arc<dyn ExecutionStore>, configs: Vec<WorkflowConfig>) -> Self {
        let (queued, receiver) = mpsc::unbounded_channel();
        Self {
            store,
            configs: configs.into_iter().map(|c| (c.name.clone(), c)).collect(),
            problems: BTreeMap::new(),
            queued,
            receiver: std::sync::Mutex::new(Some(receiver)),
            finished: Notify::new(),
            running: Default::default(),
        }
    }

    /// Check every Task names a loaded `task` function. A workflow that fails the check is
    /// not started (starts are refused with the reason); the returned errors say why.
    pub fn validate(&mut self, functions: &dyn Invoker) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, c) in &self.configs {
            let mut missing = Vec::new();
            for_each_task(&c.definition, &mut |state, resource| {
                let problem = match functions.function(resource) {
                    None => format!(
                        "state `{state}` runs function `{resource}`, which is not loaded{}",
                        functions
                            .load_error(resource)
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                    Some(f) if f.world() != World::Task => format!(
                        "state `{state}` runs function `{resource}`, which implements world `{}`; \
                         a task must implement world `task` (export wasmfn:platform/task-handler)",
                        f.world()
                    ),
                    Some(_) => return,
                };
                missing.push(problem);
            });
            if let Some(first) = missing.into_iter().next() {
                errors.push(format!(
                    "[workflows.{name}]: {first}; executions of it are refused until this is fixed"
                ));
                self.problems.insert(name.clone(), first);
            }
        }
        errors
    }

    /// The declared workflows.
    pub fn configs(&self) -> impl Iterator<Item = &WorkflowConfig> {
        self.configs.values()
    }

    /// The store (history, listings).
    pub fn store(&self) -> &Arc<dyn ExecutionStore> {
        &self.store
    }

    /// Start `workflow` with `input` (JSON text). With `name`, starting the same name again
    /// returns the existing execution. Returns the id and whether it is new. The execution is
    /// durable when this returns; it runs once the executor is started ([`Self::start`]).
    pub async fn start_execution(
        &self,
        workflow: &str,
        input: &str,
        name: Option<&str>,
    ) -> Result<(String, bool), StartError> {
        let Some(config) = self.configs.get(workflow) else {
            return Err(StartError::UnknownWorkflow(
                workflow.to_string(),
                self.configs.keys().cloned().collect(),
            ));
        };
        if let Some(problem) = self.problems.get(workflow) {
            return Err(StartError::NotRunnable(format!(
                "workflow `{workflow}` cannot run: {problem}"
            )));
        }
        serde_json::from_str::<Value>(input)
            .map_err(|e| StartError::Invalid(format!("the input is not JSON: {e}")))?;
        let id = match name {
            Some(n) => {
                validate_execution_name(n).map_err(StartError::Invalid)?;
                n.to_string()
            }
            None => crate::new_id(),
        };
        let created = self
            .store
            .create(NewExecution {
                id: id.clone(),
                workflow: workflow.to_string(),
                parent: None,
                input: input.to_string(),
                start_at: config.definition.start_at.clone(),
                trace: super::spans::current(),
            })
            .await
            .map_err(StartError::Store)?;
        if created {
            tracing::info!(workflow, execution = %id, "execution started");
            // The executor may not run (a library user who never starts it): the execution
            // stays stored and is resumed by the next executor.
            let _ = self.queued.send(id.clone());
        }
        Ok((id, created))
    }

    /// Wait until execution `id` ends or `timeout` passes; returns it as it then stands.
    pub async fn wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Option<Execution>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.finished.notified();
            let execution = self.store.get(id).await?;
            match &execution {
                Some(e) if e.status == Status::Running => {}
                _ => return Ok(execution),
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(execution);
            }
        }
    }
}

impl WorkflowStarter for Workflows {
    fn start_execution<'a>(
        &'a self,
        workflow: &'a str,
        input: &'a str,
        name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(String, bool), StartError>> {
        Box::pin(Workflows::start_execution(self, workflow, input, name))
    }
}

impl Service for Workflows {
    /// Resume every unfinished execution, then run new ones as they are started, until
    /// `shutdown` turns true: executions then stop at their next step boundary (a running
    /// task finishes first) and resume at the next start.
    fn start(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let Some(mut receiver) = self.receiver.lock().unwrap().take() else {
            return Vec::new();
        };
        let runner = Arc::new(Runner {
            workflows: self.clone(),
            functions,
            shutdown: shutdown.clone(),
        });
        let mut shutdown = shutdown;
        // A shared store is polled for executions whose host died (their lease lapsed); the
        // embedded one only at start.
        let poll = self.store.lease().map(|l| l / 3);
        vec![tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            let mut first = true;
            let mut tick = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
            loop {
                tokio::select! {
                    _ = tick.tick(), if first || poll.is_some() => {
                        first = false;
                        match runner.workflows.store.unfinished().await {
                            Ok(list) => {
                                let idle: Vec<_> = {
                                    let busy = runner.workflows.running.lock().unwrap();
                                    list.into_iter().filter(|e| !busy.contains(&e.id)).collect()
                                };
                                if !idle.is_empty() {
                                    tracing::info!(executions = idle.len(), "resuming unfinished executions");
                                }
                                for e in idle {
                                    running.spawn(runner.clone().run_top(e.id));
                                }
                            }
                            Err(e) => tracing::error!(error = %format!("{e:#}"), "listing unfinished executions failed"),
                        }
                    }
                    id = receiver.recv() => match id {
                        Some(id) => { running.spawn(runner.clone().run_top(id)); }
                        None => break,
                    },
                    changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
            while running.join_next().await.is_some() {}
        })]
    }
}

/// Call `f(state, function)` for every Task, in branches too.
fn for_each_task(d: &Definition, f: &mut dyn FnMut(&str, &str)) {
    for (name, state) in &d.states {
        match state {
            State::Task { resource, .. } => f(name, resource),
            State::Parallel { branches, .. } => branches.iter().for_each(|b| for_each_task(b, f)),
            _ => {}
        }
    }
}

/// Execution names given by callers become ids: keep them printable and short.
fn validate_execution_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "execution name `{name}` must be 1-80 characters of letters, digits, `-`, `_` and `.`"
        ))
    }
}
