//! Change capture for PostgreSQL stores with a `stream`: a transactional outbox. A row
//! trigger on every table of the schema (attached to new tables by an event trigger) writes
//! `wasmfn_changes`; [`relay`] moves committed rows to the stream feed and deletes them, so
//! nothing is lost while the host is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use futures::StreamExt as _;

use crate::stores::{now_ms, ChangeSink};
use wasmfn_host_core::stream::{ChangeRecord, ImageFormat, Operation, StreamEvent};

/// The outbox: table, row trigger, and the event trigger that attaches it to new tables.
pub(super) const SETUP: &str = r#"
CREATE TABLE IF NOT EXISTS wasmfn_changes (
    id BIGSERIAL PRIMARY KEY,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL,
    old_row JSONB,
    new_row JSONB,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The outbox's identity: with a row's id and time, the origin of its change record, by which the
-- feed skips a row relayed twice (a relay stopped between appending it and deleting it).
CREATE TABLE IF NOT EXISTS wasmfn_changes_origin (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    id TEXT NOT NULL
);
INSERT INTO wasmfn_changes_origin (id) VALUES (md5(random()::text || clock_timestamp()::text))
    ON CONFLICT DO NOTHING;
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
    -- wasmfn's own tables (this outbox, and the workflow, schedule and stream tables of a
    -- cluster sharing the database) are never captured: their writes are not the app's.
    IF target::text NOT LIKE 'wasmfn\_%' AND NOT EXISTS (
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
-- Databases set up before wasmfn's own tables were left out.
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT t.tgrelid::regclass AS tbl FROM pg_trigger t
             WHERE t.tgname = 'wasmfn_capture' AND t.tgrelid::regclass::text LIKE 'wasmfn\_%' LOOP
        EXECUTE format('DROP TRIGGER wasmfn_capture ON %s', r.tbl);
    END LOOP;
END $$;
"#;

/// Move committed changes from the outbox to the stream feed, woken by NOTIFY (and every
/// second, in case a notification was missed while reconnecting).
pub(super) async fn relay(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    pool: Pool,
    name: String,
    sink: ChangeSink,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    // A dedicated connection for LISTEN: pooled connections are shared and recycled.
    let listener = {
        let wake = wake.clone();
        async move {
            loop {
                if let Ok((client, mut conn)) = config.connect(tls.clone()).await {
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
    // The outbox's identity, read once: it never changes.
    let mut outbox = None;
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
        if let Err(e) = relay_once(&pool, &name, &sink, &keys, &mut outbox).await {
            tracing::warn!(database = %name, "relaying SQL changes: {e:#}");
        }
    }
}

async fn relay_once(
    pool: &Pool,
    name: &str,
    sink: &ChangeSink,
    keys: &Mutex<HashMap<String, Vec<String>>>,
    outbox: &mut Option<String>,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let outbox = match outbox {
        Some(id) => id.clone(),
        None => {
            let id: String = client
                .query_one("SELECT id FROM wasmfn_changes_origin", &[])
                .await
                .context("reading the outbox's identity")?
                .get(0);
            outbox.insert(id).clone()
        }
    };
    // Guests' statements leave their deadline as the session's statement timeout.
    client.batch_execute("SET statement_timeout = 0").await?;
    loop {
        let tx = client.transaction().await?;
        // One relay at a time over the hosts sharing the database: two relaying disjoint
        // rows at once could append a key's later change before its earlier one.
        let mine: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtext('wasmfn_changes relay'))",
                &[],
            )
            .await?
            .get(0);
        if !mine {
            return Ok(());
        }
        let rows = tx
            .query(
                "SELECT id, tbl, op, old_row::text, new_row::text,
                        (extract(epoch FROM at) * 1000000)::bigint
                 FROM wasmfn_changes ORDER BY id LIMIT 500",
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
            let at: i64 = r.get(5);
            let pk = primary_key(&tx, &table, keys).await?;
            let key = row_key(&pk, new.as_deref().or(old.as_deref()).unwrap_or("{}"));
            // The row's time too: ids start again if the outbox table is ever recreated.
            let origin = format!("{outbox}:{last}:{at}");
            events.push((
                origin,
                StreamEvent::Change(ChangeRecord {
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
                }),
            ));
        }
        // Deleted only once recorded: a feed that is down keeps the changes here. Should
        // this host stop before the delete commits, the next relay appends them again, and
        // the feed skips them by their origin.
        sink.try_emit_once(events)?;
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
