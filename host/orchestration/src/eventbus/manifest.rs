//! `[topics.NAME]` and `[rules.NAME]` of `wasmfn.toml`, checked against the queues and
//! workflows declared before them.
//!
//! ```toml
//! [topics.order-events]
//! subscriptions = [
//!   { queue = "email", filter = { kind = ["receipt"] } },
//!   { queue = "analytics" },
//! ]
//!
//! [rules.large-orders]
//! input-path = "$.detail"                # deliver only the event's detail (default: all of it)
//! targets = ["queue:review", "topic:order-events", "function:audit", "workflow:order-saga"]
//! [rules.large-orders.pattern]
//! source = ["shop.orders"]
//! type = ["OrderPlaced"]
//! detail = { total = [{ numeric = [">=", 100] }] }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{
    named_entries, ManifestError, ManifestSection, ParseContext, Shape, TableSpec,
};
use wasmfn_host_triggers::queue::{QueueConfig, QueueManifest};

use super::{Pattern, RuleConfig, Subscription, Target, TopicConfig};

/// The topics and rules of a manifest (the section's result).
#[derive(Debug, Clone, Default)]
pub struct EventManifest {
    /// `[topics.NAME]`.
    pub topics: Vec<TopicConfig>,
    /// `[rules.NAME]`.
    pub rules: Vec<RuleConfig>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTopic {
    #[serde(default)]
    subscriptions: Vec<Spanned<RawSubscription>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSubscription {
    queue: String,
    filter: Option<toml::Table>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRule {
    targets: Vec<Spanned<String>>,
    pattern: Option<Spanned<toml::Table>>,
    input_path: Option<Spanned<String>>,
}

/// The event bus's part of the manifest.
#[derive(Default)]
pub struct EventSection;

impl ManifestSection for EventSection {
    fn tables(&self) -> &'static [TableSpec] {
        &[
            TableSpec {
                name: "topics",
                shape: Shape::Named,
            },
            TableSpec {
                name: "rules",
                shape: Shape::Named,
            },
        ]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let raw_topics: BTreeMap<String, RawTopic> = cx.take_table("topics")?.unwrap_or_default();
        let raw_topics = named_entries(cx, "topics", raw_topics)?;
        let raw_rules: BTreeMap<String, RawRule> = cx.take_table("rules")?.unwrap_or_default();
        let raw_rules = named_entries(cx, "rules", raw_rules)?;
        let mut topics = Vec::new();
        for (name, t) in &raw_topics {
            let key = format!("topics.{name}.subscriptions");
            let mut subscriptions = Vec::new();
            for s in &t.subscriptions {
                let sub = s.get_ref();
                if !cx.is_declared("queue", &sub.queue) {
                    return Err(cx.at(s.span(), &key, format!(
                    "queue `{0}` is not declared; add a [queues.{0}] table naming the function that consumes it",
                    sub.queue)));
                }
                let filter = match &sub.filter {
                    None => None,
                    Some(f) => Some(
                        Pattern::compile(&to_json(f))
                            .map_err(|e| cx.at(s.span(), &key, format!("filter: {e}")))?,
                    ),
                };
                subscriptions.push(Subscription {
                    queue: sub.queue.clone(),
                    filter,
                    filter_json: sub.filter.as_ref().map(to_json),
                });
            }
            topics.push(TopicConfig {
                name: name.clone(),
                subscriptions,
            });
        }
        let mut rules = Vec::new();
        for (name, r) in &raw_rules {
            let mut pattern_json = serde_json::json!({});
            let pattern = match &r.pattern {
                None => Pattern::any(),
                Some(p) => {
                    let mut json = to_json(p.get_ref());
                    // EventBridge's name for the type.
                    if let Some(map) = json.as_object_mut() {
                        if let Some(t) = map.remove("detail-type") {
                            map.insert("type".into(), t);
                        }
                        if let Some(k) = map
                            .keys()
                            .find(|k| !matches!(k.as_str(), "source" | "type" | "detail" | "id"))
                        {
                            return Err(cx.at(p.span(), &format!("rules.{name}.pattern"), format!(
                            "`{k}` is not a field of an event; match `source`, `type` or fields under `detail`")));
                        }
                    }
                    let compiled = Pattern::compile(&json)
                        .map_err(|e| cx.at(p.span(), &format!("rules.{name}.pattern"), e))?;
                    pattern_json = json;
                    compiled
                }
            };
            if r.targets.is_empty() {
                return Err(cx.error(format!(
                    "[rules.{name}]: `targets` is empty; name at least one target"
                )));
            }
            let mut targets = Vec::new();
            for t in &r.targets {
                let key = format!("rules.{name}.targets");
                let target = Target::parse(t.get_ref()).map_err(|e| cx.at(t.span(), &key, e))?;
                let missing = match &target {
                    Target::Queue(q) if !cx.is_declared("queue", q) => Some(format!(
                        "queue `{q}` is not declared; add a [queues.{q}] table"
                    )),
                    Target::Topic(n) if !topics.iter().any(|c: &TopicConfig| &c.name == n) => Some(
                        format!("topic `{n}` is not declared; add a [topics.{n}] table"),
                    ),
                    Target::Workflow(w) if !cx.is_declared("workflow", w) => Some(format!(
                        "workflow `{w}` is not declared; add a [workflows.{w}] table"
                    )),
                    Target::Function(f) => {
                        let q = super::function_queue(f);
                        if !cx.is_declared("queue", &q) {
                            cx.get_mut::<QueueManifest>()
                                .expect("the queue section runs before the event bus")
                                .queues
                                .push(QueueConfig {
                                    function: Some(f.clone()),
                                    rule_delivery: true,
                                    ..QueueConfig::new(&q)
                                });
                            cx.declare("queue", &q);
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(m) = missing {
                    return Err(cx.at(t.span(), &key, m));
                }
                targets.push(target);
            }
            if let Some(p) = &r.input_path {
                crate::workflow::paths::check(p.get_ref())
                    .map_err(|e| cx.at(p.span(), &format!("rules.{name}.input-path"), e))?;
            }
            rules.push(RuleConfig {
                name: name.clone(),
                pattern,
                pattern_json,
                targets,
                input_path: r.input_path.as_ref().map(|p| p.get_ref().clone()),
            });
        }
        cx.insert(EventManifest { topics, rules });
        Ok(())
    }
}

fn to_json(t: &toml::Table) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or(serde_json::Value::Null)
}
