//! The distributed execution store: PostgreSQL, shared by several hosts. Each running execution
//! is leased to one host at a time (`owner`, `lease_until`); the holder renews the lease while it
//! runs the execution, another host takes over once it expires (the holder crashed), and every
//! write is fenced on the owner, so a host that lost its lease cannot record a step.

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::now_ms;
use super::store::{
    BackendFuture, Execution, ExecutionStore, NewExecution, Position, Status, Step, Transition,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wasmfn_executions (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    parent TEXT,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    state TEXT,
    state_input TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    wake_at BIGINT,
    steps BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
-- Stores made before executions carried their starter's trace context.
ALTER TABLE wasmfn_executions ADD COLUMN IF NOT EXISTS trace TEXT;
CREATE INDEX IF NOT EXISTS wasmfn_executions_running ON wasmfn_executions (status)
    WHERE status = 'RUNNING';
CREATE INDEX IF NOT EXISTS wasmfn_executions_by_workflow
    ON wasmfn_executions (workflow, started_at);
CREATE TABLE IF NOT EXISTS wasmfn_history (
    execution TEXT NOT NULL,
    seq BIGINT NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    PRIMARY KEY (execution, seq)
);
";

const COLUMNS: &str = "id, workflow, parent, status, input, output, error, cause, state, \
                       state_input, attempt, wake_at, started_at, ended_at, steps, trace";

/// Executions in PostgreSQL, leased to this host while it runs them.
pub struct PostgresExecutions {
    pool: Pool,
    owner: String,
    lease: Duration,
}

impl PostgresExecutions {
    /// Connect to `url`, create the tables if needed; `lease` is how long a claim lasts
    /// without renewal (a crashed host's executions move to another host after it).
    pub async fn connect(url: &str, lease: Duration) -> anyhow::Result<Self> {
        // Steps of concurrent executions write at once; a handful of connections serve them.
        let pool = wasmfn_host_capabilities::backend_tls::postgres_pool(url, 8, SCHEMA)
            .await
            .context("setting up the workflow tables")?;
        Ok(Self {
            pool,
            owner: crate::new_id(),
            lease,
        })
    }

    fn run<T: Send + 'static, F>(
        &self,
        f: impl FnOnce(deadpool_postgres::Object, String, i64) -> F + Send + 'static,
    ) -> BackendFuture<T>
    where
        F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let owner = self.owner.clone();
        let lease = self.lease.as_millis() as i64;
        Box::pin(async move {
            let client = pool.get().await.context("no PostgreSQL connection")?;
            f(client, owner, lease).await
        })
    }
}

fn execution(row: &Row) -> Execution {
    let position = row.get::<_, Option<String>>(8).map(|state| Position {
        state,
        input: row.get::<_, Option<String>>(9).unwrap_or_default(),
        attempt: row.get::<_, i32>(10) as u32,
        wake_at: row.get::<_, Option<i64>>(11).map(|t| t as u64),
    });
    Execution {
        id: row.get(0),
        workflow: row.get(1),
        parent: row.get(2),
        status: Status::parse(row.get(3)),
        input: row.get(4),
        output: row.get(5),
        error: row.get(6),
        cause: row.get(7),
        position,
        started_at: row.get::<_, i64>(12) as u64,
        ended_at: row.get::<_, Option<i64>>(13).map(|t| t as u64),
        steps: row.get::<_, i64>(14) as u64,
        trace: row.get(15),
    }
}

