//! `wasmfn.toml`: the optional manifest of a functions folder.
//!
//! Without a manifest every component in the folder is served with default limits at
//! `/<name>` and `/<name>/*`. A manifest sets routes, worlds, limits, instance reuse and config
//! values per function:
//!
//! ```toml
//! [defaults]
//! memory = "128MiB"
//! timeout = "30s"
//!
//! [functions.hello]
//! routes = ["/", "/hello/*"]
//! instances = "reuse"          # keep instances warm between invocations
//!
//! [functions.hello.config]
//! greeting = "hi"
//! ```
//!
//! Unknown keys and bad values are errors naming the file, line and key. Later issues extend
//! this schema (bindings, triggers, environments) without changing what is here.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

use crate::function::FunctionSettings;
use crate::limits::{parse_duration, parse_size, InstanceMode, Limits, ReusePolicy};
use crate::world::World;

mod bindings;
mod merge;
mod routing;
mod triggers;

pub use bindings::StoreDecl;
pub use routing::WorkflowStoreChoice;
pub use triggers::QueueBackendChoice;
use triggers::{RawQueue, RawQueueBackend, RawSchedule, RawStream};

/// The manifest's file name inside a functions folder.
pub const FILE_NAME: &str = "wasmfn.toml";

/// A parsed, validated manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Where it was read from (for messages and to resolve relative paths).
    pub path: PathBuf,
    /// Function entries by name.
    pub functions: BTreeMap<String, FunctionEntry>,
    /// `[queues.NAME]` entries.
    pub queues: Vec<crate::queue::QueueConfig>,
    /// `[queue-backend]`: where queues live.
    pub queue_backend: QueueBackendChoice,
    /// `[schedules.NAME]` entries.
    pub schedules: Vec<crate::scheduler::ScheduleConfig>,
    /// `[streams.NAME]` entries.
    pub streams: Vec<crate::stream_feed::StreamConfig>,
    /// `[workflows.NAME]` entries.
    pub workflows: Vec<crate::workflow::WorkflowConfig>,
    /// `[workflow-store]`: where executions live.
    pub workflow_store: WorkflowStoreChoice,
    /// `[topics.NAME]` entries.
    pub topics: Vec<crate::eventbus::TopicConfig>,
    /// `[rules.NAME]` entries (event bus rules).
    pub rules: Vec<crate::eventbus::RuleConfig>,
    /// `[kv.NAME]` stores.
    pub kv: BTreeMap<String, StoreDecl<crate::kv::KvBackendConfig>>,
    /// `[sql.NAME]` databases.
    pub sql: BTreeMap<String, StoreDecl<crate::sql::SqlBackendConfig>>,
    /// `[blob.NAME]` stores.
    pub blob: BTreeMap<String, StoreDecl<crate::blob::BlobBackendConfig>>,
    /// The environment applied (`--env`), if any.
    pub environment: Option<String>,
    /// Every `[env.NAME]` declared.
    pub environments: Vec<String>,
}

