//! A property campaign over every parser of outside input: the manifest, workflow definitions
//! and their paths, event patterns, schedule expressions, queue attributes, durations and
//! sizes, Lambda events, and the admin API's requests. Inputs are generated (and mutated from
//! valid examples) so that they reach deep into each parser; the property is that each one
//! answers, with a value or an error, and never panics. The case counts are in `CASES` and
//! quoted in the README.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

/// Cases per parser (`PROPTEST_CASES` overrides it).
const CASES: u32 = 4000;

fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        // Failures are reported with their shrunk input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

/// Words the parsers look for, so that generated input gets past their first checks.
const WORDS: &[&str] = &[
    // manifest
    "functions",
    "component",
    "world",
    "routes",
    "memory",
    "timeout",
    "concurrency",
    "instances",
    "reuse",
    "fresh",
    "max-uses",
    "kv",
    "sql",
    "blob",
    "queues",
    "topics",
    "rules",
    "workflows",
    "schedules",
    "streams",
    "env",
    "defaults",
    "backend",
    "url",
    "url-env",
    "postgres",
    "redis",
    "s3",
    "sqlite",
    "nats",
    "kind",
    "function",
    "batch-size",
    "visibility-timeout",
    "grants",
    "allowed-outbound-hosts",
    "allowed-outbound-addresses",
    "max-request-body",
    "secrets",
    "config",
    "file",
    "cron",
    "rate",
    "overlap",
    "timezone",
    // States Language
    "StartAt",
    "States",
    "Type",
    "Task",
    "Choice",
    "Parallel",
    "Map",
    "Wait",
    "Pass",
    "Succeed",
    "Fail",
    "Next",
    "End",
    "Resource",
    "Choices",
    "Default",
    "Branches",
    "Iterator",
    "ItemProcessor",
    "ItemsPath",
    "Retry",
    "Catch",
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "Variable",
    "StringEquals",
    "NumericEquals",
    "NumericGreaterThan",
    "BooleanEquals",
    "IsPresent",
    "And",
    "Or",
    "Not",
    "Seconds",
    "Timestamp",
    "SecondsPath",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "TimeoutSeconds",
    "States.ALL",
    "States.TaskFailed",
    "$",
    "$.a",
    "$.a.b",
    "$[0]",
    "$..x",
    "$.a[*]",
    // event patterns and events
    "source",
    "detail-type",
    "detail",
    "prefix",
    "suffix",
    "anything-but",
    "numeric",
    "exists",
    "equals-ignore-case",
    "wildcard",
    "cidr",
    ">",
    "<=",
    "=",
    // Lambda events
    "Records",
    "eventSource",
    "aws:sqs",
    "aws:sns",
    "aws:dynamodb",
    "aws:s3",
    "aws.events",
    "requestContext",
    "http",
    "method",
    "httpMethod",
    "rawPath",
    "path",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "body",
    "isBase64Encoded",
    "version",
    "2.0",
    "elb",
    "messageId",
    "receiptHandle",
    "messageAttributes",
    "Sns",
    "Message",
    "MessageAttributes",
    "dynamodb",
    "NewImage",
    "OldImage",
    "Keys",
    "S",
    "N",
    "eventName",
    "INSERT",
    "MODIFY",
    "REMOVE",
    "s3",
    "object",
    "key",
    "bucket",
    "name",
    "size",
    "time",
    "resources",
    // admin API bodies
    "messages",
    "attributes",
    "delay",
    "events",
    "input",
    "to",
    "wait",
    "limit",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(WORDS).prop_map(str::to_string)
}

/// A string: mostly a known word, sometimes arbitrary (control characters, huge numbers).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => word(),
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(&["NaN", "inf", "-1", "1e400", "18446744073709551616",
            "999999999999999999999h", "0.5s", "1 minute", "*", "*/0", "1-0"][..])
            .prop_map(str::to_string),
    ]
}

/// A JSON value whose object keys are mostly known words.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `base` with a few random edits (a replaced, inserted or deleted span), so that mostly
/// valid documents reach the later stages of a parser.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), 0usize..12, text());
    prop::collection::vec(edit, 1..5).prop_map(move |edits| {
        let mut s = base.to_string();
        for (at, remove, insert) in edits {
            let mut start = at.index(s.len() + 1);
            while !s.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + remove).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.replace_range(start..end, &insert);
        }
        s
    })
}

