//! The Lambda adapter end to end: `wasmfn package lambda` builds the package, its `bootstrap`
//! runs against cargo-lambda's Runtime API emulator (a real Lambda Runtime API implementation,
//! started on loopback), and events of every supported source are invoked through the
//! emulator's Invoke API.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::lambda::{run, run_env};
use common::{wait_until, Fixture};
use serde_json::{json, Value};

fn apigw_v1(path: &str, query: Value, body: Option<&str>, base64: bool) -> Value {
    json!({
        "resource": "/{proxy+}", "path": path, "httpMethod": "POST",
        "headers": {"content-type": "text/plain", "x-demo": "one"},
        "multiValueHeaders": {"content-type": ["text/plain"], "x-demo": ["one", "two"]},
        "queryStringParameters": query.clone(),
        "multiValueQueryStringParameters": query.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), json!([v, format!("{}2", v.as_str().unwrap())]))).collect::<serde_json::Map<_, _>>()),
        "pathParameters": {"proxy": path.trim_start_matches('/')}, "stageVariables": null,
        "requestContext": {"accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "r1",
            "identity": {"sourceIp": "10.0.0.1"}, "resourcePath": "/{proxy+}", "httpMethod": "POST", "apiId": "api1"},
        "body": body, "isBase64Encoded": base64
    })
}

fn apigw_v2(raw_path: &str, raw_query: &str, cookies: Value) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query,
        "cookies": cookies, "headers": {"x-demo": "v2", "content-type": "application/json"},
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "x.lambda-url.us-east-1.on.aws",
            "domainPrefix": "x", "http": {"method": "PUT", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1", "userAgent": "test"},
            "requestId": "r2", "routeKey": "$default", "stage": "$default", "time": "30/Nov/2026:10:00:00 +0000", "timeEpoch": 1796000000000u64},
        "body": "eyJhIjoxfQ==", "isBase64Encoded": true
    })
}

#[test]
fn http_events_of_every_shape_reach_the_http_world() {
    let (_f, emu, _boot) = run("echo", "echo", "");
    // REST API (v1) with multi-value query and headers, base64 body in.
    let r = emu
        .invoke(&apigw_v1(
            "/echo/items",
            json!({"q": "a b"}),
            Some("aGVsbG8="),
            true,
        ))
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");
    assert_eq!(r["body"], "hello");
    assert_eq!(
        r["multiValueHeaders"]["x-path"][0], "/echo/items?q=a%20b&q=a%20b2",
        "{r}"
    );
    assert_eq!(
        r["multiValueHeaders"]["x-demo"],
        json!(["one", "two"]),
        "{r}"
    );
    assert_eq!(r["multiValueHeaders"]["x-method"][0], "POST");
    // HTTP API / Function URL (v2): cookies back into the request, base64 body, status.
    let r = emu
        .invoke(&apigw_v2(
            "/echo/v2",
            "status=201&x=1",
            json!(["a=1", "b=2"]),
        ))
        .unwrap();
    assert_eq!(r["statusCode"], 201, "{r}");
    assert_eq!(r["body"], "{\"a\":1}");
    assert_eq!(r["headers"]["x-path"], "/echo/v2?status=201&x=1");
    assert_eq!(r["headers"]["x-method"], "PUT");
    // ALB.
    let alb = json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/abc"}},
        "httpMethod": "GET", "path": "/echo/alb", "queryStringParameters": {"k": "v"},
        "headers": {"x-demo": "alb"}, "body": "", "isBase64Encoded": false
    });
    let r = emu.invoke(&alb).unwrap();
    assert_eq!(
        (r["statusCode"].as_i64(), r["statusDescription"].as_str()),
        (Some(200), Some("200 OK")),
        "{r}"
    );
    assert_eq!(r["headers"]["x-path"], "/echo/alb?k=v");
    assert_eq!(r["headers"]["x-demo"], "alb");
    // Binary responses go back base64-encoded.
    let mut bin = apigw_v2("/echo/bin", "", json!([]));
    bin["headers"]["content-type"] = json!("application/octet-stream");
    bin["body"] = json!("AAEC/w==");
    let r = emu.invoke(&bin).unwrap();
    assert_eq!(
        (r["isBase64Encoded"].as_bool(), r["body"].as_str()),
        (Some(true), Some("AAEC/w==")),
        "{r}"
    );
}

