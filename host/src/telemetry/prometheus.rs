//! The Prometheus exporter: installed once per process as the `metrics` recorder, rendered
//! as Prometheus text by the admin listener's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every `_seconds` histogram: from 100 µs (a warm hello) to a minute (a long task).
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets of every `_bytes` histogram: 1 MiB to 4 GiB, doubling (Lambda's and Workers' memory
/// sizes fall on or between them).
const BYTES: &[f64] = &[
    1048576.0,
    2097152.0,
    4194304.0,
    8388608.0,
    16777216.0,
    33554432.0,
    67108864.0,
    134217728.0,
    268435456.0,
    536870912.0,
    1073741824.0,
    2147483648.0,
    4294967296.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes (they
/// otherwise pile up in memory until the next render).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the Prometheus exporter as this process's metrics recorder. Call it before loading
/// functions: each function registers its metrics when it loads. Calling it again is a no-op.
pub fn install() -> Result<()> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES)?
        .install_recorder()
        .context("installing the Prometheus metrics recorder (is another recorder installed?)")?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("wasmfn-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .context("starting the metrics upkeep thread")?;
    let _ = HANDLE.set(handle);
    Ok(())
}

/// The current metrics in Prometheus text format, or `None` when [`install`] was not called.
pub fn render() -> Option<String> {
    HANDLE.get().map(|h| h.render())
}
