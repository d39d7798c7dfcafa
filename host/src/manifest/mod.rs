//! `wasmfn.toml`: the optional manifest of a functions folder, assembled from its sections.
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
//! Core's keys are read here (`functions.rs`); every other table and function key belongs to a
//! registered [`ManifestSection`] (a capability, trigger or orchestrator, listed in
//! `registry.rs`), which parses it itself. Unknown keys and bad values are errors naming
//! the file, line and key.

mod functions;
mod merge;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;
pub use wasmfn_host_core::manifest::{validate_name, ManifestError, Sections};
use wasmfn_host_core::manifest::{Locator, ManifestSection, ParseContext, RawValue};
use wasmfn_host_core::{Extensions, FunctionSettings, World};

use crate::registry::Sections as Registered;
pub use functions::validate_route;
use functions::{settings_from, RawFunction, RawSettings};

/// What a function's `[functions.NAME]` table gives it beyond core's keys (stores, queues,
/// topics, config...), as JSON for the admin API and the console: secrets by name only.
/// Kept in the function's settings (`settings.get::<Bindings>()`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Bindings(pub BTreeMap<String, serde_json::Value>);

impl Bindings {
    fn of<'i>(locator: &Locator<'i>, keys: &BTreeMap<String, RawValue<'i>>) -> Bindings {
        let json = keys
            .iter()
            .map(|(key, value)| {
                let value: serde_json::Value = locator
                    .deserialize(value.clone())
                    .unwrap_or(serde_json::Value::Null);
                let value = match (key.as_str(), value) {
                    // Where a secret comes from is not the secret, but it is nobody's business.
                    ("secrets", serde_json::Value::Object(m)) => {
                        serde_json::Value::Array(m.keys().map(|k| k.clone().into()).collect())
                    }
                    (_, v) => v,
                };
                (key.clone(), value)
            })
            .collect();
        Bindings(json)
    }
}

/// The manifest's file name inside a functions folder.
pub const FILE_NAME: &str = "wasmfn.toml";

/// A parsed, validated manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Where it was read from (for messages and to resolve relative paths).
    pub path: PathBuf,
    /// Function entries by name.
    pub functions: BTreeMap<String, FunctionEntry>,
    /// What the sections parsed (queues, stores, schedules...), by type; see [`Manifest::get`].
    pub sections: Sections,
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
    /// Everything else; the capabilities' values are in `settings.extensions`.
    pub settings: FunctionSettings,
}

impl Manifest {
    /// What section type `T` parsed (e.g. the queues), if that section is part of this host.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.sections.get()
    }

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
    /// Every environment is checked, whichever is applied.
    pub fn parse_env(
        path: &Path,
        text: &str,
        env: Option<&str>,
    ) -> Result<Manifest, ManifestError> {
        let sections = crate::registry::sections();
        let locator = Locator::new(path, text);
        let mut root = DeTable::parse(text)
            .map_err(|e| locator.toml_error(e))?
            .into_inner();
        let mut envs: BTreeMap<String, RawValue<'_>> = match root.remove("env") {
            None => BTreeMap::new(),
            Some(v) => entries(&locator, "env", v)?,
        };
        let environments: Vec<String> = envs.keys().cloned().collect();
        let Some(name) = env else {
            // Check every environment as it would be applied, then the base.
            for (name, overlay) in envs {
                parse_with(&locator, &sections, root.clone(), Some((name, overlay)))?;
            }
            return parse_with(&locator, &sections, root, None).map(|mut m| {
                m.environments = environments;
                m
            });
        };
        let Some(chosen) = envs.remove(name) else {
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
        for (other, overlay) in envs {
            parse_with(&locator, &sections, root.clone(), Some((other, overlay)))?;
        }
        let mut m = parse_with(&locator, &sections, root, Some((name.to_string(), chosen)))?;
        m.environments = environments;
        Ok(m)
    }
}

