//! The embedded SQL backend: one SQLite file per binding. Row changes are captured with
//! SQLite's pre-update hook (old and new values of every column) and recorded once their
//! transaction commits; rolled-back changes are dropped.
//!
//! Guest statements can be arbitrarily expensive (a recursive CTE never ends), so they run on
//! tokio's blocking threads, never on the threads serving requests, under a progress handler
//! that interrupts them at the invocation's deadline; their results are counted against the
//! guest's memory limit as they are read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{Action, PreUpdateCase};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};

use super::{
    row_json, Bounds, ResultBudget, RowSet, SqlBackend, SqlError, SqlFuture, SqlTransaction,
    SqlValue,
};
use crate::stores::{now_ms, ChangeSink};
use wasmfn_host_core::stream::{ChangeRecord, ImageFormat, Operation, StreamEvent};

/// A change seen by the hook, before its transaction's outcome is known.
struct RawChange {
    table: String,
    rowid: i64,
    operation: Operation,
    old: Option<Vec<SqlValue>>,
    new: Option<Vec<SqlValue>>,
}

/// A connection with the buffer its hook fills.
struct HookedConn {
    conn: Connection,
    pending: Arc<Mutex<Vec<RawChange>>>,
}

/// Embedded SQL backend.
pub struct SqliteSql {
    path: PathBuf,
    name: String,
    idle: Arc<Mutex<Vec<HookedConn>>>,
    changes: Option<ChangeSink>,
}

fn value(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

fn error(e: rusqlite::Error) -> SqlError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let msg = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                ErrorCode::ConstraintViolation => SqlError::ConstraintViolation(msg),
                ErrorCode::Unknown => SqlError::InvalidStatement(msg),
                _ => SqlError::Other(msg),
            }
        }
        rusqlite::Error::SqlInputError { msg, .. } => SqlError::InvalidStatement(msg.clone()),
        rusqlite::Error::InvalidParameterCount(got, want) => SqlError::InvalidParameter(format!(
            "the statement takes {want} parameters, {got} were given"
        )),
        rusqlite::Error::MultipleStatement => SqlError::InvalidStatement(
            "one statement per query; use execute-batch for several".into(),
        ),
        _ => SqlError::Other(e.to_string()),
    }
}

/// Keep guest SQL inside its own database file: no other file can be attached (which is also
/// how `VACUUM INTO` writes one), the schema and storage settings cannot be tampered with
/// (SQLite's defensive mode), and only pragmas that describe the schema, plus `user_version`
/// for migrations, may run.
fn sandbox(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::config::DbConfig;
    use rusqlite::limits::Limit;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // Functions with side effects must not run from views or triggers a guest defined.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.authorizer(Some(authorize));
    Ok(())
}

/// Pragmas guest SQL may run besides `user_version`: ones that describe the schema or check
/// integrity (all read-only).
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
    "collation_list",
    "data_version",
    "page_count",
    "freelist_count",
];

fn authorize(ctx: rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization {
    use rusqlite::hooks::{AuthAction, Authorization};
    let allowed = match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => false,
        // Each of these only reads, whatever its argument (a table name, a row limit).
        AuthAction::Pragma { pragma_name, .. } => {
            let name = pragma_name.to_ascii_lowercase();
            name == "user_version" || READ_PRAGMAS.contains(&name.as_str())
        }
        AuthAction::Function { function_name } => {
            !function_name.eq_ignore_ascii_case("load_extension")
        }
        _ => true,
    };
    if allowed {
        Authorization::Allow
    } else {
        Authorization::Deny
    }
}

/// Virtual-machine steps between two looks at the clock (a few microseconds of work).
const PROGRESS_STEPS: i32 = 1000;

/// Longest a statement waits for another connection's write lock (then `SQLITE_BUSY`).
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// Bind `conn` to the deadline of the statements it runs next: the progress handler
/// interrupts them there, and waiting for a lock ends there too.
fn arm(conn: &Connection, bounds: &Bounds) -> Result<(), SqlError> {
    let deadline = bounds.deadline;
    conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline));
    conn.busy_timeout(bounds.remaining().min(BUSY_WAIT))
        .map_err(error)
}

