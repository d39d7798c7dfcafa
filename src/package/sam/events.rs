//! The event sources of a SAM template, one function per world: HTTP API routes, SQS queues,
//! DynamoDB/S3 streams, EventBridge schedules.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use wasmfn_host::blob::BlobBackendConfig;
use wasmfn_host::manifest::{FunctionEntry, Manifest};
use wasmfn_host::queue::QueueConfig;
use wasmfn_host::scheduler::Expression;

use super::{arn_of, insert, logical_id, map, prefixed, reference, sub, Template};
use crate::package::aws_schedule;

/// SQS's largest message (CloudFormation still validates against the original 256 KiB).
const SQS_MAX_MESSAGE_BYTES: usize = 262_144;

/// HTTP API routes: `/a/*` becomes `/a` and `/a/{proxy+}`.
pub(super) fn http_events(t: &mut Template, entry: &FunctionEntry, name: &str) {
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

/// An SQS queue per consumed queue, its dead-letter queue, and the event source mapping. The
/// queues through which rules deliver to the function only with `with_rule_queues` (a whole
/// app's stack, which has the rules).
pub(super) fn queue_events(
    t: &mut Template,
    manifest: &Manifest,
    name: &str,
    timeout_secs: u64,
    with_rule_queues: bool,
) -> Result<()> {
    for q in crate::sections::queues(manifest)
        .iter()
        .filter(|q| q.function.as_deref() == Some(name) && (with_rule_queues || !q.rule_delivery))
    {
        let queue_id = queue_resources(t, q, timeout_secs)?;
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

/// `q`'s SQS queue and its dead-letter queue (once); the queue's logical id.
pub(super) fn queue_resources(
    t: &mut Template,
    q: &QueueConfig,
    timeout_secs: u64,
) -> Result<String> {
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
    // SQS requires the visibility timeout to cover the function's timeout; as locally, an
    // unset one is that timeout plus the margin to settle the batch.
    let margin = wasmfn_host::wasmfn_host_triggers::queue::VISIBILITY_MARGIN.as_secs();
    let visibility = if q.visibility_timeout_set {
        q.visibility_timeout.as_secs().max(timeout_secs + 1)
    } else {
        q.visibility_timeout.as_secs().max(timeout_secs + margin)
    };
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
    Ok(queue_id)
}

/// S3 notifications for S3 blob stores recording into the stream; a DynamoDB stream (its ARN a
/// parameter) for any other source.
pub(super) fn stream_events(t: &mut Template, manifest: &Manifest, name: &str) {
    for s in crate::sections::streams(manifest)
        .iter()
        .filter(|s| s.function == name)
    {
        let buckets: Vec<(&String, &str)> = manifest
            .get::<wasmfn_host::blob::BlobStores>()
            .into_iter()
            .flat_map(|b| b.stores.iter())
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
pub(super) fn schedule_events(t: &mut Template, manifest: &Manifest, name: &str) -> Result<()> {
    for s in crate::sections::schedules(manifest)
        .iter()
        .filter(|s| s.function == name)
    {
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
