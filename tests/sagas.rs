//! Saga workflows, the event bus and fan-out topics through the real binary, with the order
//! example's guests: the order saga succeeding and failing at each step (compensations run as
//! defined), `kill -9` in the middle of an execution, the seed's fan-out (order event → email
//! and analytics), event rules, and bad definitions refused with the state's name.

mod common;

use std::time::{Duration, Instant};

use common::servers::{postgres, Nats};
use common::{client, wait_until, wasmfn, Fixture, Server};
use serde_json::{json, Value};

const SAGA: &str = include_str!("../guests/order-saga.asl.json");

/// The five saga steps: one `order-steps.wasm` deployed under five names.
fn step_functions() -> String {
    let mut out = String::new();
    for (name, step) in [
        ("reserve-inventory", "reserve"),
        ("process-payment", "pay"),
        ("ship-order", "ship"),
        ("refund-payment", "refund"),
        ("release-inventory", "release"),
    ] {
        out.push_str(&format!(
            "[functions.{name}]\ncomponent = \"order-steps.wasm\"\nkv = [\"orders\"]\nconfig = {{ step = \"{step}\" }}\n\n"
        ));
    }
    out
}

/// The order example as in `guests/wasmfn.toml`, with the components as files in one folder.
fn order_app(extra: &str) -> Fixture {
    let f = Fixture::with_guests(&["orders", "order-steps", "order-consumer"]);
    f.write("order-saga.asl.json", SAGA);
    let mut manifest = String::from("[kv.orders]\n\n[functions.orders]\nkv = [\"orders\"]\n\n");
    manifest.push_str("[workflows.order-saga]\ndefinition = \"order-saga.asl.json\"\n\n");
    manifest.push_str(&step_functions());
    for consumer in ["email", "analytics"] {
        manifest.push_str(&format!(
            "[functions.{consumer}]\ncomponent = \"order-consumer.wasm\"\nkv = [\"orders\"]\n\
             config = {{ consumer = \"{consumer}\" }}\n\n[queues.{consumer}-queue]\n\
             function = \"{consumer}\"\nretry-backoff = \"50ms\"\nmax-receive-count = 2\n\n"
        ));
    }
    manifest.push_str(
        r#"[topics.order-events]
subscriptions = [
  { queue = "email-queue" },
  { queue = "analytics-queue", filter = { type = ["OrderPlaced"] } },
]

[rules.order-placed]
input-path = "$.detail"
targets = ["workflow:order-saga", "topic:order-events"]
pattern = { source = ["shop.orders"], type = ["OrderPlaced"] }

[rules.large-orders]
targets = ["function:orders"]
pattern = { source = ["shop.orders"], detail = { total = [{ numeric = [">=", 100] }] } }

"#,
    );
    manifest.push_str(extra);
    f.write("wasmfn.toml", manifest);
    f
}

fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(server.url(path))
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn get_json(server: &Server, path: &str) -> Value {
    let (status, text) = server.get(path);
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The order saga alone (no queues), on a PostgreSQL execution store shared by every host
/// serving the folder.
fn saga_on_postgres(url: &str, definition: &str) -> Fixture {
    let f = Fixture::with_guests(&["orders", "order-steps"]);
    f.write("order-saga.asl.json", definition);
    let mut manifest = format!(
        "[kv.orders]\n\n[functions.orders]\nkv = [\"orders\"]\n\n\
         [workflows.order-saga]\ndefinition = \"order-saga.asl.json\"\n\n\
         [workflow-store]\nbackend = \"postgres\"\nurl = \"{url}\"\nlease = \"2s\"\n\n"
    );
    manifest.push_str(&step_functions());
    f.write("wasmfn.toml", manifest);
    f
}

/// The saga with a 3 s Wait between payment and shipping, so a kill can land inside it.
fn slow_saga() -> String {
    let slow = SAGA
        .replace(r#""Next": "ShipOrder","#, r#""Next": "Cooling","#)
        .replace(
            r#""OrderShipped": {"Type": "Succeed"},"#,
            r#""OrderShipped": {"Type": "Succeed"},
    "Cooling": {"Type": "Wait", "Seconds": 3, "Next": "ShipOrder"},"#,
        );
    assert!(slow.contains("Cooling"));
    slow
}

#[test]
fn postgres_store_hands_a_dead_hosts_execution_to_another_host() {
    let url = postgres().database();
    let f = saga_on_postgres(&url, &slow_saga());
    // Two hosts on one folder: the same PostgreSQL store (and the same embedded KV file).
    let mut a = f.serve();
    let b = f.serve();
    let (status, body) = post(
        &a,
        "/_wasmfn/workflows/order-saga/executions?name=moved",
        r#"{"orderId": "moved"}"#,
    );
    assert_eq!(status, 201, "{body}");
    wait_until(
        "the payment step on host A",
        Duration::from_secs(10),
        || {
            get_json(&a, "/_wasmfn/executions/moved")["history"]
                .as_array()
                .unwrap()
                .len()
                == 2
        },
    );
    a.child.kill().unwrap(); // SIGKILL: host A dies holding the lease
    a.child.wait().unwrap();
    // Host B sees the same execution, takes it over once A's lease lapses, and finishes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_json(&b, "/_wasmfn/executions/moved")["execution"]["status"] == "RUNNING" {
        assert!(
            Instant::now() < deadline,
            "host B never finished it; its logs:\n{}",
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let described = get_json(&b, "/_wasmfn/executions/moved");
    assert_eq!(described["execution"]["status"], "SUCCEEDED", "{described}");
    assert_eq!(
        states(described["history"].as_array().unwrap()),
        [
            "ReserveInventory",
            "ProcessPayment",
            "Cooling",
            "ShipOrder",
            "OrderShipped"
        ]
    );
    assert_eq!(
        runs(&b, "moved"),
        json!({"reserve": 1, "pay": 1, "ship": 1, "refund": 0, "release": 0})
    );
    assert!(
        b.logs().contains("resuming unfinished executions"),
        "{}",
        b.logs()
    );

    // A failure on the shared store compensates as on the embedded one.
    let (e, history) = run_saga(
        &b,
        json!({"orderId": "pg-fail", "failAt": "ProcessPayment"}),
    );
    assert_eq!(e["status"], "FAILED");
    assert_eq!(
        states(&history),
        [
            "ReserveInventory",
            "ProcessPayment!PaymentDeclined",
            "ReleaseInventory",
            "OrderFailed!OrderFailed"
        ]
    );
}

/// How often each saga step ran for `order`, as the guests themselves counted.
fn runs(server: &Server, order: &str) -> Value {
    get_json(server, &format!("/orders/{order}"))["runs"].clone()
}

/// Start the saga for `order` through the host API and wait for it to end.
fn run_saga(server: &Server, order: Value) -> (Value, Vec<Value>) {
    let name = format!("order-{}", order["orderId"].as_str().unwrap());
    let (status, body) = post(
        server,
        &format!("/_wasmfn/workflows/order-saga/executions?name={name}&wait=30"),
        &order.to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let described = get_json(server, &format!("/_wasmfn/executions/{name}"));
    let history = described["history"].as_array().unwrap().clone();
    (described["execution"].clone(), history)
}

fn states(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|s| {
            let mut t = s["state"].as_str().unwrap().to_string();
            if let Some(e) = s["error"].as_str() {
                t.push_str(&format!("!{e}"));
            }
            t
        })
        .collect()
}

#[test]
fn the_order_saga_succeeds_and_compensates_a_failure_at_each_step() {
    let f = order_app("");
    let server = f.serve();

    let (e, history) = run_saga(&server, json!({"orderId": "ok", "total": 20}));
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(
        states(&history),
        [
            "ReserveInventory",
            "ProcessPayment",
            "ShipOrder",
            "OrderShipped"
        ]
    );
    let output: Value = serde_json::from_str(e["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["tracking"], "trk-ok");
    assert_eq!(output["payment"], "pay-ok");
    assert_eq!(
        runs(&server, "ok"),
        json!({"reserve": 1, "pay": 1, "ship": 1, "refund": 0, "release": 0})
    );
    // Every step's input, output and timing is kept.
    let pay = &history[1];
    assert_eq!(
        serde_json::from_str::<Value>(pay["input"].as_str().unwrap()).unwrap()["reservation"],
        "res-ok"
    );
    assert!(pay["endedAt"].as_u64().unwrap() >= pay["startedAt"].as_u64().unwrap());

    // Failure at each step: only what was done is undone, in reverse.
    let cases = [
        (
            "ReserveInventory",
            json!({"reserve": 1, "pay": 0, "ship": 0, "refund": 0, "release": 0}),
            vec!["ReserveInventory!OutOfStock", "OrderFailed!OrderFailed"],
        ),
        (
            "ProcessPayment",
            json!({"reserve": 1, "pay": 1, "ship": 0, "refund": 0, "release": 1}),
            vec![
                "ReserveInventory",
                "ProcessPayment!PaymentDeclined",
                "ReleaseInventory",
                "OrderFailed!OrderFailed",
            ],
        ),
        (
            "ShipOrder",
            json!({"reserve": 1, "pay": 1, "ship": 1, "refund": 1, "release": 1}),
            vec![
                "ReserveInventory",
                "ProcessPayment",
                "ShipOrder!ShippingUnavailable",
                "RefundPayment",
                "ReleaseInventory",
                "OrderFailed!OrderFailed",
            ],
        ),
    ];
    for (state, expected_runs, expected_states) in cases {
        let order = format!("fail-{state}");
        let (e, history) = run_saga(&server, json!({"orderId": order, "failAt": state}));
        assert_eq!(e["status"], "FAILED", "{state}: {e}");
        assert_eq!(e["error"], "OrderFailed");
        assert_eq!(states(&history), expected_states, "{state}");
        assert_eq!(runs(&server, &order), expected_runs, "{state}");
        // The caught error reaches the compensation at the Catch's ResultPath.
        if let Some(comp) = history.iter().find(|s| s["state"] == "ReleaseInventory") {
            let input: Value = serde_json::from_str(comp["input"].as_str().unwrap()).unwrap();
            assert!(input["error"]["Error"].is_string(), "{input}");
        }
    }

    // Retry with backoff: the gateway is busy twice, the third attempt succeeds.
    let started = Instant::now();
    let (e, history) = run_saga(&server, json!({"orderId": "busy", "busyAttempts": 2}));
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(
        states(&history),
        [
            "ReserveInventory",
            "ProcessPayment!PaymentGatewayBusy",
            "ProcessPayment!PaymentGatewayBusy",
            "ProcessPayment",
            "ShipOrder",
            "OrderShipped"
        ]
    );
    assert_eq!(history[3]["attempt"], 3);
    // 0.2 s then 0.4 s of backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    // Starting the same name again returns the existing execution; bad input is refused.
    let (status, body) = post(
        &server,
        "/_wasmfn/workflows/order-saga/executions?name=order-ok",
        "{}",
    );
    assert_eq!(
        (status, body["created"].clone()),
        (200, json!(false)),
        "{body}"
    );
    let (status, body) = post(
        &server,
        "/_wasmfn/workflows/order-saga/executions",
        "{not json",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&server, "/_wasmfn/workflows/nope/executions", "{}");
    assert_eq!(status, 404);
    assert!(
        body.as_str().unwrap().contains("declared: order-saga"),
        "{body}"
    );

    // A guest starts the saga through the `workflows` import.
    let (status, body) = post(&server, "/orders/saga", r#"{"orderId": "from-guest"}"#);
    assert_eq!(status, 201, "{body}");
    wait_until("the guest-started saga", Duration::from_secs(10), || {
        get_json(&server, "/_wasmfn/executions/order-from-guest")["execution"]["status"]
            == "SUCCEEDED"
    });

    // The CLI: start with --wait prints the execution and exits 0 on success.
    let out = wasmfn()
        .args([
            "workflow",
            "start",
            "order-saga",
            "--input",
            r#"{"orderId":"cli"}"#,
            "--wait",
            "30",
            "--server",
        ])
        .arg(server.url(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"SUCCEEDED\""), "{stdout}");
}

#[test]
fn kill_9_mid_execution_resumes_without_rerunning_completed_steps() {
    let slow = slow_saga();
    let f = order_app("");
    f.write("order-saga.asl.json", &slow);
    let mut server = f.serve();
    let started = Instant::now();
    let (status, body) = post(
        &server,
        "/_wasmfn/workflows/order-saga/executions?name=crash",
        r#"{"orderId": "crash"}"#,
    );
    assert_eq!(status, 201, "{body}");
    wait_until("the payment step", Duration::from_secs(10), || {
        get_json(&server, "/_wasmfn/executions/crash")["history"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    server.child.kill().unwrap(); // SIGKILL: no drain, no flush
    server.child.wait().unwrap();

    let server = f.serve();
    wait_until("the resumed execution", Duration::from_secs(20), || {
        get_json(&server, "/_wasmfn/executions/crash")["execution"]["status"] != "RUNNING"
    });
    let described = get_json(&server, "/_wasmfn/executions/crash");
    assert_eq!(described["execution"]["status"], "SUCCEEDED", "{described}");
    let history = described["history"].as_array().unwrap();
    assert_eq!(
        states(history),
        [
            "ReserveInventory",
            "ProcessPayment",
            "Cooling",
            "ShipOrder",
            "OrderShipped"
        ]
    );
    // Each step ran exactly once, as the guests counted, and the Wait kept its deadline.
    assert_eq!(
        runs(&server, "crash"),
        json!({"reserve": 1, "pay": 1, "ship": 1, "refund": 0, "release": 0})
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        server.logs().contains("resuming unfinished executions"),
        "{}",
        server.logs()
    );
}

#[test]
fn order_events_fan_out_to_every_subscriber_and_rules_route_by_content() {
    fan_out_and_rules(order_app(""));
}

#[test]
fn nats_order_events_fan_out_to_every_subscriber_and_rules_route_by_content() {
    let nats = Nats::start();
    fan_out_and_rules(order_app(&format!(
        "[queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n",
        nats.port
    )));
}

fn fan_out_and_rules(f: Fixture) {
    let server = f.serve();
    // A large order through the guest's `events` import: the saga, both subscribers, audit.
    let (status, body) = post(&server, "/orders", r#"{"orderId": "big", "total": 250}"#);
    assert_eq!(status, 202, "{body}");
    // A small order through the host API: not audited.
    let (status, body) = post(
        &server,
        "/_wasmfn/events",
        r#"{"source": "shop.orders", "type": "OrderPlaced", "detail": {"orderId": "small", "total": 5}}"#,
    );
    assert_eq!(status, 202, "{body}");
    // An analytics failure must not hold up email.
    let out = wasmfn()
        .args([
            "put-event",
            "--source",
            "shop.orders",
            "--type",
            "OrderPlaced",
            "--detail",
            r#"{"orderId": "flaky", "total": 1, "failConsumer": "analytics"}"#,
            "--server",
        ])
        .arg(server.url(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Events that match no rule go nowhere.
    let (status, _) = post(
        &server,
        "/_wasmfn/events",
        r#"{"source": "shop.returns", "type": "OrderPlaced", "detail": {"orderId": "elsewhere", "total": 500}}"#,
    );
    assert_eq!(status, 202);

    let order = |id: &str| get_json(&server, &format!("/orders/{id}"));
    wait_until("fan-out", Duration::from_secs(20), || {
        let (big, small, flaky) = (order("big"), order("small"), order("flaky"));
        big["seen"] == json!({"email": 1, "analytics": 1})
            && big["audited"] == 1
            && big["runs"]["ship"] == 1
            && small["seen"] == json!({"email": 1, "analytics": 1})
            && small["runs"]["ship"] == 1
            && flaky["seen"]["email"] == 1
    });
    assert_eq!(
        order("small")["audited"],
        0,
        "the large-orders rule matched a small order"
    );
    assert_eq!(
        order("elsewhere"),
        json!({"orderId": "elsewhere", "audited": 0,
        "runs": {"reserve": 0, "pay": 0, "ship": 0, "refund": 0, "release": 0},
        "seen": {"email": 0, "analytics": 0}})
    );
    // The failing subscriber's message ends in its dead-letter queue; email got it once.
    wait_until("the analytics dead letter", Duration::from_secs(20), || {
        get_json(&server, "/_wasmfn/queues/analytics-queue-dlq/messages")["messages"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    assert_eq!(order("flaky")["seen"], json!({"email": 1, "analytics": 0}));

    // A topic publish with a filter policy: analytics only takes OrderPlaced.
    let out = wasmfn()
        .args([
            "publish",
            "order-events",
            "--data",
            r#"{"orderId": "refund-1"}"#,
            "--attr",
            "type=OrderRefunded",
            "--server",
        ])
        .arg(server.url(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the topic message", Duration::from_secs(10), || {
        order("refund-1")["seen"]["email"] == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(order("refund-1")["seen"]["analytics"], 0);
    // A slow subscriber delays only itself: email has the order while analytics still works.
    let published = Instant::now();
    let r = client()
        .post(server.url("/_wasmfn/topics/order-events/messages"))
        .header("x-wasmfn-attr-type", "OrderPlaced")
        .body(r#"{"orderId": "slowpoke", "slowConsumer": "analytics", "sleepMs": 4000}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_until("email, not held up", Duration::from_secs(3), || {
        order("slowpoke")["seen"]["email"] == 1
    });
    assert_eq!(order("slowpoke")["seen"]["analytics"], 0);
    assert!(published.elapsed() < Duration::from_secs(4));
    wait_until("the slow analytics", Duration::from_secs(15), || {
        order("slowpoke")["seen"]["analytics"] == 1
    });

    // A guest publishes to the topic through the `events` import.
    let (status, body) = post(&server, "/orders/notify", r#"{"orderId": "notice-1"}"#);
    assert_eq!(status, 202, "{body}");
    wait_until("the guest's topic message", Duration::from_secs(10), || {
        order("notice-1")["seen"]["email"] == 1
    });
    assert_eq!(order("notice-1")["seen"]["analytics"], 0);
    let (status, body) = post(&server, "/_wasmfn/topics/nope/messages", "x");
    assert_eq!(status, 404);
    assert!(
        body.as_str().unwrap().contains("declared: order-events"),
        "{body}"
    );
    let (status, _) = post(
        &server,
        "/_wasmfn/events",
        r#"{"source": "s", "type": "t", "detail": [1]}"#,
    );
    assert_eq!(status, 400);
    let rules = get_json(&server, "/_wasmfn/rules");
    assert_eq!(rules["rules"][0]["targets"], json!(["function:orders"]));
}

#[test]
fn bad_workflows_and_rules_are_refused_naming_the_state_or_the_target() {
    let f = order_app("");
    f.write(
        "order-saga.asl.json",
        r#"{"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "reserve-inventory", "Next": "B"},
        "B": {"Type": "Pass", "Next": "A"}}}"#,
    );
    let out = wasmfn()
        .arg("serve")
        .arg(f.dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("workflows.order-saga.definition")
            && stderr.contains("state `A`: can never finish"),
        "{stderr}"
    );

    f.write(
        "order-saga.asl.json",
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "reserve-inventory"}}}"#,
    );
    let out = wasmfn().arg("check").arg(f.dir.path()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        text.contains("state `A`: has neither `Next` nor `End`"),
        "{text}"
    );

    let f = order_app("[rules.broken]\ntargets = [\"queue:missing\"]\n");
    let out = wasmfn().arg("check").arg(f.dir.path()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("`rules.broken.targets`: queue `missing` is not declared"),
        "{text}"
    );

    // A Task naming a function of the wrong world: the workflow is refused, the rest serves.
    let f = order_app("");
    f.write(
        "order-saga.asl.json",
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "orders", "End": true}}}"#,
    );
    let server = f.serve();
    let (status, body) = post(&server, "/_wasmfn/workflows/order-saga/executions", "{}");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.as_str()
            .unwrap()
            .contains("state `A` runs function `orders`, which implements world `http`"),
        "{body}"
    );
    assert_eq!(server.get("/orders/x").0, 200);
}

/// Choice, Parallel (branches as child executions), Wait until a timestamp, Pass with
/// ResultPath, and TimeoutSeconds, with the order steps as tasks.
const FEATURES: &str = r#"{
  "StartAt": "Route",
  "States": {
    "Route": {"Type": "Choice", "Default": "Small", "Choices": [
      {"And": [{"Variable": "$.total", "NumericGreaterThanEquals": 100},
               {"Not": {"Variable": "$.express", "IsPresent": true}}], "Next": "Both"},
      {"Variable": "$.express", "BooleanEquals": true, "Next": "Express"}]},
    "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.route", "Next": "Done"},
    "Both": {"Type": "Parallel", "ResultPath": "$.branches", "Next": "Until", "Branches": [
      {"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": "reserve-inventory", "End": true}}},
      {"StartAt": "Pause", "States": {
        "Pause": {"Type": "Wait", "Seconds": 2, "Next": "P"},
        "P": {"Type": "Task", "Resource": "process-payment", "End": true}}}],
      "Catch": [{"ErrorEquals": ["PaymentDeclined"], "ResultPath": "$.error", "Next": "Declined"}]},
    "Until": {"Type": "Wait", "Timestamp": "2001-01-01T00:00:00Z", "Next": "Done"},
    "Express": {"Type": "Task", "Resource": "ship-order", "TimeoutSeconds": 1, "Next": "Done",
      "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "TooSlow"}]},
    "TooSlow": {"Type": "Fail", "Error": "TooSlow"},
    "Declined": {"Type": "Fail", "Error": "Declined"},
    "Done": {"Type": "Succeed"}
  }
}"#;

#[test]
fn choice_parallel_wait_and_timeouts_run_as_defined_and_parallel_survives_kill_9() {
    let f = order_app("");
    f.write("order-saga.asl.json", FEATURES);
    let mut server = f.serve();

    let (e, history) = run_saga(&server, json!({"orderId": "small", "total": 5}));
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(states(&history), ["Route", "Small", "Done"]);
    let output: Value = serde_json::from_str(e["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["route"], "small");

    // Both branches run; their outputs come back in branch order at the ResultPath.
    let (e, history) = run_saga(&server, json!({"orderId": "both", "total": 150}));
    assert_eq!(e["status"], "SUCCEEDED", "{e}");
    assert_eq!(states(&history), ["Route", "Both", "Until", "Done"]);
    let output: Value = serde_json::from_str(e["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["branches"][0]["reservation"], "res-both");
    assert_eq!(output["branches"][1]["payment"], "pay-both");
    assert_eq!(runs(&server, "both")["reserve"], 1);
    // The branches are executions of their own, with their own history.
    let child = get_json(&server, "/_wasmfn/executions/order-both:2:1");
    assert_eq!(states(child["history"].as_array().unwrap()), ["Pause", "P"]);

    // A failing branch fails the Parallel, whose Catch takes over.
    let (e, history) = run_saga(
        &server,
        json!({"orderId": "declined", "total": 150, "failAt": "P"}),
    );
    assert_eq!(e["error"], "Declined", "{e}");
    assert_eq!(
        states(&history),
        ["Route", "Both!PaymentDeclined", "Declined!Declined"]
    );

    // TimeoutSeconds: a 3 s task against a 1 s limit fails with States.Timeout.
    let started = Instant::now();
    let (e, history) = run_saga(
        &server,
        json!({"orderId": "slow", "express": true, "sleepMs": 3000}),
    );
    assert_eq!(e["error"], "TooSlow", "{e}");
    assert_eq!(
        states(&history),
        ["Route", "Express!States.Timeout", "TooSlow!TooSlow"]
    );
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );

    // kill -9 while a branch waits: the restarted host resumes the parent and both branches,
    // and no task runs twice.
    let (status, body) = post(
        &server,
        "/_wasmfn/workflows/order-saga/executions?name=order-crash",
        r#"{"orderId": "crash", "total": 500}"#,
    );
    assert_eq!(status, 201, "{body}");
    wait_until("the reserve branch", Duration::from_secs(10), || {
        runs(&server, "crash")["reserve"] == 1
    });
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = f.serve();
    wait_until(
        "the resumed parallel execution",
        Duration::from_secs(20),
        || get_json(&server, "/_wasmfn/executions/order-crash")["execution"]["status"] != "RUNNING",
    );
    let described = get_json(&server, "/_wasmfn/executions/order-crash");
    assert_eq!(described["execution"]["status"], "SUCCEEDED", "{described}");
    assert_eq!(
        states(described["history"].as_array().unwrap()),
        ["Route", "Both", "Until", "Done"]
    );
    assert_eq!(
        runs(&server, "crash"),
        json!({"reserve": 1, "pay": 1, "ship": 0, "refund": 0, "release": 0})
    );
}
