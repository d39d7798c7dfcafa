//! The embedded execution store: one SQLite file (`workflows.sqlite` in the state folder), WAL
//! mode. A step is one short transaction run inline, which costs less than handing it to a
//! blocking thread. The file belongs to one host, so claims always succeed.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use rusqlite::{params, Connection, OptionalExtension as _};

use super::now_ms;
use super::store::{
    BackendFuture, Execution, ExecutionStore, NewExecution, Position, Status, Step, Transition,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
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
    wake_at INTEGER,
    steps INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX IF NOT EXISTS executions_running ON executions (status) WHERE status = 'RUNNING';
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow, started_at);
CREATE TABLE IF NOT EXISTS history (
    execution TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    started_at INTEGER NOT NULL,
    ended_at INTEGER NOT NULL,
    PRIMARY KEY (execution, seq)
) WITHOUT ROWID;
";

const COLUMNS: &str = "id, workflow, parent, status, input, output, error, cause, state, \
                       state_input, attempt, wake_at, started_at, ended_at, steps, trace";

/// Executions in a SQLite file.
pub struct SqliteExecutions {
    conn: Mutex<Connection>,
}

impl SqliteExecutions {
    /// Open (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = wasmfn_host_capabilities::sqlite_pool::SqlitePool::connect_to(path, |c| {
            c.execute_batch(SCHEMA)?;
            // Stores made before executions carried their starter's trace context.
            let has_trace: bool = c.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('executions') WHERE name = 'trace'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_trace {
                c.execute_batch("ALTER TABLE executions ADD COLUMN trace TEXT")?;
            }
            Ok(())
        })
        .with_context(|| format!("opening the workflow store {}", path.display()))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> BackendFuture<T> {
        let result = f(&mut self.conn.lock().unwrap_or_else(|p| p.into_inner()));
        Box::pin(async move { result })
    }
}

fn execution(row: &rusqlite::Row<'_>) -> rusqlite::Result<Execution> {
    let state: Option<String> = row.get(8)?;
    let position = match state {
        Some(state) => Some(Position {
            state,
            input: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
            attempt: row.get(10)?,
            wake_at: row.get::<_, Option<i64>>(11)?.map(|t| t as u64),
        }),
        None => None,
    };
    Ok(Execution {
        id: row.get(0)?,
        workflow: row.get(1)?,
        parent: row.get(2)?,
        status: Status::parse(&row.get::<_, String>(3)?),
        input: row.get(4)?,
        output: row.get(5)?,
        error: row.get(6)?,
        cause: row.get(7)?,
        position,
        started_at: row.get::<_, i64>(12)? as u64,
        ended_at: row.get::<_, Option<i64>>(13)?.map(|t| t as u64),
        steps: row.get::<_, i64>(14)? as u64,
        trace: row.get(15)?,
    })
}

impl ExecutionStore for SqliteExecutions {
    fn create(&self, e: NewExecution) -> BackendFuture<bool> {
        self.with(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO executions (id, workflow, parent, status, input, state, \
                 state_input, started_at, trace) VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?5, ?4, ?6, ?7)",
                params![
                    e.id,
                    e.workflow,
                    e.parent,
                    e.input,
                    e.start_at,
                    now_ms() as i64,
                    e.trace
                ],
            )?;
            Ok(n == 1)
        })
    }

    fn record(&self, id: &str, step: Option<Step>, next: Transition) -> BackendFuture<()> {
        let id = id.to_string();
        self.with(move |c| {
            let tx = c.transaction()?;
            if let Some(s) = step {
                tx.prepare_cached(
                    "INSERT INTO history (execution, seq, state, kind, attempt, input, output, \
                     error, cause, started_at, ended_at) SELECT ?1, steps + 1, ?2, ?3, ?4, ?5, \
                     ?6, ?7, ?8, ?9, ?10 FROM executions WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    s.state,
                    s.kind,
                    s.attempt,
                    s.input,
                    s.output,
                    s.error,
                    s.cause,
                    s.started_at as i64,
                    s.ended_at as i64
                ])?;
                tx.prepare_cached("UPDATE executions SET steps = steps + 1 WHERE id = ?1")?
                    .execute(params![id])?;
            }
            let n = match next {
                Transition::Continue(p) => tx
                    .prepare_cached(
                        "UPDATE executions SET state = ?2, state_input = ?3, attempt = ?4, \
                     wake_at = ?5 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        p.state,
                        p.input,
                        p.attempt,
                        p.wake_at.map(|t| t as i64)
                    ])?,
                Transition::Finish {
                    status,
                    output,
                    error,
                    cause,
                } => tx
                    .prepare_cached(
                        "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, \
                     state = NULL, state_input = NULL, wake_at = NULL, ended_at = ?6 \
                     WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        status.as_str(),
                        output,
                        error,
                        cause,
                        now_ms() as i64
                    ])?,
            };
            anyhow::ensure!(n == 1, "no execution `{id}` in the workflow store");
            tx.commit()?;
            Ok(())
        })
    }

    fn get(&self, id: &str) -> BackendFuture<Option<Execution>> {
        let id = id.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COLUMNS} FROM executions WHERE id = ?1"),
                params![id],
                execution,
            )
            .optional()?)
        })
    }

    fn history(&self, id: &str) -> BackendFuture<Vec<Step>> {
        let id = id.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, state, kind, attempt, input, output, error, cause, started_at, \
                 ended_at FROM history WHERE execution = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![id], |r| {
                Ok(Step {
                    seq: r.get::<_, i64>(0)? as u64,
                    state: r.get(1)?,
                    kind: r.get(2)?,
                    attempt: r.get(3)?,
                    input: r.get(4)?,
                    output: r.get(5)?,
                    error: r.get(6)?,
                    cause: r.get(7)?,
                    started_at: r.get::<_, i64>(8)? as u64,
                    ended_at: r.get::<_, i64>(9)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn unfinished(&self) -> BackendFuture<Vec<Execution>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM executions WHERE status = 'RUNNING' AND parent IS NULL \
                 ORDER BY started_at"
            ))?;
            let rows = stmt.query_map([], execution)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn claim(&self, _id: &str) -> BackendFuture<bool> {
        Box::pin(async { Ok(true) })
    }

    fn list(&self, workflow: Option<&str>, limit: usize) -> BackendFuture<Vec<Execution>> {
        let workflow = workflow.map(str::to_string);
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM executions WHERE parent IS NULL AND \
                 (?1 IS NULL OR workflow = ?1) ORDER BY started_at DESC, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![workflow, limit as i64], execution)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
