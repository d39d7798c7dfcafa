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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures::{pin_mut, StreamExt as _, TryStreamExt as _};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Row};

use super::{RowSet, SqlBackend, SqlError, SqlFuture, SqlTransaction, SqlValue};
use crate::stores::{now_ms, ChangeSink};
use wasmfn_host_core::stream::{ChangeRecord, ImageFormat, Operation, StreamEvent};

/// PostgreSQL backend.
pub struct PostgresSql {
    pool: Pool,
}

fn error(e: tokio_postgres::Error) -> SqlError {
    if let Some(db) = e.as_db_error() {
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

async fn run(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    params: &[SqlValue],
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
    while let Some(row) = stream.try_next().await.map_err(error)? {
        rows.push(
            (0..columns.len())
                .map(|i| column(&row, i))
                .collect::<Result<Vec<_>, _>>()?,
        );
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
        let config: tokio_postgres::Config = url.parse().context("invalid PostgreSQL URL")?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
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
            client.batch_execute(CAPTURE_SETUP).await.context(
                "installing change capture (needs a role that may create event triggers)",
            )?;
            tokio::spawn(relay(config, pool.clone(), name.to_string(), sink));
        }
        drop(client);
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<Object, SqlError> {
        self.pool.get().await.map_err(pool_error)
    }
}

impl SqlBackend for PostgresSql {
    fn query<'a>(&'a self, sql: &'a str, params: &'a [SqlValue]) -> SqlFuture<'a, RowSet> {
        Box::pin(async move { run(&*self.client().await?, sql, params).await })
    }

    fn execute_batch<'a>(&'a self, sql: &'a str) -> SqlFuture<'a, ()> {
        Box::pin(async move { self.client().await?.batch_execute(sql).await.map_err(error) })
    }

    fn begin(&self) -> SqlFuture<'_, Box<dyn SqlTransaction>> {
        Box::pin(async move {
            let client = self.client().await?;
            client.batch_execute("BEGIN").await.map_err(error)?;
            Ok(Box::new(PostgresTransaction {
                client: Some(client),
            }) as Box<dyn SqlTransaction>)
        })
    }
}

/// A transaction on a connection taken from the pool for its lifetime.
struct PostgresTransaction {
    client: Option<Object>,
}

impl PostgresTransaction {
    fn finish(mut self: Box<Self>, statement: &'static str) -> SqlFuture<'static, ()> {
        let client = self.client.take();
        Box::pin(async move {
            let client = client.expect("transaction already finished");
            client.batch_execute(statement).await.map_err(error)
        })
    }
}

impl SqlTransaction for PostgresTransaction {
    fn query<'a>(&'a mut self, sql: &'a str, params: &'a [SqlValue]) -> SqlFuture<'a, RowSet> {
        Box::pin(async move {
            let client = self.client.as_ref().expect("transaction already finished");
            run(client, sql, params).await
        })
    }

    fn commit(self: Box<Self>) -> SqlFuture<'static, ()> {
        self.finish("COMMIT")
    }

    fn rollback(self: Box<Self>) -> SqlFuture<'static, ()> {
        self.finish("ROLLBACK")
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