impl ExecutionStore for PostgresExecutions {
    fn create(&self, e: NewExecution) -> BackendFuture<bool> {
        self.run(move |c, owner, lease| async move {
            let now = now_ms() as i64;
            let n = c
                .execute(
                    "INSERT INTO wasmfn_executions (id, workflow, parent, status, input, state, \
                     state_input, started_at, owner, lease_until, trace) \
                     VALUES ($1, $2, $3, 'RUNNING', $4, $5, $4, $6, $7, $8, $9) \
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &e.id,
                        &e.workflow,
                        &e.parent,
                        &e.input,
                        &e.start_at,
                        &now,
                        &owner,
                        &(now + lease),
                        &e.trace,
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn record(&self, id: &str, step: Option<Step>, next: Transition) -> BackendFuture<()> {
        let id = id.to_string();
        self.run(move |mut c, owner, _| async move {
            let tx = c.transaction().await?;
            // Fencing: only the lease holder moves the execution on.
            let steps: Option<i64> = tx
                .query_opt(
                    "UPDATE wasmfn_executions SET steps = steps + $3 WHERE id = $1 AND owner = $2 \
                     RETURNING steps",
                    &[&id, &owner, &(step.is_some() as i64)],
                )
                .await?
                .map(|r| r.get(0));
            let Some(steps) = steps else {
                anyhow::bail!("execution `{id}` is held by another host (its lease expired here)");
            };
            if let Some(s) = step {
                tx.execute(
                    "INSERT INTO wasmfn_history (execution, seq, state, kind, attempt, input, \
                     output, error, cause, started_at, ended_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    &[
                        &id,
                        &steps,
                        &s.state,
                        &s.kind,
                        &(s.attempt as i32),
                        &s.input,
                        &s.output,
                        &s.error,
                        &s.cause,
                        &(s.started_at as i64),
                        &(s.ended_at as i64),
                    ],
                )
                .await?;
            }
            match next {
                Transition::Continue(p) => {
                    tx.execute(
                        "UPDATE wasmfn_executions SET state = $2, state_input = $3, attempt = $4, \
                         wake_at = $5 WHERE id = $1",
                        &[
                            &id,
                            &p.state,
                            &p.input,
                            &(p.attempt as i32),
                            &p.wake_at.map(|t| t as i64),
                        ],
                    )
                    .await?;
                }
                Transition::Finish {
                    status,
                    output,
                    error,
                    cause,
                } => {
                    tx.execute(
                        "UPDATE wasmfn_executions SET status = $2, output = $3, error = $4, \
                         cause = $5, state = NULL, state_input = NULL, wake_at = NULL, \
                         ended_at = $6, owner = NULL, lease_until = 0 WHERE id = $1",
                        &[
                            &id,
                            &status.as_str(),
                            &output,
                            &error,
                            &cause,
                            &(now_ms() as i64),
                        ],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn get(&self, id: &str) -> BackendFuture<Option<Execution>> {
        let id = id.to_string();
        self.run(move |c, _, _| async move {
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM wasmfn_executions WHERE id = $1"),
                    &[&id],
                )
                .await?;
            Ok(row.as_ref().map(execution))
        })
    }

    fn history(&self, id: &str) -> BackendFuture<Vec<Step>> {
        let id = id.to_string();
        self.run(move |c, _, _| async move {
            let rows = c
                .query(
                    "SELECT seq, state, kind, attempt, input, output, error, cause, started_at, \
                     ended_at FROM wasmfn_history WHERE execution = $1 ORDER BY seq",
                    &[&id],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| Step {
                    seq: r.get::<_, i64>(0) as u64,
                    state: r.get(1),
                    kind: r.get(2),
                    attempt: r.get::<_, i32>(3) as u32,
                    input: r.get(4),
                    output: r.get(5),
                    error: r.get(6),
                    cause: r.get(7),
                    started_at: r.get::<_, i64>(8) as u64,
                    ended_at: r.get::<_, i64>(9) as u64,
                })
                .collect())
        })
    }

    fn unfinished(&self) -> BackendFuture<Vec<Execution>> {
        self.run(move |c, owner, _| async move {
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM wasmfn_executions WHERE status = 'RUNNING' AND \
                         parent IS NULL AND (owner = $1 OR owner IS NULL OR lease_until < $2) \
                         ORDER BY started_at"
                    ),
                    &[&owner, &(now_ms() as i64)],
                )
                .await?;
            Ok(rows.iter().map(execution).collect())
        })
    }

    fn claim(&self, id: &str) -> BackendFuture<bool> {
        let id = id.to_string();
        self.run(move |c, owner, lease| async move {
            let now = now_ms() as i64;
            let n = c
                .execute(
                    "UPDATE wasmfn_executions SET owner = $2, lease_until = $3 WHERE id = $1 AND \
                     status = 'RUNNING' AND (owner = $2 OR owner IS NULL OR lease_until < $4)",
                    &[&id, &owner, &(now + lease), &now],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    fn list(&self, workflow: Option<&str>, limit: usize) -> BackendFuture<Vec<Execution>> {
        let workflow = workflow.map(str::to_string);
        self.run(move |c, _, _| async move {
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM wasmfn_executions WHERE parent IS NULL AND \
                         ($1::TEXT IS NULL OR workflow = $1) ORDER BY started_at DESC, id LIMIT $2"
                    ),
                    &[&workflow, &(limit as i64)],
                )
                .await?;
            Ok(rows.iter().map(execution).collect())
        })
    }
}