fn sqs(bodies: &[(&str, &str)]) -> Value {
    json!({"Records": bodies.iter().map(|(id, body)| json!({
        "messageId": id, "receiptHandle": "rh", "body": body,
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1796000000000", "SenderId": "s", "ApproximateFirstReceiveTimestamp": "1796000000001"},
        "messageAttributes": {"kind": {"stringValue": "order", "dataType": "String", "stringListValues": [], "binaryListValues": []}},
        "md5OfBody": "x", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders", "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}

#[test]
fn queue_events_report_partial_failures_and_errors_keep_the_runtime_serving() {
    let (_f, emu, boot) = run("queue-worker", "queue-worker", "");
    let r = emu
        .invoke(&sqs(&[("m1", "ok"), ("m2", "please fail"), ("m3", "fine")]))
        .unwrap();
    assert_eq!(r, json!({"batchItemFailures": [{"itemIdentifier": "m2"}]}));
    let r = emu.invoke(&sqs(&[("m4", "ok")])).unwrap();
    assert_eq!(r, json!({"batchItemFailures": []}));
    // SNS: a failing message is an invocation error (SNS retries the delivery).
    let sns = |message: &str| {
        json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:orders:sub", "Sns": {
        "Type": "Notification", "MessageId": "n1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Subject": "new order", "Message": message, "Timestamp": "2026-11-30T10:00:00.000Z",
        "SignatureVersion": "1", "Signature": "x", "SigningCertUrl": "https://x", "UnsubscribeUrl": "https://x",
        "MessageAttributes": {}}}]})
    };
    assert_eq!(emu.invoke(&sns("ok")).unwrap(), Value::Null);
    let (kind, message) = emu.invoke(&sns("fail me")).unwrap_err();
    assert_eq!(kind, "wasmfn.MessagesFailed", "{message}");
    // An event the function's world cannot take, and an unknown event, are clear errors...
    let (kind, message) = emu.invoke(&json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-11-30T10:00:00Z", "resources": [], "detail": {}})).unwrap_err();
    assert_eq!(kind, "wasmfn.WrongWorld");
    assert!(message.contains("implements world `queue`, but EventBridge scheduled event events need a `schedule` function"), "{message}");
    let (kind, message) = emu.invoke(&json!({"hello": "world"})).unwrap_err();
    assert_eq!(kind, "wasmfn.UnsupportedEvent");
    assert!(message.contains("[\"hello\"]"), "{message}");
    let (kind, _) = emu
        .invoke(&json!({"Records": [{"eventSource": "aws:kinesis"}]}))
        .unwrap_err();
    assert_eq!(kind, "wasmfn.UnsupportedEvent");
    let (kind, message) = emu
        .invoke(&json!({"Records": [{"eventSource": "aws:sqs", "messageId": 5}]}))
        .unwrap_err();
    assert_eq!(kind, "wasmfn.MalformedEvent", "{message}");
    // ...and the runtime keeps serving.
    assert_eq!(
        emu.invoke(&sqs(&[("m5", "ok")])).unwrap(),
        json!({"batchItemFailures": []})
    );
    assert!(boot.log().contains("wasmfn function ready"));
}

#[test]
fn stream_and_schedule_events_reach_their_worlds() {
    let (_f, emu, boot) = run("stream-audit", "stream-audit", "");
    let record = |seq: &str, id: &str, name: &str| {
        json!({
            "eventID": format!("e{seq}"), "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2026-11-30T00:00:00.000",
            "dynamodb": {"ApproximateCreationDateTime": 1796000000, "Keys": {"id": {"S": id}},
                "NewImage": {"id": {"S": id}, "total": {"N": "42.5"}, "tags": {"SS": ["a"]}, "meta": {"M": {"ok": {"BOOL": true}}}},
                "OldImage": {"id": {"S": id}, "total": {"N": "40"}},
                "SequenceNumber": seq, "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        })
    };
    let ok = json!({"Records": [record("100", "o1", "INSERT"), record("101", "o1", "MODIFY"), record("102", "o1", "REMOVE")]});
    assert_eq!(emu.invoke(&ok).unwrap(), json!({"batchItemFailures": []}));
    // The guest fails from the record keyed `poison`: reported by its sequence number.
    let poisoned = json!({"Records": [record("200", "o2", "INSERT"), record("201", "poison", "INSERT"), record("202", "o3", "INSERT")]});
    assert_eq!(
        emu.invoke(&poisoned).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "201"}]})
    );
    let s3 = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-30T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "p"}, "requestParameters": {"sourceIPAddress": "10.0.0.1"}, "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "c", "bucket": {"name": "uploads", "ownerIdentity": {"principalId": "p"}, "arn": "arn:aws:s3:::uploads"},
            "object": {"key": "photos/my+summer%282026%29.jpg", "size": 1024, "eTag": "abc", "sequencer": "0A1B"}}}]});
    assert_eq!(emu.invoke(&s3).unwrap(), Value::Null);
    wait_until("the audit lines", Duration::from_secs(5), || {
        boot.log().contains("photos/my summer(2026).jpg")
    });
    let log = boot.log();
    assert!(log.contains("Orders") && log.contains("o1"), "{log}");
}