#[test]
fn manifests() {
    const FULL: &str = include_str!("data/full-manifest.toml");
    const GUESTS: &str = include_str!("../guests/wasmfn.toml");
    let path = Path::new("wasmfn.toml");
    let strategy = prop_oneof![
        mutated(FULL),
        mutated(GUESTS),
        prop::collection::vec((word(), word(), text()), 0..8).prop_map(|entries| {
            entries
                .into_iter()
                .map(|(table, key, value)| format!("[{table}.x]\n{key} = {value:?}\n"))
                .collect::<String>()
        }),
        any::<String>(),
    ];
    runner(CASES)
        .run(&strategy, |text| {
            let _ = wasmfn_host::manifest::Manifest::parse(path, &text);
            let _ = wasmfn_host::manifest::Manifest::parse_env(path, &text, Some("production"));
            Ok(())
        })
        .unwrap();
}

#[test]
fn workflow_definitions_and_paths() {
    use wasmfn_host::wasmfn_host_orchestration::workflow::{paths, Definition};
    const SAGA: &str = include_str!("../guests/order-saga.asl.json");
    let strategy = prop_oneof![
        mutated(SAGA),
        json().prop_map(|v| v.to_string()),
        json().prop_map(|v| serde_json::json!({"StartAt": "A", "States": {"A": v}}).to_string()),
    ];
    runner(CASES)
        .run(&strategy, |text| {
            let _ = Definition::parse_json(&text);
            let _ = Definition::parse_toml(&text);
            Ok(())
        })
        .unwrap();
    runner(CASES)
        .run(&(text(), json(), json()), |(path, input, result)| {
            let _ = paths::check(&path);
            let _ = paths::get(&input, &path);
            let _ = paths::place(&input, Some(&path), result.clone());
            if let Value::Object(test) = &result {
                let _ = paths::check_rule(Some(&path), test);
                let _ = paths::evaluate(Some(&path), test, &input);
                let _ = paths::evaluate(None, test, &input);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn event_patterns() {
    use wasmfn_host::wasmfn_host_orchestration::eventbus::Pattern;
    runner(CASES)
        .run(&(json(), json()), |(pattern, event)| {
            if let Ok(p) = Pattern::compile(&pattern) {
                if let Value::Object(event) = &event {
                    let _ = p.matches(event);
                }
                // A pattern matched against itself reaches every operator with a value.
                if let Value::Object(same) = &pattern {
                    let _ = p.matches(same);
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn schedule_expressions() {
    use wasmfn_host::wasmfn_host_triggers::schedule::Expression;
    let field = prop_oneof![text(), "[0-9*/,-]{1,6}", "[A-Z?LW#0-9]{1,4}"];
    let strategy = prop_oneof![
        prop::collection::vec(field.clone(), 1..8).prop_map(|f| format!("cron({})", f.join(" "))),
        prop::collection::vec(field, 1..8).prop_map(|f| f.join(" ")),
        (text(), text()).prop_map(|(n, unit)| format!("rate({n} {unit})")),
        text(),
    ];
    let zone = prop_oneof![
        Just(None),
        text().prop_map(Some),
        Just(Some("Europe/Paris".into()))
    ];
    let now = chrono::Utc::now();
    runner(CASES)
        .run(&(strategy, zone), |(expression, zone)| {
            if let Ok(e) = Expression::parse(&expression, zone.as_deref()) {
                let _ = e.next_after(now);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn queue_messages_durations_and_sizes() {
    use wasmfn_host::wasmfn_host_capabilities::queues::NewMessage;
    let attributes = prop::collection::vec((text(), text()), 0..70);
    runner(CASES)
        .run(
            &(attributes, any::<u64>(), text()),
            |(attributes, delay_ms, duration)| {
                let m = NewMessage {
                    body: Vec::new(),
                    attributes,
                    delay: std::time::Duration::from_millis(delay_ms),
                };
                let _ = m.validate();
                let _ = wasmfn_host::parse_duration(&duration);
                let _ = wasmfn_host::parse_size(&duration);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn lambda_events() {
    use wasmfn_lambda::{dispatch, http_events, record_events as records};
    let records_event = prop::collection::vec(json(), 0..4).prop_flat_map(|records| {
        (
            Just(records),
            prop::sample::select(&["aws:sqs", "aws:sns", "aws:dynamodb", "aws:s3"][..]),
        )
            .prop_map(|(records, source)| {
                let records: Vec<Value> = records
                    .into_iter()
                    .map(|mut r| {
                        if let Value::Object(m) = &mut r {
                            m.insert("eventSource".into(), source.into());
                            m.insert("EventSource".into(), source.into());
                        }
                        r
                    })
                    .collect();
                serde_json::json!({ "Records": records })
            })
    });
    let http_event =
        (json(), prop::sample::select(&["2.0", "1.0"][..])).prop_map(|(v, version)| {
            let mut event = match v {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            event.insert("version".into(), version.into());
            event
                .entry("requestContext")
                .or_insert_with(|| serde_json::json!({"http": {"method": "GET"}}));
            Value::Object(event)
        });
    let strategy = prop_oneof![records_event, http_event, json()];
    runner(CASES)
        .run(&strategy, |event| {
            if let Ok(dispatch::Source::Http(shape)) = dispatch::detect(&event) {
                let _ = http_events::parse(shape, event.clone());
            }
            let _ = records::sqs_batch(event.clone());
            let _ = records::sns_batch(event.clone());
            let _ = records::dynamodb_events(event.clone());
            let _ = records::s3_events(event.clone());
            let _ = records::scheduled_event(event);
            Ok(())
        })
        .unwrap();
}

/// Requests to the admin API of the repository's own app (queues, topics, rules, a
/// workflow): each is answered, none with a server error, and the app keeps serving.
#[test]
fn admin_api_requests() {
    use http_body_util::BodyExt as _;
    let state = tempfile::tempdir().unwrap();
    let host = wasmfn_host::Host::builder()
        .state_dir(state.path())
        .build()
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = host.load_dir(root.join("guests")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let segment = prop_oneof![
        prop::sample::select(
            &[
                "queues",
                "email-queue",
                "email-queue-dlq",
                "analytics-queue",
                "messages",
                "batch",
                "redrive",
                "events",
                "rules",
                "topics",
                "order-events",
                "publish",
                "workflows",
                "order-saga",
                "executions",
                "schedules",
                "streams",
                "records",
                "trigger",
                "test",
                "",
                "..",
                "%00",
            ][..]
        )
        .prop_map(str::to_string),
        text().prop_map(|t| t.replace(['/', '?', '#', ' '], "")),
    ];
    let query = prop::collection::vec((word(), text()), 0..3).prop_map(|q| {
        q.into_iter()
            .map(|(k, v)| format!("{k}={}", v.replace(['&', '#', ' '], "")))
            .collect::<Vec<_>>()
            .join("&")
    });
    let body = prop_oneof![
        json().prop_map(|v| v.to_string().into_bytes()),
        any::<Vec<u8>>(),
    ];
    let method = prop::sample::select(&["GET", "POST", "PUT", "DELETE"][..]);
    let strategy = (method, prop::collection::vec(segment, 1..4), query, body);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    runner(CASES / 2)
        .run(&strategy, |(method, segments, query, body)| {
            let uri = format!("http://admin/_wasmfn/{}?{query}", segments.join("/"));
            let Ok(request) = http::Request::builder()
                .method(method)
                .uri(&uri)
                .header("content-type", "application/json")
                .body(wasmfn_host::full_body(body))
            else {
                return Ok(()); // not a request hyper would have parsed either
            };
            let response = runtime.block_on(app.handle_admin(request));
            let status = response.status().as_u16();
            let text = runtime
                .block_on(response.into_body().collect())
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            prop_assert!(status < 500, "{method} {uri}: {status} {text}");
            Ok(())
        })
        .unwrap();
    println!(
        "admin API statuses over the campaign: {:?}",
        statuses.lock().unwrap()
    );
    // Still serving afterwards.
    let request = http::Request::get("http://admin/_wasmfn/queues")
        .body(wasmfn_host::full_body(""))
        .unwrap();
    assert_eq!(runtime.block_on(app.handle_admin(request)).status(), 200);
}
