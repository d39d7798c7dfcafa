//! The web console in a real browser (headless Chromium over WebDriver) against the real
//! binary serving the order example: sign-in with the token, the functions list, a failed
//! order's execution drawn with its failed step and compensations, a poisoned message in the
//! dead-letter view and its redrive, the live log tail, the pattern tester, invoking a function
//! and starting an execution from the page, a narrow window, the first load's size, and no
//! console errors. Screenshots of each view go to `CARGO_TARGET_TMPDIR/console-screenshots`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::orders::{admin_json, admin_post_json, order_app, post};
use common::wait_until;
use serde_json::{json, Value};

/// A Parallel state with two lanes, one of two states.
const FANOUT: &str = r#"{"StartAt": "Split", "States": {
  "Split": {"Type": "Parallel", "Next": "Done", "Branches": [
    {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": true}}},
    {"StartAt": "Right", "States": {"Right": {"Type": "Pass", "Next": "RightAgain"},
                                    "RightAgain": {"Type": "Pass", "End": true}}}]},
  "Done": {"Type": "Succeed"}}}"#;

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

/// The outcome the graph shows for each state (`data-outcome`).
fn outcomes(b: &Browser) -> Value {
    b.eval(
        "const o = {}; for (const g of document.querySelectorAll('#execution-graph g.state')) o[g.dataset.state] = g.dataset.outcome; return o;",
        json!([]),
    )
}

