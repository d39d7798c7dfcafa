//! The Lambda adapter target: the scenario's guest packaged with `wasmfn package lambda`, its
//! `bootstrap` serving cargo-lambda's Runtime API emulator, each case sent as the Lambda event
//! AWS would deliver (HTTP API v2, SQS, DynamoDB Streams, EventBridge).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::common::lambda::{run_env, Bootstrap, Emulator};
use crate::common::Fixture;
use crate::scenario::{Case, Input, Outcome, Scenario};
use crate::Target;

pub struct OnLambda {
    _fixture: Fixture,
    emulator: Emulator,
    bootstrap: Bootstrap,
}

impl OnLambda {
    pub fn start(s: &Scenario) -> OnLambda {
        let env: Vec<(&str, &str)> = s
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (fixture, emulator, bootstrap) = run_env(&s.guest, &s.function, &s.manifest, &env);
        OnLambda {
            _fixture: fixture,
            emulator,
            bootstrap,
        }
    }
}

/// A JSON value as a DynamoDB attribute value.
fn attribute(v: &Value) -> Value {
    match v {
        Value::Null => json!({"NULL": true}),
        Value::Bool(b) => json!({ "BOOL": b }),
        Value::Number(n) => json!({ "N": n.to_string() }),
        Value::String(s) => json!({ "S": s }),
        Value::Array(items) => json!({ "L": items.iter().map(attribute).collect::<Vec<_>>() }),
        Value::Object(fields) => json!({ "M": image(fields) }),
    }
}

fn image(fields: &Map<String, Value>) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), attribute(v)))
            .collect(),
    )
}

fn event_for(input: &Input) -> Value {
    match input {
        Input::Http(h) => {
            let (path, query) = h.path.split_once('?').unwrap_or((&h.path, ""));
            json!({
                "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
                "headers": h.headers,
                "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                    "domainPrefix": "api", "http": {"method": h.method, "path": path, "protocol": "HTTP/1.1",
                    "sourceIp": "10.0.0.1", "userAgent": "conformance"}, "requestId": "r", "routeKey": "$default",
                    "stage": "$default", "time": "30/Nov/2026:10:00:00 +0000", "timeEpoch": 1796000000000u64},
                "body": h.body.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
                "isBase64Encoded": h.body.is_some()
            })
        }
        Input::Queue(q) => json!({"Records": q.messages.iter().map(|m| json!({
            "messageId": m.id, "receiptHandle": "rh", "body": m.body, "md5OfBody": "-",
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796000000000", "SenderId": "s",
                "ApproximateFirstReceiveTimestamp": "1796000000001"},
            "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
            "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{}", q.queue)
        })).collect::<Vec<_>>()}),
        Input::Stream(s) => json!({"Records": s.records.iter().map(|r| {
            let mut dynamodb = json!({"ApproximateCreationDateTime": 1796000000, "Keys": {"id": {"S": r.key}},
                "SequenceNumber": r.sequence, "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"});
            if let Some(Value::Object(o)) = &r.old { dynamodb["OldImage"] = image(o); }
            if let Some(Value::Object(n)) = &r.new { dynamodb["NewImage"] = image(n); }
            json!({"eventID": r.sequence, "eventName": r.operation.to_uppercase(), "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb,
                "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{}/stream/2026-11-30T00:00:00.000", s.source)})
        }).collect::<Vec<_>>()}),
        Input::Schedule(s) => json!({"version": "0", "id": "x", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-30T03:00:00Z", "region": "us-east-1",
            "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{}", s.name)], "detail": {}}),
    }
}

fn http_outcome(r: &Value) -> Outcome {
    let mut headers: std::collections::BTreeMap<String, String> = r["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    for (k, values) in r["multiValueHeaders"].as_object().into_iter().flatten() {
        headers.insert(
            k.to_lowercase(),
            values[0].as_str().unwrap_or_default().to_string(),
        );
    }
    let body = r["body"].as_str().unwrap_or_default();
    let body = if r["isBase64Encoded"].as_bool() == Some(true) {
        String::from_utf8_lossy(
            &base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        )
        .into_owned()
    } else {
        body.to_string()
    };
    Outcome::Http {
        status: r["statusCode"].as_u64().unwrap() as u16,
        headers,
        body,
    }
}

impl Target for OnLambda {
    fn run(&mut self, case: &Case) -> Outcome {
        let answer = match self.emulator.invoke(&event_for(&case.input)) {
            Ok(answer) => answer,
            Err((kind, _)) => {
                return Outcome::Error(kind.trim_start_matches("wasmfn.").to_string())
            }
        };
        match &case.input {
            Input::Http(_) => http_outcome(&answer),
            Input::Queue(_) | Input::Stream(_) => Outcome::Failed(
                answer["batchItemFailures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
                    .collect(),
            ),
            Input::Schedule(_) => Outcome::Ok,
        }
    }

    fn log(&self) -> String {
        self.bootstrap.log()
    }
}
