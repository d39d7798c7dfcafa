//! `{{name}}`: a workflow task (a `Task` state whose `Resource` is `{{name}}`). It answers with
//! its input wrapped in `{"handledBy", "attempt", "input"}`; an input mentioning `reject` fails
//! with error `Rejected`, which the workflow's `Retry`/`Catch` can match. Edit `handle`.
//!
//! The world is `wit/world.wit`: add imports there (key-value, SQL, blobs, ...) to use them.

wit_bindgen::generate!({ path: "wit", world: "guest", generate_all });

use exports::wasmfn::platform::task_handler::{Guest, TaskContext, TaskError};
use wasi::logging::logging::{log, Level};

struct Handler;

impl Guest for Handler {
    fn handle(context: TaskContext, input: String) -> Result<String, TaskError> {
        log(
            Level::Info,
            "{{name}}",
            &format!("{} of execution {} (attempt {})", context.state, context.execution, context.attempt),
        );
        if input.contains("reject") {
            return Err(TaskError {
                error: "Rejected".into(),
                cause: format!("{} was asked to reject its input", context.state),
            });
        }
        // The input is JSON, so wrapping its text keeps the result JSON.
        Ok(format!(
            "{{\"handledBy\":\"{{name}}\",\"attempt\":{},\"input\":{input}}}",
            context.attempt
        ))
    }
}

export!(Handler);