fn dlq_depth(server: &common::Server) -> u64 {
    admin_json(server, "queues")["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "email-queue-dlq")
        .unwrap()["waiting"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_console_shows_and_drives_the_order_example() {
    let f = order_app(
        "[schedules.nightly]\nfunction = \"cron-job\"\nexpression = \"0 30 3 * * *\"\n\n\
         [streams.audit]\nfunction = \"stream-audit\"\nmax-retries = 1\n\
         retry-backoff = \"50ms\"\non-failure = \"bisect\"\n\n\
         [workflows.fanout]\ndefinition = \"fanout.asl.json\"\n\n\
         [queues.outbox]\n",
    );
    f.write("fanout.asl.json", FANOUT);
    f.copy_guest("cron-job", "cron-job");
    f.copy_guest("stream-audit", "stream-audit");
    let server = f.serve();
    let ui = format!("http://{}/ui/", server.admin_addr);
    let b = Browser::start(1280, 800);

    // Without the token the page asks for it, and no data is shown.
    b.goto(&ui);
    b.wait_for(
        "the sign-in dialog",
        "return document.getElementById('login').open",
        json!([]),
    );
    b.screenshot(&shots().join("00-sign-in.png"));
    b.fill("#login-token", &server.admin_token);
    b.click("#login-form button");

    // Functions: every function of the app is listed.
    let list = b.wait_text("#view table", |t| t.contains("process-payment"));
    for name in [
        "orders",
        "reserve-inventory",
        "ship-order",
        "refund-payment",
        "release-inventory",
        "email",
        "analytics",
    ] {
        assert!(list.contains(name), "{name} missing from {list}");
    }

    // The first load (HTML, scripts, stylesheet) as the browser received it, compressed.
    let bytes = b.eval(
        "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].filter(e => !e.name.includes('/_wasmfn/')).reduce((a, e) => a + e.encodedBodySize, 0)",
        json!([]),
    );
    println!("first load: {bytes} bytes compressed");
    assert!(
        bytes.as_u64().unwrap() < 150 * 1024,
        "first load {bytes} bytes"
    );

    // A failing order: its execution shows the failed payment and the compensation.
    let (status, _) = post(
        &server,
        "/orders",
        r#"{"orderId":"bad1","total":5,"failAt":"ProcessPayment"}"#,
    );
    assert_eq!(status, 202);
    let mut id = String::new();
    wait_until("the failed execution", Duration::from_secs(10), || {
        let list = admin_json(&server, "workflows/order-saga/executions?status=FAILED");
        match list["executions"][0]["id"].as_str() {
            Some(x) => {
                id = x.to_string();
                true
            }
            None => false,
        }
    });
    b.screenshot(&shots().join("01-functions.png"));
    b.goto(&format!("{ui}#/executions/{id}"));
    b.wait_for(
        "the execution graph",
        "return document.querySelectorAll('#execution-graph g.state').length === 7",
        json!([]),
    );
    assert_eq!(
        outcomes(&b),
        json!({
            "ReserveInventory": "succeeded", "ProcessPayment": "failed",
            "ReleaseInventory": "compensated", "OrderFailed": "failed",
            "ShipOrder": "unvisited", "RefundPayment": "unvisited", "OrderShipped": "unvisited",
        })
    );
    b.click("#execution-graph g.state[data-state=ProcessPayment]");
    let details = b.wait_text("#step-details", |t| t.contains("PaymentDeclined"));
    assert!(details.contains("attempt 1"), "{details}");
    assert!(details.contains("res-bad1"), "the step's input: {details}");
    b.screenshot(&shots().join("02-execution.png"));

    // A poisoned message: in the dead-letter view, and redrive moves it back to its queue.
    post(
        &server,
        "/orders",
        r#"{"orderId":"poison1","total":5,"failConsumer":"email"}"#,
    );
    wait_until("the dead letter", Duration::from_secs(10), || {
        dlq_depth(&server) == 1
    });
    b.goto(&format!("{ui}#/queues"));
    b.wait_text("#view table", |t| t.contains("1 in email-queue-dlq"));
    b.screenshot(&shots().join("03-queues.png"));
    // A live queue's waiting messages (`outbox` has no consumer, so they stay).
    let r = server
        .admin_post("queues/outbox/messages")
        .header("x-wasmfn-attr-kind", "invoice")
        .body("invoice 42 for ada")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    b.goto(&format!("{ui}#/queues/outbox"));
    b.wait_text("#queue-messages", |t| t.contains("invoice 42 for ada"));
    b.click("#queue-messages summary");
    let opened = b.wait_text("#queue-messages", |t| t.contains("kind=invoice"));
    assert!(opened.contains("Attempts"), "{opened}");
    b.goto(&format!("{ui}#/queues/email-queue-dlq"));
    let letters = b.wait_text("#dead-letters", |t| t.contains("poison1"));
    assert!(letters.contains("#"), "{letters}");
    b.click("#dead-letters summary");
    let opened = b.wait_text("#dead-letters", |t| t.contains("Last error"));
    assert!(
        opened.contains("email cannot handle order poison1"),
        "{opened}"
    );
    assert!(opened.contains("rule=order-placed"), "attributes: {opened}");
    b.screenshot(&shots().join("04-dead-letters.png"));
    let email_before =
        admin_json(&server, "functions/email")["stats"]["total"]["invocations"].clone();
    b.click("#redrive");
    b.wait_for(
        "the confirmation",
        "return document.getElementById('confirm').open",
        json!([]),
    );
    b.click("#confirm-ok");
    b.wait_text("#status", |t| {
        t.contains("moved 1 message(s) to email-queue")
    });
    wait_until(
        "the redriven message reaching email again",
        Duration::from_secs(10),
        || {
            admin_json(&server, "functions/email")["stats"]["total"]["invocations"]
                .as_u64()
                .unwrap()
                > email_before.as_u64().unwrap()
        },
    );

    // The live log tail shows an invocation's line within a second.
    b.goto(&format!("{ui}#/logs"));
    b.wait_text("#logs-title", |t| t.contains("live"));
    let count = "return [...document.querySelectorAll('#log-lines li')].filter(l => l.querySelector('.fn').textContent === 'orders' && l.querySelector('.msg').textContent === 'invocation finished').length";
    let before = b.eval(count, json!([])).as_u64().unwrap();
    let sent = Instant::now();
    let (status, _) = server.get("/orders/none-such");
    assert!(status < 500);
    let waited = b.wait_for(
        "the invocation's log line",
        &format!("{count} > arguments[0]"),
        json!([before]),
    );
    let shown = sent.elapsed();
    println!("log line shown {shown:?} after the request ({waited:?} of waiting)");
    assert!(
        shown < Duration::from_secs(1),
        "the log line took {shown:?}"
    );
    b.screenshot(&shots().join("05-logs.png"));

    // The pattern tester: which rules an event matches, nothing published.
    b.goto(&format!("{ui}#/events"));
    let matched = |total: u32| {
        b.fill(
            "#rule-test-event",
            &json!({"source": "shop.orders", "type": "OrderPlaced", "detail": {"total": total}})
                .to_string(),
        );
        b.eval(
            "document.getElementById('rule-test-result').replaceChildren()",
            json!([]),
        );
        b.click("#rule-test-run");
        b.wait_text("#rule-test-result", |t| t.contains("order-placed"));
        b.eval(
            "return [...document.querySelectorAll('#rule-test-result li.match')].map(l => l.dataset.rule).sort()",
            json!([]),
        )
    };
    assert_eq!(matched(150), json!(["large-orders", "order-placed"]));
    b.screenshot(&shots().join("06-events.png"));
    assert_eq!(matched(5), json!(["order-placed"]));

    // Invoke a function from its page with its sample event.
    b.goto(&format!("{ui}#/functions/process-payment"));
    b.wait_text("#f-title", |t| t == "process-payment");
    b.click("#invoke-run");
    let result = b.wait_text("#invoke-result", |t| t.contains("payment"));
    assert!(result.contains("pay-o-1"), "{result}");
    b.screenshot(&shots().join("07-function.png"));

    // Start an execution from the workflow's page; its page follows it to the end.
    b.goto(&format!("{ui}#/workflows/order-saga"));
    b.wait_text("#view table", |t| t.contains("order-placed-"));
    b.screenshot(&shots().join("08-workflow.png"));
    b.fill(
        "#start-input",
        r#"{"orderId":"from-ui","total":20,"items":[]}"#,
    );
    b.fill("#start-name", "from-ui");
    b.click("#start-run");
    b.wait_text("#x-title", |t| t == "from-ui");
    b.wait_for(
        "the started execution to succeed",
        "const g = document.querySelector('#execution-graph g.state[data-state=OrderShipped]'); return !!g && g.dataset.outcome === 'succeeded'",
        json!([]),
    );

    // A Parallel state is drawn with its lanes, each state coloured from its branch's history.
    let (status, body) = admin_post_json(
        &server,
        "workflows/fanout/executions?name=fan1&wait=10",
        "{}",
    );
    assert_eq!(status, 201, "{body}");
    b.goto(&format!("{ui}#/executions/fan1"));
    b.wait_for(
        "the Parallel graph",
        "return document.querySelectorAll('#execution-graph g.state').length === 5",
        json!([]),
    );
    assert_eq!(
        outcomes(&b),
        json!({"Split": "succeeded", "Left": "succeeded", "Right": "succeeded",
               "RightAgain": "succeeded", "Done": "succeeded"})
    );
    b.click("#execution-graph g.state[data-state=RightAgain]");
    b.wait_text("#step-details", |t| t.contains("Pass, step"));
    b.screenshot(&shots().join("08-parallel.png"));

    // Streams: a poison record is parked with its reason; re-deliver it from the page.
    let poison = json!({"events": [{"type": "change", "source": "users", "key": "poison", "operation": "modify"}]});
    let r = server
        .admin_post("streams/audit/records")
        .json(&poison)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    b.goto(&format!("{ui}#/streams"));
    let parked = b.wait_text("#view", |t| t.contains("poison key"));
    assert!(parked.contains("1 parked"), "{parked}");
    b.screenshot(&shots().join("09-streams.png"));
    b.click("#view .message button");
    b.click("#confirm-ok");
    b.wait_text("#status", |t| t.contains("re-appended as sequence"));

    // Schedules: the expression in words, the next firings, run now and its run listed.
    b.goto(&format!("{ui}#/schedules"));
    let words = b.wait_text("#view", |t| t.contains("nightly"));
    assert!(words.contains("03:30"), "{words}");
    b.click("#view .actions button");
    b.wait_text("#view", |t| t.contains("manual"));
    b.screenshot(&shots().join("10-schedules.png"));

    // A narrow window: one column, nothing wider than the window but the tables' own scroll.
    b.resize(420, 800);
    b.goto(&format!("{ui}#/functions"));
    b.wait_text("#view table", |t| t.contains("process-payment"));
    let overflow = b.eval(
        "return document.scrollingElement.scrollWidth - window.innerWidth",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page is {overflow} px wider than a 420 px window"
    );
    b.screenshot(&shots().join("11-narrow.png"));

    let errors: Vec<_> = b
        .console_log()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
