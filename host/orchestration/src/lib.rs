//! # wasmfn-host-orchestration
//!
//! Orchestration in the wasmfn host (layer 3, above the capabilities and the queue trigger):
//!
//! - [`eventbus`]: events (`source`, `type`, `detail`, like EventBridge) routed by
//!   `[rules.NAME]` to queues, functions, topics and workflows, and fan-out `[topics.NAME]`
//!   (like SNS); the [`EventPublisher`](wasmfn_host_capabilities::events::EventPublisher) guests
//!   publish through.
//! - [`workflow`]: saga workflows (a Step Functions States Language subset) whose Task states are
//!   `task` functions, durable step by step on SQLite or PostgreSQL; the
//!   [`WorkflowStarter`](wasmfn_host_capabilities::workflows::WorkflowStarter) guests start them
//!   through.
//!
//! Both reach functions only through [`Invoker`](wasmfn_host_core::Invoker).

#[cfg(feature = "events")]
pub mod eventbus;
#[cfg(any(feature = "events", feature = "workflows"))]
pub mod workflow;

/// A fresh id (executions, events): time-ordered, 20 hex digits.
/// Milliseconds since the Unix epoch.
#[cfg(any(feature = "events", feature = "workflows"))]
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(any(feature = "events", feature = "workflows"))]
pub(crate) fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let hash = h.finalize().to_hex();
    format!("{:011x}{}", (nanos / 1_000_000) as u64, &hash[..9])
}