/// One `[functions.NAME]` entry, validated.
#[derive(Debug, Clone)]
pub struct FunctionEntry {
    /// The component file, resolved against the manifest's folder (`None`: discovered by name).
    pub component: Option<PathBuf>,
    /// Explicit routes (`None`: `/<name>` and `/<name>/*`).
    pub routes: Option<Vec<String>>,
    /// Everything else.
    pub settings: FunctionSettings,
    /// Secrets to read at load, by the name the guest asks `wasi:config` for.
    pub secrets: Vec<(String, crate::secrets::SecretSource)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    functions: BTreeMap<String, RawFunction>,
    #[serde(default)]
    queues: BTreeMap<String, RawQueue>,
    queue_backend: Option<RawQueueBackend>,
    #[serde(default)]
    schedules: BTreeMap<String, RawSchedule>,
    #[serde(default)]
    streams: BTreeMap<String, RawStream>,
    #[serde(default)]
    workflows: BTreeMap<String, routing::RawWorkflow>,
    workflow_store: Option<routing::RawWorkflowStore>,
    #[serde(default)]
    topics: BTreeMap<String, routing::RawTopic>,
    #[serde(default)]
    rules: BTreeMap<String, routing::RawRule>,
    #[serde(default)]
    kv: BTreeMap<String, bindings::RawStore>,
    #[serde(default)]
    sql: BTreeMap<String, bindings::RawStore>,
    #[serde(default)]
    blob: BTreeMap<String, bindings::RawStore>,
    /// `[env.NAME]`: the same tables again, overlaid when the environment is chosen.
    #[serde(default)]
    env: BTreeMap<String, RawManifest>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSettings {
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    instances: Option<Spanned<String>>,
    max_uses: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    prewarm: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFunction {
    component: Option<String>,
    world: Option<Spanned<String>>,
    routes: Option<Vec<Spanned<String>>>,
    // The settings keys again, not `#[serde(flatten)]`: flattening loses the spans that let
    // errors name the line.
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    instances: Option<Spanned<String>>,
    max_uses: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    prewarm: Option<Spanned<i64>>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<RawSecret>>,
    kv: Option<Vec<Spanned<String>>>,
    sql: Option<Vec<Spanned<String>>>,
    blob: Option<Vec<Spanned<String>>>,
    allowed_outbound_hosts: Option<Vec<Spanned<String>>>,
}

/// `NAME = { env = "VAR" }` or `NAME = { file = "path" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: Option<String>,
    file: Option<String>,
}

impl RawFunction {
    fn settings(&self) -> RawSettings {
        RawSettings {
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            concurrency: self.concurrency.clone(),
            instances: self.instances.clone(),
            max_uses: self.max_uses.clone(),
            idle_timeout: self.idle_timeout.clone(),
            prewarm: self.prewarm.clone(),
        }
    }
}

/// A manifest error: file, line and what to change.
#[derive(Debug, Clone)]
pub struct ManifestError(pub String);

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    /// Read `dir/wasmfn.toml` if it exists.
    pub fn load_from_dir(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        Self::load_from_dir_env(dir, None)
    }

