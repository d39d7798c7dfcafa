//! SQL capability: `wasmfn:platform/sql` over named databases.
//!
//! Each database is a [`SqlBackend`]: [`SqliteSql`] (embedded, one file per binding, like D1)
//! or [`PostgresSql`] (a connection pool held by the host and shared by every instance, so
//! guests never open sockets and connections outlive invocations). Statements take positional
//! parameters and return typed rows; a transaction dropped without commit (including by a trap,
//! which drops the whole instance) rolls back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stores::{Bindings, StoreApp, StoreCapability, StoreDecls};

/// The conversions between the backends' types and one version of the interface's generated
/// ones (`sql@0.1.0` and `sql@0.2.0` declare the same `value`, `row-set` and `error`):
/// `to_value`, `outcome` and `to_error`, for the module `$sql` names.
macro_rules! interface_conversions {
    ($sql:ident) => {
        fn to_value(v: $sql::Value) -> $crate::sql::SqlValue {
            use $crate::sql::SqlValue;
            match v {
                $sql::Value::Null => SqlValue::Null,
                $sql::Value::Integer(i) => SqlValue::Integer(i),
                $sql::Value::Real(r) => SqlValue::Real(r),
                $sql::Value::Text(t) => SqlValue::Text(t),
                $sql::Value::Blob(b) => SqlValue::Blob(b),
            }
        }

        fn from_value(v: $crate::sql::SqlValue) -> $sql::Value {
            use $crate::sql::SqlValue;
            match v {
                SqlValue::Null => $sql::Value::Null,
                SqlValue::Integer(i) => $sql::Value::Integer(i),
                SqlValue::Real(r) => $sql::Value::Real(r),
                SqlValue::Text(t) => $sql::Value::Text(t),
                SqlValue::Blob(b) => $sql::Value::Blob(b),
            }
        }

        fn to_error(e: $crate::sql::SqlError) -> $sql::Error {
            use $crate::sql::SqlError;
            match e {
                SqlError::InvalidStatement(m) => $sql::Error::InvalidStatement(m),
                SqlError::ConstraintViolation(m) => $sql::Error::ConstraintViolation(m),
                SqlError::InvalidParameter(m) => $sql::Error::InvalidParameter(m),
                SqlError::Other(m) => $sql::Error::Other(m),
            }
        }

        /// A statement's outcome as the interface returns it.
        fn outcome(
            r: Result<$crate::sql::RowSet, $crate::sql::SqlError>,
        ) -> Result<$sql::RowSet, $sql::Error> {
            r.map(|r| $sql::RowSet {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(from_value).collect())
                    .collect(),
                rows_affected: r.rows_affected,
                last_insert_id: r.last_insert_id,
            })
            .map_err(to_error)
        }
    };
}

mod host_async;
mod host_impl;
mod manifest;
#[cfg(feature = "sql-postgres")]
mod postgres;
#[cfg(feature = "sql-postgres")]
mod postgres_capture;
mod sqlite;

#[cfg(feature = "sql-postgres")]
pub use self::postgres::PostgresSql;
pub use self::sqlite::SqliteSql;

/// The SQL store kind (see [`crate::stores::StoreKind`]).
pub struct Sql;

/// The SQL capability.
pub type SqlCapability = StoreCapability<Sql>;
/// The SQL databases of one app ([`StoreApp::store`] gives one by binding name).
pub type SqlApp = StoreApp<Sql>;
/// The SQL databases a function may open (`sql = [...]`).
pub type SqlBindings = Bindings<Sql>;
/// The `[sql.NAME]` tables of a manifest.
pub type SqlStores = StoreDecls<Sql>;

/// A value bound to a parameter or read from a column.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// Any integer type.
    Integer(i64),
    /// Any floating-point type.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// What a statement returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowSet {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of values.
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows changed by the statement.
    pub rows_affected: u64,
    /// Last inserted row id, where the database reports one (SQLite).
    pub last_insert_id: Option<i64>,
}

/// Why a statement failed (the interface's error cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// Did not parse, or names something missing.
    InvalidStatement(String),
    /// A constraint refused the change.
    ConstraintViolation(String),
    /// A parameter could not be bound.
    InvalidParameter(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlError::InvalidStatement(m) => write!(f, "invalid statement: {m}"),
            SqlError::ConstraintViolation(m) => write!(f, "constraint violation: {m}"),
            SqlError::InvalidParameter(m) => write!(f, "invalid parameter: {m}"),
            SqlError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SqlError {}

/// What bounds one statement: it is interrupted at the invocation's deadline, and refused
/// once its result grows past what the function could hold.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// When the invocation that runs the statement must end.
    pub deadline: Instant,
    /// Largest result set, in bytes of its values (plus [`VALUE_OVERHEAD`] per value). The
    /// guest's memory limit: a larger result could never be handed to it, and reading it would
    /// only cost the host memory.
    pub max_result_bytes: u64,
}

/// Bytes a result set is charged per value besides its text or blob bytes.
pub const VALUE_OVERHEAD: u64 = 16;

