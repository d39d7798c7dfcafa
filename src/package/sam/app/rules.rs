//! An app's rules on EventBridge: its own bus, a rule per `[rules.NAME]` with the same pattern,
//! and targets that deliver as `wasmfn serve` does (queues, state machines, a topic's
//! subscription queues).

use anyhow::{bail, Context as _, Result};
use serde_json::json;
use serde_norway::{Mapping, Value};
use wasmfn_host::eventbus::{self, EventManifest, RuleConfig, Target as RuleTarget};

use super::super::{arn_of, insert, logical_id, map, reference, sub, Template};
use super::{ensure_queue, queue_id, AppInput, QueuePolicies};

/// Targets EventBridge allows on one rule.
const RULE_TARGETS: usize = 5;

pub(super) fn event_bus(t: &mut Template) {
    insert(
        &mut t.resources,
        "EventBus",
        map([
            ("Type", "AWS::Events::EventBus".into()),
            ("Properties", map([("Name", sub("${AWS::StackName}"))])),
        ]),
    );
    t.output(
        "EventBusName",
        "The app's event bus (what the `events` import publishes to)",
        reference("EventBus"),
    );
}

/// A wasmfn pattern (`source`, `type`, `id`, `detail`) as an EventBridge event pattern.
fn event_pattern(pattern: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(fields) = pattern.as_object() {
        for (k, v) in fields {
            let k = if k == "type" {
                "detail-type"
            } else {
                k.as_str()
            };
            out.insert(k.to_string(), v.clone());
        }
    }
    if out.is_empty() {
        // EventBridge needs at least one field; every event has a source.
        out.insert("source".into(), json!([{"exists": true}]));
    }
    serde_json::Value::Object(out)
}

/// What a target of `rule` delivers: `InputPath` as written, or the event in wasmfn's own
/// shape (`id`, `source`, `type`, `time`, `detail`) rather than EventBridge's.
fn target_input(rule: &RuleConfig, target: &mut Mapping) {
    match &rule.input_path {
        Some(path) => insert(target, "InputPath", path.as_str().into()),
        None => insert(
            target,
            "InputTransformer",
            map([
                (
                    "InputPathsMap",
                    map([
                        ("id", "$.id".into()),
                        ("source", "$.source".into()),
                        ("type", "$.detail-type".into()),
                        ("time", "$.time".into()),
                        ("detail", "$.detail".into()),
                    ]),
                ),
                (
                    "InputTemplate",
                    "{\"id\": <id>, \"source\": <source>, \"type\": <type>, \"time\": <time>, \"detail\": <detail>}"
                        .into(),
                ),
            ]),
        ),
    }
}