/// The outbox: table, row trigger, and the event trigger that attaches it to new tables.
const CAPTURE_SETUP: &str = r#"
CREATE TABLE IF NOT EXISTS wasmfn_changes (
    id BIGSERIAL PRIMARY KEY,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL,
    old_row JSONB,
    new_row JSONB,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION wasmfn_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wasmfn_changes (tbl, op, old_row, new_row) VALUES (
        TG_TABLE_NAME, TG_OP,
        CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    PERFORM pg_notify('wasmfn_changes', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION wasmfn_attach(target regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF target::text <> 'wasmfn_changes' AND NOT EXISTS (
        SELECT 1 FROM pg_trigger WHERE tgrelid = target AND tgname = 'wasmfn_capture') THEN
        EXECUTE format('CREATE TRIGGER wasmfn_capture AFTER INSERT OR UPDATE OR DELETE ON %s
                        FOR EACH ROW EXECUTE FUNCTION wasmfn_capture()', target);
    END IF;
END $$;
CREATE OR REPLACE FUNCTION wasmfn_attach_new() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT objid FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'CREATE TABLE' AND object_type = 'table' LOOP
        PERFORM wasmfn_attach(r.objid::regclass);
    END LOOP;
END $$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'wasmfn_attach_new') THEN
        CREATE EVENT TRIGGER wasmfn_attach_new ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION wasmfn_attach_new();
    END IF;
END $$;
SELECT wasmfn_attach(c.oid::regclass) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname = current_schema();
"#;

/// Move committed changes from the outbox to the stream feed, woken by NOTIFY (and every
/// second, in case a notification was missed while reconnecting).
async fn relay(config: tokio_postgres::Config, pool: Pool, name: String, sink: ChangeSink) {
    let wake = Arc::new(tokio::sync::Notify::new());
    // A dedicated connection for LISTEN: pooled connections are shared and recycled.
    let listener = {
        let wake = wake.clone();
        async move {
            loop {
                if let Ok((client, mut conn)) = config.connect(NoTls).await {
                    let stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    let listen = client.batch_execute("LISTEN wasmfn_changes");
                    let forward = stream.for_each(|_| {
                        wake.notify_one();
                        async {}
                    });
                    let _ = tokio::join!(listen, forward);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tokio::spawn(listener);
    let keys: Mutex<HashMap<String, Vec<String>>> = Mutex::new(HashMap::new());
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
        if let Err(e) = relay_once(&pool, &name, &sink, &keys).await {
            tracing::warn!(database = %name, "relaying SQL changes: {e:#}");
        }
    }
}

async fn relay_once(
    pool: &Pool,
    name: &str,
    sink: &ChangeSink,
    keys: &Mutex<HashMap<String, Vec<String>>>,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    loop {
        let tx = client.transaction().await?;
        // SKIP LOCKED: several hosts sharing the database relay disjoint rows.
        let rows = tx
            .query(
                "SELECT id, tbl, op, old_row::text, new_row::text FROM wasmfn_changes
                 ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(rows.len());
        let mut last = 0i64;
        for r in &rows {
            last = r.get(0);
            let table: String = r.get(1);
            let op: String = r.get(2);
            let old: Option<String> = r.get(3);
            let new: Option<String> = r.get(4);
            let pk = primary_key(&tx, &table, keys).await?;
            let key = row_key(&pk, new.as_deref().or(old.as_deref()).unwrap_or("{}"));
            events.push(StreamEvent::Change(ChangeRecord {
                source: format!("{name}.{table}"),
                sequence: String::new(),
                key,
                operation: match op.as_str() {
                    "INSERT" => Operation::Insert,
                    "UPDATE" => Operation::Modify,
                    _ => Operation::Remove,
                },
                format: ImageFormat::Json,
                old_image: old.map(String::into_bytes),
                new_image: new.map(String::into_bytes),
                timestamp: now_ms(),
            }));
        }
        sink.emit(events);
        tx.execute(
            "DELETE FROM wasmfn_changes WHERE id = ANY(SELECT id FROM wasmfn_changes WHERE id <= $1
             ORDER BY id LIMIT 500)",
            &[&last],
        )
        .await?;
        tx.commit().await?;
    }
}

/// Primary-key columns of `table`, looked up once.
async fn primary_key(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    cache: &Mutex<HashMap<String, Vec<String>>>,
) -> anyhow::Result<Vec<String>> {
    if let Some(k) = cache.lock().unwrap().get(table) {
        return Ok(k.clone());
    }
    let rows = tx
        .query(
            "SELECT a.attname FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary ORDER BY a.attnum",
            &[&table],
        )
        .await?;
    let cols: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    cache
        .lock()
        .unwrap()
        .insert(table.to_string(), cols.clone());
    Ok(cols)
}

/// The key of a changed row: its primary key value (several columns joined with `/`), or the
/// whole row when the table has none.
fn row_key(pk: &[String], image: &str) -> String {
    let Ok(serde_json::Value::Object(row)) = serde_json::from_str(image) else {
        return image.to_string();
    };
    if pk.is_empty() {
        return image.to_string();
    }
    pk.iter()
        .map(|c| match row.get(c) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect::<Vec<_>>()
        .join("/")
}
