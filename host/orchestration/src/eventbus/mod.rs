//! The event bus and fan-out topics.
//!
//! - **Events** (`source`, `type`, JSON `detail`, like EventBridge) are published through the
//!   `wasmfn:platform/events` import or `POST /_wasmfn/events`. `[rules.NAME]` match them by
//!   [`Pattern`] and deliver them to targets: queues, functions (through an implicit queue
//!   `_events-NAME`, so delivery retries and dead-letters like any queue), topics and workflows.
//! - **Topics** (`[topics.NAME]`, like SNS) copy each message into the queue of every
//!   subscription whose filter policy matches its attributes; each queue feeds its own
//!   function, so a slow or failing subscriber never holds up the others.
//!
//! Routing happens when the event is published: the publisher's call returns once every
//! target holds the event durably (its queue accepted it, its execution is stored). A failure
//! part-way returns an error, so the publisher retries; targets that already got the event may
//! get it again (at-least-once; consumers dedupe on the event id).

pub mod manifest;
mod pattern;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tracing::Instrument as _;
use wasmfn_host_capabilities::events::EventPublisher;
use wasmfn_host_capabilities::queues::{NewMessage, QueueSender};
use wasmfn_host_capabilities::workflows::WorkflowStarter;
use wasmfn_host_core::recent::Ring;
use wasmfn_host_core::trace;

pub use manifest::{EventManifest, EventSection};
pub use pattern::Pattern;
/// Events, and why publishing them may fail (shared with the publishing import).
pub use wasmfn_host_capabilities::events::{NewEvent, PublishError};

/// Where a rule delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A declared queue.
    Queue(String),
    /// A function, through its implicit delivery queue ([`function_queue`]).
    Function(String),
    /// A topic.
    Topic(String),
    /// A workflow: each event starts one execution with the event as input.
    Workflow(String),
}

impl Target {
    /// Parse `queue:NAME`, `function:NAME`, `topic:NAME` or `workflow:NAME`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let bad = || {
            format!(
                "target `{text}`: write `queue:NAME`, `function:NAME`, `topic:NAME` or `workflow:NAME`"
            )
        };
        let (kind, name) = text.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let name = name.to_string();
        Ok(match kind {
            "queue" => Target::Queue(name),
            "function" => Target::Function(name),
            "topic" => Target::Topic(name),
            "workflow" => Target::Workflow(name),
            _ => return Err(bad()),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Queue(n) => write!(f, "queue:{n}"),
            Target::Function(n) => write!(f, "function:{n}"),
            Target::Topic(n) => write!(f, "topic:{n}"),
            Target::Workflow(n) => write!(f, "workflow:{n}"),
        }
    }
}

/// The queue through which a rule delivers to function `name`. The leading `_` keeps it apart
/// from declared queues (whose names start with a letter or digit).
pub fn function_queue(name: &str) -> String {
    format!("_events-{name}")
}

/// A `[rules.NAME]` entry.
#[derive(Clone, Debug)]
pub struct RuleConfig {
    /// The rule's name.
    pub name: String,
    /// What it matches (`source`, `type`, `detail` of the event).
    pub pattern: Pattern,
    /// The pattern as written (`{}` matches everything), for listings.
    pub pattern_json: Value,
    /// Where matching events go.
    pub targets: Vec<Target>,
    /// Deliver only this part of the event (e.g. `$.detail`), as EventBridge's target
    /// `InputPath`; the whole event when `None`.
    pub input_path: Option<String>,
}

/// A `[topics.NAME]` entry.
#[derive(Clone, Debug)]
pub struct TopicConfig {
    /// The topic's name.
    pub name: String,
    /// Its subscriptions.
    pub subscriptions: Vec<Subscription>,
}

/// One subscription of a topic.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// The queue receiving the messages.
    pub queue: String,
    /// Only messages whose attributes match (all when `None`).
    pub filter: Option<Pattern>,
    /// The filter as written, for the adapters that hand it to the platform (SNS).
    pub filter_json: Option<Value>,
}

/// The rules and topics of an app, over its queues and workflows.
pub struct EventBus {
    rules: Vec<RuleConfig>,
    topics: BTreeMap<String, TopicConfig>,
    queues: Option<Arc<dyn QueueSender>>,
    workflows: Option<Arc<dyn WorkflowStarter>>,
    /// What was delivered lately.
    recent: Ring<Delivery>,
}

