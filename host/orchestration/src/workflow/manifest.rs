//! `[workflows.NAME]` and `[workflow-store]` of `wasmfn.toml`.
//!
//! ```toml
//! [workflows.order-saga]
//! definition = "order-saga.asl.json"     # States Language JSON, or .toml
//!
//! [workflow-store]                       # optional; default: embedded SQLite
//! backend = "postgres"
//! url-env = "DATABASE_URL"
//! lease = "30s"                          # a crashed host's executions move on after this
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{
    named_entries, ManifestError, ManifestSection, ParseContext, Shape, TableSpec,
};

use super::{Definition, WorkflowConfig};

type At<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> ManifestError + 'a;

/// The workflows of a manifest (the section's result).
#[derive(Debug, Clone, Default)]
pub struct WorkflowManifest {
    /// `[workflows.NAME]`, definitions read and checked.
    pub workflows: Vec<WorkflowConfig>,
    /// `[workflow-store]`.
    pub store: WorkflowStoreChoice,
}

/// The `[workflow-store]` table: where executions live.
#[derive(Debug, Clone, Default)]
pub enum WorkflowStoreChoice {
    /// Embedded SQLite in the state folder (default).
    #[default]
    Sqlite,
    /// PostgreSQL shared by several hosts; each execution is leased to one host at a time.
    #[cfg(feature = "workflows-postgres")]
    Postgres {
        /// The connection URL (literal or from an environment variable).
        url: wasmfn_host_core::secrets::SecretSource,
        /// How long a host's claim on an execution lasts without renewal.
        lease: std::time::Duration,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
// Without the PostgreSQL store its keys are accepted (and checked) but not read.
#[cfg_attr(not(feature = "workflows-postgres"), allow(dead_code))]
struct RawWorkflowStore {
    backend: Option<Spanned<String>>,
    url: Option<String>,
    url_env: Option<String>,
    lease: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWorkflow {
    definition: Spanned<String>,
}

/// The workflow executor's part of the manifest.
#[derive(Default)]
pub struct WorkflowSection;

impl ManifestSection for WorkflowSection {
    fn tables(&self) -> &'static [TableSpec] {
        &[
            TableSpec {
                name: "workflows",
                shape: Shape::Named,
            },
            TableSpec {
                name: "workflow-store",
                shape: Shape::Single,
            },
        ]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let raw: BTreeMap<String, RawWorkflow> = cx.take_table("workflows")?.unwrap_or_default();
        let raw = named_entries(cx, "workflows", raw)?;
        let store: Option<RawWorkflowStore> = cx.take_table("workflow-store")?;
        let base = cx.base_dir().to_path_buf();
        let loc = cx.locator();
        let at = |span, key: &str, msg: String| loc.at(span, key, msg);
        let mut out = Vec::new();
        for (name, w) in &raw {
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
        let store = workflow_store(store.as_ref(), &at)?;
        for w in &out {
            cx.declare("workflow", &w.name);
        }
        cx.insert(WorkflowManifest {
            workflows: out,
            store,
        });
        Ok(())
    }
}

/// `[workflow-store]`.
fn workflow_store(
    raw: Option<&RawWorkflowStore>,
    at: &At<'_>,
) -> Result<WorkflowStoreChoice, ManifestError> {
    let Some(r) = raw else {
        return Ok(WorkflowStoreChoice::Sqlite);
    };
    match r.backend.as_ref().map(|b| (b.span(), b.get_ref().as_str())) {
        None | Some((_, "sqlite")) => Ok(WorkflowStoreChoice::Sqlite),
        #[cfg(not(feature = "workflows-postgres"))]
        Some((span, "postgres")) => Err(at(span, "workflow-store.backend", "this wasmfn was built without the PostgreSQL workflow store; rebuild wasmfn-host with the `postgres` feature (the wasmfn command has every backend)".into())),
        #[cfg(feature = "workflows-postgres")]
        Some((span, "postgres")) => {
            use wasmfn_host_core::secrets::{SecretSource, SecretString};
            let url = match (&r.url, &r.url_env) {
                (Some(u), None) => SecretSource::Literal(SecretString::new(u.clone())),
                (None, Some(v)) => SecretSource::Env(v.clone()),
                _ => {
                    return Err(at(span, "workflow-store", "the postgres backend needs exactly one of `url = \"postgres://...\"` or `url-env = \"VARIABLE\"`".into()))
                }
            };
            let lease = match &r.lease {
                None => std::time::Duration::from_secs(30),
                Some(l) => wasmfn_host_core::parse_duration(l.get_ref())
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
