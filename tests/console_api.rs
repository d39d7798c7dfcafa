//! The admin API routes the console reads, through the real binary with the order example:
//! functions with their figures and last invocations, invoking one with an event, the event
//! pattern tester and recent deliveries, a workflow's definition as a graph, and an
//! execution's Parallel branches.

mod common;

use common::orders::{admin_json, admin_post_json, order_app, run_saga};
use serde_json::{json, Value};

fn function<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn functions_rules_and_workflow_graphs_as_the_console_reads_them() {
    let f = order_app("");
    let server = f.serve();

    // Functions: world, bindings from the manifest, limits, a sample event.
    let list = admin_json(&server, "functions");
    let pay = function(&list, "process-payment");
    assert_eq!(pay["world"], "task");
    assert_eq!(pay["bindings"]["kv"], json!(["orders"]));
    assert_eq!(pay["bindings"]["config"]["step"], "pay");
    assert_eq!(pay["limits"]["memoryBytes"], 128 << 20);
    assert_eq!(pay["mode"]["kind"], "fresh");
    assert!(pay["sampleEvent"].is_object(), "{pay}");
    let orders = function(&list, "orders");
    assert_eq!(orders["world"], "http");
    assert!(
        orders["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "/orders"),
        "{orders}"
    );

    // A failing payment shows in the function's last invocations with its error.
    let (e, _) = run_saga(
        &server,
        json!({"orderId": "c-1", "failAt": "ProcessPayment"}),
    );
    assert_eq!(e["status"], "FAILED");
    let pay = admin_json(&server, "functions/process-payment");
    let last = &pay["recent"][0];
    assert_eq!(last["outcome"], "handler_error", "{pay}");
    assert!(
        last["error"].as_str().unwrap().contains("PaymentDeclined"),
        "{last}"
    );
    assert!(last["durationUs"].as_u64().is_some());
    assert!(pay["stats"]["p50Ms"].as_f64().is_some(), "{pay}");
    assert_eq!(pay["stats"]["errorRate"], 1.0, "{pay}");
    let release = admin_json(&server, "functions/release-inventory");
    assert_eq!(release["recent"][0]["outcome"], "ok", "{release}");

    // Invoke from the API: a task with its input, and a malformed HTTP event refused.
    let (status, body) = admin_post_json(
        &server,
        "functions/reserve-inventory/invoke",
        r#"{"orderId": "c-2"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let (status, body) = admin_post_json(&server, "functions/orders/invoke", r#"{"path": 5}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.as_str().unwrap().contains("sampleEvent"), "{body}");
    let (status, _) = admin_post_json(&server, "functions/nope/invoke", "{}");
    assert_eq!(status, 404);

    // The pattern tester: which rules an event would match, without publishing it.
    let test = |total: u32| {
        let (status, body) = admin_post_json(
            &server,
            "rules/test",
            &json!({"source": "shop.orders", "type": "OrderPlaced", "detail": {"total": total}})
                .to_string(),
        );
        assert_eq!(status, 200, "{body}");
        body["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["matches"] == true)
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(test(150), ["large-orders", "order-placed"]);
    assert_eq!(test(5), ["order-placed"]);
    assert_eq!(
        admin_json(&server, "events/deliveries")["deliveries"],
        json!([]),
        "testing a pattern delivers nothing"
    );
    let rules = admin_json(&server, "rules");
    assert_eq!(
        rules["rules"][0]["pattern"]["detail"]["total"][0]["numeric"][1],
        100
    );

    // A published event shows in the deliveries with its rules and targets.
    let (status, _) = admin_post_json(
        &server,
        "events",
        r#"{"source": "shop.orders", "type": "OrderPlaced", "detail": {"orderId": "c-3", "total": 10}}"#,
    );
    assert_eq!(status, 202);
    let deliveries = admin_json(&server, "events/deliveries");
    let d = &deliveries["deliveries"][0];
    assert_eq!(d["rules"], json!(["order-placed"]), "{deliveries}");
    assert_eq!(
        d["targets"],
        json!(["workflow:order-saga", "topic:order-events"])
    );

    // The saga's definition as a graph: reading order, Next and Catch edges.
    let w = admin_json(&server, "workflows/order-saga");
    let states = w["graph"]["states"].as_array().unwrap();
    assert_eq!(states[0]["name"], "ReserveInventory");
    assert_eq!(states[0]["resource"], "reserve-inventory");
    let pay = states
        .iter()
        .find(|s| s["name"] == "ProcessPayment")
        .unwrap();
    assert!(pay["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "catch" && e["to"] == "ReleaseInventory"));
    assert_eq!(
        states.iter().find(|s| s["name"] == "OrderFailed").unwrap()["end"],
        true
    );
    let described = admin_json(&server, "executions/order-c-1");
    assert_eq!(
        described["branches"],
        json!({}),
        "no Parallel in the order saga"
    );
    let failed = admin_json(&server, "workflows/order-saga/executions?status=failed");
    assert!(failed["executions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "FAILED"));
    assert!(!failed["executions"].as_array().unwrap().is_empty());
}
