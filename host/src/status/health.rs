//! Liveness and readiness of a host, for the admin listener's `/healthz` and `/readyz` and
//! `wasmfn status`.
//!
//! Live: the process answers. Ready: every function loaded, every trigger binding and store
//! set up at load, and every backend the app uses answering now (each asked with a timeout,
//! so a hung backend makes the host unready instead of hanging the probe).

#[cfg(any(feature = "queues", feature = "workflows", feature = "schedules"))]
use std::time::Duration;

use serde::Serialize;

use crate::app::App;

/// How long a backend may take to answer a readiness probe.
#[cfg(any(feature = "queues", feature = "workflows", feature = "schedules"))]
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One readiness check.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked: `functions`, `bindings`, `queues`, `workflows`, `streams`,
    /// `schedules`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Why not (empty when it passed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Whether the host is ready to serve, check by check.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// Every check passed.
    pub ready: bool,
    /// Each check, in a fixed order.
    pub checks: Vec<Check>,
}

fn check(name: &'static str, problems: Vec<String>) -> Check {
    Check {
        name,
        ok: problems.is_empty(),
        problems,
    }
}

/// Ask whether `app` is ready: what loading found, then each backend in turn.
pub async fn readiness(app: &App) -> Readiness {
    #[allow(unused_mut)] // Without backends there is nothing to add.
    let mut checks = vec![
        check(
            "functions",
            app.load_errors().iter().map(|e| e.to_string()).collect(),
        ),
        check("bindings", app.queue_errors().to_vec()),
    ];
    #[cfg(feature = "queues")]
    if let Some(queues) = app.queues() {
        let problems = match tokio::time::timeout(PROBE_TIMEOUT, queues.stats()).await {
            Ok(Ok(_)) => Vec::new(),
            Ok(Err(e)) => vec![format!("the queue backend failed: {e:#}")],
            Err(_) => vec![format!(
                "the queue backend did not answer within {PROBE_TIMEOUT:?}"
            )],
        };
        checks.push(check("queues", problems));
    }
    #[cfg(feature = "workflows")]
    if let Some(workflows) = app.workflows() {
        let probe = workflows.store().get("readiness-probe");
        let problems = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(_)) => Vec::new(),
            Ok(Err(e)) => vec![format!("the workflow store failed: {e:#}")],
            Err(_) => vec![format!(
                "the workflow store did not answer within {PROBE_TIMEOUT:?}"
            )],
        };
        checks.push(check("workflows", problems));
    }
    #[cfg(feature = "streams")]
    if let Some(feed) = app.streams() {
        let problems = feed
            .configs()
            .iter()
            .map(|c| c.name.as_str())
            .filter_map(|s| {
                feed.backlog(s)
                    .err()
                    .map(|e| format!("stream `{s}`: {e:#}"))
            })
            .collect();
        checks.push(check("streams", problems));
    }
    #[cfg(feature = "schedules")]
    if let Some(scheduler) = app.scheduler() {
        let problems = match tokio::time::timeout(PROBE_TIMEOUT, scheduler.probe()).await {
            Ok(Ok(())) => Vec::new(),
            Ok(Err(e)) => vec![format!("the schedules' tick store failed: {e:#}")],
            Err(_) => vec![format!(
                "the schedules' tick store did not answer within {PROBE_TIMEOUT:?}"
            )],
        };
        checks.push(check("schedules", problems));
    }
    Readiness {
        ready: checks.iter().all(|c| c.ok),
        checks,
    }
}