pub(super) fn rule_resources(
    t: &mut Template,
    input: &AppInput,
    events: &EventManifest,
    rule: &RuleConfig,
    policies: &mut QueuePolicies,
) -> Result<()> {
    let rule_id = format!("{}Rule", logical_id(&rule.name));
    // The EventBridge rules carrying this rule's targets: its own, and one per filtered
    // topic subscription.
    let mut rules = vec![BusRule {
        id: rule_id.clone(),
        pattern: rule.pattern_json.clone(),
        targets: Vec::new(),
    }];
    let mut needs_role = false;
    for target in &rule.targets {
        match target {
            RuleTarget::Queue(q) => deliver(t, input, rule, &mut rules[0], q, policies)?,
            RuleTarget::Function(f) => deliver(
                t,
                input,
                rule,
                &mut rules[0],
                &eventbus::function_queue(f),
                policies,
            )?,
            RuleTarget::Topic(name) => {
                // EventBridge cannot set the message attributes a subscription's filter reads
                // (locally `source`, `type`, `event-id`, `rule`): the rule delivers to the
                // subscription queues itself, a filtered one through a rule of its own whose
                // pattern adds the filter.
                let topic = events
                    .topics
                    .iter()
                    .find(|t| &t.name == name)
                    .with_context(|| format!("topic `{name}` is not declared"))?;
                for s in &topic.subscriptions {
                    let Some(filter) = &s.filter_json else {
                        deliver(t, input, rule, &mut rules[0], &s.queue, policies)?;
                        continue;
                    };
                    let pattern = with_filter(&rule.pattern_json, filter).map_err(|e| {
                        anyhow::anyhow!(
                            "rule `{}` to topic `{name}`, queue `{}`: {e}",
                            rule.name,
                            s.queue
                        )
                    })?;
                    // The filter reads an attribute rule deliveries do not carry: locally it
                    // never matches them either.
                    let Some(pattern) = pattern else { continue };
                    let mut own = BusRule {
                        id: format!("{rule_id}To{}", queue_id(&s.queue)),
                        pattern,
                        targets: Vec::new(),
                    };
                    deliver(t, input, rule, &mut own, &s.queue, policies)?;
                    rules.push(own);
                }
            }
            RuleTarget::Workflow(w) => {
                let machine = format!("{}StateMachine", logical_id(w));
                if !input.workflows.contains_key(w) {
                    bail!(
                        "rule `{}` starts workflow `{w}`, which is not declared",
                        rule.name
                    );
                }
                let mut m = Mapping::new();
                insert(&mut m, "Arn", reference(&machine));
                insert(&mut m, "RoleArn", arn_of("RulesRole"));
                target_input(rule, &mut m);
                rules[0].targets.push((machine, m));
                needs_role = true;
            }
        }
    }
    for BusRule {
        id,
        pattern,
        targets,
    } in rules
    {
        if targets.is_empty() {
            continue;
        }
        if targets.len() > RULE_TARGETS {
            bail!(
                "rule `{}` has {} targets on AWS (a topic counts once per subscription queue); \
                 EventBridge allows {RULE_TARGETS} per rule: split it into several rules",
                rule.name,
                targets.len()
            );
        }
        let targets: Vec<Value> = targets
            .into_iter()
            .enumerate()
            .map(|(i, (target_id, mut m))| {
                // Target ids are at most 64 characters.
                let mut tid = format!("{}{target_id}", i + 1);
                tid.truncate(64);
                m.insert(Value::from("Id"), Value::from(tid));
                Value::Mapping(m)
            })
            .collect();
        insert(
            &mut t.resources,
            id,
            map([
                ("Type", "AWS::Events::Rule".into()),
                (
                    "Properties",
                    map([
                        ("Description", format!("wasmfn rule `{}`", rule.name).into()),
                        ("EventBusName", reference("EventBus")),
                        (
                            "EventPattern",
                            serde_norway::to_value(event_pattern(&pattern))?,
                        ),
                        ("State", "ENABLED".into()),
                        ("Targets", targets.into()),
                    ]),
                ),
            ]),
        );
    }
    if needs_role {
        rules_role(t, input);
    }
    Ok(())
}

/// One EventBridge rule of the app's bus.
struct BusRule {
    /// Its logical id.
    id: String,
    /// Its pattern, in wasmfn's dialect.
    pattern: serde_json::Value,
    /// (logical id of the target, the target without its `Id`).
    targets: Vec<(String, Mapping)>,
}

/// Deliver `rule`'s events to `queue` through `on`, which SQS must let send to it.
fn deliver(
    t: &mut Template,
    input: &AppInput,
    rule: &RuleConfig,
    on: &mut BusRule,
    queue: &str,
    policies: &mut QueuePolicies,
) -> Result<()> {
    let queue = ensure_queue(t, input.manifest, queue)?;
    let mut m = Mapping::new();
    insert(&mut m, "Arn", arn_of(&queue));
    target_input(rule, &mut m);
    policies.allow(&queue, "events.amazonaws.com", arn_of(&on.id));
    on.targets.push((queue, m));
    Ok(())
}