/// Undo [`arm`]: the host's own statements on the connection (reading column names for the
/// change feed, commit) are not the guest's to be interrupted.
fn disarm(conn: &Connection) {
    conn.progress_handler(0, None::<fn() -> bool>);
}

/// `error`, told apart from an interruption at the deadline.
fn bounded_error(e: rusqlite::Error) -> SqlError {
    match e.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => Bounds::timed_out(),
        _ => error(e),
    }
}

/// Run `work` with a connection of the pool on a blocking thread, armed with `bounds`; the
/// connection goes back to the pool afterwards (or is closed, rolling back, if it was left
/// inside a transaction) even when the caller stopped waiting.
async fn off_thread<T: Send + 'static>(
    db: &SqliteSql,
    bounds: Bounds,
    work: impl FnOnce(&HookedConn) -> Result<T, SqlError> + Send + 'static,
) -> Result<T, SqlError> {
    let c = db.take()?;
    let (idle, name, changes) = (db.idle.clone(), db.name.clone(), db.changes.clone());
    blocking(move || {
        let out = arm(&c.conn, &bounds).and_then(|()| work(&c));
        disarm(&c.conn);
        if out.is_ok() && c.conn.is_autocommit() {
            flush(&name, changes.as_ref(), &c);
        }
        put_back(&idle, c);
        out
    })
    .await
}

/// Run `work` on one of tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SqlError> + Send + 'static,
) -> Result<T, SqlError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(SqlError::Other(format!(
            "the statement's thread failed: {e}"
        )))
    })
}

/// Run one statement: bind positionally, read rows if it has any (including `RETURNING`).
fn run(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
    bounds: &Bounds,
) -> Result<RowSet, SqlError> {
    let error = bounded_error;
    let mut stmt = conn.prepare_cached(sql).map_err(error)?;
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(SqlError::InvalidParameter(format!(
            "the statement takes {expected} parameters, {} were given",
            params.len()
        )));
    }
    for (i, p) in params.iter().enumerate() {
        let r = match p {
            SqlValue::Null => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null),
            SqlValue::Integer(v) => stmt.raw_bind_parameter(i + 1, v),
            SqlValue::Real(v) => stmt.raw_bind_parameter(i + 1, v),
            SqlValue::Text(v) => stmt.raw_bind_parameter(i + 1, v),
            SqlValue::Blob(v) => stmt.raw_bind_parameter(i + 1, v),
        };
        r.map_err(error)?;
    }
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let readonly = stmt.readonly();
    let mut rows = Vec::new();
    if columns.is_empty() {
        stmt.raw_execute().map_err(error)?;
    } else {
        let mut budget = ResultBudget::new(bounds);
        let mut cursor = stmt.raw_query();
        while let Some(row) = cursor.next().map_err(error)? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                let v = value(row.get_ref(i).map_err(error)?);
                if !budget.charge(&v) {
                    return Err(bounds.too_large());
                }
                values.push(v);
            }
            rows.push(values);
        }
    }
    let rows_affected = if readonly { 0 } else { conn.changes() };
    Ok(RowSet {
        columns,
        rows,
        rows_affected,
        last_insert_id: (!readonly && rows_affected > 0).then(|| conn.last_insert_rowid()),
    })
}

impl SqliteSql {
    /// Open (or create) the database at `path` for binding `name`.
    pub fn open(path: &Path, name: &str, changes: Option<ChangeSink>) -> anyhow::Result<Self> {
        let db = Self {
            path: path.to_path_buf(),
            name: name.to_string(),
            idle: Arc::new(Mutex::new(Vec::new())),
            changes,
        };
        let first = db.connect()?;
        db.idle.lock().unwrap().push(first);
        Ok(db)
    }

