//! An app's workflows as Step Functions state machines: the same definition, each Task the
//! function's ARN.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;
use serde_norway::{Mapping, Value};

use super::super::{arn_of, insert, logical_id, map, prefixed, reference, Template};

/// Lambda's own transient errors, which AWS advises every Lambda task to retry.
const LAMBDA_TRANSIENT: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

pub(super) fn state_machine(
    t: &mut Template,
    name: &str,
    definition: &serde_json::Value,
    function_ids: &BTreeMap<String, String>,
) -> Result<()> {
    let mut definition = definition.clone();
    let mut used = BTreeMap::new();
    rewrite_tasks(&mut definition, function_ids, &mut used)
        .map_err(|e| anyhow::anyhow!("workflow `{name}`: {e}"))?;
    let substitutions: Mapping = used
        .iter()
        .map(|(var, id)| (Value::from(var.as_str()), arn_of(id)))
        .collect();
    let policies: Vec<Value> = used
        .values()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| map([("LambdaInvokePolicy", map([("FunctionName", reference(id))]))]))
        .collect();
    let machine = format!("{}StateMachine", logical_id(name));
    let mut properties = Mapping::new();
    insert(&mut properties, "Name", prefixed(name));
    insert(&mut properties, "Type", "STANDARD".into());
    insert(
        &mut properties,
        "Definition",
        serde_norway::to_value(&definition)?,
    );
    if !substitutions.is_empty() {
        insert(
            &mut properties,
            "DefinitionSubstitutions",
            Value::Mapping(substitutions),
        );
    }
    if !policies.is_empty() {
        insert(&mut properties, "Policies", policies.into());
    }
    insert(
        &mut t.resources,
        machine.clone(),
        map([
            ("Type", "AWS::Serverless::StateMachine".into()),
            ("Properties", Value::Mapping(properties)),
        ]),
    );
    t.output(
        &format!("{machine}Arn"),
        &format!("ARN of workflow `{name}`"),
        reference(&machine),
    );
    Ok(())
}

/// Point every Task (in branches and map iterations too) at its function's ARN, through a
/// `${NameArn}` substitution recorded in `used`. A Task without its own `Parameters` is given
/// its input with the execution's context, as the bootstrap reads it (the attempt, the state).
fn rewrite_tasks(
    definition: &mut serde_json::Value,
    function_ids: &BTreeMap<String, String>,
    used: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(states) = definition
        .get_mut("States")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return Ok(());
    };
    for (state_name, state) in states.iter_mut() {
        let Some(s) = state.as_object_mut() else {
            continue;
        };
        for nested in ["Branches"] {
            if let Some(branches) = s.get_mut(nested).and_then(|b| b.as_array_mut()) {
                for b in branches {
                    rewrite_tasks(b, function_ids, used)?;
                }
            }
        }
        for nested in ["Iterator", "ItemProcessor"] {
            if let Some(b) = s.get_mut(nested) {
                rewrite_tasks(b, function_ids, used)?;
            }
        }
        whole_seconds(state_name, s);
        if s.get("Type").and_then(|t| t.as_str()) != Some("Task") {
            continue;
        }
        let function = s
            .get("Resource")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string();
        let Some(id) = function_ids.get(&function) else {
            return Err(format!(
                "state `{state_name}` runs `{function}`, which is not a function of this app"
            ));
        };
        let var = format!("{id}Arn");
        s.insert("Resource".into(), json!(format!("${{{var}}}")));
        used.insert(var, id.clone());
        if !s.contains_key("Parameters") {
            s.insert(
                "Parameters".into(),
                json!({"input.$": "$", "context.$": "$$"}),
            );
        }
        let mut retry = vec![json!({
            "ErrorEquals": LAMBDA_TRANSIENT,
            "IntervalSeconds": 1,
            "MaxAttempts": 3,
            "BackoffRate": 2
        })];
        if let Some(serde_json::Value::Array(own)) = s.remove("Retry") {
            retry.extend(own);
        }
        s.insert("Retry".into(), serde_json::Value::Array(retry));
    }
    Ok(())
}

/// Step Functions takes whole seconds where wasmfn takes fractions (a retry's
/// `IntervalSeconds`, a Wait's `Seconds`): round them up, and say so.
fn whole_seconds(state_name: &str, s: &mut serde_json::Map<String, serde_json::Value>) {
    let round = |v: &mut serde_json::Value, what: &str| {
        let Some(x) = v.as_f64() else { return };
        if x.fract() != 0.0 || x < 1.0 && what == "IntervalSeconds" {
            let whole = (x.ceil() as u64).max(u64::from(what == "IntervalSeconds"));
            tracing::warn!(
                state = state_name,
                "{what} {x} is {whole} on Step Functions, which takes whole seconds"
            );
            *v = json!(whole);
        }
    };
    if let Some(retriers) = s.get_mut("Retry").and_then(|r| r.as_array_mut()) {
        for r in retriers {
            if let Some(v) = r.get_mut("IntervalSeconds") {
                round(v, "IntervalSeconds");
            }
        }
    }
    if s.get("Type").and_then(|t| t.as_str()) == Some("Wait") {
        if let Some(v) = s.get_mut("Seconds") {
            round(v, "Seconds");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_point_at_their_functions_and_keep_their_own_retries() {
        let ids = BTreeMap::from([("pay".to_string(), "PayFunction".to_string())]);
        let mut d = json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "T", "States": {
                "T": {"Type": "Task", "Resource": "pay", "End": true,
                      "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 2, "IntervalSeconds": 0.2}]}}}]}}});
        let mut used = BTreeMap::new();
        rewrite_tasks(&mut d, &ids, &mut used).unwrap();
        let task = &d["States"]["P"]["Branches"][0]["States"]["T"];
        assert_eq!(task["Resource"], "${PayFunctionArn}");
        assert_eq!(
            task["Parameters"],
            json!({"input.$": "$", "context.$": "$$"})
        );
        assert_eq!(task["Retry"][1]["ErrorEquals"], json!(["Busy"]));
        // Step Functions' whole seconds.
        assert_eq!(task["Retry"][1]["IntervalSeconds"], json!(1));
        assert_eq!(used["PayFunctionArn"], "PayFunction");
        let mut bad = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "nope", "End": true}}});
        let e = rewrite_tasks(&mut bad, &ids, &mut BTreeMap::new()).unwrap_err();
        assert!(e.contains("`nope`"), "{e}");
    }
}
