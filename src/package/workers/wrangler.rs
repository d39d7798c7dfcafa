//! The `wrangler.toml` of a Worker bundle, generated from the manifest: module rules, and for the
//! base manifest and every `[env.NAME]` of it, the Worker's bindings (KV namespaces, D1
//! databases, R2 buckets, queue producers), vars (config values, the secrets' names, the
//! outbound allow-list), cron triggers and queue consumers. Wrangler's environments inherit
//! none of these, so each `[env.NAME]` section repeats them with that environment's values.
//!
//! Binding names are derived from the manifest's names (`[kv.cache]` -> `KV_CACHE`), the same
//! in every environment, so one bundle serves them all; the entry module maps them back
//! ([`Platform`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use toml::Value;
use wasmfn_host::blob::BlobBackendConfig;
use wasmfn_host::config_env::variable_for;
use wasmfn_host::manifest::{FunctionEntry, Manifest};
use wasmfn_host::queue::QueueConfig;
use wasmfn_host::scheduler::{Expression, ScheduleConfig};
use wasmfn_host::secrets::SecretSource;
use wasmfn_host::World;

use super::imports::imports;

/// Var prefix of config values (the Lambda adapter's names too).
pub const CONFIG_PREFIX: &str = "WASMFN_CONFIG_";
/// Var prefix of secrets that were files or literals locally (never written into the bundle).
const SECRET_PREFIX: &str = "WASMFN_SECRET_";
/// The var mapping config keys to the Worker secrets holding them.
const SECRETS_VAR: &str = "WASMFN_SECRETS";
/// The var holding the outbound allow-list.
pub const OUTBOUND_VAR: &str = "WASMFN_ALLOWED_OUTBOUND_HOSTS";
/// The compatibility date the bundle is written for.
const COMPATIBILITY_DATE: &str = "2026-04-01";

/// One environment's Worker configuration.
#[derive(Default)]
pub struct Environment {
    /// `[env.NAME]`, or `None` for the top level.
    pub name: Option<String>,
    /// Key-value stores by manifest name.
    kv: Vec<String>,
    /// SQL databases by manifest name.
    sql: Vec<String>,
    /// Blob stores: (manifest name, R2 bucket).
    blob: Vec<(String, String)>,
    /// Queues the function may publish to.
    producers: Vec<String>,
    /// Config values: (key, value).
    config: Vec<(String, String)>,
    /// Secrets: (config key, Worker secret name).
    secrets: Vec<(String, String)>,
    /// The outbound allow-list, when outbound HTTP is imported.
    outbound: Option<Vec<serde_json::Value>>,
    /// (Workers cron expression, schedule name).
    pub crons: Vec<(String, String)>,
    /// `[[queues.consumers]]`.
    consumers: Vec<QueueConfig>,
    /// `[limits] cpu_ms`: the manifest's timeout, as Workers' CPU-time limit.
    cpu_ms: u64,
}

/// The most CPU time Workers allow one invocation (paid plans).
const MAX_CPU_MS: u64 = 300_000;

/// Manifest names of one environment: `name` plus `-ENV` outside the top level, so that
/// staging never writes production's data.
fn resource(name: &str, env: Option<&str>) -> String {
    let base = name.to_ascii_lowercase().replace('_', "-");
    match env {
        Some(e) => format!("{base}-{}", e.to_ascii_lowercase().replace('_', "-")),
        None => base,
    }
}

/// The binding for manifest name `name` of `kind` (`KV`, `D1`, `R2`, `QUEUE`).
pub fn binding_name(kind: &str, name: &str) -> String {
    variable_for(&format!("{kind}_"), name)
}

