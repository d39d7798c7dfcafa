//! The AWS SAM `template.yaml` written beside a Lambda package: the function (memory, timeout,
//! architecture, environment) and, from the manifest, its event sources: an HTTP API with CORS
//! for `http` functions, SQS queues with a dead-letter redrive and `ReportBatchItemFailures`,
//! DynamoDB streams and S3 notifications for `stream` functions, EventBridge schedules.
//!
//! Secrets and connection URLs become `NoEcho` parameters passed as environment variables, so
//! no secret is ever written into the template or the package.

use anyhow::{bail, Result};
use serde_norway::{Mapping, Value};
use wasmfn_host::blob::BlobBackendConfig;
use wasmfn_host::kv::KvBackendConfig;
use wasmfn_host::manifest::{FunctionEntry, Manifest};
use wasmfn_host::secrets::SecretSource;
use wasmfn_host::sql::SqlBackendConfig;
use wasmfn_host::World;

mod app;
mod events;

pub use app::{app_template, AppInput};

/// Environment variable prefix for config values (read by the bootstrap).
pub const CONFIG_PREFIX: &str = "WASMFN_CONFIG_";
/// Environment variable prefix for secrets that were files locally (files are never packaged).
pub const SECRET_PREFIX: &str = "WASMFN_SECRET_";
/// Memory Lambda gives the runtime itself (engine, tokio, pools) above the guest's limit.
const RUNTIME_MEMORY_MB: u64 = 64;

/// The `MemorySize` the template gives a function with this memory limit: the guest's limit
/// plus the runtime's share, at least Lambda's minimum of 128 MB.
pub fn lambda_memory_mb(memory_limit_bytes: u64) -> u64 {
    ((memory_limit_bytes >> 20) + RUNTIME_MEMORY_MB).max(128)
}

/// What the template is generated from.
pub struct TemplateInput<'a> {
    /// The manifest with `--env` applied (triggers and store declarations).
    pub manifest: &'a Manifest,
    /// The function's entry as packaged (`[defaults]` applied).
    pub entry: &'a FunctionEntry,
    /// The packaged function.
    pub function: &'a str,
    /// Its world (decides the event sources).
    pub world: World,
    /// `x86_64` or `arm64`.
    pub architecture: &'a str,
    /// The zip, relative to the template.
    pub code_uri: &'a str,
    /// Part of a whole app's stack (`--app`): the `bootstrap` comes from the app's runtime
    /// layer, and the queues through which rules deliver to the function are in the stack.
    pub in_app: bool,
}