#[test]
fn scheduled_events_and_traps() {
    let (_f, emu, _boot) = run("cron-job", "nightly", "");
    let event = |rule: &str| {
        json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-30T03:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")], "detail": {}})
    };
    assert_eq!(emu.invoke(&event("nightly")).unwrap(), Value::Null);
    let (kind, message) = emu.invoke(&event("failing")).unwrap_err();
    assert_eq!(kind, "wasmfn.RunFailed", "{message}");

    let (_f, emu, _boot) = run("trap", "trap", "");
    let (kind, message) = emu.invoke(&apigw_v2("/trap", "", json!([]))).unwrap_err();
    assert_eq!(kind, "wasmfn.Trap", "{message}");
    assert!(message.contains("trap"), "{message}");
    let (kind, _) = emu.invoke(&apigw_v2("/trap", "", json!([]))).unwrap_err();
    assert_eq!(
        kind, "wasmfn.Trap",
        "the runtime serves the next invocation after a trap"
    );

    let (_f, emu, _boot) = run(
        "spin-forever",
        "spin",
        "[functions.spin]\ntimeout = \"1s\"\n",
    );
    let started = std::time::Instant::now();
    let (kind, _) = emu.invoke(&apigw_v2("/spin", "", json!([]))).unwrap_err();
    assert_eq!(kind, "wasmfn.Timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Run `scripts/validate-sam-template` (SAM expansion with validation, then cfn-lint).
fn validate_template(template: &Path) -> (bool, String) {
    let out =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/validate-sam-template"))
            .arg(template)
            .output()
            .expect("python3 with aws-sam-translator and cfn-lint (scripts/test installs them)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn sam_templates_for_every_event_source_expand_and_lint_clean() {
    let f = Fixture::with_guests(&[]);
    for (guest, name) in [
        ("hello", "shop-api"),
        ("queue-worker", "orders-worker"),
        ("stream-audit", "audit"),
        ("cron-job", "nightly"),
    ] {
        f.copy_guest(guest, name);
    }
    f.write(
        "wasmfn.toml",
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lambda-app.toml"),
        )
        .unwrap(),
    );
    f.write("token.txt", "local-dev-token-7f3a\n");
    let mut templates = std::collections::BTreeMap::new();
    for name in ["shop-api", "orders-worker", "audit", "nightly"] {
        let out = f.dir.path().join("out").join(name);
        let status = f.package("lambda", name, &out, &[]).status;
        assert!(status.success(), "packaging {name}");
        let (ok, report) = validate_template(&out.join("template.yaml"));
        assert!(ok, "{name}: {report}");
        let text = std::fs::read_to_string(out.join("template.yaml")).unwrap();
        // Secret values never reach the template or the package's manifest.
        let packaged = std::fs::read_to_string(out.join("package/wasmfn.toml")).unwrap();
        assert!(
            !text.contains("7f3a") && !packaged.contains("7f3a") && !packaged.contains("token.txt")
        );
        let yaml: Value = serde_norway::from_str(&text).unwrap();
        templates.insert(name, yaml);
    }
    let function = |name: &str, id: &str| templates[name]["Resources"][id]["Properties"].clone();

    // HTTP: routes with `/*` become the prefix and `{proxy+}`; CORS on the API; secrets and
    // connection URLs are NoEcho parameters; config values plain variables.
    let api = function("shop-api", "ShopApiFunction");
    let mut paths: Vec<&str> = api["Events"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["Properties"]["Path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/api", "/api/{proxy+}", "/health"]);
    assert_eq!(api["Runtime"], "provided.al2023");
    assert_eq!(api["Handler"], "shop-api");
    assert_eq!(
        (api["MemorySize"].as_u64(), api["Timeout"].as_u64()),
        (Some(256 + 64), Some(21))
    );
    let vars = &api["Environment"]["Variables"];
    assert_eq!(vars["WASMFN_CONFIG_API_URL"], "https://example.com");
    assert_eq!(
        vars["WASMFN_SECRET_API_TOKEN"],
        json!({"Ref": "WasmfnSecretApiToken"})
    );
    for param in [
        "WasmfnSecretApiToken",
        "StripeKey",
        "DatabaseUrl",
        "RedisUrl",
    ] {
        assert_eq!(
            templates["shop-api"]["Parameters"][param]["NoEcho"], true,
            "{param}"
        );
    }
    assert_eq!(
        api["Policies"][0]["S3CrudPolicy"]["BucketName"],
        "shop-uploads"
    );
    assert!(
        api["VpcConfig"]["Fn::If"].is_array(),
        "Redis/PostgreSQL put the function in a VPC when subnets are given"
    );
    assert_eq!(
        templates["shop-api"]["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
            ["AllowOrigins"],
        json!(["*"])
    );

    // Queues: SQS with a redrive to the dead-letter queue and partial batch responses.
    let worker = &templates["orders-worker"]["Resources"];
    let orders =
        &function("orders-worker", "OrdersWorkerFunction")["Events"]["Orders"]["Properties"];
    assert_eq!(
        orders["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(
        (
            orders["BatchSize"].as_u64(),
            orders["MaximumBatchingWindowInSeconds"].as_u64()
        ),
        (Some(25), Some(2))
    );
    assert_eq!(
        worker["OrdersQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
        json!({"Fn::GetAtt": ["OrdersDlqQueue", "Arn"]})
    );
    assert_eq!(
        worker["RefundsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"],
        5
    );
    assert_eq!(worker["FailedQueue"]["Type"], "AWS::SQS::Queue");
    // The visibility timeout covers the function's timeout (SQS refuses the mapping otherwise).
    assert!(
        worker["OrdersQueue"]["Properties"]["VisibilityTimeout"]
            .as_u64()
            .unwrap()
            > 60
    );

    // Streams: S3 notifications for the S3 store recording into `uploads`; a DynamoDB stream
    // (ARN parameter) for the other, with bisecting and per-record failures.
    let audit = function("audit", "AuditFunction");
    assert_eq!(audit["Events"]["UploadsObjects"]["Type"], "S3");
    assert_eq!(
        templates["audit"]["Resources"]["UploadsBucket"]["Properties"]["BucketName"],
        "shop-uploads"
    );
    let table = &audit["Events"]["OrdersTable"]["Properties"];
    assert_eq!(audit["Events"]["OrdersTable"]["Type"], "DynamoDB");
    assert_eq!(
        (
            table["BisectBatchOnFunctionError"].as_bool(),
            table["MaximumRetryAttempts"].as_u64(),
            table["BatchSize"].as_u64()
        ),
        (Some(true), Some(4), Some(50))
    );

    // Schedules: AWS cron and rate syntax; a time zone needs EventBridge Scheduler.
    let nightly = function("nightly", "NightlyFunction");
    assert_eq!(
        nightly["Events"]["Nightly"]["Properties"]["Schedule"],
        "cron(0 3 * * ? *)"
    );
    assert_eq!(
        nightly["Events"]["Heartbeat"]["Properties"]["Schedule"],
        "rate(5 minutes)"
    );
    let weekly = &nightly["Events"]["WeeklyReport"];
    assert_eq!(
        (
            weekly["Type"].as_str(),
            weekly["Properties"]["ScheduleExpressionTimezone"].as_str()
        ),
        (Some("ScheduleV2"), Some("Europe/Paris"))
    );
    assert_eq!(
        weekly["Properties"]["ScheduleExpression"],
        "cron(0 9 ? * MON *)"
    );

    // The validation has teeth: a value SAM refuses (a batch larger than SQS allows) fails it.
    let path = f.dir.path().join("out/orders-worker/template.yaml");
    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace("BatchSize: 25", "BatchSize: 20000")
        .replace("MemorySize: 192", "MemorySize: 64");
    std::fs::write(&path, broken).unwrap();
    let (ok, report) = validate_template(&path);
    assert!(!ok, "values Lambda refuses must fail validation: {report}");
    assert!(
        report.contains("64 is less than the minimum of 128"),
        "{report}"
    );
    assert!(
        report.contains("20000 is greater than the maximum of 10000"),
        "{report}"
    );
}

#[test]
fn schedules_aws_cannot_express_are_refused_and_a_task_packages_without_events() {
    let f = Fixture::with_guests(&[]);
    f.copy_guest("cron-job", "tick");
    f.write("wasmfn.toml", "[functions.tick]\nworld = \"schedule\"\n[schedules.fast]\nfunction = \"tick\"\nexpression = \"rate(30 seconds)\"\n");
    let out = f.package("lambda", "tick", &f.dir.path().join("out"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("schedule `fast`") && stderr.contains("whole minutes"),
        "{stderr}"
    );
    // A task function packages with no event source: the state machine invokes it.
    f.copy_guest("order-steps", "step");
    f.write(
        "wasmfn.toml",
        "[kv.orders]\n[functions.step]\nkv = [\"orders\"]\n",
    );
    let out = f.dir.path().join("out-task");
    let packaged = f.package("lambda", "step", &out, &[]);
    assert!(
        packaged.status.success(),
        "{}",
        String::from_utf8_lossy(&packaged.stderr)
    );
    let (ok, report) = validate_template(&out.join("template.yaml"));
    assert!(ok, "{report}");
    let text = std::fs::read_to_string(out.join("template.yaml")).unwrap();
    assert!(
        text.contains("(task world)") && !text.contains("Events:"),
        "{text}"
    );
}

/// A sample event shipped with the `aws_lambda_events` crate (AWS's own examples), read from
/// cargo's unpacked copy of the crate.
fn aws_sample(file: &str) -> Value {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let registries =
        std::fs::read_dir(home.join("registry/src")).expect("cargo's registry sources");
    for registry in registries.flatten() {
        let path = registry
            .path()
            .join("aws_lambda_events-1.2.1/src/fixtures")
            .join(file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return serde_json::from_str(&text).unwrap();
        }
    }
    panic!(
        "no {file} in aws_lambda_events-1.2.1's fixtures under {}",
        home.display()
    );
}

#[test]
fn aws_sample_events_of_every_source() {
    // HTTP: REST (single and multi-value query), HTTP API v2, ALB with multi-value headers.
    let (_f, emu, _boot) = run("echo", "echo", "");
    let r = emu
        .invoke(&aws_sample("example-apigw-request.json"))
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");
    assert_eq!(r["body"], "{\r\n\t\"a\": 1\r\n}");
    assert_eq!(
        r["multiValueHeaders"]["x-path"][0], "/hello/world?name=me",
        "{r}"
    );
    assert_eq!(r["multiValueHeaders"]["x-method"][0], "POST");
    let r = emu
        .invoke(&aws_sample(
            "example-apigw-request-multi-value-parameters.json",
        ))
        .unwrap();
    assert_eq!(
        r["multiValueHeaders"]["x-path"][0], "/hello/world?name=me&name=me2",
        "{r}"
    );
    let r = emu
        .invoke(&aws_sample("example-apigw-v2-request-no-authorizer.json"))
        .unwrap();
    assert_eq!(
        (r["statusCode"].as_u64(), r["headers"]["x-path"].as_str()),
        (Some(200), Some("/")),
        "{r}"
    );
    assert_eq!(r["headers"]["x-method"], "GET");
    let r = emu
        .invoke(&aws_sample(
            "example-alb-lambda-target-request-multivalue-headers.json",
        ))
        .unwrap();
    assert_eq!(r["statusDescription"], "200 OK", "{r}");
    assert_eq!(r["body"], "Some text");
    assert_eq!(r["multiValueHeaders"]["x-path"][0], "/?key=hello", "{r}");

    // Queue: SQS (partial failure by message id) and SNS.
    let (_f, emu, boot) = run("queue-worker", "queue-worker", "");
    let sqs = aws_sample("example-sqs-event.json");
    assert_eq!(emu.invoke(&sqs).unwrap(), json!({"batchItemFailures": []}));
    let mut failing = sqs.clone();
    let mut second = sqs["Records"][0].clone();
    second["messageId"] = json!("MessageID_2");
    second["body"] = json!("please fail this one");
    failing["Records"].as_array_mut().unwrap().push(second);
    assert_eq!(
        emu.invoke(&failing).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "MessageID_2"}]})
    );
    assert_eq!(
        emu.invoke(&aws_sample("example-sns-event.json")).unwrap(),
        Value::Null
    );
    wait_until("the SNS message in the log", Duration::from_secs(5), || {
        boot.log().contains("snsNetTest")
    });

    // Stream: DynamoDB (attribute values unwrapped, binary sets included) and S3 (URL-decoded).
    let (_f, emu, boot) = run("stream-audit", "stream-audit", "");
    assert_eq!(
        emu.invoke(&aws_sample("example-dynamodb-event.json"))
            .unwrap(),
        json!({"batchItemFailures": []})
    );
    assert_eq!(
        emu.invoke(&aws_sample("example-s3-event.json")).unwrap(),
        Value::Null
    );
    wait_until("the audit lines", Duration::from_secs(5), || {
        let log = boot.log();
        log.contains("Example-Table") && log.contains("Happy Face.jpg")
    });

    // Schedule: EventBridge's scheduled event, named after its rule.
    let (_f, emu, boot) = run("cron-job", "cron-job", "");
    assert_eq!(
        emu.invoke(&aws_sample("example-eventbridge-schedule.json"))
            .unwrap(),
        Value::Null
    );
    wait_until("the run in the log", Duration::from_secs(5), || {
        boot.log().contains("my-scheduled-rule")
    });
}

#[test]
fn config_values_and_secrets_come_from_lambda_environment_variables() {
    // Locally the secret is a file; packaged, it becomes WASMFN_SECRET_API_TOKEN, and
    // WASMFN_CONFIG_GREETING overrides the manifest's greeting without repackaging.
    let manifest = "[functions.config-demo]\nroutes = [\"/config-demo\"]\n\
        [functions.config-demo.config]\ngreeting = \"from the manifest\"\n\
        [functions.config-demo.secrets]\napi-token = { file = \"dev-token.txt\" }\n";
    let (_f, emu, _boot) = run_env(
        "config-demo",
        "config-demo",
        manifest,
        &[
            ("WASMFN_SECRET_API_TOKEN", "lambda-token"),
            ("WASMFN_CONFIG_GREETING", "from the Lambda environment"),
        ],
    );
    let mut request = apigw_v2("/config-demo", "", json!([]));
    request["headers"]["authorization"] = json!("Bearer lambda-token");
    let r = emu.invoke(&request).unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");
    assert_eq!(r["body"], "{\"greeting\":\"from the Lambda environment\"}");
    request["headers"]["authorization"] = json!("Bearer dev-token");
    assert_eq!(emu.invoke(&request).unwrap()["statusCode"], 401);
}

#[test]
fn arm64_package_runs_under_qemu() {
    // The arm64 package: the component precompiled for aarch64 on this x86_64 machine, the
    // cross-built bootstrap (scripts/test builds it), run by qemu-user against the emulator.
    let f = Fixture::with_guests(&["echo"]);
    let out = f.dir.path().join("out");
    let status = f
        .package("lambda", "echo", &out, &["--arch", "arm64"])
        .status;
    assert!(
        status.success(),
        "packaging for arm64 (scripts/test cross-builds the bootstrap)"
    );
    let package = out.join("package");
    // ELF e_machine 183: AArch64.
    let elf = std::fs::read(package.join("bootstrap")).unwrap();
    assert_eq!(
        (&elf[..4], elf[18], elf[19]),
        (&b"\x7fELF"[..], 183, 0),
        "not an aarch64 ELF"
    );
    let template = std::fs::read_to_string(out.join("template.yaml")).unwrap();
    assert!(template.contains("- arm64"), "{template}");

    let emu = common::lambda::Emulator::start();
    let boot = common::lambda::Bootstrap::start_with(
        &package,
        &emu,
        &[],
        &["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
    );
    let r = emu
        .invoke(&apigw_v2("/echo/arm", "status=202", json!([])))
        .unwrap();
    assert_eq!(r["statusCode"], 202, "{r}");
    assert_eq!(r["headers"]["x-path"], "/echo/arm?status=202");
    assert_eq!(r["body"], "{\"a\":1}");
    // Loaded from the aarch64 precompiled entry: nothing was compiled at start.
    let log = boot.log();
    assert!(
        log.contains("wasmfn function ready") && !log.contains("compiled component"),
        "{log}"
    );
}

#[test]
fn an_invocation_continues_the_x_ray_trace_lambda_gives_it() {
    let receiver = common::otlp::Receiver::start();
    let (_f, emu, boot) = run_env(
        "echo",
        "echo",
        "",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str())],
    );
    let r = emu
        .invoke(&apigw_v2("/echo/traced", "", json!([])))
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");
    // Exported before the answer (the environment may be frozen after it): no waiting.
    common::wait_until("the spans", Duration::from_secs(5), || {
        receiver.spans().len() >= 2
    });
    let spans = receiver.spans();
    let lambda = spans
        .iter()
        .find(|s| s.name == "lambda invoke")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    let invocation = spans.iter().find(|s| s.name == "echo").unwrap();
    // The emulator's trace header (Root=1-TIME-RANDOM;Parent=ID, X-Ray's form, a fresh one per
    // invocation): the trace id is TIME and RANDOM together, the parent its Parent.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let time = u64::from_str_radix(&lambda.trace_id[..8], 16).unwrap();
    assert!(now.abs_diff(time) < 300, "{lambda:#?}");
    assert_eq!(lambda.parent_span_id.len(), 16, "{lambda:#?}");
    assert_eq!(lambda.kind, 2, "server");
    assert!(lambda
        .attr("faas.invocation_id")
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(invocation.trace_id, lambda.trace_id);
    assert_eq!(invocation.parent_span_id, lambda.span_id);
    assert_eq!(invocation.attr("wasmfn.outcome"), Some("ok"));
    assert!(boot.log().contains(&lambda.trace_id), "{}", boot.log());
}

/// A WASI 0.3 http component runs in the Lambda bootstrap as it does on the local host (the
/// bootstrap is the same host library): status, headers and the streamed body come back.
#[test]
fn a_wasi_0_3_http_component_runs_on_lambda() {
    let (_f, emu, _boot) = run("http-p3", "http-p3", "");
    let r = emu
        .invoke(&apigw_v2("/http-p3/status/201", "", json!([])))
        .unwrap();
    assert_eq!(r["statusCode"], 201, "{r}");
    assert_eq!(r["headers"]["x-p3"], "yes", "{r}");
    let r = emu
        .invoke(&apigw_v2("/http-p3/echo", "", json!([])))
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");
    // The v2 event's body is `{"a":1}`, base64-encoded; it comes back as sent.
    let body = r["body"].as_str().unwrap();
    let decoded = if r["isBase64Encoded"] == true {
        String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap(),
        )
        .unwrap()
    } else {
        body.to_string()
    };
    assert_eq!(decoded, "{\"a\":1}", "{r}");
}

#[test]
fn a_task_function_answers_step_functions_task_invocations() {
    let manifest = "[kv.orders]\n[functions.process-payment]\nkv = [\"orders\"]\nconfig = { step = \"pay\" }\n";
    let (_f, emu, boot) = run("order-steps", "process-payment", manifest);
    // As the templates' Task states send it: the state's input and the context object.
    let envelope = |input: Value, retries: u32| {
        json!({
            "input": input,
            "context": {
                "Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:order-saga:e-1", "Name": "e-1"},
                "State": {"Name": "ProcessPayment", "RetryCount": retries, "EnteredTime": "2026-12-07T10:00:00.000Z"},
                "StateMachine": {"Id": "arn:aws:states:us-east-1:123456789012:stateMachine:order-saga", "Name": "order-saga"},
                "Task": {"Token": "t"}
            }
        })
    };
    let order = json!({"orderId": "o-1", "total": 42, "busyAttempts": 1});
    // The first attempt finds the gateway busy: the error name is the task's, as Retry sees it.
    let (kind, message) = emu.invoke(&envelope(order.clone(), 0)).unwrap_err();
    assert_eq!(kind, "PaymentGatewayBusy", "{message}");
    assert!(message.contains("attempt 1"), "{message}");
    // Step Functions' retry (RetryCount 1) is attempt 2, which succeeds: the output is JSON.
    let output = emu.invoke(&envelope(order, 1)).unwrap();
    assert_eq!(output["payment"], "pay-o-1");
    assert_eq!(output["charged"], 42);
    assert!(
        boot.log().contains("state ProcessPayment, attempt 2"),
        "{}",
        boot.log()
    );

    // A Task whose Resource is the function's ARN sends the state's input as it is.
    let declined = json!({"orderId": "o-2", "failAt": "process-payment"});
    let (kind, message) = emu.invoke(&declined).unwrap_err();
    assert_eq!(kind, "PaymentDeclined", "{message}");
    let plain = emu.invoke(&json!({"orderId": "o-3", "total": 7})).unwrap();
    assert_eq!(plain["payment"], "pay-o-3");
}