/// Parse the tree `root`, with `env` (a name and its `[env.NAME]` table) laid over it.
fn parse_with<'i>(
    locator: &Locator<'i>,
    sections: &Registered,
    mut root: DeTable<'i>,
    env: Option<(String, RawValue<'i>)>,
) -> Result<Manifest, ManifestError> {
    let path = locator_path(locator);
    let environment = env.as_ref().map(|(n, _)| n.clone());
    if let Some((name, overlay)) = env {
        let mut overlay: DeTable<'i> = match overlay.into_inner() {
            DeValue::Table(t) => t,
            _ => return Err(locator.error(format!("[env.{name}] must be a table"))),
        };
        if overlay.remove("env").is_some() {
            return Err(locator.error(format!("[env.{name}] must not contain [env.*] tables")));
        }
        let all: Vec<&dyn ManifestSection> = sections.all().collect();
        merge::overlay(&mut root, overlay, &all);
    }
    let owner_of_table = |key: &str| {
        sections
            .all()
            .any(|s| s.tables().iter().any(|t| t.name == key))
    };
    let owner_of_key = |key: &str| {
        sections
            .all()
            .any(|s| s.function_keys().iter().any(|k| k.name == key))
    };
    let mut defaults = RawSettings::default();
    let mut raw_functions: BTreeMap<String, RawValue<'i>> = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "defaults" => defaults = locator.deserialize(value)?,
            "functions" => raw_functions = entries(locator, "functions", value)?,
            k if owner_of_table(k) => {
                tables.insert(k.to_string(), value);
            }
            k => {
                return Err(unknown(
                    locator,
                    &key,
                    k,
                    "table",
                    crate::registry::absent_tables(),
                ))
            }
        }
    }
    // Validated on its own so that a bad default is reported against `[defaults]`.
    let at = |span, key: &str, msg: String| locator.at(span, key, msg);
    settings_from(&defaults, &RawSettings::default(), "defaults", &at)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut functions = BTreeMap::new();
    let mut claimed = BTreeMap::new();
    let mut bindings = BTreeMap::new();
    for (name, value) in raw_functions {
        validate_name(&name).map_err(|m| locator.error(format!("[functions.{name}]: {m}")))?;
        let span = value.span();
        let mut table = match value.into_inner() {
            DeValue::Table(t) => t,
            other => {
                return Err(locator.at(
                    span,
                    &format!("functions.{name}"),
                    format!("expected a table, found {}", other.type_str()),
                ))
            }
        };
        let mut theirs = BTreeMap::new();
        let keys: Vec<_> = table.keys().cloned().collect();
        for key in keys {
            let k = key.get_ref().as_ref();
            if owner_of_key(k) {
                if let Some(v) = table.remove(k) {
                    theirs.insert(k.to_string(), v);
                }
            } else if let Some(feature) = crate::registry::absent_function_key(k) {
                return Err(locator.at(
                    key.span(),
                    &format!("functions.{name}.{k}"),
                    not_compiled(feature),
                ));
            }
        }
        let f: RawFunction = locator.deserialize(Spanned::new(span, DeValue::Table(table)))?;
        bindings.insert(name.clone(), Bindings::of(locator, &theirs));
        claimed.insert(name.clone(), theirs);
        functions.insert(name, f);
    }
    let mut cx = ParseContext::new(
        &path,
        locator_text(locator),
        environment.clone(),
        tables,
        claimed,
        functions
            .keys()
            .map(|n| (n.clone(), Extensions::new()))
            .collect(),
    );
    // The capabilities' tables, core's function keys, every section's function keys, then the
    // triggers' tables (which refer to functions, stores and queues).
    for section in &sections.capabilities {
        section.parse(&mut cx)?;
    }
    let mut entries = BTreeMap::new();
    for (name, f) in functions {
        let table = format!("functions.{name}");
        let mut settings = settings_from(&f.settings(), &defaults, &table, &at)?;
        if let Some(w) = &f.world {
            settings.expected_world = Some(
                w.get_ref()
                    .parse()
                    .map_err(|m| at(w.span(), &format!("{table}.world"), m))?,
            );
        }
        let routes = match &f.routes {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|r| {
                        validate_route(r.get_ref())
                            .map_err(|m| at(r.span(), &format!("{table}.routes"), m))?;
                        Ok(r.get_ref().clone())
                    })
                    .collect::<Result<Vec<_>, ManifestError>>()?,
            ),
        };
        if routes.is_some() && settings.expected_world.is_some_and(|w| w != World::Http) {
            return Err(locator.error(format!(
                "[functions.{name}]: `routes` only applies to `http` functions"
            )));
        }
        entries.insert(
            name,
            FunctionEntry {
                component: f.component.as_ref().map(|c| base.join(c)),
                routes,
                settings,
            },
        );
    }
    for section in sections.all() {
        section.parse_function_keys(&mut cx)?;
    }
    for section in &sections.triggers {
        section.parse(&mut cx)?;
    }
    let (sections, mut extensions) = cx.finish()?;
    for (name, entry) in &mut entries {
        entry.settings.extensions = extensions.remove(name).unwrap_or_default();
        if let Some(b) = bindings.remove(name) {
            entry.settings.extensions.insert(b);
        }
    }
    Ok(Manifest {
        path,
        functions: entries,
        sections,
        environment,
        environments: Vec::new(),
    })
}

fn locator_path(locator: &Locator<'_>) -> PathBuf {
    locator.path().to_path_buf()
}

fn locator_text<'i>(locator: &Locator<'i>) -> &'i str {
    locator.text()
}

