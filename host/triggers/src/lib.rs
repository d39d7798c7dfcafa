//! # wasmfn-host-triggers
//!
//! The event triggers of the wasmfn host (layer 3, above the capabilities): each one owns its
//! part of `wasmfn.toml`, builds a [`Service`](wasmfn_host_core::Service) for an app, and
//! reaches functions only through [`Invoker`](wasmfn_host_core::Invoker).
//!
//! - [`queue`]: durable named queues delivered in batches to `queue` functions, at least once,
//!   with retries and dead-letter queues (SQS semantics); embedded SQLite or NATS JetStream.
//!   Also the [`QueueSender`](wasmfn_host_capabilities::queues::QueueSender) that guests publish
//!   through.
//! - [`stream`]: the durable change feed of an app's stores, delivered in order to `stream`
//!   functions (the stores' [`ChangeRecorder`](wasmfn_host_capabilities::changes::ChangeRecorder)).
//! - [`schedule`]: cron and rate schedules that run `schedule` functions.

#[cfg(any(feature = "schedules-postgres", feature = "streams-postgres"))]
mod postgres;
#[cfg(feature = "queues")]
pub mod queue;
#[cfg(feature = "schedules")]
pub mod schedule;
#[cfg(feature = "streams")]
pub mod stream;
