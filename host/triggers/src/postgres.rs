//! What the triggers' PostgreSQL parts share (a cluster's schedule ticks and stream feed): the
//! connection pool, this host's name in leases, and the database's clock.

use deadpool_postgres::Pool;

/// The database's clock in milliseconds since the epoch: leases are compared on one clock,
/// whatever the hosts' clocks say.
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A pool of up to `size` connections to `url`, with `schema` created.
pub(crate) async fn pool(url: &str, size: usize, schema: &str) -> anyhow::Result<Pool> {
    wasmfn_host_capabilities::backend_tls::postgres_pool(url, size, schema).await
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
