//! The distributed SQL backend: PostgreSQL through a `deadpool-postgres` pool owned by the
//! host. Statements are prepared once per pooled connection and cached.
//!
//! Values convert by the column or parameter type PostgreSQL reports: integers to `int2/4/8`
//! (and `float`, `numeric`-free types), reals to `float4/8`, text to the text types and `json`,
//! blobs to `bytea`. Columns of other types must be cast in the query (`created_at::text`).
//!
//! Change capture (when the binding has a `stream`) uses a transactional outbox: a row trigger
//! on every table of the schema (attached to new tables by an event trigger) writes
//! `wasmfn_changes`; a relay task moves committed rows to the stream feed and deletes them, so
//! nothing is lost while the host is down. This needs a role allowed to create event triggers.
//!
//! Every statement carries its invocation's deadline to the server as `statement_timeout`
//! (sent in the same round trip), so PostgreSQL itself stops it there; waiting for a pooled
//! connection ends at the deadline too. Results are counted against the guest's memory limit
//! as rows arrive. A connection goes back to the pool outside any transaction: a transaction a
//! guest opened with a plain statement is rolled back first, and a transaction whose last
//! statement failed (PostgreSQL then turns `COMMIT` into a silent rollback) reports the
//! failure on commit instead of success.

use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures::{pin_mut, TryStreamExt as _};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::Row;

use super::postgres_capture as capture;
use super::{
    Bounds, ResultBudget, RowSet, SqlBackend, SqlError, SqlFuture, SqlTransaction, SqlValue,
};
use crate::stores::ChangeSink;

/// PostgreSQL backend.
pub struct PostgresSql {
    pool: Pool,
    name: String,
    pool_size: usize,
}

/// Longest a statement waits for a free pooled connection (or its deadline, if sooner).
const ACQUIRE_WAIT: Duration = Duration::from_secs(5);