impl Environment {
    /// What the Worker for function `name` needs in one environment.
    pub fn of(
        env: Option<&str>,
        manifest: &Manifest,
        entry: &FunctionEntry,
        name: &str,
        world: World,
        component_imports: &[String],
        has_manifest: bool,
    ) -> Result<Environment> {
        let uses = |iface: &str| imports(component_imports, iface);
        let default = vec!["default".to_string()];
        let [kv, sql, blob] = match has_manifest {
            true => crate::sections::bindings(&entry.settings).map(<[String]>::to_vec),
            false => [default.clone(), default.clone(), default],
        };
        let timeout = entry.settings.limits.timeout.as_millis() as u64;
        let mut e = Environment {
            name: env.map(str::to_string),
            cpu_ms: timeout.clamp(1, MAX_CPU_MS),
            ..Default::default()
        };
        if uses("wasi:keyvalue/store") {
            e.kv = kv;
        }
        if uses("wasmfn:platform/sql") {
            e.sql = sql;
        }
        if uses("wasmfn:platform/blob") {
            e.blob = blob
                .iter()
                .map(|b| {
                    let bucket = match crate::sections::blob_store(manifest, b) {
                        Some(BlobBackendConfig::S3(s3)) => s3.bucket.clone(),
                        _ => resource(b, env),
                    };
                    (b.clone(), bucket)
                })
                .collect();
        }
        if uses("wasmfn:platform/queue-publisher") {
            // A Worker reaches exactly the queues it has producer bindings for: one per queue
            // the function's `queues` grant allows, as `wasmfn serve` enforces it.
            let grants = entry
                .settings
                .get::<wasmfn_host::wasmfn_host_capabilities::service_import::Grants>();
            e.producers = crate::sections::queues(manifest)
                .iter()
                .filter(|q| !q.rule_delivery)
                .filter(|q| match grants {
                    Some(g) => g.allows("queues", &q.name),
                    None => !has_manifest,
                })
                .map(|q| q.name.clone())
                .collect();
        }
        if uses("wasi:config/store") {
            let config = crate::sections::config(&entry.settings);
            e.config = config.values;
            e.secrets = config
                .secrets
                .iter()
                .map(|(key, source)| {
                    let var = match source {
                        SecretSource::Env(var) => var.clone(),
                        _ => variable_for(SECRET_PREFIX, key),
                    };
                    (key.clone(), var)
                })
                .collect();
        }
        if uses("wasi:http/outgoing-handler") {
            let allowed = crate::sections::outbound(&entry.settings).allowed;
            e.outbound = Some(allowed.iter().map(|p| p.to_json()).collect());
        }
        if world == World::Schedule {
            for s in crate::sections::schedules(manifest)
                .iter()
                .filter(|s| s.function == name)
            {
                let cron = workers_cron(s).map_err(|m| anyhow!("schedule `{}`: {m}", s.name))?;
                e.crons.push((cron, s.name.clone()));
            }
        }
        if world == World::Queue {
            e.consumers = crate::sections::queues(manifest)
                .iter()
                // Event rules' implicit queues stay with wasmfn's event bus.
                .filter(|q| q.function.as_deref() == Some(name) && !q.rule_delivery)
                .cloned()
                .collect();
        }
        Ok(e)
    }

    /// This environment's tables: top level, or under `[env.NAME]`.
    fn write(&self, out: &mut String) {
        let at = |table: &str| match &self.name {
            Some(env) => format!("env.{env}.{table}"),
            None => table.to_string(),
        };
        if let Some(env) = &self.name {
            let _ = writeln!(out, "\n# `wrangler deploy --env {env}`\n[env.{env}]");
        }
        let mut vars: Vec<(String, Value)> = self
            .config
            .iter()
            .map(|(k, v)| (variable_for(CONFIG_PREFIX, k), Value::from(v.as_str())))
            .collect();
        if !self.secrets.is_empty() {
            let table: toml::Table = self
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            vars.push((SECRETS_VAR.into(), Value::Table(table)));
        }
        if let Some(allowed) = &self.outbound {
            vars.push((
                OUTBOUND_VAR.into(),
                toml_of(&serde_json::Value::from(allowed.clone())),
            ));
        }
        if !vars.is_empty() {
            let _ = writeln!(out, "\n[{}]", at("vars"));
            for (k, v) in &vars {
                let _ = writeln!(out, "{k} = {}", inline(v));
            }
        }
        if !self.secrets.is_empty() {
            let env = self
                .name
                .as_ref()
                .map(|e| format!(" --env {e}"))
                .unwrap_or_default();
            let _ = writeln!(out, "# Secrets, set before deploying:");
            for (_, var) in &self.secrets {
                let _ = writeln!(out, "#   wrangler secret put {var}{env}");
            }
        }
        for kv in &self.kv {
            let _ = writeln!(
                out,
                "\n[[{}]]\nbinding = {}\n# wrangler deploy creates the namespace; add `id` to use an existing one.",
                at("kv_namespaces"),
                q(&binding_name("KV", kv))
            );
        }
        for db in &self.sql {
            let _ = writeln!(
                out,
                "\n[[{}]]\nbinding = {}\ndatabase_name = {}",
                at("d1_databases"),
                q(&binding_name("D1", db)),
                q(&resource(db, self.name.as_deref()))
            );
        }
        for (store, bucket) in &self.blob {
            let _ = writeln!(
                out,
                "\n[[{}]]\nbinding = {}\nbucket_name = {}",
                at("r2_buckets"),
                q(&binding_name("R2", store)),
                q(bucket)
            );
        }
        for queue in &self.producers {
            let _ = writeln!(
                out,
                "\n[[{}]]\nbinding = {}\nqueue = {}",
                at("queues.producers"),
                q(&binding_name("QUEUE", queue)),
                q(queue)
            );
        }
        for c in &self.consumers {
            let _ = writeln!(
                out,
                "\n[[{}]]\nqueue = {}\nmax_batch_size = {}\nmax_batch_timeout = {}\n\
                 max_retries = {}\ndead_letter_queue = {}\nmax_concurrency = {}",
                at("queues.consumers"),
                q(&c.name),
                c.batch_size.min(100),
                c.batch_window.as_secs().min(60),
                c.max_receive_count.saturating_sub(1),
                q(&c.dead_letter_queue),
                c.concurrency.max(1),
            );
        }
        // Workers stop a Worker at its CPU-time limit (waiting on I/O does not count); a guest
        // spinning past the manifest's timeout ends there.
        let _ = writeln!(out, "\n[{}]\ncpu_ms = {}", at("limits"), self.cpu_ms);
        if !self.crons.is_empty() {
            let crons: Vec<String> = self.crons.iter().map(|(c, _)| q(c)).collect();
            let _ = writeln!(
                out,
                "\n[{}]\ncrons = [{}]",
                at("triggers"),
                crons.join(", ")
            );
        }
    }
}