    /// Read `dir/wasmfn.toml` if it exists, with `[env.NAME]` applied when `env` is given.
    pub fn load_from_dir_env(
        dir: &Path,
        env: Option<&str>,
    ) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(FILE_NAME);
        if !path.exists() && env.is_some() {
            return Err(ManifestError(format!(
                "--env {} needs a manifest, but {} does not exist",
                env.unwrap_or_default(),
                path.display()
            )));
        }
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ManifestError(format!("{}: cannot read: {e}", path.display())))?;
        Manifest::parse_env(&path, &text, env).map(Some)
    }

    /// Parse manifest text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        Self::parse_env(path, text, None)
    }

    /// Parse manifest text read from `path`, overlaying `[env.NAME]` when `env` is given.
    pub fn parse_env(
        path: &Path,
        text: &str,
        env: Option<&str>,
    ) -> Result<Manifest, ManifestError> {
        let mut raw: RawManifest = toml::from_str(text).map_err(|e| {
            ManifestError(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        let environments: Vec<String> = raw.env.keys().cloned().collect();
        if let Some(name) = env {
            let Some(overlay) = raw.env.remove(name) else {
                return Err(ManifestError(format!(
                    "{}: no environment `{name}`; declared: {}",
                    path.display(),
                    if environments.is_empty() {
                        "none (add an [env.NAME] table)".to_string()
                    } else {
                        environments.join(", ")
                    }
                )));
            };
            if !overlay.env.is_empty() {
                return Err(ManifestError(format!(
                    "{}: [env.{name}] must not contain [env.*] tables",
                    path.display()
                )));
            }
            merge::overlay(&mut raw, overlay);
        }
        let at = |span: std::ops::Range<usize>, key: &str, msg: String| {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            ManifestError(format!("{}:{line}: `{key}`: {msg}", path.display()))
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let kv = bindings::kv(path, &raw.kv, &at)?;
        let sql = bindings::sql(path, &raw.sql, &at)?;
        let blob = bindings::blob(path, &raw.blob, &at)?;
        // Validated on its own so that a bad default is reported against `[defaults]`.
        settings_from(&raw.defaults, &RawSettings::default(), "defaults", &at)?;
        let mut functions = BTreeMap::new();
        for (name, f) in &raw.functions {
            validate_name(name).map_err(|m| {
                ManifestError(format!("{}: [functions.{name}]: {m}", path.display()))
            })?;
            let mut settings = settings_from(
                &f.settings(),
                &raw.defaults,
                &format!("functions.{name}"),
                &at,
            )?;
            if let Some(w) = &f.world {
                settings.expected_world = Some(
                    w.get_ref()
                        .parse()
                        .map_err(|m| at(w.span(), &format!("functions.{name}.world"), m))?,
                );
            }
            settings.config = f.config.clone().into_iter().collect();
            let table = format!("functions.{name}");
            let names = |list: &Option<Vec<Spanned<String>>>,
                         kind: &str,
                         declared: &dyn Fn(&str) -> bool| {
                let mut out = Vec::new();
                for b in list.iter().flatten() {
                    let n = b.get_ref();
                    if n != "default" && !declared(n) {
                        return Err(at(b.span(), &format!("{table}.{kind}"), format!(
                            "no {kind} store `{n}` is declared; add a [{kind}.{n}] table (or use the built-in \"default\")")));
                    }
                    out.push(n.clone());
                }
                Ok(out)
            };
            settings.grants.stores.kv = names(&f.kv, "kv", &|n| kv.contains_key(n))?;
            settings.grants.stores.sql = names(&f.sql, "sql", &|n| sql.contains_key(n))?;
            settings.grants.stores.blob = names(&f.blob, "blob", &|n| blob.contains_key(n))?;
            let mut allowed = Vec::new();
            for h in f.allowed_outbound_hosts.iter().flatten() {
                allowed.push(
                    h.get_ref()
                        .parse()
                        .map_err(|m| at(h.span(), &format!("{table}.allowed-outbound-hosts"), m))?,
                );
            }
            settings.grants.outbound =
                std::sync::Arc::new(crate::outbound::OutboundPolicy { allowed });
            let mut secrets = Vec::new();
            for (key, sec) in &f.secrets {
                let k = format!("{table}.secrets.{key}");
                if f.config.contains_key(key) {
                    return Err(at(
                        sec.span(),
                        &k,
                        format!("`{key}` is both a config value and a secret; rename one"),
                    ));
                }
                let source = match (&sec.get_ref().env, &sec.get_ref().file) {
                    (Some(v), None) => crate::secrets::SecretSource::Env(v.clone()),
                    (None, Some(p)) => crate::secrets::SecretSource::File(base.join(p)),
                    _ => {
                        return Err(at(
                            sec.span(),
                            &k,
                            "give exactly one of `env = \"VARIABLE\"` or `file = \"path\"`".into(),
                        ))
                    }
                };
                secrets.push((key.clone(), source));
            }
            let routes = match &f.routes {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|r| {
                            validate_route(r.get_ref()).map_err(|m| {
                                at(r.span(), &format!("functions.{name}.routes"), m)
                            })?;
                            Ok(r.get_ref().clone())
                        })
                        .collect::<Result<Vec<_>, ManifestError>>()?,
                ),
            };
            if routes.is_some() && settings.expected_world.is_some_and(|w| w != World::Http) {
                return Err(ManifestError(format!(
                    "{}: [functions.{name}]: `routes` only applies to `http` functions",
                    path.display()
                )));
            }
            functions.insert(
                name.clone(),
                FunctionEntry {
                    component: f.component.as_ref().map(|c| base.join(c)),
                    routes,
                    settings,
                    secrets,
                },
            );
        }
        let mut queues = triggers::queues(path, &raw.queues, &at)?;
        let workflows = routing::workflows(path, &raw.workflows, &at)?;
        let workflow_store = routing::workflow_store(raw.workflow_store.as_ref(), &at)?;
        let topics = routing::topics(path, &raw.topics, &queues, &at)?;
        let rules = routing::rules(path, &raw.rules, &mut queues, &topics, &workflows, &at)?;
        let queue_backend = triggers::queue_backend(raw.queue_backend.as_ref(), &at)?;
        let schedules = triggers::schedules(path, &raw.schedules, &at)?;
        let streams = triggers::streams(path, &raw.streams, &at)?;
        let stream_names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        let store_streams = kv
            .iter()
            .map(|(n, d)| ("kv", n, &d.stream))
            .chain(sql.iter().map(|(n, d)| ("sql", n, &d.stream)))
            .chain(blob.iter().map(|(n, d)| ("blob", n, &d.stream)));
        for (kind, name, stream) in store_streams {
            if let Some(st) = stream {
                if !stream_names.contains(&st.as_str()) {
                    return Err(ManifestError(format!(
                        "{}: [{kind}.{name}]: stream `{st}` is not declared; add a [streams.{st}] table naming its function",
                        path.display()
                    )));
                }
            }
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            functions,
            queues,
            queue_backend,
            schedules,
            streams,
            workflows,
            workflow_store,
            topics,
            rules,
            kv,
            sql,
            blob,
            environment: env.map(str::to_string),
            environments,
        })
    }
}

