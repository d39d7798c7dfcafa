//! What the triggers' PostgreSQL parts share (a cluster's schedule ticks and stream feed): the
//! connection pool, this host's name in leases, and the database's clock.

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// The database's clock in milliseconds since the epoch: leases are compared on one clock,
/// whatever the hosts' clocks say.
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A pool of up to `size` connections to `url`, checked with one connection, with `schema`
/// created.
pub(crate) async fn pool(url: &str, size: usize, schema: &str) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse().context("invalid PostgreSQL URL")?;
    let tls = wasmfn_host_capabilities::backend_tls::postgres(&mut config)?;
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(size).build()?;
    let client = tokio::time::timeout(Duration::from_secs(5), pool.get())
        .await
        .map_err(|_| anyhow::anyhow!("PostgreSQL did not answer within 5 s"))?
        .context("connecting to PostgreSQL")?;
    client
        .batch_execute(schema)
        .await
        .context("creating wasmfn's tables")?;
    Ok(pool)
}

/// This host in leases: its name, process and start time (unique across restarts).
pub(crate) fn host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}:{}:{started:x}", name.trim(), std::process::id())
}