impl Bounds {
    /// The bounds of a statement the current invocation of `state`'s instance runs: its
    /// deadline, and results no larger than its memory limit.
    pub(crate) fn of_invocation(state: &wasmfn_host_core::InstanceState) -> Self {
        Bounds {
            deadline: state.deadline(),
            max_result_bytes: state.memory_limit(),
        }
    }

    /// Bounds for the host's own use (benchmarks, embedders): `timeout` from now, results up
    /// to 128 MiB.
    pub fn within(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            max_result_bytes: 128 << 20,
        }
    }

    /// Time left before the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The error for a statement still running at the deadline.
    pub(crate) fn timed_out() -> SqlError {
        SqlError::Other(
            "the statement was interrupted at the invocation's deadline; make it cheaper \
             (an index, a LIMIT) or raise the function's `timeout`"
                .into(),
        )
    }

    /// The error for a result past `max_result_bytes`.
    pub(crate) fn too_large(&self) -> SqlError {
        SqlError::Other(format!(
            "the result is larger than {} MiB, the function's memory limit; select fewer rows \
             or columns (LIMIT with keyset or OFFSET paging)",
            self.max_result_bytes >> 20
        ))
    }
}

/// Counts a result set's size against [`Bounds::max_result_bytes`].
pub(crate) struct ResultBudget {
    used: u64,
    max: u64,
}

impl ResultBudget {
    pub(crate) fn new(bounds: &Bounds) -> Self {
        Self {
            used: 0,
            max: bounds.max_result_bytes,
        }
    }

    /// Charge one value; `false` once the result is over budget.
    pub(crate) fn charge(&mut self, value: &SqlValue) -> bool {
        let bytes = match value {
            SqlValue::Text(t) => t.len() as u64,
            SqlValue::Blob(b) => b.len() as u64,
            _ => 0,
        };
        self.used += bytes + VALUE_OVERHEAD;
        self.used <= self.max
    }
}

/// A boxed future of a statement's outcome.
pub type SqlFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, SqlError>> + Send + 'a>>;

/// A SQL database backend.
pub trait SqlBackend: Send + Sync {
    /// Run one statement with positional parameters.
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [SqlValue],
        bounds: Bounds,
    ) -> SqlFuture<'a, RowSet>;
    /// Run `;`-separated statements without parameters.
    fn execute_batch<'a>(&'a self, sql: &'a str, bounds: Bounds) -> SqlFuture<'a, ()>;
    /// Start a transaction on a connection of its own.
    fn begin(&self, bounds: Bounds) -> SqlFuture<'_, Box<dyn SqlTransaction>>;
}

/// An open transaction. Dropping it without [`SqlTransaction::commit`] rolls it back.
pub trait SqlTransaction: Send {
    /// Run one statement inside the transaction.
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [SqlValue],
        bounds: Bounds,
    ) -> SqlFuture<'a, RowSet>;
    /// Commit.
    fn commit(self: Box<Self>) -> SqlFuture<'static, ()>;
    /// Roll back.
    fn rollback(self: Box<Self>) -> SqlFuture<'static, ()>;
}

/// Where a SQL binding lives (`[sql.NAME]` in the manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlBackendConfig {
    /// Embedded SQLite file (default `STATE/sql/NAME.sqlite`).
    Sqlite {
        /// Database file; `None` picks the default under the state folder.
        path: Option<std::path::PathBuf>,
    },
    /// PostgreSQL server through a pool of `pool_size` connections.
    #[cfg(feature = "sql-postgres")]
    Postgres {
        /// Connection URL (`postgres://user:pass@host/db`); never logged.
        url: wasmfn_host_core::secrets::SecretSource,
        /// Connections held open (default 16).
        pool_size: usize,
    },
}

/// A named database: its backend.
pub struct SqlStore {
    name: String,
    backend: Box<dyn SqlBackend>,
}

impl SqlStore {
    /// The binding name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend, for embedders and benchmarks.
    pub fn backend(&self) -> &dyn SqlBackend {
        &*self.backend
    }
}

/// Resource behind a guest's `sql.connection`.
pub struct Connection {
    store: Arc<SqlStore>,
}

/// Resource behind a guest's `sql.transaction`; `None` once committed or rolled back.
pub struct Transaction {
    tx: Option<Box<dyn SqlTransaction>>,
    /// The database's binding name (spans name it).
    store: Arc<SqlStore>,
}

/// A row change as images in JSON: `{column: value}` objects.
pub(crate) fn row_json(columns: &[String], values: &[SqlValue]) -> Vec<u8> {
    use serde_json::{Map, Value};
    let mut map = Map::new();
    for (c, v) in columns.iter().zip(values) {
        let v = match v {
            SqlValue::Null => Value::Null,
            SqlValue::Integer(i) => Value::from(*i),
            SqlValue::Real(r) => Value::from(*r),
            SqlValue::Text(t) => Value::from(t.as_str()),
            SqlValue::Blob(b) => {
                use base64::Engine as _;
                Value::from(base64::engine::general_purpose::STANDARD.encode(b))
            }
        };
        map.insert(c.clone(), v);
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}