pub(crate) type At<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> ManifestError + 'a;

/// Merge a function's raw settings over the `[defaults]` ones and validate them.
fn settings_from(
    own: &RawSettings,
    defaults: &RawSettings,
    table: &str,
    at: &At<'_>,
) -> Result<FunctionSettings, ManifestError> {
    let pick =
        |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| a.clone().or_else(|| b.clone());
    let pick_int =
        |a: &Option<Spanned<i64>>, b: &Option<Spanned<i64>>| a.clone().or_else(|| b.clone());
    let mut limits = Limits::default();
    if let Some(m) = pick(&own.memory, &defaults.memory) {
        let bytes =
            parse_size(m.get_ref()).map_err(|e| at(m.span(), &format!("{table}.memory"), e))?;
        if bytes < (1 << 20) {
            return Err(at(
                m.span(),
                &format!("{table}.memory"),
                "must be at least 1MiB".into(),
            ));
        }
        limits.memory_bytes = bytes;
    }
    if let Some(t) = pick(&own.timeout, &defaults.timeout) {
        limits.timeout = parse_duration(t.get_ref())
            .map_err(|e| at(t.span(), &format!("{table}.timeout"), e))?;
    }
    if let Some(c) = pick_int(&own.concurrency, &defaults.concurrency) {
        let n = *c.get_ref();
        if !(1..=100_000).contains(&n) {
            return Err(at(
                c.span(),
                &format!("{table}.concurrency"),
                format!("{n} is out of range 1..=100000"),
            ));
        }
        limits.max_concurrency = n as u32;
    }
    let mut policy = ReusePolicy::default();
    if let Some(u) = pick_int(&own.max_uses, &defaults.max_uses) {
        let n = *u.get_ref();
        if n < 1 || n > u32::MAX as i64 {
            return Err(at(
                u.span(),
                &format!("{table}.max-uses"),
                format!("{n} must be at least 1"),
            ));
        }
        policy.max_uses = n as u32;
    }
    if let Some(t) = pick(&own.idle_timeout, &defaults.idle_timeout) {
        policy.idle_timeout = parse_duration(t.get_ref())
            .map_err(|e| at(t.span(), &format!("{table}.idle-timeout"), e))?;
    }
    let prewarm = pick_int(&own.prewarm, &defaults.prewarm);
    if let Some(p) = &prewarm {
        let n = *p.get_ref();
        if !(0..=1000).contains(&n) {
            return Err(at(
                p.span(),
                &format!("{table}.prewarm"),
                format!("{n} is out of range 0..=1000"),
            ));
        }
        policy.prewarm = n as u32;
    }
    let mode = match pick(&own.instances, &defaults.instances) {
        None => InstanceMode::Fresh,
        Some(m) => match m.get_ref().as_str() {
            "fresh" => InstanceMode::Fresh,
            "reuse" => InstanceMode::Reuse(policy.clone()),
            other => {
                return Err(at(
                    m.span(),
                    &format!("{table}.instances"),
                    format!("`{other}` is not an instance mode: use \"fresh\" or \"reuse\""),
                ))
            }
        },
    };
    if let (InstanceMode::Fresh, Some(p)) = (&mode, &prewarm) {
        if *p.get_ref() > 0 {
            return Err(at(
                p.span(),
                &format!("{table}.prewarm"),
                "pre-warmed instances are kept for reuse: also set instances = \"reuse\"".into(),
            ));
        }
    }
    Ok(FunctionSettings {
        expected_world: None,
        limits,
        mode,
        config: Vec::new(),
        platform: Default::default(),
        grants: Default::default(),
        secrets: Vec::new(),
    })
}

