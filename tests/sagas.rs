//! Saga workflows through the real binary, with the order example's guests: the order saga
//! succeeding and failing at each step (compensations run as defined), retries, Choice,
//! Parallel, Wait and timeouts, `kill -9` in the middle of an execution (one host, and two
//! hosts sharing PostgreSQL), and bad definitions refused with the state's name.

mod common;

use std::time::{Duration, Instant};

use common::orders::{
    admin_json, admin_post_json, cli, order_app, post, run_saga, runs, saga_on_postgres, slow_saga,
    states,
};
use common::servers::postgres;
use common::{wait_until, wasmfn};
use serde_json::{json, Value};

#[test]
fn postgres_store_hands_a_dead_hosts_execution_to_another_host() {
    let url = postgres().database();
    let f = saga_on_postgres(&url, &slow_saga());
    // Two hosts on one folder: the same PostgreSQL store (and the same embedded KV file).
    let mut a = f.serve();
    let b = f.serve();
    let (status, body) = admin_post_json(
        &a,
        "workflows/order-saga/executions?name=moved",
        r#"{"orderId": "moved"}"#,
    );
    assert_eq!(status, 201, "{body}");
    wait_until(
        "the payment step on host A",
        Duration::from_secs(10),
        || {
            admin_json(&a, "executions/moved")["history"]
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
    while admin_json(&b, "executions/moved")["execution"]["status"] == "RUNNING" {
        assert!(
            Instant::now() < deadline,
            "host B never finished it; its logs:\n{}",
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_slow_saga_ran_each_step_once(&b, "moved", "moved");
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
    let (status, body) = admin_post_json(
        &server,
        "workflows/order-saga/executions?name=order-ok",
        "{}",
    );
    assert_eq!(
        (status, body["created"].clone()),
        (200, json!(false)),
        "{body}"
    );
    let (status, body) = admin_post_json(&server, "workflows/order-saga/executions", "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) = admin_post_json(&server, "workflows/nope/executions", "{}");
    assert_eq!(status, 404);
    assert!(
        body.as_str().unwrap().contains("declared: order-saga"),
        "{body}"
    );

    // A guest starts the saga through the `workflows` import.
    let (status, body) = post(&server, "/orders/saga", r#"{"orderId": "from-guest"}"#);
    assert_eq!(status, 201, "{body}");
    wait_until("the guest-started saga", Duration::from_secs(10), || {
        admin_json(&server, "executions/order-from-guest")["execution"]["status"] == "SUCCEEDED"
    });

    // The CLI: start with --wait prints the execution and exits 0 on success.
    let stdout = cli(
        &server,
        &[
            "workflow",
            "start",
            "order-saga",
            "--input",
            r#"{"orderId":"cli"}"#,
            "--wait",
            "30",
        ],
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
    let (status, body) = admin_post_json(
        &server,
        "workflows/order-saga/executions?name=crash",
        r#"{"orderId": "crash"}"#,
    );
    assert_eq!(status, 201, "{body}");
    wait_until("the payment step", Duration::from_secs(10), || {
        admin_json(&server, "executions/crash")["history"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    server.child.kill().unwrap(); // SIGKILL: no drain, no flush
    server.child.wait().unwrap();

    let server = f.serve();
    wait_until("the resumed execution", Duration::from_secs(20), || {
        admin_json(&server, "executions/crash")["execution"]["status"] != "RUNNING"
    });
    // Each step ran exactly once, as the guests counted, and the Wait kept its deadline.
    assert_slow_saga_ran_each_step_once(&server, "crash", "crash");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        server.logs().contains("resuming unfinished executions"),
        "{}",
        server.logs()
    );
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
    let (status, body) = admin_post_json(&server, "workflows/order-saga/executions", "{}");
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
    let child = admin_json(&server, "executions/order-both:2:1");
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
    let (status, body) = admin_post_json(
        &server,
        "workflows/order-saga/executions?name=order-crash",
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
        || admin_json(&server, "executions/order-crash")["execution"]["status"] != "RUNNING",
    );
    let described = admin_json(&server, "executions/order-crash");
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

/// The slow saga's execution `name` (for order `order`) succeeded with every state once in
/// its history and every step run exactly once by the guests' own count.
fn assert_slow_saga_ran_each_step_once(server: &common::Server, name: &str, order: &str) {
    let described = admin_json(server, &format!("executions/{name}"));
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
        runs(server, order),
        json!({"reserve": 1, "pay": 1, "ship": 1, "refund": 0, "release": 0})
    );
}
