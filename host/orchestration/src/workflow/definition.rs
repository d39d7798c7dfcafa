//! A workflow definition: the Amazon States Language subset wasmfn runs (Task, Pass, Choice,
//! Wait, Parallel, Succeed, Fail; Next/End, Retry with backoff, Catch with `ErrorEquals` and
//! `States.ALL`), from JSON or from TOML of the same shape.
//!
//! [`Definition::parse_json`] / [`Definition::parse_toml`] refuse a definition that could not run
//! as written, naming the state and the fix: an unknown `StartAt` or `Next`, a state with neither
//! (or both) `Next` and `End`, a Choice without choices, a Task naming no function, and states
//! that can never finish (every path from them loops back without an exit).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// A state machine: where it starts and its states by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Definition {
    /// Shown in listings.
    #[serde(default)]
    pub comment: Option<String>,
    /// The first state.
    pub start_at: String,
    /// Every state, by name.
    pub states: BTreeMap<String, State>,
}

/// One state.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "Type")]
pub enum State {
    /// Invoke a function (`Resource` is the function's name) with the state's input.
    Task {
        #[serde(rename = "Resource")]
        resource: String,
        #[serde(flatten)]
        flow: Flow,
        #[serde(flatten)]
        recovery: Recovery,
        /// Seconds before the task counts as failed with `States.Timeout`.
        #[serde(rename = "TimeoutSeconds", default)]
        timeout_seconds: Option<u64>,
    },
    /// Pass its input (or `Result`) on.
    Pass {
        #[serde(flatten)]
        flow: Flow,
        #[serde(rename = "Result", default)]
        result: Option<serde_json::Value>,
        #[serde(rename = "ResultPath", default, deserialize_with = "nullable")]
        result_path: ResultPath,
    },
    /// Branch on the input.
    Choice {
        #[serde(rename = "Choices", default)]
        choices: Vec<ChoiceRule>,
        #[serde(rename = "Default", default)]
        default: Option<String>,
    },
    /// Wait a number of seconds (or until a timestamp).
    Wait {
        #[serde(flatten)]
        flow: Flow,
        #[serde(rename = "Seconds", default)]
        seconds: Option<u64>,
        #[serde(rename = "Timestamp", default)]
        timestamp: Option<String>,
    },
    /// Run branches side by side; the output is the list of their outputs.
    Parallel {
        #[serde(flatten)]
        flow: Flow,
        #[serde(rename = "Branches")]
        branches: Vec<Definition>,
        #[serde(flatten)]
        recovery: Recovery,
    },
    /// End the execution successfully.
    Succeed {},
    /// End the execution as failed.
    Fail {
        #[serde(rename = "Error", default)]
        error: Option<String>,
        #[serde(rename = "Cause", default)]
        cause: Option<String>,
    },
}

/// Where a state goes next (`Next` or `End`, exactly one) and which part of its input it
/// reads (`InputPath`) and passes on (`OutputPath`); both default to `$`, `null` means `{}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Flow {
    #[serde(rename = "Next", default)]
    pub next: Option<String>,
    #[serde(rename = "End", default)]
    pub end: bool,
    #[serde(rename = "InputPath", default, deserialize_with = "nullable")]
    pub input_path: ResultPath,
    #[serde(rename = "OutputPath", default, deserialize_with = "nullable")]
    pub output_path: ResultPath,
}

/// What a Task or Parallel does with its result and its errors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Recovery {
    /// Retried errors, first match wins.
    #[serde(rename = "Retry", default)]
    pub retry: Vec<Retry>,
    /// Caught errors (the compensations), first match wins.
    #[serde(rename = "Catch", default)]
    pub catch: Vec<Catcher>,
    /// Where the result goes in the state's input (see [`ResultPath`]).
    #[serde(rename = "ResultPath", default, deserialize_with = "nullable")]
    pub result_path: ResultPath,
}

/// Retry a failed Task/Parallel whose error matches, with exponential backoff.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Retry {
    pub error_equals: Vec<String>,
    #[serde(default = "one")]
    pub interval_seconds: f64,
    #[serde(default = "three")]
    pub max_attempts: u32,
    #[serde(default = "two")]
    pub backoff_rate: f64,
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn three() -> u32 {
    3
}