/// Function names become URL path segments and file names: keep them simple.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid function name: use letters, digits, `-` and `_` (at most 64)"
        ))
    }
}

/// A route is an absolute path, optionally ending in `/*` to match everything below it.
pub fn validate_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(format!("route `{route}` must start with `/`"));
    }
    let body = route.strip_suffix("/*").unwrap_or(route);
    if body.contains('*') {
        return Err(format!(
            "route `{route}`: `*` is only allowed as a final `/*`"
        ));
    }
    if body.contains('?') || body.contains('#') {
        return Err(format!(
            "route `{route}` must not contain a query or fragment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("/app/wasmfn.toml"), text)
    }

    #[test]
    fn full_entry() {
        let m = parse(
            r#"
[defaults]
timeout = "5s"

[functions.hello]
world = "http"
routes = ["/", "/greet/*"]
memory = "64MiB"
instances = "reuse"
max-uses = 10
[functions.hello.config]
greeting = "hi"
"#,
        )
        .unwrap();
        let f = &m.functions["hello"];
        assert_eq!(
            f.routes.as_deref(),
            Some(&["/".to_string(), "/greet/*".to_string()][..])
        );
        assert_eq!(f.settings.limits.memory_bytes, 64 << 20);
        assert_eq!(f.settings.limits.timeout, Duration::from_secs(5));
        assert_eq!(f.settings.expected_world, Some(World::Http));
        assert!(matches!(&f.settings.mode, InstanceMode::Reuse(p) if p.max_uses == 10));
        assert_eq!(f.settings.config, vec![("greeting".into(), "hi".into())]);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("[functions.a]\nmemory = \"12 parsecs\"\n")
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("/app/wasmfn.toml:2: `functions.a.memory`"),
            "{e}"
        );
        let e = parse("[functions.a]\ncolour = 1\n").unwrap_err().0;
        assert!(
            e.contains("unknown field `colour`") && e.contains("line 2"),
            "{e}"
        );
        let e = parse("[functions.a]\nworld = \"cron\"\n").unwrap_err().0;
        assert!(e.contains(":2: `functions.a.world`"), "{e}");
        let e = parse("[functions.a]\nroutes = [\"nope\"]\n").unwrap_err().0;
        assert!(e.contains("must start with `/`"), "{e}");
        let e = parse("[functions.\"a b\"]\n").unwrap_err().0;
        assert!(e.contains("not a valid function name"), "{e}");
        let e = parse("[functions.a]\nprewarm = 2\n").unwrap_err().0;
        assert!(
            e.contains(":2: `functions.a.prewarm`: pre-warmed instances are kept for reuse"),
            "{e}"
        );
        let m = parse("[functions.a]\ninstances = \"reuse\"\nprewarm = 2\n").unwrap();
        assert!(
            matches!(&m.functions["a"].settings.mode, InstanceMode::Reuse(p) if p.prewarm == 2)
        );
        let e = parse("[functions.q]\nworld = \"queue\"\nroutes = [\"/q\"]\n")
            .unwrap_err()
            .0;
        assert!(e.contains("only applies to `http`"), "{e}");
    }
}