fn error(e: tokio_postgres::Error) -> SqlError {
    if let Some(db) = e.as_db_error() {
        if *db.code() == tokio_postgres::error::SqlState::QUERY_CANCELED {
            // The `statement_timeout` `bounded` set: the invocation's deadline.
            return Bounds::timed_out();
        }
        let msg = db.message().to_string();
        let class = &db.code().code()[..2];
        return match class {
            "23" => SqlError::ConstraintViolation(msg),
            "42" | "0A" => SqlError::InvalidStatement(msg),
            "22" => SqlError::InvalidParameter(msg),
            _ => SqlError::Other(msg),
        };
    }
    // A conversion error of ours (see `Param::to_sql`) surfaces here with its message.
    let text = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    if e.to_string().contains("serializing parameter") {
        SqlError::InvalidParameter(text)
    } else {
        SqlError::Other(text)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> SqlError {
    SqlError::Other(format!("no database connection: {e}"))
}

/// A parameter converted to whatever type PostgreSQL inferred for its placeholder.
#[derive(Debug)]
struct Param<'a>(&'a SqlValue);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let mismatch = |what: &str| -> BoxError {
            format!("a {what} cannot be bound to a parameter of type {ty}").into()
        };
        match self.0 {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Integer(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(mismatch("integer")),
            },
            SqlValue::Real(r) => match *ty {
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                Type::FLOAT8 => r.to_sql(ty, out),
                _ => Err(mismatch("real")),
            },
            SqlValue::Text(t) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    t.as_str().to_sql(ty, out)
                }
                Type::JSON => {
                    out.extend_from_slice(t.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(t.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(mismatch("text value")),
            },
            SqlValue::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(mismatch("blob")),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every type is offered to `to_sql`, which refuses mismatches with a clear message.
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Read column `i` of `row` as a platform value.
fn column(row: &Row, i: usize) -> Result<SqlValue, SqlError> {
    let ty = row.columns()[i].type_().clone();
    let bad = |e: tokio_postgres::Error| SqlError::Other(e.to_string());
    let v = match ty {
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(bad)?
            .map(|b| SqlValue::Integer(b as i64)),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(bad)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(bad)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map_err(bad)?
            .map(SqlValue::Integer),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .map_err(bad)?
            .map(|v| SqlValue::Real(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(bad)?
            .map(SqlValue::Real),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(i)
            .map_err(bad)?
            .map(SqlValue::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(bad)?
            .map(SqlValue::Blob),
        Type::JSON | Type::JSONB => row
            .try_get::<_, Option<RawJson>>(i)
            .map_err(bad)?
            .map(|j| SqlValue::Text(j.0)),
        other => {
            return Err(SqlError::InvalidStatement(format!(
                "column `{}` has type {other}, which wasmfn does not convert; cast it in the query \
                 (`{}::text`)",
                row.columns()[i].name(),
                row.columns()[i].name()
            )))
        }
    };
    Ok(v.unwrap_or(SqlValue::Null))
}

/// `json`/`jsonb` read as text.
struct RawJson(String);

impl<'a> tokio_postgres::types::FromSql<'a> for RawJson {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let raw = if *ty == Type::JSONB { &raw[1..] } else { raw };
        Ok(RawJson(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

/// Run `work` with the server told to stop it at the deadline: `SET statement_timeout` is
/// pipelined ahead of it (tokio-postgres sends requests in the order they are first polled),
/// so it costs no extra round trip. PostgreSQL reports the cancellation as `57014`.
async fn bounded<T>(
    client: &deadpool_postgres::ClientWrapper,
    bounds: &Bounds,
    work: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    // 0 would mean "no limit"; a statement past its deadline gets the shortest one instead.
    let ms = bounds.remaining().as_millis().max(1);
    let set = format!("SET statement_timeout = {ms}");
    let timed = async {
        let (set, out) = tokio::join!(client.batch_execute(&set), work);
        set.map_err(error)?;
        out
    };
    match tokio::time::timeout_at(bounds.deadline.into(), timed).await {
        Ok(out) => out,
        Err(_) => Err(Bounds::timed_out()),
    }
}

/// Whether a statement sent outside [`SqlBackend::begin`] may open a transaction on the
/// pooled connection (`BEGIN`, `START TRANSACTION`): then it is rolled back before the
/// connection returns to the pool. Over-matching costs one `ROLLBACK`, nothing else.
fn may_open_transaction(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains("begin") || lower.contains("start")
}

async fn run(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    params: &[SqlValue],
    bounds: &Bounds,
) -> Result<RowSet, SqlError> {
    let stmt = client.prepare_cached(sql).await.map_err(error)?;
    if stmt.params().len() != params.len() {
        return Err(SqlError::InvalidParameter(format!(
            "the statement takes {} parameters, {} were given",
            stmt.params().len(),
            params.len()
        )));
    }
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let stream = client
        .query_raw(&stmt, params.iter().map(Param))
        .await
        .map_err(error)?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    let mut budget = ResultBudget::new(bounds);
    while let Some(row) = stream.try_next().await.map_err(error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let v = column(&row, i)?;
            if !budget.charge(&v) {
                // Dropping the stream discards the rest of the rows the server sends.
                return Err(bounds.too_large());
            }
            values.push(v);
        }
        rows.push(values);
    }
    let rows_affected = stream.rows_affected().unwrap_or(0);
    // A SELECT reports its row count as "affected"; the interface counts changes only.
    let rows_affected = if sql
        .trim_start()
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("select"))
    {
        0
    } else {
        rows_affected
    };
    Ok(RowSet {
        columns,
        rows,
        rows_affected,
        last_insert_id: None,
    })
}

impl PostgresSql {
    /// Connect a pool of `pool_size` to `url` and check one connection works.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        name: &str,
        changes: Option<ChangeSink>,
    ) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().context("invalid PostgreSQL URL")?;
        let tls = crate::backend_tls::postgres(&mut config)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // A cheap check that a recycled connection is still alive after an idle period.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .build()
            .context("building the PostgreSQL pool")?;
        let client = tokio::time::timeout(Duration::from_secs(5), pool.get())
            .await
            .map_err(|_| anyhow::anyhow!("PostgreSQL did not answer within 5 s"))?
            .context("connecting to PostgreSQL")?;
        if let Some(sink) = changes {
            client.batch_execute(capture::SETUP).await.context(
                "installing change capture (needs a role that may create event triggers)",
            )?;
            tokio::spawn(capture::relay(
                config,
                tls,
                pool.clone(),
                name.to_string(),
                sink,
            ));
        }
        drop(client);
        Ok(Self {
            pool,
            name: name.to_string(),
            pool_size,
        })
    }

    /// A pooled connection, waited for until the deadline or [`ACQUIRE_WAIT`].
    async fn client(&self, bounds: &Bounds) -> Result<Object, SqlError> {
        let wait = bounds.remaining().min(ACQUIRE_WAIT);
        match tokio::time::timeout(wait, self.pool.get()).await {
            Ok(got) => got.map_err(pool_error),
            Err(_) => Err(SqlError::Other(format!(
                "all {} connections to database `{}` stayed busy for {wait:?}; raise its \
                 `pool-size` or keep transactions shorter",
                self.pool_size, self.name,
            ))),
        }
    }
}

/// Roll back whatever transaction `sql` may have left open on a pooled connection; a
/// connection that cannot be cleaned is closed instead of returned.
async fn leave_no_transaction(client: Object, sql: &str) {
    if may_open_transaction(sql) && client.batch_execute("ROLLBACK").await.is_err() {
        let _ = Object::take(client);
    }
}

impl SqlBackend for PostgresSql {
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [SqlValue],
        bounds: Bounds,
    ) -> SqlFuture<'a, RowSet> {
        Box::pin(async move {
            let client = self.client(&bounds).await?;
            let out = bounded(&client, &bounds, run(&client, sql, params, &bounds)).await;
            leave_no_transaction(client, sql).await;
            out
        })
    }

    fn execute_batch<'a>(&'a self, sql: &'a str, bounds: Bounds) -> SqlFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client(&bounds).await?;
            let out = bounded(&client, &bounds, async {
                client.batch_execute(sql).await.map_err(error)
            })
            .await;
            leave_no_transaction(client, sql).await;
            out
        })
    }

    fn begin(&self, bounds: Bounds) -> SqlFuture<'_, Box<dyn SqlTransaction>> {
        Box::pin(async move {
            let client = self.client(&bounds).await?;
            client.batch_execute("BEGIN").await.map_err(error)?;
            Ok(Box::new(PostgresTransaction {
                client: Some(client),
                failed: None,
            }) as Box<dyn SqlTransaction>)
        })
    }
}