    fn connect(&self) -> anyhow::Result<HookedConn> {
        let conn = crate::sqlite_pool::SqlitePool::connect_to(&self.path, |c| {
            // Foreign keys are off by default in SQLite; every other database enforces them.
            c.pragma_update(None, "foreign_keys", "ON")?;
            sandbox(c)
        })?;
        let pending = Arc::new(Mutex::new(Vec::new()));
        if self.changes.is_some() {
            let sink = pending.clone();
            conn.preupdate_hook(Some(
                move |_: Action, db: &str, table: &str, case: &PreUpdateCase| {
                    if db != "main" {
                        return;
                    }
                    let change = capture(table, case);
                    if let Some(c) = change {
                        sink.lock().unwrap().push(c);
                    }
                },
            ));
            let cleared = pending.clone();
            conn.rollback_hook(Some(move || cleared.lock().unwrap().clear()));
        }
        Ok(HookedConn { conn, pending })
    }

    fn take(&self) -> Result<HookedConn, SqlError> {
        match self.idle.lock().unwrap().pop() {
            Some(c) => Ok(c),
            None => self
                .connect()
                .map_err(|e| SqlError::Other(format!("{e:#}"))),
        }
    }
}

fn put_back(idle: &Mutex<Vec<HookedConn>>, c: HookedConn) {
    if c.conn.is_autocommit() {
        c.pending.lock().unwrap().clear();
        idle.lock().unwrap().push(c);
    }
}

fn capture(table: &str, case: &PreUpdateCase) -> Option<RawChange> {
    let old = |a: &rusqlite::hooks::PreUpdateOldValueAccessor| {
        (0..a.get_column_count())
            .map(|i| {
                a.get_old_column_value(i)
                    .map(value)
                    .unwrap_or(SqlValue::Null)
            })
            .collect::<Vec<_>>()
    };
    let new = |a: &rusqlite::hooks::PreUpdateNewValueAccessor| {
        (0..a.get_column_count())
            .map(|i| {
                a.get_new_column_value(i)
                    .map(value)
                    .unwrap_or(SqlValue::Null)
            })
            .collect::<Vec<_>>()
    };
    let (operation, rowid, old, new) = match case {
        PreUpdateCase::Insert(n) => (Operation::Insert, n.get_new_row_id(), None, Some(new(n))),
        PreUpdateCase::Delete(o) => (Operation::Remove, o.get_old_row_id(), Some(old(o)), None),
        PreUpdateCase::Update {
            old_value_accessor: o,
            new_value_accessor: n,
        } => (
            Operation::Modify,
            n.get_new_row_id(),
            Some(old(o)),
            Some(new(n)),
        ),
        PreUpdateCase::Unknown => return None,
    };
    Some(RawChange {
        table: table.to_string(),
        rowid,
        operation,
        old,
        new,
    })
}

fn flush(name: &str, sink: Option<&ChangeSink>, c: &HookedConn) {
    let Some(sink) = sink else { return };
    let changes: Vec<RawChange> = std::mem::take(&mut *c.pending.lock().unwrap());
    if changes.is_empty() {
        return;
    }
    let mut columns_of = std::collections::HashMap::<String, Vec<String>>::new();
    let mut events = Vec::with_capacity(changes.len());
    for ch in changes {
        let columns = columns_of.entry(ch.table.clone()).or_insert_with(|| {
            c.conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{}')",
                    ch.table.replace('\'', "''")
                ))
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .unwrap_or_default()
        });
        events.push(StreamEvent::Change(ChangeRecord {
            source: format!("{name}.{}", ch.table),
            sequence: String::new(),
            key: ch.rowid.to_string(),
            operation: ch.operation,
            format: ImageFormat::Json,
            old_image: ch.old.map(|v| row_json(columns, &v)),
            new_image: ch.new.map(|v| row_json(columns, &v)),
            timestamp: now_ms(),
        }));
    }
    sink.emit(events);
}