/// The rule's pattern with a topic subscription's attribute filter added, as the attributes
/// a rule delivery carries map onto the event (`source`, `type`, `event-id` → `id`, `rule`).
/// `None` when the filter reads an attribute those deliveries do not have (or asks for
/// another rule), so it never matches them.
fn with_filter(
    pattern: &serde_json::Value,
    filter: &serde_json::Value,
) -> Result<Option<serde_json::Value>, String> {
    let mut out = pattern.as_object().cloned().unwrap_or_default();
    let Some(fields) = filter.as_object() else {
        return Err("a filter must be a table of attributes".into());
    };
    for (attribute, wanted) in fields {
        let field = match attribute.as_str() {
            "source" => "source",
            "type" => "type",
            "event-id" => "id",
            // Which rule delivered: this one; a filter asking for another never matches.
            "rule" => continue,
            _ => return Ok(None),
        };
        match out.get(field) {
            None => {
                out.insert(field.to_string(), wanted.clone());
            }
            Some(existing) => {
                // Both constrain the field: keep the values both allow, when both list
                // plain values (one list means any of them in EventBridge).
                let (Some(a), Some(b)) = (literals(existing), literals(wanted)) else {
                    return Err(format!(
                        "both the rule's pattern and the filter constrain `{attribute}` with \
                         conditions EventBridge cannot combine into one; list plain values in one of them"
                    ));
                };
                let both: Vec<serde_json::Value> =
                    a.into_iter().filter(|v| b.contains(v)).collect();
                if both.is_empty() {
                    return Ok(None);
                }
                out.insert(field.to_string(), serde_json::Value::Array(both));
            }
        }
    }
    Ok(Some(serde_json::Value::Object(out)))
}

/// A pattern field that lists only plain values.
fn literals(v: &serde_json::Value) -> Option<Vec<serde_json::Value>> {
    let list = v.as_array()?;
    list.iter()
        .all(|x| !x.is_object() && !x.is_array())
        .then(|| list.clone())
}

/// The role EventBridge assumes to start the app's state machines.
fn rules_role(t: &mut Template, input: &AppInput) {
    let machines: Vec<Value> = input
        .workflows
        .keys()
        .map(|w| reference(&format!("{}StateMachine", logical_id(w))))
        .collect();
    insert(
        &mut t.resources,
        "RulesRole",
        map([
            ("Type", "AWS::IAM::Role".into()),
            (
                "Properties",
                map([
                    (
                        "AssumeRolePolicyDocument",
                        map([
                            ("Version", "2012-10-17".into()),
                            (
                                "Statement",
                                vec![map([
                                    ("Effect", "Allow".into()),
                                    (
                                        "Principal",
                                        map([("Service", "events.amazonaws.com".into())]),
                                    ),
                                    ("Action", "sts:AssumeRole".into()),
                                ])]
                                .into(),
                            ),
                        ]),
                    ),
                    (
                        "Policies",
                        vec![map([
                            ("PolicyName", "start-workflows".into()),
                            (
                                "PolicyDocument",
                                map([
                                    ("Version", "2012-10-17".into()),
                                    (
                                        "Statement",
                                        vec![map([
                                            ("Effect", "Allow".into()),
                                            ("Action", "states:StartExecution".into()),
                                            ("Resource", machines.into()),
                                        ])]
                                        .into(),
                                    ),
                                ]),
                            ),
                        ])]
                        .into(),
                    ),
                ]),
            ),
        ]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_on_rule_attributes_joins_the_pattern() {
        let pattern = json!({"source": ["shop.orders"], "type": ["OrderPlaced", "OrderPaid"]});
        assert_eq!(
            with_filter(&pattern, &json!({"type": ["OrderPlaced"]})).unwrap(),
            Some(json!({"source": ["shop.orders"], "type": ["OrderPlaced"]}))
        );
        // An attribute rule deliveries lack, or values the pattern excludes: never matches.
        assert_eq!(
            with_filter(&pattern, &json!({"tier": ["gold"]})).unwrap(),
            None
        );
        assert_eq!(
            with_filter(&pattern, &json!({"type": ["Other"]})).unwrap(),
            None
        );
        assert!(with_filter(&pattern, &json!({"type": [{"prefix": "Order"}]})).is_err());
        assert_eq!(
            event_pattern(&json!({"type": ["A"], "detail": {"n": [1]}})),
            json!({"detail-type": ["A"], "detail": {"n": [1]}})
        );
        assert_eq!(
            event_pattern(&json!({})),
            json!({"source": [{"exists": true}]})
        );
    }
}
