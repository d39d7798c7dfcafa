//! What an operator does to a stream besides reading its lag: look at a parked record whole
//! and send it through the consumer again (the console's Streams view, the admin API's
//! `POST /_wasmfn/streams/NAME/parked/SEQ/redeliver`).

use anyhow::Result;
use rusqlite::{params, OptionalExtension as _};
use serde::Serialize;

use super::{checkpoint, now_ms, sequence_text, StreamFeed};

/// A parked record with the event it holds.
#[derive(Clone, Debug, Serialize)]
pub struct ParkedRecord {
    /// Its sequence.
    pub sequence: String,
    /// Its key.
    pub key: String,
    /// The last failure.
    pub reason: String,
    /// The event, in the `wasmfn invoke` stream form.
    pub event: serde_json::Value,
}

impl StreamFeed {
    /// The declared (valid) streams.
    pub fn configs(&self) -> &[super::StreamConfig] {
        &self.configs
    }

    /// The sequence of the last record `stream`'s consumer has finished with.
    pub fn checkpoint(&self, stream: &str) -> Result<String> {
        let conn = self.conn.lock().unwrap();
        Ok(sequence_text(checkpoint(&conn, stream)?))
    }

    /// Records set aside on `stream`, with their events.
    pub fn parked_records(&self, stream: &str) -> Result<Vec<ParkedRecord>> {
        let conn = self.conn.lock().unwrap();
        let mut q = conn.prepare(
            "SELECT p.seq, p.key, p.reason, r.event FROM stream_parked p \
             LEFT JOIN stream_records r ON r.seq = p.seq WHERE p.stream = ?1 ORDER BY p.seq",
        )?;
        let rows = q
            .query_map(params![stream], |r| {
                let event: Option<String> = r.get(3)?;
                Ok(ParkedRecord {
                    sequence: sequence_text(r.get(0)?),
                    key: r.get(1)?,
                    reason: r.get(2)?,
                    event: event
                        .and_then(|e| serde_json::from_str(&e).ok())
                        .unwrap_or(serde_json::Value::Null),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Take the parked record `sequence` of `stream` out of the parked set and append its
    /// event again (a new sequence, so it is delivered after what is waiting), in one
    /// transaction. `Ok(None)`: no such parked record.
    pub fn redeliver(&self, stream: &str, sequence: &str) -> Result<Option<String>> {
        let Ok(seq) = sequence.trim_start_matches('0').parse::<i64>() else {
            return Ok(None);
        };
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        let found: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT r.key, r.event, r.trace FROM stream_parked p \
                 JOIN stream_records r ON r.seq = p.seq WHERE p.stream = ?1 AND p.seq = ?2",
                params![stream, seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((key, event, trace)) = found else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO stream_records (stream, key, event, appended_at, trace) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![stream, key, event, now_ms(), trace],
        )?;
        let new = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM stream_parked WHERE stream = ?1 AND seq = ?2",
            params![stream, seq],
        )?;
        tx.commit()?;
        drop(conn);
        self.appended.notify_waiters();
        Ok(Some(sequence_text(new)))
    }
}
