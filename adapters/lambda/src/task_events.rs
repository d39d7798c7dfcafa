//! Step Functions task invocations of a `task` function: what a state machine's Task state
//! sends a Lambda function, read as the `task-handler` contract's context and input, and the
//! task's outcome answered so that `Retry` and `Catch` match the same error names as under
//! `wasmfn serve`.
//!
//! Two payloads are read:
//! - the state's input as it is (a Task whose `Resource` is the function's ARN, or a
//!   `lambda:invoke` Task passing `"Payload.$": "$"`): the context is then the Lambda request
//!   (execution = request id, state = the function's name, attempt 1);
//! - `{"input": <state input>, "context": <the context object, $$>}`, which the templates of
//!   `wasmfn package lambda` pass (`"Payload": {"input.$": "$", "context.$": "$$"}`), so the
//!   task sees the execution's ARN, the state machine's name, the state's name and its retry
//!   count, as a local execution gives them.
//!
//! The answer is the task's JSON output; a failure is a Lambda function error whose
//! `errorType` is the task's error name (Step Functions uses it as the error `ErrorEquals`
//! matches), a timeout `States.Timeout`, any other failure of the invocation (a trap, the
//! memory limit) `States.TaskFailed`.

use anyhow::{bail, Context as _};
use serde_json::Value;
use wasmfn_host::task::TaskContext;
use wasmfn_host::{Function, InvokeError};

use crate::dispatch::InvocationError;

/// One task invocation: its context and its input (JSON text).
#[derive(Debug)]
pub struct TaskPayload {
    /// As the `task-handler` export receives it.
    pub context: TaskContext,
    /// The state's input.
    pub input: String,
}

/// Read `event` as a task invocation of `function` in Lambda request `request_id`.
pub fn task_payload(event: Value, function: &str, request_id: &str) -> anyhow::Result<TaskPayload> {
    if let Some((input, context)) = envelope(&event) {
        let text = |path: &[&str]| -> anyhow::Result<String> {
            let mut at = context;
            for key in path {
                at = &at[key];
            }
            at.as_str()
                .map(str::to_string)
                .with_context(|| format!("the context object has no string `{}`", path.join(".")))
        };
        let machine = text(&["StateMachine", "Name"])?;
        // The templates name state machines `STACK-WORKFLOW`: the task sees the manifest's name.
        let prefix = std::env::var("WASMFN_RESOURCE_PREFIX").unwrap_or_default();
        let workflow = machine
            .strip_prefix(prefix.as_str())
            .unwrap_or(&machine)
            .to_string();
        let retries = context["State"]["RetryCount"].as_u64().unwrap_or(0);
        return Ok(TaskPayload {
            context: TaskContext {
                execution: text(&["Execution", "Id"])?,
                workflow,
                state: text(&["State", "Name"])?,
                attempt: u32::try_from(retries + 1).unwrap_or(u32::MAX),
            },
            input: input.to_string(),
        });
    }
    if event.is_null() {
        bail!("the event is empty: a task takes its state's input, a JSON value");
    }
    Ok(TaskPayload {
        context: TaskContext {
            execution: request_id.to_string(),
            workflow: String::new(),
            state: function.to_string(),
            attempt: 1,
        },
        input: event.to_string(),
    })
}

/// `{"input": ..., "context": {"Execution": .., "State": .., ...}}`, and nothing else.
fn envelope(event: &Value) -> Option<(&Value, &Value)> {
    let object = event.as_object()?;
    let (input, context) = (object.get("input")?, object.get("context")?);
    let is_context = context["Execution"].is_object() && context["State"].is_object();
    (object.len() == 2 && is_context).then_some((input, context))
}

/// Run the task and answer as Step Functions expects.
pub async fn run(function: &Function, payload: TaskPayload) -> Result<Value, InvocationError> {
    match function.invoke_task(&payload.context, &payload.input).await {
        Ok(Ok(output)) => serde_json::from_str(&output).map_err(|e| {
            InvocationError::named(
                "States.Runtime",
                format!(
                    "function `{}` returned a result that is not JSON: {e}",
                    function.name()
                ),
            )
        }),
        Ok(Err(failure)) => Err(InvocationError::named(&failure.error, failure.cause)),
        Err(e @ InvokeError::Timeout { .. }) => Err(timeout(e.to_string())),
        Err(e) => Err(InvocationError::named("States.TaskFailed", e.to_string())),
    }
}

/// A task that ran out of time, named as a local execution names it.
pub fn timeout(message: String) -> InvocationError {
    InvocationError::named("States.Timeout", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_templates_envelope_gives_the_execution_state_and_attempt() {
        let event = json!({
            "input": {"orderId": "o-1"},
            "context": {
                "Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:order-saga:e1", "Name": "e1"},
                "State": {"Name": "ProcessPayment", "RetryCount": 2, "EnteredTime": "2026-12-07T10:00:00Z"},
                "StateMachine": {"Id": "arn:aws:states:us-east-1:123456789012:stateMachine:order-saga", "Name": "order-saga"}
            }
        });
        let p = task_payload(event, "process-payment", "req-1").unwrap();
        assert_eq!(p.input, r#"{"orderId":"o-1"}"#);
        assert_eq!(p.context.state, "ProcessPayment");
        assert_eq!(p.context.attempt, 3);
        assert_eq!(p.context.workflow, "order-saga");
        assert!(p.context.execution.ends_with(":e1"));
    }

    #[test]
    fn any_other_event_is_the_state_input_itself() {
        // A user's own object with an `input` key is not taken for the envelope.
        let event = json!({"input": 1, "context": "mine"});
        let p = task_payload(event.clone(), "reserve", "req-9").unwrap();
        assert_eq!(p.input, event.to_string());
        assert_eq!(
            (
                p.context.execution.as_str(),
                p.context.state.as_str(),
                p.context.attempt
            ),
            ("req-9", "reserve", 1)
        );
        assert_eq!(
            task_payload(json!([1, 2]), "f", "r").unwrap().input,
            "[1,2]"
        );
        assert!(task_payload(Value::Null, "f", "r").is_err());
    }
}
