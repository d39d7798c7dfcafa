//! Queue publishing, events, topics and workflow starts reach only what the manifest grants
//! each function (`queues`, `event-sources`, `topics`, `workflows`), denied by default; a
//! folder without a manifest stays open for one developer.

use crate::common::{client, Fixture};

#[test]
fn a_publisher_without_a_grant_is_not_loaded_and_the_error_names_the_line() {
    let f = Fixture::with_guests(&["hello", "publisher", "queue-worker"]);
    f.write(
        "wasmfn.toml",
        "[queues.jobs]\nfunction = \"queue-worker\"\n",
    );
    let server = f.serve();
    let logs = server.wait_for_log("imports `wasmfn:platform/queue-publisher`");
    assert!(
        logs.contains("imports `wasmfn:platform/queue-publisher`")
            && logs.contains("`queues = [\"...\"]`")
            && logs.contains("[functions.publisher]"),
        "{logs}"
    );
    assert_eq!(server.get("/hello").0, 200, "the rest is served");
    let r = client()
        .post(server.url("/publisher/jobs"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the publisher is not loaded");
}

#[test]
fn without_a_manifest_a_publisher_may_reach_every_queue() {
    let f = Fixture::with_guests(&["publisher"]);
    let server = f.serve();
    let r = client()
        .post(server.url("/publisher/jobs"))
        .body("x")
        .send()
        .unwrap();
    // Loaded and granted: the only problem is that no queue is declared.
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().starts_with("no such queue: jobs"));
}

#[test]
fn events_topics_and_workflows_outside_the_grants_are_refused() {
    let f = Fixture::with_guests(&["orders", "order-steps"]);
    f.write("order-saga.asl.json", crate::common::orders::SAGA);
    f.write(
        "wasmfn.toml",
        format!(
            "[kv.orders]\n\n[functions.orders]\nkv = [\"orders\"]\n\
             event-sources = [\"shop.returns\", \"billing.*\"]\ntopics = [\"audit\"]\nworkflows = [\"refunds\"]\n\n\
             [workflows.order-saga]\ndefinition = \"order-saga.asl.json\"\n\n\
             [topics.order-events]\n\n[rules.all]\ntargets = [\"topic:order-events\"]\npattern = {{ source = [\"shop.orders\"] }}\n\n{}",
            crate::common::orders::step_functions()
        ),
    );
    let server = f.serve();
    for (path, expect) in [
        ("/orders", "event source `shop.orders`"),
        ("/orders/notify", "topic `order-events`"),
        ("/orders/saga", "workflow `order-saga`"),
    ] {
        let r = client()
            .post(server.url(path))
            .body(r#"{"orderId": "o1", "total": 5}"#)
            .send()
            .unwrap();
        assert_eq!(r.status(), 500, "{path}");
        let text = r.text().unwrap();
        assert!(
            text.contains(&format!("may not reach {expect}"))
                && text.contains("[functions.orders]"),
            "{path}: {text}"
        );
    }
    let executions: serde_json::Value = server
        .admin_get("workflows/order-saga/executions")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        executions["executions"],
        serde_json::json!([]),
        "nothing was started"
    );
}
