//! Invoking `queue`, `stream` and `schedule` functions, and the WIT types they take.

use std::time::Instant;

use crate::error::InvokeError;
use crate::function::{next_invocation_id, Bindings, Function, Lease};
use crate::world::World;

/// Types of the `queue` world (`wasmfn:platform/queue-handler`).
pub mod queue {
    pub use crate::bindings::queue::exports::wasmfn::platform::queue_handler::{
        Batch, Message, MessageFailure,
    };
}

/// Types of the `stream` world (`wasmfn:platform/stream-handler`).
pub mod stream {
    pub use crate::bindings::stream::exports::wasmfn::platform::stream_handler::{
        BatchFailure, ChangeRecord, ImageFormat, ObjectEvent, ObjectEventKind, Operation,
        StreamEvent,
    };
}

/// Types of the `schedule` world (`wasmfn:platform/schedule-handler`).
pub mod schedule {
    pub use crate::bindings::schedule::exports::wasmfn::platform::schedule_handler::ScheduledEvent;
}

impl Function {
    /// Deliver a batch of messages to this `queue` function.
    ///
    /// `Ok(Ok(failures))` lists the messages the guest reported as failed (empty: all done);
    /// `Ok(Err(reason))` is the guest failing the whole batch; `Err` is the invocation failing.
    pub async fn invoke_queue(
        &self,
        batch: &queue::Batch,
    ) -> Result<Result<Vec<queue::MessageFailure>, String>, InvokeError> {
        self.expect_world(World::Queue)?;
        let started = Instant::now();
        let invocation = next_invocation_id();
        let result = self
            .inner
            .run(|mut lease| async move {
                let result = {
                    let Lease {
                        store, bindings, ..
                    } = &mut lease;
                    let Bindings::Queue(b) = bindings else {
                        unreachable!("queue bindings")
                    };
                    b.wasmfn_platform_queue_handler()
                        .call_handle(store, batch)
                        .await
                };
                (lease, result)
            })
            .await;
        let summary = match &result {
            Ok(Ok(failures)) => format!(
                "{} of {} messages failed",
                failures.len(),
                batch.messages.len()
            ),
            Ok(Err(reason)) => format!("batch failed: {reason}"),
            Err(_) => String::new(),
        };
        self.log_event(invocation, started, &result, summary);
        result
    }

    /// Deliver a batch of stream events to this `stream` function.
    pub async fn invoke_stream(
        &self,
        events: &[stream::StreamEvent],
    ) -> Result<Result<(), stream::BatchFailure>, InvokeError> {
        self.expect_world(World::Stream)?;
        let started = Instant::now();
        let invocation = next_invocation_id();
        let result = self
            .inner
            .run(|mut lease| async move {
                let result = {
                    let Lease {
                        store, bindings, ..
                    } = &mut lease;
                    let Bindings::Stream(b) = bindings else {
                        unreachable!("stream bindings")
                    };
                    b.wasmfn_platform_stream_handler()
                        .call_handle(store, events)
                        .await
                };
                (lease, result)
            })
            .await;
        let summary = match &result {
            Ok(Ok(())) => format!("{} events processed", events.len()),
            Ok(Err(f)) => format!("batch failed: {}", f.reason),
            Err(_) => String::new(),
        };
        self.log_event(invocation, started, &result, summary);
        result
    }

    /// Run this `schedule` function for one scheduled event.
    pub async fn invoke_schedule(
        &self,
        event: &schedule::ScheduledEvent,
    ) -> Result<Result<(), String>, InvokeError> {
        self.expect_world(World::Schedule)?;
        let started = Instant::now();
        let invocation = next_invocation_id();
        let result = self
            .inner
            .run(|mut lease| async move {
                let result = {
                    let Lease {
                        store, bindings, ..
                    } = &mut lease;
                    let Bindings::Schedule(b) = bindings else {
                        unreachable!("schedule bindings")
                    };
                    b.wasmfn_platform_schedule_handler()
                        .call_handle(store, event)
                        .await
                };
                (lease, result)
            })
            .await;
        let summary = match &result {
            Ok(Ok(())) => "run succeeded".to_string(),
            Ok(Err(reason)) => format!("run failed: {reason}"),
            Err(_) => String::new(),
        };
        self.log_event(invocation, started, &result, summary);
        result
    }

    fn expect_world(&self, world: World) -> Result<(), InvokeError> {
        if self.inner.world == world {
            return Ok(());
        }
        Err(InvokeError::BadInvocation {
            function: self.inner.name.to_string(),
            message: format!(
                "is a `{}` function and cannot take `{world}` events",
                self.inner.world
            ),
        })
    }

    fn log_event<T, E>(
        &self,
        invocation: u64,
        started: Instant,
        result: &Result<Result<T, E>, InvokeError>,
        summary: String,
    ) {
        let duration_us = started.elapsed().as_micros() as u64;
        let (function, world) = (&*self.inner.name, self.inner.world.name());
        match result {
            Ok(Ok(_)) => tracing::info!(target: "wasmfn::invocation", function, world, invocation,
                outcome = "ok", duration_us, "{summary}"),
            Ok(Err(_)) => tracing::warn!(target: "wasmfn::invocation", function, world, invocation,
                outcome = "handler-error", duration_us, "{summary}"),
            Err(e) => tracing::warn!(target: "wasmfn::invocation", function, world, invocation,
                outcome = "failed", error_kind = e.kind(), duration_us, "invocation failed: {e}"),
        }
    }
}