#[test]
fn a_task_that_runs_out_of_time_fails_with_states_timeout_as_locally() {
    let manifest = "[kv.orders]\n[functions.reserve-inventory]\nkv = [\"orders\"]\nconfig = { step = \"reserve\" }\ntimeout = \"1s\"\n";
    let (_f, emu, _boot) = run("order-steps", "reserve-inventory", manifest);
    let (kind, message) = emu
        .invoke(&json!({"orderId": "o-4", "sleepMs": 3000}))
        .unwrap_err();
    assert_eq!(kind, "States.Timeout", "{message}");
}

/// Unpack `zip` into `dir` as Lambda does (file modes kept).
fn unzip(zip: &Path, dir: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    archive.extract(dir).unwrap();
}

#[test]
fn the_order_app_is_one_sam_stack_with_its_saga_rules_and_topic() {
    let f = common::orders::order_app("");
    let out = f.dir.path().join("app");
    let r = common::wasmfn()
        .args(["package", "lambda", "--app", "--dir"])
        .arg(f.dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (ok, report) = validate_template(&out.join("template.yaml"));
    assert!(ok, "{report}");
    let t: Value =
        serde_norway::from_str(&std::fs::read_to_string(out.join("template.yaml")).unwrap())
            .unwrap();
    let res = &t["Resources"];
    let props = |id: &str| {
        let p = res[id]["Properties"].clone();
        assert!(!p.is_null(), "no resource {id}");
        p
    };

    // Every function: its own zip (no bootstrap in it), the bootstrap from the one layer.
    for name in [
        "orders",
        "reserve-inventory",
        "process-payment",
        "ship-order",
        "refund-payment",
        "release-inventory",
        "email",
        "analytics",
    ] {
        let id = format!(
            "{}Function",
            name.split('-')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect::<String>()
        );
        let p = props(&id);
        assert_eq!(p["Layers"], json!([{"Ref": "WasmfnRuntime"}]), "{id}");
        assert_eq!(p["CodeUri"], format!("functions/{name}.zip"));
        let zip = zip::ZipArchive::new(
            std::fs::File::open(out.join(format!("functions/{name}.zip"))).unwrap(),
        )
        .unwrap();
        let files: Vec<&str> = zip.file_names().collect();
        assert!(
            files.contains(&"wasmfn.toml") && !files.contains(&"bootstrap"),
            "{files:?}"
        );
    }
    assert_eq!(
        props("WasmfnRuntime")["ContentUri"],
        "wasmfn-runtime.zip",
        "{report}"
    );

    // The saga: the same states, each Task the function's ARN, Retry and Catch kept.
    let sm = props("OrderSagaStateMachine");
    let states = &sm["Definition"]["States"];
    let pay = &states["ProcessPayment"];
    assert_eq!(pay["Resource"], "${ProcessPaymentFunctionArn}");
    assert_eq!(
        sm["DefinitionSubstitutions"]["ProcessPaymentFunctionArn"],
        json!({"Fn::GetAtt": ["ProcessPaymentFunction", "Arn"]})
    );
    assert_eq!(
        pay["Parameters"],
        json!({"input.$": "$", "context.$": "$$"})
    );
    let retries = pay["Retry"].as_array().unwrap();
    assert_eq!(retries[0]["ErrorEquals"][0], "Lambda.ServiceException");
    assert_eq!(retries[1]["ErrorEquals"], json!(["PaymentGatewayBusy"]));
    // 0.2 s locally; Step Functions takes whole seconds, and says so at packaging.
    assert_eq!(retries[1]["IntervalSeconds"], 1);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("IntervalSeconds 0.2 is 1 on Step Functions")
    );
    assert_eq!(pay["Catch"][0]["Next"], "ReleaseInventory");
    assert_eq!(states["OrderFailed"]["Type"], "Fail");
    assert_eq!(sm["Policies"].as_array().unwrap().len(), 5);

    // Rules on the app's bus: `type` is EventBridge's `detail-type`; the saga and the
    // unfiltered subscriber from the rule itself, the filtered subscriber through a rule
    // whose pattern adds the filter; a function through its rule queue.
    let placed = props("OrderPlacedRule");
    assert_eq!(placed["EventBusName"], json!({"Ref": "EventBus"}));
    assert_eq!(
        placed["EventPattern"],
        json!({"source": ["shop.orders"], "detail-type": ["OrderPlaced"]})
    );
    let targets = placed["Targets"].as_array().unwrap();
    let arns: Vec<&Value> = targets.iter().map(|t| &t["Arn"]).collect();
    assert_eq!(
        arns,
        [
            &json!({"Ref": "OrderSagaStateMachine"}),
            &json!({"Fn::GetAtt": ["EmailQueueQueue", "Arn"]})
        ]
    );
    assert!(targets.iter().all(|t| t["InputPath"] == "$.detail"));
    assert_eq!(
        targets[0]["RoleArn"],
        json!({"Fn::GetAtt": ["RulesRole", "Arn"]})
    );
    let filtered = props("OrderPlacedRuleToAnalyticsQueueQueue");
    assert_eq!(
        filtered["Targets"][0]["Arn"],
        json!({"Fn::GetAtt": ["AnalyticsQueueQueue", "Arn"]})
    );
    let large = props("LargeOrdersRule");
    assert_eq!(
        large["EventPattern"],
        json!({"source": ["shop.orders"], "detail": {"total": [{"numeric": [">=", 100]}]}})
    );
    let to_orders = &large["Targets"][0];
    assert_eq!(
        to_orders["Arn"],
        json!({"Fn::GetAtt": ["EventsOrdersQueue", "Arn"]})
    );
    // Without an input path the event keeps wasmfn's shape (`type`, not `detail-type`).
    assert!(to_orders["InputTransformer"]["InputTemplate"]
        .as_str()
        .unwrap()
        .contains("\"type\": <type>"));
    let orders_events = props("OrdersFunction")["Events"].clone();
    assert!(
        orders_events
            .as_object()
            .unwrap()
            .values()
            .any(|e| e["Type"] == "SQS"
                && e["Properties"]["Queue"] == json!({"Fn::GetAtt": ["EventsOrdersQueue", "Arn"]})),
        "{orders_events}"
    );

    // The topic: SNS to a queue per subscription, the filter as the FilterPolicy, the
    // envelope kept; each queue lets the topic and the rules send to it.
    assert_eq!(res["OrderEventsTopic"]["Type"], "AWS::SNS::Topic");
    let email = props("OrderEventsTopicToEmailQueueQueue");
    assert_eq!(email["RawMessageDelivery"], false);
    assert!(email.get("FilterPolicy").is_none());
    let analytics = props("OrderEventsTopicToAnalyticsQueueQueue");
    assert_eq!(analytics["FilterPolicy"], json!({"type": ["OrderPlaced"]}));
    assert_eq!(analytics["FilterPolicyScope"], "MessageAttributes");
    let policy = props("EmailQueueQueuePolicy");
    let principals: Vec<&Value> = policy["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["Principal"]["Service"])
        .collect();
    assert_eq!(
        principals,
        [&json!("sns.amazonaws.com"), &json!("events.amazonaws.com")]
    );

    // The packages run: a saga step as Step Functions invokes it from this template, and the
    // orders function taking its rule queue's SQS batch (each event POSTed), unpacked as
    // Lambda unpacks them (the function's zip in the task root, the layer in /opt).
    let opt = out.join("unpacked/opt");
    unzip(&out.join("wasmfn-runtime.zip"), &opt);
    let emu = common::lambda::Emulator::start();
    let task = out.join("unpacked/process-payment");
    unzip(&out.join("functions/process-payment.zip"), &task);
    let boot = common::lambda::Bootstrap::start_layered(&task, &opt, &emu, &[]);
    let envelope = json!({"input": {"orderId": "o-1", "total": 42}, "context": {
        "Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:x:e-1", "Name": "e-1"},
        "State": {"Name": "ProcessPayment", "RetryCount": 0, "EnteredTime": "2026-12-07T10:00:00.000Z"},
        "StateMachine": {"Id": "arn:aws:states:us-east-1:123456789012:stateMachine:x", "Name": "x"}}});
    let output = emu.invoke(&envelope).unwrap();
    assert_eq!(output["payment"], "pay-o-1", "{}", boot.log());
    drop(boot);
    drop(emu);

    let emu = common::lambda::Emulator::start();
    let task = out.join("unpacked/orders");
    unzip(&out.join("functions/orders.zip"), &task);
    let _boot = common::lambda::Bootstrap::start_layered(&task, &opt, &emu, &[]);
    let event = json!({"id": "e-1", "source": "shop.orders", "type": "OrderPlaced",
                       "time": "2026-12-07T10:00:00Z", "detail": {"orderId": "o-7", "total": 150}});
    let mut batch = sqs(&[("m1", &event.to_string())]);
    batch["Records"][0]["eventSourceARN"] =
        json!("arn:aws:sqs:us-east-1:123456789012:shop-_events-orders");
    assert_eq!(
        emu.invoke(&batch).unwrap(),
        json!({"batchItemFailures": []})
    );
    let mut get = apigw_v2("/orders/o-7", "", json!([]));
    get["requestContext"]["http"]["method"] = json!("GET");
    let get = emu.invoke(&get).unwrap();
    let body: Value = serde_json::from_str(get["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["audited"], 1, "{body}");
}

#[test]
fn a_topic_message_reaches_the_queue_world_out_of_its_sns_envelope() {
    let manifest =
        "[kv.orders]\n[functions.email]\nkv = [\"orders\"]\nconfig = { consumer = \"email\" }\n";
    let (_f, emu, boot) = run("order-consumer", "email", manifest);
    // SQS's body for an SNS subscription with raw message delivery off.
    let envelope = |message: &Value| {
        json!({"Type": "Notification", "MessageId": "n-1",
               "TopicArn": "arn:aws:sns:us-east-1:123456789012:shop-order-events",
               "Message": message.to_string(), "Timestamp": "2026-12-07T10:00:00.000Z",
               "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://x",
               "UnsubscribeURL": "https://x",
               "MessageAttributes": {"type": {"Type": "String", "Value": "OrderPlaced"}}})
        .to_string()
    };
    // The consumer fails an order that names it in `failConsumer`: only readable once the
    // message is out of the envelope.
    let fails = envelope(&json!({"orderId": "o-1", "failConsumer": "email"}));
    let passes = envelope(&json!({"orderId": "o-2", "failConsumer": "analytics"}));
    let r = emu
        .invoke(&sqs(&[("m1", &fails), ("m2", &passes)]))
        .unwrap();
    assert_eq!(
        r,
        json!({"batchItemFailures": [{"itemIdentifier": "m1"}]}),
        "{}",
        boot.log()
    );
}
