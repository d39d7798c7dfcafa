//! The event bus and fan-out topics through the real binary, with the order example's guests:
//! the seed's fan-out (an order event reaching the email and analytics subscribers; a failing
//! or slow subscriber holding up only itself; filter policies) and rules routing by content,
//! on the embedded queues and on NATS JetStream.

mod common;

use std::time::{Duration, Instant};

use common::orders::{admin_json, admin_post_json, cli, get_json, order_app, post};
use common::servers::Nats;
use common::{wait_until, Fixture};
use serde_json::json;

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
    let (status, body) = admin_post_json(
        &server,
        "events",
        r#"{"source": "shop.orders", "type": "OrderPlaced", "detail": {"orderId": "small", "total": 5}}"#,
    );
    assert_eq!(status, 202, "{body}");
    // An analytics failure must not hold up email.
    cli(
        &server,
        &[
            "put-event",
            "--source",
            "shop.orders",
            "--type",
            "OrderPlaced",
            "--detail",
            r#"{"orderId": "flaky", "total": 1, "failConsumer": "analytics"}"#,
        ],
    );
    // Events that match no rule go nowhere.
    let (status, _) = admin_post_json(
        &server,
        "events",
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
        admin_json(&server, "queues/analytics-queue-dlq/messages")["messages"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    assert_eq!(order("flaky")["seen"], json!({"email": 1, "analytics": 0}));

    // A topic publish with a filter policy: analytics only takes OrderPlaced.
    cli(
        &server,
        &[
            "publish",
            "order-events",
            "--data",
            r#"{"orderId": "refund-1"}"#,
            "--attr",
            "type=OrderRefunded",
        ],
    );
    wait_until("the topic message", Duration::from_secs(10), || {
        order("refund-1")["seen"]["email"] == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(order("refund-1")["seen"]["analytics"], 0);
    // A slow subscriber delays only itself: email has the order while analytics still works.
    let published = Instant::now();
    let r = server
        .admin_post("topics/order-events/messages")
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
    let (status, body) = admin_post_json(&server, "topics/nope/messages", "x");
    assert_eq!(status, 404);
    assert!(
        body.as_str().unwrap().contains("declared: order-events"),
        "{body}"
    );
    let (status, _) = admin_post_json(
        &server,
        "events",
        r#"{"source": "s", "type": "t", "detail": [1]}"#,
    );
    assert_eq!(status, 400);
    let rules = admin_json(&server, "rules");
    assert_eq!(rules["rules"][0]["targets"], json!(["function:orders"]));
}
