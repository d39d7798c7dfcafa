//! The AWS SAM `template.yaml` written beside a Lambda package: the function (memory, timeout,
//! architecture, environment) and, from the manifest, its event sources: an HTTP API with CORS
//! for `http` functions, SQS queues with a dead-letter redrive and `ReportBatchItemFailures`,
//! DynamoDB streams and S3 notifications for `stream` functions, EventBridge schedules.
//!
//! Secrets and connection URLs become `NoEcho` parameters passed as environment variables, so
//! no secret is ever written into the template or the package.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use serde_norway::{Mapping, Value};
use wasmfn_host::blob::BlobBackendConfig;
use wasmfn_host::kv::KvBackendConfig;
use wasmfn_host::manifest::{FunctionEntry, Manifest};
use wasmfn_host::scheduler::Expression;
use wasmfn_host::secrets::SecretSource;
use wasmfn_host::sql::SqlBackendConfig;
use wasmfn_host::World;

use super::aws_schedule;

/// Environment variable prefix for config values (read by the bootstrap).
pub const CONFIG_PREFIX: &str = "WASMFN_CONFIG_";
/// Environment variable prefix for secrets that were files locally (files are never packaged).
pub const SECRET_PREFIX: &str = "WASMFN_SECRET_";
/// Memory Lambda gives the runtime itself (engine, tokio, pools) above the guest's limit.
const RUNTIME_MEMORY_MB: u64 = 64;
/// SQS's largest message (CloudFormation still validates against the original 256 KiB).
const SQS_MAX_MESSAGE_BYTES: usize = 262_144;

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
    for (key, value) in &entry.settings.config {
        insert(
            &mut t.environment,
            wasmfn_host::config_env::variable_for(CONFIG_PREFIX, key),
            value.as_str().into(),
        );
    }
    for (key, source) in &entry.secrets {
        match source {
            SecretSource::File(_) => t.secret_variable(
                &wasmfn_host::config_env::variable_for(SECRET_PREFIX, key),
                &format!("secret `{key}`"),
            ),
            other => t.secret_source(other, &format!("secret `{key}`")),
        }
    }

    // Stores: connection settings, and the VPC for servers that live in one.
    let grants = &entry.settings.grants.stores;
    let mut needs_vpc = false;
    for store in &grants.kv {
        if let Some(KvBackendConfig::Redis { url, .. }) = manifest.kv.get(store).map(|d| &d.config)
        {
            t.secret_source(url, &format!("Redis URL of kv store `{store}`"));
            needs_vpc = true;
        }
    }
    for store in &grants.sql {
        if let Some(SqlBackendConfig::Postgres { url, .. }) =
            manifest.sql.get(store).map(|d| &d.config)
        {
            t.secret_source(url, &format!("PostgreSQL URL of sql store `{store}`"));
            needs_vpc = true;
        }
    }
    for store in &grants.blob {
        if let Some(BlobBackendConfig::S3(s3)) = manifest.blob.get(store).map(|d| &d.config) {
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

    match input.world {
        World::Http => http_events(&mut t, entry, name),
        World::Queue => queue_events(&mut t, manifest, name, limits.timeout.as_secs())?,
        World::Stream => stream_events(&mut t, manifest, name),
        World::Schedule => schedule_events(&mut t, manifest, name)?,
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
    t.output("FunctionArn", "The function's ARN", arn_of(&function_id));
    render(input, t)
}

fn render(input: &TemplateInput, t: Template) -> Result<String> {
    let mut doc = Mapping::new();
    insert(&mut doc, "AWSTemplateFormatVersion", "2010-09-09".into());
    insert(&mut doc, "Transform", "AWS::Serverless-2016-10-31".into());
    insert(
        &mut doc,
        "Description",
        format!(
            "wasmfn function `{}` on AWS Lambda (generated by `wasmfn package lambda`; edit the manifest, not this file)",
            input.function
        )
        .into(),
    );
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
    // YAML 1.1 readers (PyYAML, so SAM's own tools) take an unquoted 2010-09-09 for a date.
    Ok(text.replacen(
        "AWSTemplateFormatVersion: 2010-09-09",
        "AWSTemplateFormatVersion: '2010-09-09'",
        1,
    ))
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

/// HTTP API routes: `/a/*` becomes `/a` and `/a/{proxy+}`.
fn http_events(t: &mut Template, entry: &FunctionEntry, name: &str) {
    let routes = entry
        .routes
        .clone()
        .unwrap_or_else(|| vec![format!("/{name}"), format!("/{name}/*")]);
    let mut paths = BTreeSet::new();
    for route in routes {
        match route.strip_suffix("/*") {
            Some(prefix) => {
                paths.insert(if prefix.is_empty() {
                    "/".to_string()
                } else {
                    prefix.to_string()
                });
                paths.insert(format!("{prefix}/{{proxy+}}"));
            }
            None => {
                paths.insert(route);
            }
        }
    }
    insert(
        &mut t.resources,
        "HttpApi",
        map([
            ("Type", "AWS::Serverless::HttpApi".into()),
            (
                "Properties",
                map([(
                    "CorsConfiguration",
                    map([
                        // Browsers from any origin; narrow it here for credentials.
                        ("AllowOrigins", vec!["*"].into()),
                        ("AllowMethods", vec!["*"].into()),
                        ("AllowHeaders", vec!["*"].into()),
                        ("MaxAge", 600.into()),
                    ]),
                )]),
            ),
        ]),
    );
    for (i, path) in paths.iter().enumerate() {
        insert(
            &mut t.events,
            format!("Route{}", i + 1),
            map([
                ("Type", "HttpApi".into()),
                (
                    "Properties",
                    map([
                        ("ApiId", reference("HttpApi")),
                        ("Path", path.as_str().into()),
                        ("Method", "ANY".into()),
                    ]),
                ),
            ]),
        );
    }
    t.output(
        "ApiUrl",
        "Base URL of the HTTP API",
        sub("https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"),
    );
}

/// An SQS queue per consumed queue, its dead-letter queue, and the event source mapping.
fn queue_events(
    t: &mut Template,
    manifest: &Manifest,
    name: &str,
    timeout_secs: u64,
) -> Result<()> {
    for q in manifest
        .queues
        .iter()
        .filter(|q| q.function.as_deref() == Some(name))
    {
        let queue_id = format!("{}Queue", logical_id(&q.name));
        let dlq_id = format!("{}Queue", logical_id(&q.dead_letter_queue));
        if !t.resources.contains_key(dlq_id.as_str()) {
            insert(
                &mut t.resources,
                dlq_id.clone(),
                map([
                    ("Type", "AWS::SQS::Queue".into()),
                    (
                        "Properties",
                        map([
                            ("QueueName", prefixed(&q.dead_letter_queue)),
                            // The longest SQS allows (14 days), to leave time to look.
                            ("MessageRetentionPeriod", 1_209_600.into()),
                        ]),
                    ),
                ]),
            );
        }
        // SQS requires the visibility timeout to cover the function's timeout.
        let visibility = q.visibility_timeout.as_secs().max(timeout_secs + 1);
        insert(
            &mut t.resources,
            queue_id.clone(),
            map([
                ("Type", "AWS::SQS::Queue".into()),
                (
                    "Properties",
                    map([
                        ("QueueName", prefixed(&q.name)),
                        ("VisibilityTimeout", visibility.into()),
                        (
                            "MaximumMessageSize",
                            q.max_message_bytes
                                .clamp(1024, SQS_MAX_MESSAGE_BYTES)
                                .into(),
                        ),
                        (
                            "RedrivePolicy",
                            map([
                                ("deadLetterTargetArn", arn_of(&dlq_id)),
                                ("maxReceiveCount", q.max_receive_count.into()),
                            ]),
                        ),
                    ]),
                ),
            ]),
        );
        if q.batch_size > 10_000 {
            bail!(
                "queue `{}` has batch-size {}; SQS allows at most 10000",
                q.name,
                q.batch_size
            );
        }
        // SQS needs a batching window for batches above 10.
        let mut window = q.batch_window.as_secs_f64().ceil() as u64;
        if q.batch_size > 10 {
            window = window.max(1);
        }
        insert(
            &mut t.events,
            logical_id(&q.name),
            map([
                ("Type", "SQS".into()),
                (
                    "Properties",
                    map([
                        ("Queue", arn_of(&queue_id)),
                        ("BatchSize", q.batch_size.into()),
                        ("MaximumBatchingWindowInSeconds", window.min(300).into()),
                        (
                            "FunctionResponseTypes",
                            vec!["ReportBatchItemFailures"].into(),
                        ),
                        // Lambda's floor for per-source concurrency is 2.
                        (
                            "ScalingConfig",
                            map([("MaximumConcurrency", q.concurrency.max(2).into())]),
                        ),
                    ]),
                ),
            ]),
        );
        t.output(
            &format!("{}Url", logical_id(&q.name)),
            &format!("URL of queue `{}`", q.name),
            reference(&queue_id),
        );
    }
    Ok(())
}

/// S3 notifications for S3 blob stores recording into the stream; a DynamoDB stream (its ARN a
/// parameter) for any other source.
fn stream_events(t: &mut Template, manifest: &Manifest, name: &str) {
    for s in manifest.streams.iter().filter(|s| s.function == name) {
        let buckets: Vec<(&String, &str)> = manifest
            .blob
            .iter()
            .filter(|(_, d)| d.stream.as_deref() == Some(s.name.as_str()))
            .filter_map(|(store, d)| match &d.config {
                BlobBackendConfig::S3(c) => Some((store, c.bucket.as_str())),
                _ => None,
            })
            .collect();
        for (store, bucket) in &buckets {
            let bucket_id = format!("{}Bucket", logical_id(store));
            insert(
                &mut t.resources,
                bucket_id.clone(),
                map([
                    ("Type", "AWS::S3::Bucket".into()),
                    ("Properties", map([("BucketName", (*bucket).into())])),
                ]),
            );
            insert(
                &mut t.events,
                format!("{}Objects", logical_id(store)),
                map([
                    ("Type", "S3".into()),
                    (
                        "Properties",
                        map([
                            ("Bucket", reference(&bucket_id)),
                            (
                                "Events",
                                vec!["s3:ObjectCreated:*", "s3:ObjectRemoved:*"].into(),
                            ),
                        ]),
                    ),
                ]),
            );
        }
        if !buckets.is_empty() {
            continue;
        }
        let param = format!("{}StreamArn", logical_id(&s.name));
        insert(
            &mut t.parameters,
            param.clone(),
            map([
                ("Type", "String".into()),
                (
                    "AllowedPattern",
                    "arn:aws[a-z-]*:dynamodb:.+/stream/.+".into(),
                ),
                (
                    "Description",
                    format!(
                        "DynamoDB stream feeding wasmfn stream `{}` (the table's LatestStreamArn)",
                        s.name
                    )
                    .into(),
                ),
            ]),
        );
        insert(
            &mut t.events,
            logical_id(&s.name),
            map([
                ("Type", "DynamoDB".into()),
                (
                    "Properties",
                    map([
                        ("Stream", reference(&param)),
                        ("StartingPosition", "TRIM_HORIZON".into()),
                        ("BatchSize", s.batch_size.min(10_000).into()),
                        ("MaximumRetryAttempts", s.max_retries.into()),
                        (
                            "BisectBatchOnFunctionError",
                            (s.on_failure == wasmfn_host::stream_feed::OnFailure::Bisect).into(),
                        ),
                        (
                            "FunctionResponseTypes",
                            vec!["ReportBatchItemFailures"].into(),
                        ),
                    ]),
                ),
            ]),
        );
    }
}

/// EventBridge rules (UTC cron and rates), or EventBridge Scheduler for cron in a time zone,
/// its input shaped like a rule's event so the function sees the same thing.
fn schedule_events(t: &mut Template, manifest: &Manifest, name: &str) -> Result<()> {
    for s in manifest.schedules.iter().filter(|s| s.function == name) {
        let fail = |e: String| anyhow::anyhow!("schedule `{}`: {e}", s.name);
        let (expression, timezone) = match &s.expression {
            Expression::Rate(every) => (aws_schedule::rate(*every).map_err(fail)?, None),
            Expression::Cron(_, tz) => (
                aws_schedule::cron(&s.expression_text).map_err(fail)?,
                Some(tz.to_string()).filter(|tz| tz != "UTC"),
            ),
        };
        let event = match timezone {
            None => map([
                ("Type", "Schedule".into()),
                (
                    "Properties",
                    map([
                        ("Schedule", expression.into()),
                        ("Name", prefixed(&s.name)),
                        (
                            "Description",
                            format!("wasmfn schedule `{}`", s.name).into(),
                        ),
                    ]),
                ),
            ]),
            Some(tz) => map([
                ("Type", "ScheduleV2".into()),
                (
                    "Properties",
                    map([
                        ("ScheduleExpression", expression.into()),
                        ("ScheduleExpressionTimezone", tz.into()),
                        ("Name", prefixed(&s.name)),
                        (
                            "Input",
                            "{\"detail-type\":\"Scheduled Event\",\"source\":\"aws.scheduler\",\
                             \"time\":\"<aws.scheduler.scheduled-time>\",\
                             \"resources\":[\"<aws.scheduler.schedule-arn>\"],\"detail\":{}}"
                                .into(),
                        ),
                    ]),
                ),
            ]),
        };
        insert(&mut t.events, logical_id(&s.name), event);
    }
    Ok(())
}
