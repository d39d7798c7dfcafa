//! Appending to a partitioned PostgreSQL feed: sequences taken from each partition's head row
//! (locked until commit, so a partition's records commit in order), and relayed records
//! skipped when their origin is already in the feed.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, Result};
use wasmfn_host_core::stream::StreamEvent;

use super::{now_ms, partition_of, record_id, sequence_text, Inner, SLOW_FEED};

impl Inner {
    /// Append `events` (each with its origin id, if relayed) to `stream`; their record ids.
    /// One whose origin is already in the feed is not appended again: its earlier id.
    pub(super) async fn append(
        &self,
        stream: &str,
        events: Vec<(Option<String>, StreamEvent)>,
    ) -> Result<Vec<String>> {
        let stream = self.key(stream);
        let trace = wasmfn_host_core::trace::current_context_fields().map(|(p, _)| p);
        // By partition, in order, and partitions in a fixed order: concurrent appends take
        // the head rows in the same order, so they never deadlock.
        let mut by_part: BTreeMap<i32, Vec<Pending>> = BTreeMap::new();
        for (index, (origin, e)) in events.iter().enumerate() {
            let key = match e {
                StreamEvent::Change(c) => c.key.clone(),
                StreamEvent::Object(o) => o.key.clone(),
            };
            let json = wasmfn_host_core::event_json::stream_event_to_json(e).to_string();
            by_part
                .entry(partition_of(&key))
                .or_default()
                .push(Pending {
                    index,
                    key,
                    json,
                    origin: origin.clone(),
                });
        }
        let asked = std::time::Instant::now();
        let mut client = self.client().await?;
        if asked.elapsed() > SLOW_FEED {
            tracing::warn!(
                stream,
                waited_ms = asked.elapsed().as_millis() as u64,
                "appending change records waited this long for a PostgreSQL connection of the feed's pool"
            );
        }
        let tx = client.transaction().await?;
        let mut ids = vec![String::new(); events.len()];
        let now = now_ms();
        for (part, mut records) in by_part {
            let locking = std::time::Instant::now();
            let relayed = records.iter().any(|r| r.origin.is_some());
            if relayed {
                // Locked first, so that a relayed record checked absent stays absent.
                tx.execute(
                    "SELECT 1 FROM wasmfn_stream_heads WHERE stream = $1 AND part = $2 FOR UPDATE",
                    &[&stream, &part],
                )
                .await
                .context("taking the partition's head row")?;
                skip_appended(&tx, &stream, part, &mut records, &mut ids).await?;
                if records.is_empty() {
                    continue;
                }
            }
            let n = records.len() as i64;
            // The head row stays locked until commit: sequences of a partition commit in
            // order. One statement for a store's write, the common case.
            let last: i64 = tx
                .query_one(
                    "UPDATE wasmfn_stream_heads SET last_seq = last_seq + $3 \
                     WHERE stream = $1 AND part = $2 RETURNING last_seq",
                    &[&stream, &part, &n],
                )
                .await
                .context("taking the partition's next sequences")?
                .get(0);
            if locking.elapsed() > SLOW_FEED {
                tracing::warn!(
                    stream,
                    part,
                    waited_ms = locking.elapsed().as_millis() as u64,
                    "appending change records waited this long for the partition's head row \
                     (another session held it)"
                );
            }
            let first = last - n + 1;
            let seqs: Vec<i64> = (first..=last).collect();
            let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
            let jsons: Vec<&str> = records.iter().map(|r| r.json.as_str()).collect();
            let origins: Vec<Option<&str>> = records.iter().map(|r| r.origin.as_deref()).collect();
            tx.execute(
                "INSERT INTO wasmfn_stream_records (stream, part, seq, key, event, appended_at, trace, origin) \
                 SELECT $1, $2, s, k, e, $6, $7, o \
                 FROM unnest($3::bigint[], $4::text[], $5::text[], $8::text[]) AS r(s, k, e, o)",
                &[&stream, &part, &seqs, &keys, &jsons, &now, &trace, &origins],
            )
            .await
            .context("appending stream records")?;
            for (r, seq) in records.iter().zip(seqs) {
                ids[r.index] = sequence_text(record_id(part, seq));
            }
        }
        tx.commit().await.context("committing stream records")?;
        self.appended.notify_waiters();
        Ok(ids)
    }
}

/// Drop from `records` those whose origin is already in `part` (a relay appending them again),
/// giving each its earlier record id in `ids`.
async fn skip_appended(
    tx: &deadpool_postgres::Transaction<'_>,
    stream: &str,
    part: i32,
    records: &mut Vec<Pending>,
    ids: &mut [String],
) -> Result<()> {
    let origins: Vec<&str> = records.iter().filter_map(|r| r.origin.as_deref()).collect();
    let present: HashMap<String, i64> = tx
        .query(
            "SELECT origin, seq FROM wasmfn_stream_records \
             WHERE stream = $1 AND part = $2 AND origin = ANY($3)",
            &[&stream, &part, &origins],
        )
        .await
        .context("looking for relayed records already appended")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    records.retain(|r| match r.origin.as_ref().and_then(|o| present.get(o)) {
        Some(seq) => {
            ids[r.index] = sequence_text(record_id(part, *seq));
            false
        }
        None => true,
    });
    Ok(())
}

/// A record on its way into a partition.
struct Pending {
    /// Its place in the appended batch.
    index: usize,
    key: String,
    json: String,
    origin: Option<String>,
}