/// A CloudFormation logical id (or parameter name) from a wasmfn name: `orders-dlq` →
/// `OrdersDlq`, `DATABASE_URL` → `DatabaseUrl`.
pub fn logical_id(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn reference(name: &str) -> Value {
    map([("Ref", name.into())])
}

fn arn_of(resource: &str) -> Value {
    map([("Fn::GetAtt", vec![resource, "Arn"].into())])
}

fn sub(text: &str) -> Value {
    map([("Fn::Sub", text.into())])
}

/// A queue or schedule name unique to the stack; the bootstrap strips the prefix again
/// (`WASMFN_RESOURCE_PREFIX`), so the function sees the manifest's name.
fn prefixed(name: &str) -> Value {
    sub(&format!("${{AWS::StackName}}-{name}"))
}

fn insert(m: &mut Mapping, key: impl Into<String>, value: Value) {
    m.insert(Value::from(key.into()), value);
}

#[derive(Default)]
struct Template {
    parameters: Mapping,
    conditions: Mapping,
    resources: Mapping,
    outputs: Mapping,
    environment: Mapping,
    events: Mapping,
    policies: Vec<Value>,
}

impl Template {
    /// A `NoEcho` string parameter passed to the function as environment variable `var`.
    fn secret_variable(&mut self, var: &str, what: &str) {
        let param = logical_id(var);
        insert(
            &mut self.parameters,
            param.clone(),
            map([
                ("Type", "String".into()),
                ("NoEcho", true.into()),
                (
                    "Description",
                    format!("{what} (environment variable {var})").into(),
                ),
            ]),
        );
        insert(&mut self.environment, var, reference(&param));
    }

    fn secret_source(&mut self, source: &SecretSource, what: &str) {
        if let SecretSource::Env(var) = source {
            self.secret_variable(var, what);
        }
    }

    fn output(&mut self, name: &str, description: &str, value: Value) {
        insert(
            &mut self.outputs,
            name,
            map([("Description", description.into()), ("Value", value)]),
        );
    }
}

/// Generate `template.yaml`.
pub fn template(input: &TemplateInput) -> Result<String> {
    let (t, _) = function_template(input)?;
    render(
        &format!(
            "wasmfn function `{}` on AWS Lambda (generated by `wasmfn package lambda`; edit the manifest, not this file)",
            input.function
        ),
        t,
    )
}

/// One function's part of a template, and the function's logical id.
fn function_template(input: &TemplateInput) -> Result<(Template, String)> {
    let manifest = input.manifest;
    let name = input.function;
    let entry = input.entry;
    let function_id = format!("{}Function", logical_id(name));
    let mut t = Template::default();
    insert(
        &mut t.environment,
        "WASMFN_RESOURCE_PREFIX",
        sub("${AWS::StackName}-"),
    );
    let limits = &entry.settings.limits;

    // Config values as variables (editable on the function without repackaging).
    let config = crate::sections::config(&entry.settings);
    for (key, value) in &config.values {
        insert(
            &mut t.environment,
            wasmfn_host::config_env::variable_for(CONFIG_PREFIX, key),
            value.as_str().into(),
        );
    }
    for (key, source) in &config.secrets {
        match source {
            SecretSource::File(_) => t.secret_variable(
                &wasmfn_host::config_env::variable_for(SECRET_PREFIX, key),
                &format!("secret `{key}`"),
            ),
            other => t.secret_source(other, &format!("secret `{key}`")),
        }
    }

    // Stores: connection settings, and the VPC for servers that live in one.
    let [kv, sql, blob] = crate::sections::bindings(&entry.settings);
    let mut needs_vpc = false;
    for store in kv {
        if let Some(KvBackendConfig::Redis { url, .. }) = crate::sections::kv_store(manifest, store)
        {
            t.secret_source(url, &format!("Redis URL of kv store `{store}`"));
            needs_vpc = true;
        }
    }
    for store in sql {
        if let Some(SqlBackendConfig::Postgres { url, .. }) =
            crate::sections::sql_store(manifest, store)
        {
            t.secret_source(url, &format!("PostgreSQL URL of sql store `{store}`"));
            needs_vpc = true;
        }
    }
    for store in blob {
        if let Some(BlobBackendConfig::S3(s3)) = crate::sections::blob_store(manifest, store) {
            for source in [&s3.access_key_id, &s3.secret_access_key]
                .into_iter()
                .flatten()
            {
                t.secret_source(source, &format!("S3 credential of blob store `{store}`"));
            }
            t.policies.push(map([(
                "S3CrudPolicy",
                map([("BucketName", s3.bucket.as_str().into())]),
            )]));
        }
    }

    let timeout_secs = limits.timeout.as_secs();
    match input.world {
        World::Http => {
            events::http_events(&mut t, entry, name);
            // Rules deliver to HTTP functions too (each event POSTed), through their queue.
            if input.in_app {
                events::queue_events(&mut t, manifest, name, timeout_secs, true)?;
            }
        }
        World::Queue => events::queue_events(&mut t, manifest, name, timeout_secs, input.in_app)?,
        World::Stream => events::stream_events(&mut t, manifest, name),
        World::Schedule => events::schedule_events(&mut t, manifest, name)?,
        // Invoked by the state machines whose Task states name it: no event source.
        World::Task => {}
    }

    let timeout = limits.timeout.as_secs_f64().ceil() as u64;
    if timeout > 899 {
        bail!(
            "`{name}` has timeout {timeout} s; Lambda allows at most 900 s (set `timeout` to 899s or less)"
        );
    }
    let memory_mb = (limits.memory_bytes >> 20) + RUNTIME_MEMORY_MB;
    if memory_mb > 10_240 {
        bail!(
            "`{name}` has a {} MiB memory limit; Lambda allows at most 10 GiB",
            memory_mb
        );
    }

    let mut properties = Mapping::new();
    insert(&mut properties, "FunctionName", prefixed(name));
    insert(
        &mut properties,
        "Description",
        format!("wasmfn function `{name}` ({} world)", input.world).into(),
    );
    insert(&mut properties, "CodeUri", input.code_uri.into());
    if input.in_app {
        insert(
            &mut properties,
            "Layers",
            vec![reference(app::RUNTIME_LAYER)].into(),
        );
    }
    // The bootstrap serves the function named by the handler.
    insert(&mut properties, "Handler", name.into());
    insert(&mut properties, "Runtime", "provided.al2023".into());
    insert(
        &mut properties,
        "Architectures",
        vec![input.architecture].into(),
    );
    insert(&mut properties, "MemorySize", memory_mb.max(128).into());
    // One second above the guest's timeout, so the guest's own limit reports first.
    insert(&mut properties, "Timeout", (timeout + 1).into());
    if !t.environment.is_empty() {
        insert(
            &mut properties,
            "Environment",
            map([(
                "Variables",
                Value::Mapping(std::mem::take(&mut t.environment)),
            )]),
        );
    }
    if !t.policies.is_empty() {
        insert(
            &mut properties,
            "Policies",
            std::mem::take(&mut t.policies).into(),
        );
    }
    if needs_vpc {
        vpc(&mut t, &mut properties);
    }
    if !t.events.is_empty() {
        insert(
            &mut properties,
            "Events",
            Value::Mapping(std::mem::take(&mut t.events)),
        );
    }
    insert(
        &mut properties,
        "Tags",
        map([
            ("wasmfn:function", name.into()),
            ("wasmfn:world", input.world.name().into()),
        ]),
    );
    insert(
        &mut t.resources,
        function_id.clone(),
        map([
            ("Type", "AWS::Serverless::Function".into()),
            ("Properties", Value::Mapping(properties)),
        ]),
    );
    t.output(
        "FunctionArn",
        &format!("ARN of function `{name}`"),
        arn_of(&function_id),
    );
    Ok((t, function_id))
}

fn render(description: &str, t: Template) -> Result<String> {
    let mut doc = Mapping::new();
    insert(&mut doc, "AWSTemplateFormatVersion", "2010-09-09".into());
    insert(&mut doc, "Transform", "AWS::Serverless-2016-10-31".into());
    insert(&mut doc, "Description", description.into());
    for (key, section) in [
        ("Parameters", t.parameters),
        ("Conditions", t.conditions),
        ("Resources", t.resources),
        ("Outputs", t.outputs),
    ] {
        if !section.is_empty() {
            insert(&mut doc, key, Value::Mapping(section));
        }
    }
    let text = serde_norway::to_string(&Value::Mapping(doc))?;
    Ok(quote_dates(&text))
}

/// Quote every value that looks like a date (`2010-09-09`, a policy's `2012-10-17`): YAML 1.1
/// readers (PyYAML, so SAM's own tools) take an unquoted one for a date, not a string.
fn quote_dates(text: &str) -> String {
    let is_date = |v: &str| {
        let b = v.as_bytes();
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    };
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let split = line.rfind(": ").map(|i| i + 2).or_else(|| {
            line.trim_start()
                .starts_with("- ")
                .then(|| line.find("- ").unwrap() + 2)
        });
        match split {
            Some(at) if is_date(&line[at..]) => {
                out.push_str(&line[..at]);
                out.push('\'');
                out.push_str(&line[at..]);
                out.push('\'');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Optional VPC placement for functions reaching Redis or PostgreSQL inside a VPC.
fn vpc(t: &mut Template, properties: &mut Mapping) {
    for (param, what) in [
        (
            "SubnetIds",
            "Subnets reaching the Redis/PostgreSQL servers (empty: no VPC)",
        ),
        (
            "SecurityGroupIds",
            "Security groups allowing the Redis/PostgreSQL ports (empty: no VPC)",
        ),
    ] {
        insert(
            &mut t.parameters,
            param,
            map([
                ("Type", "CommaDelimitedList".into()),
                ("Default", "".into()),
                ("Description", what.into()),
            ]),
        );
    }
    let joined = map([(
        "Fn::Join",
        vec![Value::from(""), reference("SubnetIds")].into(),
    )]);
    insert(
        &mut t.conditions,
        "InVpc",
        map([(
            "Fn::Not",
            vec![map([("Fn::Equals", vec![joined, "".into()].into())])].into(),
        )]),
    );
    insert(
        properties,
        "VpcConfig",
        map([(
            "Fn::If",
            vec![
                "InVpc".into(),
                map([
                    ("SubnetIds", reference("SubnetIds")),
                    ("SecurityGroupIds", reference("SecurityGroupIds")),
                ]),
                reference("AWS::NoValue"),
            ]
            .into(),
        )]),
    );
}
