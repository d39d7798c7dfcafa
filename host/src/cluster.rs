//! `[cluster]` of `wasmfn.toml`: several `wasmfn serve` hosts sharing distributed backends
//! act as one platform. The table names the PostgreSQL database where the hosts coordinate
//! (each schedule tick is claimed there, so it fires once across the cluster; the streams'
//! change feed lives there, its key partitions leased to hosts), and turns on a
//! check: no state the hosts must share may stay in an embedded store, where each host would
//! keep its own copy. The check names the setting to change.
//!
//! ```toml
//! [cluster]
//! url-env = "DATABASE_URL"   # or url = "postgres://..."
//! namespace = "shop"         # apps sharing one database stay apart (default "default")
//! lease = "10s"              # a dead host's schedule run stops blocking the next tick after this
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{ManifestError, ManifestSection, ParseContext, Shape, TableSpec};
use wasmfn_host_core::secrets::{SecretSource, SecretString};

/// The `[cluster]` table (the section's result, present only when the manifest has one).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The PostgreSQL database the hosts coordinate in.
    pub url: SecretSource,
    /// Keeps this app's rows apart from other apps' in the same database.
    pub namespace: String,
    /// How long a host's lease lasts without renewal.
    pub lease: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCluster {
    url: Option<String>,
    url_env: Option<String>,
    namespace: Option<String>,
    lease: Option<Spanned<String>>,
}

/// The default lease: renewed every third of it, so a host must miss three renewals (a
/// pause or a partition of several seconds) before another host takes over.
const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The manifest section that owns `[cluster]`; registered after every other section, whose
/// results it checks.
pub struct ClusterSection;

impl ManifestSection for ClusterSection {
    fn tables(&self) -> &'static [TableSpec] {
        &[TableSpec {
            name: "cluster",
            shape: Shape::Single,
        }]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let Some(raw) = cx.take_table::<RawCluster>("cluster")? else {
            return Ok(());
        };
        let url = match (raw.url, raw.url_env) {
            (Some(u), None) => SecretSource::Literal(SecretString::new(u)),
            (None, Some(v)) => SecretSource::Env(v),
            _ => return Err(cx.error(
                "[cluster]: set exactly one of `url = \"postgres://...\"` or `url-env = \"VARIABLE\"` (the PostgreSQL database the hosts coordinate in)",
            )),
        };
        let lease = match &raw.lease {
            None => DEFAULT_LEASE,
            Some(l) => wasmfn_host_core::parse_duration(l.get_ref())
                .ok()
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    cx.at(
                        l.span(),
                        "cluster.lease",
                        format!(
                            "`{}` is not a lease of at least 1 s (e.g. \"10s\")",
                            l.get_ref()
                        ),
                    )
                })?,
        };
        let namespace = raw.namespace.unwrap_or_else(|| "default".into());
        if let Err(e) = wasmfn_host_core::manifest::validate_name(&namespace) {
            return Err(cx.error(format!("[cluster] namespace: {e}")));
        }
        if let Some(problem) = shared_state_kept_locally(cx) {
            return Err(cx.error(format!(
                "[cluster]: {problem}; every host would keep its own copy, so hosts would \
                 disagree (run one host, or move it to a distributed backend)"
            )));
        }
        cx.insert(ClusterConfig {
            url,
            namespace,
            lease,
        });
        Ok(())
    }
}

/// The first state of the app that the hosts of a cluster must share but that lives in an
/// embedded store, named with the setting that moves it.
fn shared_state_kept_locally(cx: &mut ParseContext<'_>) -> Option<String> {
    #[cfg(feature = "queues")]
    {
        use wasmfn_host_triggers::queue::{QueueBackendChoice, QueueManifest};
        if let Some(q) = cx.get::<QueueManifest>() {
            if !q.queues.is_empty() && matches!(q.backend, QueueBackendChoice::Sqlite { .. }) {
                let first = &q.queues[0].name;
                return Some(format!(
                    "queue `{first}` (and every queue, including event rules' and topics' deliveries) \
                     is in embedded SQLite; set `[queue-backend] kind = \"nats\"` and `url = \"nats://...\"`"
                ));
            }
        }
    }
    #[cfg(feature = "workflows")]
    {
        use wasmfn_host_orchestration::workflow::{WorkflowManifest, WorkflowStoreChoice};
        if let Some(w) = cx.get::<WorkflowManifest>() {
            if !w.workflows.is_empty() && matches!(w.store, WorkflowStoreChoice::Sqlite) {
                return Some(
                    "workflow executions are in embedded SQLite; set `[workflow-store] backend = \"postgres\"` \
                     and `url-env = \"DATABASE_URL\"`"
                        .into(),
                );
            }
        }
    }
    #[cfg(feature = "kv")]
    if let Some(p) = embedded_binding::<wasmfn_host_capabilities::kv::Kv>(cx, "backend = \"redis\"")
    {
        return Some(p);
    }
    #[cfg(feature = "sql")]
    if let Some(p) =
        embedded_binding::<wasmfn_host_capabilities::sql::Sql>(cx, "backend = \"postgres\"")
    {
        return Some(p);
    }
    #[cfg(feature = "blob")]
    if let Some(p) =
        embedded_binding::<wasmfn_host_capabilities::blob::Blob>(cx, "backend = \"s3\"")
    {
        return Some(p);
    }
    let _ = cx;
    None
}

/// A store of kind `K` bound to a function but kept in an embedded backend.
#[cfg(any(feature = "kv", feature = "sql", feature = "blob"))]
fn embedded_binding<K: wasmfn_host_capabilities::stores::StoreKind>(
    cx: &mut ParseContext<'_>,
    distributed: &str,
) -> Option<String> {
    use wasmfn_host_capabilities::stores::{Bindings, StoreDecls};
    let functions: Vec<String> = cx.function_names().map(str::to_string).collect();
    for function in functions {
        let names = match cx.function_settings(&function).get::<Bindings<K>>() {
            Some(b) => b.names.clone(),
            None => continue,
        };
        for name in names {
            let config = cx
                .get::<StoreDecls<K>>()
                .and_then(|d| d.get(&name))
                .map(|d| d.config.clone())
                .unwrap_or_else(K::default_config);
            if !K::is_distributed(&config) {
                let kind = K::KIND;
                return Some(format!(
                    "function `{function}` uses {} store `{name}`, which is embedded; set \
                     `[{kind}.{name}] {distributed}` with its url",
                    K::WHAT
                ));
            }
        }
    }
    None
}