/// A TOML string literal.
fn q(s: &str) -> String {
    Value::from(s).to_string()
}

/// JSON as TOML (nulls, which TOML lacks, are left out).
fn toml_of(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Object(o) => Value::Table(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), toml_of(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(toml_of).collect()),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Number(n) => n.as_i64().map(Value::from).unwrap_or(Value::from(0)),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Null => Value::from(""),
    }
}

/// A value on one line (tables inline).
fn inline(v: &Value) -> String {
    match v {
        Value::Table(t) => {
            let items: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", q(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The whole `wrangler.toml`: module rules, then the top level and each environment.
pub fn wrangler_toml(name: &str, environments: &[Environment]) -> String {
    let mut out = format!(
        "# Generated by `wasmfn package workers`; edit the manifest, not this file.\n\
         name = {}\n\
         main = \"worker.js\"\n\
         compatibility_date = \"{COMPATIBILITY_DATE}\"\n\
         # AsyncLocalStorage (node:async_hooks): each event's trace context (wasmfn/trace.js).\n\
         compatibility_flags = [\"nodejs_als\"]\n\
         # Upload the bundle as is: every .js is an ES module; the core .wasm modules are\n\
         # imported as compiled wasm modules (wrangler's default rule for .wasm).\n\
         no_bundle = true\n\n\
         [[rules]]\n\
         type = \"ESModule\"\n\
         globs = [\"**/*.js\"]\n\
         fallthrough = true\n",
        q(name)
    );
    for e in environments {
        e.write(&mut out);
    }
    out
}

/// The entry module's tables: manifest name -> binding, for every environment.
#[derive(Default, serde::Serialize)]
pub struct Platform {
    kv: BTreeMap<String, String>,
    sql: BTreeMap<String, String>,
    blob: BTreeMap<String, String>,
    queues: BTreeMap<String, String>,
    config: BTreeMap<String, String>,
    secrets: &'static str,
    outbound: &'static str,
}

impl Platform {
    pub fn of(environments: &[Environment]) -> Platform {
        let mut p = Platform {
            secrets: SECRETS_VAR,
            outbound: OUTBOUND_VAR,
            ..Default::default()
        };
        for e in environments {
            for kv in &e.kv {
                p.kv.insert(kv.clone(), binding_name("KV", kv));
            }
            for db in &e.sql {
                p.sql.insert(db.clone(), binding_name("D1", db));
            }
            for (store, _) in &e.blob {
                p.blob.insert(store.clone(), binding_name("R2", store));
            }
            for queue in &e.producers {
                p.queues.insert(queue.clone(), binding_name("QUEUE", queue));
            }
            for (key, _) in &e.config {
                p.config
                    .insert(key.clone(), variable_for(CONFIG_PREFIX, key));
            }
        }
        p
    }
}

/// A schedule as a Workers cron trigger (five fields, UTC).
fn workers_cron(s: &ScheduleConfig) -> Result<String, String> {
    match &s.expression {
        Expression::Cron(_, tz) if tz.to_string() != "UTC" => Err(format!(
            "Workers cron triggers run in UTC; `timezone = \"{tz}\"` cannot be kept"
        )),
        Expression::Cron(..) => {
            let fields: Vec<&str> = s.expression_text.split_whitespace().collect();
            match fields[..] {
                [_, _, _, _, _] => Ok(fields.join(" ")),
                ["0", ..] => Ok(fields[1..].join(" ")),
                _ => Err(format!(
                    "`{}` fires at a second; Workers cron triggers have minute precision",
                    s.expression_text
                )),
            }
        }
        Expression::Rate(every) => {
            let minutes = every.as_secs() / 60;
            match minutes {
                _ if !every.as_secs().is_multiple_of(60) || minutes == 0 => {
                    Err("Workers cron triggers run at most once a minute".into())
                }
                m if m < 60 && 60 % m == 0 => Ok(format!("*/{m} * * * *")),
                m if m % 60 == 0 && m < 1440 && 24 % (m / 60) == 0 => {
                    Ok(format!("0 */{} * * *", m / 60))
                }
                1440 => Ok("0 0 * * *".into()),
                _ => Err(format!(
                    "every {minutes} minutes has no cron equivalent; use a cron expression"
                )),
            }
        }
    }
}
