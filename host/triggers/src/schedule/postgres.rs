//! Ticks of a cluster, in PostgreSQL: one row per schedule holds the last tick claimed and the
//! run lease. A claim is one conditional upsert (`last_tick < tick`), so of the hosts claiming
//! the same tick exactly one gets a row back; the lease's times come from the database's clock,
//! so hosts with skewed clocks still agree on when a lease has expired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;

use super::ticks::{Claim, TickFuture, Ticks};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wasmfn_schedule_ticks (
    schedule TEXT PRIMARY KEY,
    last_tick BIGINT NOT NULL,
    run_owner TEXT,
    run_tick BIGINT,
    run_until BIGINT NOT NULL DEFAULT 0
);
";

use crate::postgres::NOW_MS;

/// Schedule ticks shared by the hosts of one cluster.
pub struct PostgresTicks {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// This host's name in the run leases.
    owner: String,
    /// Prefix of the schedule names in the table: apps sharing one database stay apart.
    namespace: String,
    lease: Duration,
    claim_sql: String,
}

impl PostgresTicks {
    /// Connect to `url` and create the table if needed. `namespace` keeps this app's
    /// schedules apart from other apps' in the same database; `lease` is how long a run
    /// lease lasts without renewal (a dead host's run stops blocking the next tick after it).
    pub async fn connect(url: &str, namespace: &str, lease: Duration) -> anyhow::Result<Self> {
        // One claim per due tick and schedule: two connections are plenty.
        let pool = crate::postgres::pool(url, 2, SCHEMA).await?;
        // $1 schedule, $2 tick, $3 owner, $4 exclusive, $5 lease (ms). The row comes back
        // only to the host whose tick is newer than the last one claimed; `mine` says whether
        // it also holds the run lease (always, without `exclusive`).
        let claim_sql = format!(
            "INSERT INTO wasmfn_schedule_ticks AS t (schedule, last_tick, run_owner, run_tick, run_until)
             VALUES ($1, $2, $3, $2, CASE WHEN $4::boolean THEN {NOW_MS} + $5::bigint ELSE 0 END)
             ON CONFLICT (schedule) DO UPDATE SET
                 last_tick = excluded.last_tick,
                 run_owner = CASE WHEN NOT $4::boolean THEN t.run_owner
                     WHEN t.run_until < {NOW_MS} THEN excluded.run_owner ELSE t.run_owner END,
                 run_tick = CASE WHEN NOT $4::boolean THEN t.run_tick
                     WHEN t.run_until < {NOW_MS} THEN excluded.run_tick ELSE t.run_tick END,
                 run_until = CASE WHEN NOT $4::boolean THEN t.run_until
                     WHEN t.run_until < {NOW_MS} THEN excluded.run_until ELSE t.run_until END
             WHERE t.last_tick < excluded.last_tick
             RETURNING NOT $4::boolean OR (run_owner = $3 AND run_tick = $2)"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                owner: crate::postgres::host_id(),
                namespace: namespace.to_string(),
                lease,
                claim_sql,
            }),
        })
    }
}

impl Inner {
    fn key(&self, schedule: &str) -> String {
        format!("{}/{schedule}", self.namespace)
    }

    async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool.get().await.context("no PostgreSQL connection")
    }
}

impl Ticks for PostgresTicks {
    fn last_fired(&self) -> TickFuture<BTreeMap<String, i64>> {
        let this = self.inner.clone();
        Box::pin(async move {
            let prefix = this.key("");
            let rows = this
                .client()
                .await?
                .query(
                    "SELECT schedule, last_tick FROM wasmfn_schedule_ticks \
                     WHERE starts_with(schedule, $1)",
                    &[&prefix],
                )
                .await
                .context("reading the schedules' last ticks")?;
            Ok(rows
                .iter()
                .map(|r| {
                    let name: String = r.get(0);
                    (name[prefix.len()..].to_string(), r.get(1))
                })
                .collect())
        })
    }

    fn claim(&self, schedule: &str, tick_ms: i64, exclusive: bool) -> TickFuture<Claim> {
        let (this, key) = (self.inner.clone(), self.inner.key(schedule));
        Box::pin(async move {
            let lease = this.lease.as_millis() as i64;
            let row = this
                .client()
                .await?
                .query_opt(
                    &this.claim_sql,
                    &[&key, &tick_ms, &this.owner, &exclusive, &lease],
                )
                .await
                .context("claiming the schedule's tick")?;
            Ok(match row.map(|r| r.get::<_, bool>(0)) {
                None => Claim::Elsewhere,
                Some(true) => Claim::Fire,
                Some(false) => Claim::Busy,
            })
        })
    }

    fn renew(&self, schedule: &str, tick_ms: i64) -> TickFuture<()> {
        let (this, key) = (self.inner.clone(), self.inner.key(schedule));
        Box::pin(async move {
            let lease = this.lease.as_millis() as i64;
            this.client()
                .await?
                .execute(
                    &format!(
                        "UPDATE wasmfn_schedule_ticks SET run_until = {NOW_MS} + $4 \
                         WHERE schedule = $1 AND run_owner = $2 AND run_tick = $3"
                    ),
                    &[&key, &this.owner, &tick_ms, &lease],
                )
                .await
                .context("renewing the schedule's run lease")?;
            Ok(())
        })
    }

    fn finish(&self, schedule: &str, tick_ms: i64) -> TickFuture<()> {
        let (this, key) = (self.inner.clone(), self.inner.key(schedule));
        Box::pin(async move {
            this.client()
                .await?
                .execute(
                    "UPDATE wasmfn_schedule_ticks SET run_until = 0 \
                     WHERE schedule = $1 AND run_owner = $2 AND run_tick = $3",
                    &[&key, &this.owner, &tick_ms],
                )
                .await
                .context("ending the schedule's run lease")?;
            Ok(())
        })
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.inner.lease / 3)
    }
}