/// On a matching error, go to `Next` (the compensation), with the error at `ResultPath`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    #[serde(default, deserialize_with = "nullable")]
    pub result_path: ResultPath,
}

/// A `ResultPath`: `None` when absent (the result replaces the input, like `"$"`),
/// `Some(None)` for JSON `null` (the result is discarded, the input passes on),
/// `Some(Some(path))` to place it at `path`.
pub type ResultPath = Option<Option<String>>;

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ResultPath, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// One branch of a Choice: a comparison on `Variable` and where to go when it holds.
#[derive(Debug, Clone, Deserialize)]
pub struct ChoiceRule {
    #[serde(rename = "Variable", default)]
    pub variable: Option<String>,
    #[serde(rename = "Next")]
    pub next: String,
    /// The comparison (`StringEquals`, `NumericGreaterThan`, `BooleanEquals`, `IsPresent`,
    /// `And`/`Or`/`Not`, ...).
    #[serde(flatten)]
    pub test: serde_json::Map<String, serde_json::Value>,
}

/// Why a definition was refused: the state and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError(pub String);

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DefinitionError {}

impl Definition {
    /// An Amazon States Language definition (JSON).
    pub fn parse_json(text: &str) -> Result<Definition, DefinitionError> {
        let d: Definition = serde_json::from_str(text)
            .map_err(|e| DefinitionError(format!("not a workflow definition: {e}")))?;
        d.validate("")?;
        Ok(d)
    }

    /// The same shape in TOML (`StartAt = "..."`, `[States.Name]`).
    pub fn parse_toml(text: &str) -> Result<Definition, DefinitionError> {
        let d: Definition = toml::from_str(text)
            .map_err(|e| DefinitionError(format!("not a workflow definition: {e}")))?;
        d.validate("")?;
        Ok(d)
    }

