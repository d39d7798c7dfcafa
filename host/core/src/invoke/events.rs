//! Invoking `queue`, `stream`, `schedule` and `task` functions, and the WIT types they take.

use tracing::Instrument as _;

use crate::error::InvokeError;
use crate::function::Function;
use crate::instances::{next_invocation_id, Admission, Bindings, Lease};
use crate::trace;
use crate::usage::{Outcome, Usage};
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

/// Types of the `task` world (`wasmfn:platform/task-handler`).
pub mod task {
    pub use crate::bindings::task::exports::wasmfn::platform::task_handler::{
        TaskContext, TaskError,
    };
}

/// Call the `handle` export of a `$variant` instance with `$arg`, under the function's limits;
/// evaluates to the result and the invocation's [`Usage`].
macro_rules! call_handle {
    ($function:expr, $admission:expr, $invocation:expr, $bytes_in:expr, $variant:ident, $export:ident, $arg:expr) => {
        $function
            .inner
            .run(
                $admission,
                $invocation.0,
                $bytes_in,
                |mut lease| async move {
                    let result = {
                        let Lease {
                            store, bindings, ..
                        } = &mut lease;
                        let Bindings::$variant(b) = bindings else {
                            unreachable!("a function's bindings match its world")
                        };
                        b.$export().call_handle(store, $arg).await
                    };
                    (lease, result)
                },
            )
            .instrument($invocation.1.clone())
            .await
    };
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
        self.invoke_queue_admitted(None, batch).await
    }

    /// Wait until the function has a free concurrency slot, and hold it for one invocation.
    pub async fn admission(&self) -> Admission {
        self.inner.admission().await
    }

    /// [`Function::invoke_queue`] in a concurrency slot taken beforehand with
    /// [`Function::admission`] (`None`: take one now or fail with `Overloaded`).
    pub async fn invoke_queue_admitted(
        &self,
        admission: Option<Admission>,
        batch: &queue::Batch,
    ) -> Result<Result<Vec<queue::MessageFailure>, String>, InvokeError> {
        let invocation = self.begin(World::Queue)?;
        // The batch continues the first producer's trace and links to every producer.
        trace::set_batch_parents(
            &invocation.1,
            batch.messages.iter().map(|m| m.attributes.as_slice()),
        );
        let bytes_in = batch.messages.iter().map(|m| m.body.len() as u64).sum();
        let (result, usage) = call_handle!(
            self,
            admission,
            invocation,
            bytes_in,
            Queue,
            wasmfn_platform_queue_handler,
            batch
        );
        self.finish(invocation, &result, &usage, |r| match r {
            Ok(failures) => format!(
                "{} of {} messages failed",
                failures.len(),
                batch.messages.len()
            ),
            Err(reason) => format!("batch failed: {reason}"),
        });
        result
    }

    /// Deliver a batch of stream events to this `stream` function.
    pub async fn invoke_stream(
        &self,
        events: &[stream::StreamEvent],
    ) -> Result<Result<(), stream::BatchFailure>, InvokeError> {
        let invocation = self.begin(World::Stream)?;
        let (result, usage) = call_handle!(
            self,
            None,
            invocation,
            0,
            Stream,
            wasmfn_platform_stream_handler,
            events
        );
        self.finish(invocation, &result, &usage, |r| match r {
            Ok(()) => format!("{} events processed", events.len()),
            Err(f) => format!("batch failed: {}", f.reason),
        });
        result
    }

    /// Run this `schedule` function for one scheduled event.
    pub async fn invoke_schedule(
        &self,
        event: &schedule::ScheduledEvent,
    ) -> Result<Result<(), String>, InvokeError> {
        let invocation = self.begin(World::Schedule)?;
        let (result, usage) = call_handle!(
            self,
            None,
            invocation,
            0,
            Schedule,
            wasmfn_platform_schedule_handler,
            event
        );
        self.finish(invocation, &result, &usage, |r| match r {
            Ok(()) => "run succeeded".to_string(),
            Err(reason) => format!("run failed: {reason}"),
        });
        result
    }

    /// Run this `task` function for one step of a workflow execution: `input` and the result
    /// are JSON text.
    pub async fn invoke_task(
        &self,
        context: &task::TaskContext,
        input: &str,
    ) -> Result<Result<String, task::TaskError>, InvokeError> {
        let invocation = self.begin(World::Task)?;
        let (result, usage) = self
            .inner
            .run(
                None,
                invocation.0,
                input.len() as u64,
                |mut lease| async move {
                    let result = {
                        let Lease {
                            store, bindings, ..
                        } = &mut lease;
                        let Bindings::Task(b) = bindings else {
                            unreachable!("a function's bindings match its world")
                        };
                        b.wasmfn_platform_task_handler()
                            .call_handle(store, context, input)
                            .await
                    };
                    (lease, result)
                },
            )
            .instrument(invocation.1.clone())
            .await;
        self.finish(invocation, &result, &usage, |r| match r {
            Ok(_) => format!("task `{}` succeeded", context.state),
            Err(e) => format!("task `{}` failed: {}: {}", context.state, e.error, e.cause),
        });
        result
    }

    /// Check the event fits the function's world; returns the invocation's id and span (a
    /// child of the current span: the trigger's, or a workflow step's).
    fn begin(&self, world: World) -> Result<(u64, tracing::Span), InvokeError> {
        self.expect_world(world)?;
        let id = next_invocation_id();
        Ok((id, trace::invocation_span(&self.inner.name, world, id)))
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

    /// Count the ended invocation and write its log line.
    fn finish<T, E>(
        &self,
        (invocation, span): (u64, tracing::Span),
        result: &Result<Result<T, E>, InvokeError>,
        usage: &Usage,
        summary: impl FnOnce(&Result<T, E>) -> String,
    ) {
        // A handler's own error is described once, for the ring and the log line.
        let (summary, handler_error) = match result {
            Ok(r @ Err(_)) => (None, Some(summary(r))),
            _ => (Some(summary), None),
        };
        let trace_id = trace::ids(&span).map(|(trace, _)| trace);
        let ended = crate::recent::Ended {
            invocation,
            status: None,
            error: match result {
                Err(e) => Some(e.to_string()),
                _ => handler_error.clone(),
            },
            trace_id: trace_id.clone(),
        };
        self.inner.record(result, usage, ended);
        match result {
            Ok(Ok(_)) => trace::record_outcome(&span, Outcome::Ok.label(), None),
            Ok(Err(_)) => trace::record_outcome(&span, Outcome::HandlerError.label(), None),
            Err(e) => {
                trace::record_outcome(&span, Outcome::of_error(e).label(), Some(&e.to_string()))
            }
        }
        let (function, world) = (&*self.inner.name, self.inner.world.name());
        let duration_us = usage.wall.as_micros() as u64;
        let cpu_us = usage.cpu.as_micros() as u64;
        let instantiate_us = usage.instantiation.map(|t| t.as_micros() as u64);
        let (peak_memory, bytes_in) = (usage.peak_memory, usage.bytes_in);
        match result {
            Ok(r @ Ok(_)) => {
                tracing::info!(target: "wasmfn::invocation", function, world, invocation,
                outcome = "ok", duration_us, cpu_us, instantiate_us, peak_memory, bytes_in,
                trace_id, "{}", summary.map(|s| s(r)).unwrap_or_default())
            }
            Ok(Err(_)) => {
                tracing::warn!(target: "wasmfn::invocation", function, world, invocation,
                outcome = "handler-error", duration_us, cpu_us, instantiate_us, peak_memory,
                bytes_in, trace_id, "{}", handler_error.unwrap_or_default())
            }
            Err(e) => tracing::warn!(target: "wasmfn::invocation", function, world, invocation,
                outcome = "failed", error_kind = e.kind(), duration_us, cpu_us, instantiate_us,
                peak_memory, bytes_in, trace_id, backtrace = e.backtrace().unwrap_or_default(),
                "invocation failed: {e}"),
        }
    }
}