/// A transaction on a connection taken from the pool for its lifetime.
struct PostgresTransaction {
    client: Option<Object>,
    /// Why the last statement failed, if it did: PostgreSQL then refuses every statement
    /// but `ROLLBACK` (or `ROLLBACK TO SAVEPOINT`) and answers `COMMIT` with a rollback.
    failed: Option<String>,
}

impl PostgresTransaction {
    fn finish(mut self: Box<Self>, commit: bool) -> SqlFuture<'static, ()> {
        let client = self.client.take();
        let failed = self.failed.take();
        Box::pin(async move {
            let Some(client) = client else {
                return Err(SqlError::Other(
                    "the transaction is already finished".into(),
                ));
            };
            if commit {
                if let Some(why) = failed {
                    // Say so instead of reporting the rollback PostgreSQL does as a commit.
                    client.batch_execute("ROLLBACK").await.map_err(error)?;
                    return Err(SqlError::Other(format!(
                        "the transaction was rolled back, not committed: its last statement \
                         failed ({why})"
                    )));
                }
            }
            client
                .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
                .await
                .map_err(error)
        })
    }
}

impl SqlTransaction for PostgresTransaction {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [SqlValue],
        bounds: Bounds,
    ) -> SqlFuture<'a, RowSet> {
        Box::pin(async move {
            let Some(client) = self.client.as_ref() else {
                return Err(SqlError::Other(
                    "the transaction is already finished".into(),
                ));
            };
            let out = bounded(client, &bounds, run(client, sql, params, &bounds)).await;
            self.failed = out.as_ref().err().map(|e| e.to_string());
            out
        })
    }

    fn commit(self: Box<Self>) -> SqlFuture<'static, ()> {
        self.finish(true)
    }

    fn rollback(self: Box<Self>) -> SqlFuture<'static, ()> {
        self.finish(false)
    }
}

impl Drop for PostgresTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Dropped without commit (the guest forgot, or trapped): roll back before the
            // connection goes back to the pool. Without a runtime the connection is discarded,
            // which also rolls back.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        let _ = Object::take(client);
                    }
                });
            } else {
                let _ = Object::take(client);
            }
        }
    }
}
