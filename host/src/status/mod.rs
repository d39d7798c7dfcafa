//! What a running app reports about itself, for the admin listener: readiness
//! ([`health`]), the gauges read from its backends when scraped, and each function's usage.
//! Part of the composition root: it reads the app's functions and the services wired into it.

pub mod health;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::json;
use wasmfn_host_core::UsageTotals;

use crate::app::App;
use crate::telemetry::history;

/// Set the gauges read from backends at scrape time: each queue's depth and oldest message's
/// age, each stream's lag and parked records. A backend that does not answer leaves its
/// gauges as they were (its failure shows in `/readyz`).
pub async fn sample_gauges(app: &App) {
    let _ = app;
    #[cfg(feature = "queues")]
    if let Some(queues) = app.queues() {
        if let Ok(stats) = queues.stats().await {
            for s in stats {
                let queue = s.name;
                metrics::gauge!("wasmfn_queue_messages", "queue" => queue.clone(), "state" => "waiting")
                    .set(s.waiting as f64);
                metrics::gauge!("wasmfn_queue_messages", "queue" => queue.clone(), "state" => "in_flight")
                    .set(s.in_flight as f64);
                let age = s.oldest_age.map_or(0.0, |a| a.as_secs_f64());
                metrics::gauge!("wasmfn_queue_oldest_message_age_seconds", "queue" => queue)
                    .set(age);
            }
        }
    }
    #[cfg(feature = "streams")]
    if let Some(feed) = app.streams() {
        for stream in feed.configs().iter().map(|c| c.name.as_str()) {
            let Ok(backlog) = feed.backlog(stream) else {
                continue;
            };
            let label = stream.to_string();
            metrics::gauge!("wasmfn_stream_lag_records", "stream" => label.clone())
                .set(backlog.records as f64);
            let age = backlog.oldest_age.map_or(0.0, |a| a.as_secs_f64());
            metrics::gauge!("wasmfn_stream_lag_seconds", "stream" => label.clone()).set(age);
            metrics::gauge!("wasmfn_stream_parked_records", "stream" => label)
                .set(backlog.parked as f64);
        }
    }
}

/// Every function's usage totals now, by name.
pub fn totals(app: &App) -> BTreeMap<String, UsageTotals> {
    app.functions()
        .map(|f| (f.name().to_string(), f.usage_totals()))
        .collect()
}

/// `GET /_wasmfn/usage[?since=SECONDS]`: what each function used in the window (since the
/// app loaded, or about the last SECONDS, to a minute), with its world, memory limit and
/// timeout: what `wasmfn cost` prices.
pub fn usage(app: &App, since: Option<Duration>) -> serde_json::Value {
    let now = SystemTime::now();
    let (start, baseline) = match since {
        Some(window) => app.usage_history.baseline(window),
        None => (app.usage_history.loaded(), BTreeMap::new()),
    };
    let functions: Vec<_> = app
        .functions()
        .map(|f| {
            let totals = f.usage_totals();
            let totals = match baseline.get(f.name()) {
                Some(earlier) => totals.since(earlier),
                None => totals,
            };
            json!({
                "function": f.name(),
                "world": f.world().name(),
                "memoryLimitBytes": f.limits().memory_bytes,
                "timeoutMs": f.limits().timeout.as_millis() as u64,
                "totals": totals,
            })
        })
        .collect();
    let window = now.duration_since(start).unwrap_or_default();
    json!({ "windowSeconds": window.as_secs_f64(), "functions": functions })
}

/// Take a usage snapshot every [`history::EVERY`] until the app is dropped.
pub fn keep_history(app: &std::sync::Arc<App>) -> tokio::task::JoinHandle<()> {
    let app = std::sync::Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(history::EVERY);
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            app.usage_history.record(totals(&app));
        }
    })
}