impl SqlBackend for SqliteSql {
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [SqlValue],
        bounds: Bounds,
    ) -> SqlFuture<'a, RowSet> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        Box::pin(off_thread(self, bounds, move |c| {
            let mark = c.pending.lock().unwrap().len();
            let out = run(&c.conn, &sql, &params, &bounds);
            if out.is_err() {
                // A failed statement's own changes were undone by SQLite.
                c.pending.lock().unwrap().truncate(mark);
            }
            out
        }))
    }

    fn execute_batch<'a>(&'a self, sql: &'a str, bounds: Bounds) -> SqlFuture<'a, ()> {
        let sql = sql.to_owned();
        Box::pin(off_thread(self, bounds, move |c| {
            c.conn.execute_batch(&sql).map_err(bounded_error)
        }))
    }

    fn begin(&self, bounds: Bounds) -> SqlFuture<'_, Box<dyn SqlTransaction>> {
        Box::pin(async move {
            let c = self.take()?;
            // IMMEDIATE takes the write lock now, so the transaction cannot fail later with
            // SQLITE_BUSY when it first writes; waiting for it blocks, so off the serving threads.
            let c = blocking(move || {
                arm(&c.conn, &bounds)?;
                c.conn
                    .execute_batch("BEGIN IMMEDIATE")
                    .map_err(bounded_error)?;
                disarm(&c.conn);
                Ok(c)
            })
            .await?;
            Ok(Box::new(SqliteTransaction {
                conn: Some(c),
                name: self.name.clone(),
                changes: self.changes.clone(),
                idle: self.idle.clone(),
            }) as Box<dyn SqlTransaction>)
        })
    }
}

/// The error for a transaction whose connection was closed (its statement's thread failed).
fn lost() -> SqlError {
    SqlError::Other(
        "the transaction's connection was lost and it was rolled back; begin again".into(),
    )
}

/// A transaction holding its own pooled connection.
struct SqliteTransaction {
    conn: Option<HookedConn>,
    name: String,
    changes: Option<ChangeSink>,
    idle: Arc<Mutex<Vec<HookedConn>>>,
}

impl SqliteTransaction {
    fn finish(mut self: Box<Self>, commit: bool) -> Result<(), SqlError> {
        let Some(c) = self.conn.take() else {
            return Err(lost());
        };
        let out = c
            .conn
            .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
            .map_err(error);
        if commit && out.is_ok() {
            flush(&self.name, self.changes.as_ref(), &c);
        }
        if !c.conn.is_autocommit() {
            let _ = c.conn.execute_batch("ROLLBACK");
        }
        put_back(&self.idle, c);
        out
    }
}

impl SqlTransaction for SqliteTransaction {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [SqlValue],
        bounds: Bounds,
    ) -> SqlFuture<'a, RowSet> {
        let (sql, params) = (sql.to_owned(), params.to_vec());
        Box::pin(async move {
            // The connection travels to the blocking thread and back; if the caller stops
            // waiting it is closed there, which rolls the transaction back.
            let Some(c) = self.conn.take() else {
                return Err(lost());
            };
            let (c, out) = blocking(move || {
                let mark = c.pending.lock().unwrap().len();
                let out = arm(&c.conn, &bounds).and_then(|()| run(&c.conn, &sql, &params, &bounds));
                disarm(&c.conn);
                if out.is_err() {
                    c.pending.lock().unwrap().truncate(mark);
                }
                Ok((c, out))
            })
            .await?;
            self.conn = Some(c);
            out
        })
    }

    fn commit(self: Box<Self>) -> SqlFuture<'static, ()> {
        let out = self.finish(true);
        Box::pin(async move { out })
    }

    fn rollback(self: Box<Self>) -> SqlFuture<'static, ()> {
        let out = self.finish(false);
        Box::pin(async move { out })
    }
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            // Dropped without commit: the guest forgot, returned early, or trapped.
            let _ = c.conn.execute_batch("ROLLBACK");
            put_back(&self.idle, c);
        }
    }
}