    /// Read a definition file: `.toml` as TOML, anything else as States Language JSON.
    pub fn load(path: &std::path::Path) -> Result<Definition, DefinitionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DefinitionError(format!("cannot read {}: {e}", path.display())))?;
        if path.extension().is_some_and(|e| e == "toml") {
            Definition::parse_toml(&text)
        } else {
            Definition::parse_json(&text)
        }
    }

    /// Check every reference and that every state can finish; `scope` names the branch.
    fn validate(&self, scope: &str) -> Result<(), DefinitionError> {
        let fail = |state: &str, why: String| {
            Err(DefinitionError(format!("{scope}state `{state}`: {why}")))
        };
        if !self.states.contains_key(&self.start_at) {
            return Err(DefinitionError(format!(
                "{scope}StartAt names `{}`, which is not a state (states: {})",
                self.start_at,
                self.names()
            )));
        }
        for (name, state) in &self.states {
            for target in state.targets() {
                if !self.states.contains_key(target) {
                    return fail(
                        name,
                        format!(
                            "goes to `{target}`, which is not a state (states: {})",
                            self.names()
                        ),
                    );
                }
            }
            match state {
                State::Task { flow, .. }
                | State::Pass { flow, .. }
                | State::Wait { flow, .. }
                | State::Parallel { flow, .. } => match (&flow.next, flow.end) {
                    (None, false) => {
                        return fail(name, "has neither `Next` nor `End`; add one".into())
                    }
                    (Some(_), true) => {
                        return fail(name, "has both `Next` and `End`; keep one".into())
                    }
                    _ => {}
                },
                State::Choice { choices, .. } if choices.is_empty() => {
                    return fail(name, "a Choice needs at least one rule in `Choices`".into())
                }
                _ => {}
            }
            for path in state.result_paths() {
                if let Err(e) = super::paths::check(path) {
                    return fail(name, format!("path: {e}"));
                }
            }
            if let State::Choice { choices, .. } = state {
                for (i, c) in choices.iter().enumerate() {
                    if let Err(e) = super::paths::check_rule(c.variable.as_deref(), &c.test) {
                        return fail(name, format!("choice {i}: {e}"));
                    }
                }
            }
            if let State::Wait {
                timestamp: Some(t), ..
            } = state
            {
                if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                    return fail(
                        name,
                        format!("`Timestamp` `{t}` is not an RFC 3339 time such as 2026-12-01T09:00:00Z"),
                    );
                }
            }
            if let State::Task { resource, .. } = state {
                if resource.trim().is_empty() {
                    return fail(
                        name,
                        "`Resource` must name the function the task runs".into(),
                    );
                }
            }
            if let State::Wait {
                seconds: None,
                timestamp: None,
                ..
            } = state
            {
                return fail(name, "a Wait needs `Seconds` or `Timestamp`".into());
            }
            if let State::Parallel { branches, .. } = state {
                if branches.is_empty() {
                    return fail(name, "a Parallel needs at least one branch".into());
                }
                for (i, b) in branches.iter().enumerate() {
                    b.validate(&format!("{scope}branch {i} of `{name}`: "))?;
                }
            }
        }
        // States from which no terminal state is reachable loop forever.
        let mut finishing: BTreeSet<&str> = self
            .states
            .iter()
            .filter(|(_, s)| s.terminal())
            .map(|(n, _)| n.as_str())
            .collect();
        loop {
            let before = finishing.len();
            for (name, state) in &self.states {
                if state.targets().any(|t| finishing.contains(t)) {
                    finishing.insert(name);
                }
            }
            if finishing.len() == before {
                break;
            }
        }
        if let Some(name) = self.states.keys().find(|n| !finishing.contains(n.as_str())) {
            return fail(
                name,
                "can never finish: every path from it loops back without reaching End, Succeed \
                 or Fail; add an exit (End, a Fail, or a Choice branch leaving the loop)"
                    .into(),
            );
        }
        Ok(())
    }

    fn names(&self) -> String {
        self.states
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl State {
    /// Every state this one may go to.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        let mut out: Vec<&str> = Vec::new();
        match self {
            State::Task { flow, recovery, .. } | State::Parallel { flow, recovery, .. } => {
                out.extend(flow.next.as_deref());
                out.extend(recovery.catch.iter().map(|c| c.next.as_str()));
            }
            State::Pass { flow, .. } | State::Wait { flow, .. } => out.extend(flow.next.as_deref()),
            State::Choice { choices, default } => {
                out.extend(choices.iter().map(|c| c.next.as_str()));
                out.extend(default.as_deref());
            }
            State::Succeed {} | State::Fail { .. } => {}
        }
        out.into_iter()
    }

    /// The `ResultPath`s given on the state and its catchers.
    fn result_paths(&self) -> impl Iterator<Item = &str> {
        let mut out: Vec<&str> = Vec::new();
        if let Some(r) = self.recovery() {
            out.extend(r.result_path.as_ref().and_then(|p| p.as_deref()));
            for c in &r.catch {
                out.extend(c.result_path.as_ref().and_then(|p| p.as_deref()));
            }
        }
        if let State::Pass { result_path, .. } = self {
            out.extend(result_path.as_ref().and_then(|p| p.as_deref()));
        }
        if let Some(flow) = self.flow() {
            out.extend(flow.input_path.as_ref().and_then(|p| p.as_deref()));
            out.extend(flow.output_path.as_ref().and_then(|p| p.as_deref()));
        }
        out.into_iter()
    }

    /// `Retry`, `Catch` and `ResultPath` of a Task or Parallel.
    pub fn recovery(&self) -> Option<&Recovery> {
        match self {
            State::Task { recovery, .. } | State::Parallel { recovery, .. } => Some(recovery),
            _ => None,
        }
    }

    /// `Next`/`End` and the input/output paths, for the states that have them.
    pub fn flow(&self) -> Option<&Flow> {
        match self {
            State::Task { flow, .. }
            | State::Pass { flow, .. }
            | State::Wait { flow, .. }
            | State::Parallel { flow, .. } => Some(flow),
            _ => None,
        }
    }

    /// Whether the execution can end here.
    fn terminal(&self) -> bool {
        match self {
            State::Succeed {} | State::Fail { .. } => true,
            State::Task { flow, .. }
            | State::Pass { flow, .. }
            | State::Wait { flow, .. }
            | State::Parallel { flow, .. } => flow.end,
            State::Choice { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's order saga: reserve, pay, ship; compensations on failure.
    const ORDER_SAGA: &str = r#"{
      "Comment": "Order saga",
      "StartAt": "ReserveInventory",
      "States": {
        "ReserveInventory": {"Type": "Task", "Resource": "reserve-inventory", "Next": "ProcessPayment",
          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "OrderFailed"}]},
        "ProcessPayment": {"Type": "Task", "Resource": "process-payment", "Next": "ShipOrder",
          "Retry": [{"ErrorEquals": ["PaymentGatewayBusy"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2}],
          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "ReleaseInventory"}]},
        "ShipOrder": {"Type": "Task", "Resource": "ship-order", "End": true,
          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "RefundPayment"}]},
        "RefundPayment": {"Type": "Task", "Resource": "refund-payment", "Next": "ReleaseInventory"},
        "ReleaseInventory": {"Type": "Task", "Resource": "release-inventory", "Next": "OrderFailed"},
        "OrderFailed": {"Type": "Fail", "Error": "OrderFailed", "Cause": "compensated"}
      }
    }"#;

    fn refused(text: &str) -> String {
        Definition::parse_json(text).unwrap_err().0
    }

    #[test]
    fn the_order_saga_is_accepted_in_json_and_toml() {
        let d = Definition::parse_json(ORDER_SAGA).unwrap();
        assert_eq!(d.start_at, "ReserveInventory");
        assert_eq!(d.states.len(), 6);
        let toml = r#"
            StartAt = "Check"
            [States.Check]
            Type = "Choice"
            Choices = [{ Variable = "$.total", NumericGreaterThan = 100, Next = "Review" }]
            Default = "Done"
            [States.Review]
            Type = "Wait"
            Seconds = 5
            Next = "Done"
            [States.Done]
            Type = "Succeed"
        "#;
        let d = Definition::parse_toml(toml).unwrap();
        assert!(matches!(d.states["Check"], State::Choice { .. }));
    }

    #[test]
    fn bad_definitions_name_the_state_and_the_fix() {
        let unknown = refused(
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "f", "Next": "Nowhere"}}}"#,
        );
        assert!(
            unknown.contains("state `A`: goes to `Nowhere`, which is not a state"),
            "{unknown}"
        );
        let start = refused(r#"{"StartAt": "Z", "States": {"A": {"Type": "Succeed"}}}"#);
        assert!(start.contains("StartAt names `Z`"), "{start}");
        let no_next =
            refused(r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "f"}}}"#);
        assert!(
            no_next.contains("state `A`: has neither `Next` nor `End`"),
            "{no_next}"
        );
        let both = refused(
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B", "End": true}, "B": {"Type": "Succeed"}}}"#,
        );
        assert!(
            both.contains("state `A`: has both `Next` and `End`"),
            "{both}"
        );
        let cycle = refused(
            r#"{"StartAt": "A", "States": {
                "A": {"Type": "Task", "Resource": "f", "Next": "B"},
                "B": {"Type": "Pass", "Next": "A"}}}"#,
        );
        assert!(cycle.contains("can never finish"), "{cycle}");
        let unknown_type = refused(r#"{"StartAt": "A", "States": {"A": {"Type": "Teleport"}}}"#);
        assert!(unknown_type.contains("Teleport"), "{unknown_type}");
        let branch = refused(
            r#"{"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "X", "States": {"X": {"Type": "Task", "Resource": "f"}}}]}}}"#,
        );
        assert!(
            branch.contains("branch 0 of `P`: state `X`: has neither"),
            "{branch}"
        );
    }

    #[test]
    fn result_path_null_is_told_apart_from_absent() {
        let d = Definition::parse_json(
            r#"{"StartAt": "A", "States": {
                "A": {"Type": "Task", "Resource": "f", "ResultPath": null, "Next": "B"},
                "B": {"Type": "Task", "Resource": "f", "End": true}}}"#,
        )
        .unwrap();
        assert_eq!(d.states["A"].recovery().unwrap().result_path, Some(None));
        assert_eq!(d.states["B"].recovery().unwrap().result_path, None);
    }

    #[test]
    fn a_loop_with_an_exit_is_fine() {
        let d = Definition::parse_json(
            r#"{"StartAt": "Poll", "States": {
                "Poll": {"Type": "Task", "Resource": "check", "Next": "Ready?"},
                "Ready?": {"Type": "Choice", "Choices": [{"Variable": "$.ready", "BooleanEquals": true, "Next": "Done"}], "Default": "Sleep"},
                "Sleep": {"Type": "Wait", "Seconds": 1, "Next": "Poll"},
                "Done": {"Type": "Succeed"}}}"#,
        );
        assert!(d.is_ok(), "{d:?}");
    }
}