/// Deliveries kept for [`EventBus::recent_deliveries`].
const RECENT: usize = 100;

/// One published event or topic message and where it went.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The event's or message's id.
    pub id: String,
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    /// `event` or `topic`.
    pub kind: &'static str,
    /// The event's `source` and `type`, or the topic's name.
    pub subject: String,
    /// The rules it matched (events).
    pub rules: Vec<String>,
    /// Where copies went: `queue:NAME`, `workflow:NAME`.
    pub targets: Vec<String>,
}

impl EventBus {
    /// A bus with these rules and topics. Targets were checked against the manifest.
    pub fn new(
        rules: Vec<RuleConfig>,
        topics: Vec<TopicConfig>,
        queues: Option<Arc<dyn QueueSender>>,
        workflows: Option<Arc<dyn WorkflowStarter>>,
    ) -> Self {
        Self {
            rules,
            topics: topics.into_iter().map(|t| (t.name.clone(), t)).collect(),
            queues,
            workflows,
            recent: Ring::new(RECENT),
        }
    }

    /// The latest deliveries (at most 100), newest first.
    pub fn recent_deliveries(&self) -> Vec<Delivery> {
        self.recent.newest_first()
    }

    /// The rules.
    pub fn rules(&self) -> &[RuleConfig] {
        &self.rules
    }

    /// The topics.
    pub fn topics(&self) -> impl Iterator<Item = &TopicConfig> {
        self.topics.values()
    }

