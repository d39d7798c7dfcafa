//! The routing tables of `wasmfn.toml`: `[workflows.NAME]`, `[topics.NAME]` and
//! `[rules.NAME]`, checked against each other and against `[queues.NAME]`.
//!
//! ```toml
//! [workflows.order-saga]
//! definition = "order-saga.asl.json"     # States Language JSON, or .toml
//!
//! [workflow-store]                       # optional; default: embedded SQLite
//! backend = "postgres"
//! url-env = "DATABASE_URL"
//! lease = "30s"                          # a crashed host's executions move on after this
//!
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
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{validate_name, At, ManifestError};
use crate::eventbus::{Pattern, RuleConfig, Subscription, Target, TopicConfig};
use crate::queue::QueueConfig;
use crate::workflow::{Definition, WorkflowConfig};

/// The `[workflow-store]` table: where executions live.
#[derive(Debug, Clone, Default)]
pub enum WorkflowStoreChoice {
    /// Embedded SQLite in the state folder (default).
    #[default]
    Sqlite,
    /// PostgreSQL shared by several hosts; each execution is leased to one host at a time.
    Postgres {
        /// The connection URL (literal or from an environment variable).
        url: crate::secrets::SecretSource,
        /// How long a host's claim on an execution lasts without renewal.
        lease: std::time::Duration,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawWorkflowStore {
    pub(super) backend: Option<Spanned<String>>,
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    pub(super) lease: Option<Spanned<String>>,
}

/// `[workflow-store]`.
pub(super) fn workflow_store(
    raw: Option<&RawWorkflowStore>,
    at: &At<'_>,
) -> Result<WorkflowStoreChoice, ManifestError> {
    let Some(r) = raw else {
        return Ok(WorkflowStoreChoice::Sqlite);
    };
    match r.backend.as_ref().map(|b| (b.span(), b.get_ref().as_str())) {
        None | Some((_, "sqlite")) => Ok(WorkflowStoreChoice::Sqlite),
        Some((span, "postgres")) => {
            use crate::secrets::{SecretSource, SecretString};
            let url = match (&r.url, &r.url_env) {
                (Some(u), None) => SecretSource::Literal(SecretString::new(u.clone())),
                (None, Some(v)) => SecretSource::Env(v.clone()),
                _ => {
                    return Err(at(span, "workflow-store", "the postgres backend needs exactly one of `url = \"postgres://...\"` or `url-env = \"VARIABLE\"`".into()))
                }
            };
            let lease = match &r.lease {
                None => std::time::Duration::from_secs(30),
                Some(l) => crate::limits::parse_duration(l.get_ref())
                    .map_err(|e| at(l.span(), "workflow-store.lease", e))?,
            };
            if lease < std::time::Duration::from_secs(1) {
                return Err(at(
                    r.lease.as_ref().map(|l| l.span()).unwrap_or(span),
                    "workflow-store.lease",
                    "must be at least 1s".into(),
                ));
            }
            Ok(WorkflowStoreChoice::Postgres { url, lease })
        }
        Some((span, other)) => Err(at(
            span,
            "workflow-store.backend",
            format!("unknown workflow store `{other}`: use \"sqlite\" (embedded) or \"postgres\""),
        )),
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawWorkflow {
    pub(super) definition: Spanned<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTopic {
    #[serde(default)]
    pub(super) subscriptions: Vec<Spanned<RawSubscription>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSubscription {
    pub(super) queue: String,
    pub(super) filter: Option<toml::Table>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRule {
    pub(super) targets: Vec<Spanned<String>>,
    pub(super) pattern: Option<Spanned<toml::Table>>,
    pub(super) input_path: Option<Spanned<String>>,
}

/// `[workflows.NAME]`: each definition read (relative to the manifest) and checked.
pub(super) fn workflows(
    path: &Path,
    raw: &BTreeMap<String, RawWorkflow>,
    at: &At<'_>,
) -> Result<Vec<WorkflowConfig>, ManifestError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (name, w) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [workflows.{name}]: {m}", path.display())))?;
        let file = base.join(w.definition.get_ref());
        let definition = Definition::load(&file).map_err(|e| {
            at(
                w.definition.span(),
                &format!("workflows.{name}.definition"),
                format!("{}: {e}", file.display()),
            )
        })?;
        out.push(WorkflowConfig {
            name: name.clone(),
            definition: Arc::new(definition),
        });
    }
    Ok(out)
}

/// `[topics.NAME]`: subscriptions must name declared queues.
pub(super) fn topics(
    path: &Path,
    raw: &BTreeMap<String, RawTopic>,
    queues: &[QueueConfig],
    at: &At<'_>,
) -> Result<Vec<TopicConfig>, ManifestError> {
    let mut out = Vec::new();
    for (name, t) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [topics.{name}]: {m}", path.display())))?;
        let key = format!("topics.{name}.subscriptions");
        let mut subscriptions = Vec::new();
        for s in &t.subscriptions {
            let sub = s.get_ref();
            if !queues.iter().any(|q| q.name == sub.queue) {
                return Err(at(s.span(), &key, format!(
                    "queue `{0}` is not declared; add a [queues.{0}] table naming the function that consumes it",
                    sub.queue)));
            }
            let filter = match &sub.filter {
                None => None,
                Some(f) => Some(
                    Pattern::compile(&to_json(f))
                        .map_err(|e| at(s.span(), &key, format!("filter: {e}")))?,
                ),
            };
            subscriptions.push(Subscription {
                queue: sub.queue.clone(),
                filter,
            });
        }
        out.push(TopicConfig {
            name: name.clone(),
            subscriptions,
        });
    }
    Ok(out)
}

/// `[rules.NAME]`: targets must be declared; a `function:NAME` target adds the implicit queue
/// that delivers to it (to `queues`).
pub(super) fn rules(
    path: &Path,
    raw: &BTreeMap<String, RawRule>,
    queues: &mut Vec<QueueConfig>,
    topics: &[TopicConfig],
    workflows: &[WorkflowConfig],
    at: &At<'_>,
) -> Result<Vec<RuleConfig>, ManifestError> {
    let mut out = Vec::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [rules.{name}]: {m}", path.display())))?;
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
                        return Err(at(p.span(), &format!("rules.{name}.pattern"), format!(
                            "`{k}` is not a field of an event; match `source`, `type` or fields under `detail`")));
                    }
                }
                Pattern::compile(&json)
                    .map_err(|e| at(p.span(), &format!("rules.{name}.pattern"), e))?
            }
        };
        if r.targets.is_empty() {
            return Err(ManifestError(format!(
                "{}: [rules.{name}]: `targets` is empty; name at least one target",
                path.display()
            )));
        }
        let mut targets = Vec::new();
        for t in &r.targets {
            let key = format!("rules.{name}.targets");
            let target = Target::parse(t.get_ref()).map_err(|e| at(t.span(), &key, e))?;
            let missing = match &target {
                Target::Queue(q) if !queues.iter().any(|c| &c.name == q) => Some(format!(
                    "queue `{q}` is not declared; add a [queues.{q}] table"
                )),
                Target::Topic(n) if !topics.iter().any(|c| &c.name == n) => Some(format!(
                    "topic `{n}` is not declared; add a [topics.{n}] table"
                )),
                Target::Workflow(w) if !workflows.iter().any(|c| &c.name == w) => Some(format!(
                    "workflow `{w}` is not declared; add a [workflows.{w}] table"
                )),
                Target::Function(f) => {
                    let q = crate::eventbus::function_queue(f);
                    if !queues.iter().any(|c| c.name == q) {
                        queues.push(QueueConfig {
                            function: Some(f.clone()),
                            rule_delivery: true,
                            ..QueueConfig::new(&q)
                        });
                    }
                    None
                }
                _ => None,
            };
            if let Some(m) = missing {
                return Err(at(t.span(), &key, m));
            }
            targets.push(target);
        }
        if let Some(p) = &r.input_path {
            crate::workflow::paths::check(p.get_ref())
                .map_err(|e| at(p.span(), &format!("rules.{name}.input-path"), e))?;
        }
        out.push(RuleConfig {
            name: name.clone(),
            pattern,
            targets,
            input_path: r.input_path.as_ref().map(|p| p.get_ref().clone()),
        });
    }
    Ok(out)
}

fn to_json(t: &toml::Table) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or(serde_json::Value::Null)
}