/// The entries of table `key` (`[functions.NAME]`, `[env.NAME]`), by name.
fn entries<'i>(
    locator: &Locator<'i>,
    key: &str,
    value: RawValue<'i>,
) -> Result<BTreeMap<String, RawValue<'i>>, ManifestError> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) => Ok(t
            .into_iter()
            .map(|(k, v)| (k.into_inner().into_owned(), v))
            .collect()),
        other => Err(locator.at(
            span,
            key,
            format!("expected a table, found {}", other.type_str()),
        )),
    }
}

/// The error for a key no section of this host owns: the feature that would add it, or the
/// tables this manifest may have.
fn unknown(
    locator: &Locator<'_>,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    name: &str,
    what: &str,
    absent: &[(&'static str, &'static str)],
) -> ManifestError {
    if let Some((_, feature)) = absent.iter().find(|(t, _)| *t == name) {
        return locator.at(key.span(), name, not_compiled(feature));
    }
    let mut known = vec!["defaults", "functions", "env"];
    let sections = crate::registry::sections();
    known.extend(sections.all().flat_map(|s| s.tables()).map(|t| t.name));
    locator.at(
        key.span(),
        name,
        format!("unknown {what}; expected one of: {}", known.join(", ")),
    )
}

fn not_compiled(feature: &str) -> String {
    format!(
        "this wasmfn was built without it; rebuild wasmfn-host with the `{feature}` feature \
         (the wasmfn command has every feature)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wasmfn_host_core::InstanceMode;

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
        let config = f.settings.get::<crate::config::ConfigValues>().unwrap();
        assert_eq!(config.values, vec![("greeting".into(), "hi".into())]);
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

    #[test]
    fn concurrent_mode_takes_its_bounds_and_defaults_like_wasmtime_serve() {
        let m = parse("[functions.a]\ninstances = \"concurrent\"\n").unwrap();
        let InstanceMode::Concurrent(p) = &m.functions["a"].settings.mode else {
            panic!("not concurrent");
        };
        assert_eq!((p.max_concurrent, p.max_uses), (16, 128));
        let m = parse(
            "[functions.a]\ninstances = \"concurrent\"\nmax-concurrent = 4\nmax-uses = 9\n\
             idle-timeout = \"5s\"\n",
        )
        .unwrap();
        let InstanceMode::Concurrent(p) = &m.functions["a"].settings.mode else {
            panic!("not concurrent");
        };
        assert_eq!((p.max_concurrent, p.max_uses), (4, 9));
        assert_eq!(p.idle_timeout, Duration::from_secs(5));
        let e = parse("[functions.a]\nmax-concurrent = 4\n").unwrap_err().0;
        assert!(
            e.contains(":2: `functions.a.max-concurrent`")
                && e.contains("instances = \"concurrent\""),
            "{e}"
        );
        let e = parse("[functions.a]\ninstances = \"concurrent\"\nmax-concurrent = 0\n")
            .unwrap_err()
            .0;
        assert!(e.contains("out of range"), "{e}");
        let e = parse("[functions.a]\ninstances = \"shared\"\n")
            .unwrap_err()
            .0;
        assert!(e.contains("\"concurrent\""), "{e}");
    }

    #[test]
    #[cfg(feature = "redis")] // the overlaid store is a Redis one
    fn environments_overlay_by_shape_and_are_all_checked() {
        let text = r#"
[functions.a]
kv = ["cache"]
[functions.a.config]
x = "1"
y = "2"
[kv.cache]
path = "base.sqlite"

[env.prod.functions.a.config]
y = "prod"
[env.prod.kv.cache]
backend = "redis"
url = "redis://127.0.0.1:1"

[env.broken.functions.a]
memory = "lots"
"#;
        let e = parse(text).unwrap_err().0;
        assert!(
            e.contains("`functions.a.memory`"),
            "an unapplied environment is checked: {e}"
        );
        let text = text.replace("memory = \"lots\"", "memory = \"64MiB\"");
        let m = Manifest::parse_env(Path::new("/app/wasmfn.toml"), &text, Some("prod")).unwrap();
        let config = m.functions["a"]
            .settings
            .get::<crate::config::ConfigValues>()
            .unwrap();
        assert_eq!(
            config.values,
            vec![("x".into(), "1".into()), ("y".into(), "prod".into())],
            "config merges entry by entry"
        );
        let kv = m.get::<crate::kv::KvStores>().unwrap();
        assert!(
            matches!(
                &kv.get("cache").unwrap().config,
                crate::kv::KvBackendConfig::Redis { prefix: None, .. }
            ),
            "a store table is replaced whole"
        );
        assert_eq!(m.environments, ["broken", "prod"]);
    }
}