    /// The names of the rules `event` (an envelope with `source`, `type`, `detail`) matches.
    pub fn matching_rules<'a>(
        &'a self,
        event: &'a Map<String, Value>,
    ) -> impl Iterator<Item = &'a RuleConfig> + 'a {
        self.rules.iter().filter(move |r| r.pattern.matches(event))
    }

    /// Publish events: route each to the targets of every matching rule. Returns the events'
    /// ids once every target holds them.
    pub async fn publish_events(&self, events: Vec<NewEvent>) -> Result<Vec<String>, PublishError> {
        let mut ids = Vec::with_capacity(events.len());
        let mut per_queue: BTreeMap<String, Vec<NewMessage>> = BTreeMap::new();
        let mut starts: Vec<(String, String, String, tracing::Span)> = Vec::new();
        // One span per matched rule: its targets continue the trace from it.
        let mut rule_spans = Vec::new();
        let mut deliveries = Vec::new();
        for e in events {
            if e.source.trim().is_empty() || e.r#type.trim().is_empty() {
                return Err(PublishError::Invalid(
                    "an event needs a non-empty `source` and `type`".into(),
                ));
            }
            if !e.detail.is_object() {
                return Err(PublishError::Invalid(format!(
                    "an event's `detail` must be a JSON object, not `{}`",
                    e.detail
                )));
            }
            let id = crate::new_id();
            let envelope = json!({
                "id": id, "source": e.source, "type": e.r#type,
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "detail": e.detail,
            });
            let Value::Object(map) = &envelope else {
                unreachable!()
            };
            let body = envelope.to_string();
            let mut delivery = Delivery {
                id: id.clone(),
                time_ms: crate::now_ms(),
                kind: "event",
                subject: format!("{} {}", e.source, e.r#type),
                rules: Vec::new(),
                targets: Vec::new(),
            };
            for rule in self.matching_rules(map) {
                delivery.rules.push(rule.name.clone());
                let body = match &rule.input_path {
                    None => body.clone(),
                    Some(p) => crate::workflow::paths::get(&envelope, p)
                        .unwrap_or(&Value::Null)
                        .to_string(),
                };
                let mut attributes = vec![
                    ("event-id".to_string(), id.clone()),
                    ("source".to_string(), e.source.clone()),
                    ("type".to_string(), e.r#type.clone()),
                    ("rule".to_string(), rule.name.clone()),
                ];
                let rule_span = rule_span(&rule.name, &e);
                trace::inject(&rule_span, &mut trace::AttributesMut(&mut attributes));
                for target in &rule.targets {
                    let message = || NewMessage {
                        body: body.clone().into_bytes(),
                        attributes: attributes.clone(),
                        delay: Default::default(),
                    };
                    delivery.targets.push(target.to_string());
                    match target {
                        Target::Queue(q) => per_queue.entry(q.clone()).or_default().push(message()),
                        Target::Function(f) => per_queue
                            .entry(function_queue(f))
                            .or_default()
                            .push(message()),
                        Target::Topic(t) => {
                            for q in self.subscribers(t, &attributes)? {
                                per_queue.entry(q).or_default().push(message());
                            }
                        }
                        Target::Workflow(w) => {
                            // Named by rule and event: a redelivered event starts nothing new.
                            starts.push((
                                w.clone(),
                                body.clone(),
                                format!("{}-{id}", rule.name),
                                rule_span.clone(),
                            ))
                        }
                    }
                }
                rule_spans.push(rule_span);
            }
            deliveries.push(delivery);
            ids.push(id);
        }
        self.deliver(per_queue).await?;
        for (workflow, input, name, span) in starts {
            let workflows = self.workflows.as_ref().ok_or_else(|| {
                PublishError::Invalid(format!("workflow `{workflow}` is not declared"))
            })?;
            workflows
                .start_execution(&workflow, &input, Some(&name))
                .instrument(span)
                .await
                .map_err(PublishError::Workflow)?;
        }
        drop(rule_spans);
        self.recent.extend(deliveries);
        Ok(ids)
    }

    /// Publish to `topic`: a copy in the queue of every subscription whose filter matches.
    pub async fn publish(
        &self,
        topic: &str,
        body: Vec<u8>,
        mut attributes: Vec<(String, String)>,
    ) -> Result<String, PublishError> {
        let id = crate::new_id();
        let queues = self.subscribers(topic, &attributes)?;
        attributes.push(("topic".into(), topic.to_string()));
        attributes.push(("topic-message-id".into(), id.clone()));
        let delivery = Delivery {
            id: id.clone(),
            time_ms: crate::now_ms(),
            kind: "topic",
            subject: topic.to_string(),
            rules: Vec::new(),
            targets: queues.iter().map(|q| format!("queue:{q}")).collect(),
        };
        let per_queue = queues
            .into_iter()
            .map(|q| {
                let m = NewMessage {
                    body: body.clone(),
                    attributes: attributes.clone(),
                    delay: Default::default(),
                };
                (q, vec![m])
            })
            .collect();
        self.deliver(per_queue).await?;
        self.recent.push(delivery);
        Ok(id)
    }

    /// The queues of `topic`'s subscriptions whose filter policy matches `attributes`.
    fn subscribers(
        &self,
        topic: &str,
        attributes: &[(String, String)],
    ) -> Result<Vec<String>, PublishError> {
        let Some(t) = self.topics.get(topic) else {
            return Err(PublishError::UnknownTopic(
                topic.to_string(),
                self.topics.keys().cloned().collect(),
            ));
        };
        let object: Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Ok(t.subscriptions
            .iter()
            .filter(|s| s.filter.as_ref().is_none_or(|f| f.matches(&object)))
            .map(|s| s.queue.clone())
            .collect())
    }

    async fn deliver(
        &self,
        per_queue: BTreeMap<String, Vec<NewMessage>>,
    ) -> Result<(), PublishError> {
        if per_queue.is_empty() {
            return Ok(());
        }
        let queues = self.queues.as_ref().ok_or_else(|| {
            PublishError::Invalid("no queues are declared for the targets".into())
        })?;
        // Queues are independent: enqueue into all of them at once.
        let sends = per_queue
            .into_iter()
            .map(|(q, messages)| async move { queues.send(&q, messages).await });
        for result in futures::future::join_all(sends).await {
            result.map_err(PublishError::Send)?;
        }
        Ok(())
    }
}

impl EventPublisher for EventBus {
    fn publish_events(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<String>, PublishError>> {
        Box::pin(EventBus::publish_events(self, events))
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        body: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        Box::pin(EventBus::publish(self, topic, body, attributes))
    }
}

/// The span of `rule` routing event `e` (nothing when tracing is off).
fn rule_span(rule: &str, e: &NewEvent) -> tracing::Span {
    if !trace::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: "wasmfn::trace",
        "rule",
        otel.name = format!("rule {rule}"),
        otel.kind = "producer",
        wasmfn.rule = rule,
        wasmfn.event_source = %e.source,
        wasmfn.event_type = %e.r#type,
    )
}
