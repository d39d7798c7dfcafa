//! Traces through the real binary: `wasmfn serve` exports OTLP/HTTP protobuf to a receiver on
//! loopback (decoded with the `opentelemetry-proto` messages), and the span tree of the order
//! saga is checked end to end: the caller's `traceparent` → the HTTP invocation → the event
//! publish → each rule → the topic's queue consumers, the rule-delivered function and every
//! workflow step with its task invocation and store calls; one trace, each span's parent the
//! hop before it. Also: outbound HTTP carries `traceparent`, queue messages carry it as a
//! reserved attribute, and log lines name the trace.

mod common;

use std::time::Duration;

use common::orders::order_app;
use common::otlp::{ReceivedSpan, Receiver};
use common::{client, wait_until, Fixture};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// The environment that points a host at `receiver`, batching for 100 ms.
fn export_env(receiver: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_SERVICE_NAME", "shop".into()),
    ]
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {what}, found {}: {found:#?}\nall: {:#?}",
        found.len(),
        spans
            .iter()
            .map(|s| (&s.name, &s.span_id, &s.parent_span_id))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    one(spans, name, |s| s.name == name)
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

/// The spans as an indented tree below the caller (printed with `--nocapture`).
fn tree(spans: &[ReceivedSpan]) -> String {
    fn walk(spans: &[ReceivedSpan], parent: &str, depth: usize, out: &mut String) {
        let mut kids: Vec<_> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent)
            .collect();
        kids.sort_by(|a, b| a.name.cmp(&b.name));
        for s in kids {
            out.push_str(&format!(
                "{}{}  [{}]\n",
                "  ".repeat(depth),
                s.name,
                s.span_id
            ));
            walk(spans, &s.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, CALLER, 0, &mut out);
    out
}

#[test]
fn the_order_saga_is_one_trace_from_the_callers_request_to_every_step() {
    let receiver = Receiver::start();
    let f = order_app("");
    let env = export_env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = f.serve_with(&[], &env);
    let r = client()
        .post(server.url("/orders"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .body(r#"{"orderId": "t1", "total": 150}"#)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());

    // Everything ends: the saga's last step, both subscribers, the rule-delivered function.
    let wanted = ["order-saga OrderShipped", "email", "analytics"];
    wait_until("the whole saga's spans", Duration::from_secs(20), || {
        let spans = receiver.spans();
        wanted.iter().all(|w| spans.iter().any(|s| s.name == *w))
            && spans.iter().filter(|s| s.name == "orders").count() == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = receiver.spans();
    eprintln!("{}", tree(&spans));
    assert!(receiver
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "/v1/traces"));
    // One trace, from one service: every span of the app continues the caller's.
    for s in &spans {
        assert_eq!(s.trace_id, TRACE, "{s:#?}");
        assert_eq!(s.service, "shop");
    }

    // HTTP: the invocation's parent is the caller's span.
    let http = one(&spans, "the HTTP invocation", |s| {
        s.name == "orders" && s.attr("faas.trigger") == Some("http") && s.parent_span_id == CALLER
    });
    assert_eq!(http.kind, 2, "server");
    assert_eq!(http.attr("wasmfn.outcome"), Some("ok"));
    assert_eq!(http.attr("http.request.method"), Some("POST"));
    assert_eq!(http.attr("url.path"), Some("/orders"));
    assert_eq!(http.attr("http.response.status_code"), Some("202"));
    assert_eq!(http.status, 0, "unset: succeeded");

    // → the event publish (a host call) → one span per matching rule.
    let publish = named(&spans, "events publish");
    assert_eq!(publish.parent_span_id, http.span_id);
    assert_eq!(publish.kind, 3, "client");
    let placed = named(&spans, "rule order-placed");
    let large = named(&spans, "rule large-orders");
    for rule in [placed, large] {
        assert_eq!(rule.parent_span_id, publish.span_id, "{rule:#?}");
        assert_eq!(rule.attr("wasmfn.event_type"), Some("OrderPlaced"));
    }

    // → the topic's subscribers, through their queues: consumers of the rule's messages.
    for consumer in ["email", "analytics"] {
        let c = named(&spans, consumer);
        assert_eq!(c.parent_span_id, placed.span_id, "{c:#?}");
        assert_eq!(c.kind, 5, "consumer");
        assert_eq!(c.attr("faas.trigger"), Some("pubsub"));
        assert!(
            c.links
                .contains(&(TRACE.to_string(), placed.span_id.clone())),
            "{c:#?}"
        );
    }
    // → the rule-delivered function (an http function, each event POSTed from its queue).
    let delivered = one(&spans, "the rule-delivered invocation", |s| {
        s.name == "orders" && s.parent_span_id == large.span_id
    });
    assert_eq!(delivered.attr("wasmfn.outcome"), Some("ok"));

    // → the saga: each step continues the rule that started it, each task runs in its step.
    for (state, task) in [
        ("ReserveInventory", Some("reserve-inventory")),
        ("ProcessPayment", Some("process-payment")),
        ("ShipOrder", Some("ship-order")),
        ("OrderShipped", None),
    ] {
        let step = named(&spans, &format!("order-saga {state}"));
        assert_eq!(step.parent_span_id, placed.span_id, "{step:#?}");
        assert_eq!(step.attr("wasmfn.state"), Some(state));
        let Some(task) = task else { continue };
        let invocation = named(&spans, task);
        assert_eq!(invocation.parent_span_id, step.span_id, "{invocation:#?}");
        assert_eq!(invocation.attr("wasmfn.world"), Some("task"));
        // Its store calls: named by operation and store, never by key or value.
        let calls = children(&spans, invocation);
        assert!(
            calls
                .iter()
                .any(|c| c.name == "kv increment" && c.attr("wasmfn.target") == Some("orders")),
            "{calls:#?}"
        );
        for c in calls {
            assert_eq!(c.kind, 3, "client");
            assert!(
                c.attributes
                    .keys()
                    .all(|k| k.starts_with("wasmfn.") || k.starts_with("otel.")),
                "{c:#?}"
            );
        }
    }
    assert!(spans
        .iter()
        .all(|s| !s.name.contains("Refund") && !s.name.contains("Release")));

    // Log lines name the trace: the invocations' and the guests' own (with their span).
    let logs = server.logs();
    let orders_line = logs
        .lines()
        .find(|l| l.contains("invocation finished") && l.contains("function=orders"))
        .expect("the orders invocation's line");
    assert!(
        orders_line.contains(&format!("trace_id=\"{TRACE}\""))
            || orders_line.contains(&format!("trace_id={TRACE}")),
        "{orders_line}"
    );
    let reserve = named(&spans, "reserve-inventory");
    let guest_line = logs
        .lines()
        .find(|l| l.contains("guest") && l.contains("reserve-inventory") && l.contains("span_id="))
        .unwrap_or_else(|| panic!("a guest log line of reserve-inventory in:\n{logs}"));
    assert!(
        guest_line.contains(TRACE) && guest_line.contains(&reserve.span_id),
        "{guest_line}"
    );
}

/// `publisher` (http) sends to queue `jobs`, whose consumer `queue-recorder` posts each batch
/// to `collector`.
fn publisher_app(collector: &str) -> Fixture {
    let f = Fixture::with_guests(&["queue-recorder", "publisher"]);
    f.write(
        "wasmfn.toml",
        format!(
            "[functions.queue-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.queue-recorder.config]\ncollector = \"{collector}\"\n\n\
             [queues.jobs]\nfunction = \"queue-recorder\"\n\n\
             [functions.publisher]\nqueues = [\"jobs\"]\n"
        ),
    );
    f
}

#[test]
fn a_queued_message_carries_its_producers_trace_and_outbound_http_carries_the_consumers() {
    let receiver = Receiver::start();
    let (collector, seen) = common::header_recorder("traceparent");
    let f = publisher_app(&collector);
    let env = export_env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = f.serve_with(&[], &env);
    let r = client()
        .post(server.url("/publisher/jobs"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .body("job-1")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    wait_until(
        "the consumer's outbound request",
        Duration::from_secs(10),
        || !seen.lock().unwrap().is_empty(),
    );
    // The outbound span ends (and may be exported) a batch before its parent, the consumer's
    // invocation span: wait for both.
    wait_until("the consumer's spans", Duration::from_secs(10), || {
        let spans = receiver.spans();
        spans.iter().any(|s| s.name.starts_with("POST "))
            && spans.iter().any(|s| s.name == "queue-recorder")
    });
    let spans = receiver.spans();
    let producer = named(&spans, "publisher");
    let send = named(&spans, "queue send");
    assert_eq!(send.parent_span_id, producer.span_id);
    assert_eq!(send.attr("wasmfn.target"), Some("jobs"));
    let consumer = named(&spans, "queue-recorder");
    assert_eq!(consumer.trace_id, TRACE);
    assert_eq!(consumer.parent_span_id, send.span_id, "{consumer:#?}");
    assert_eq!(
        consumer.links,
        vec![(TRACE.to_string(), send.span_id.clone())]
    );
    let outbound = one(&spans, "the outbound call", |s| s.name.starts_with("POST "));
    assert_eq!(outbound.parent_span_id, consumer.span_id);
    assert_eq!(outbound.attr("wasmfn.target"), Some("127.0.0.1"));
    // The collector saw the outbound span as its caller.
    let header = seen.lock().unwrap()[0].clone();
    assert_eq!(header, format!("00-{TRACE}-{}-01", outbound.span_id));
}

#[test]
fn nothing_is_exported_or_propagated_unless_configured() {
    let (collector, seen) = common::header_recorder("traceparent");
    let f = publisher_app(&collector);
    let server = f.serve();
    let r = client()
        .post(server.url("/publisher/jobs"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .body("job-1")
        .send()
        .unwrap();
    assert!(r.status().is_success());
    wait_until(
        "the consumer's outbound request",
        Duration::from_secs(10),
        || !seen.lock().unwrap().is_empty(),
    );
    assert_eq!(
        seen.lock().unwrap()[0],
        "",
        "no traceparent without tracing"
    );
    assert!(!server.logs().contains("trace_id"));
}

#[test]
fn the_manifest_alone_can_turn_export_on() {
    let receiver = Receiver::start();
    let f = Fixture::with_guests(&["hello"]);
    f.write(
        "wasmfn.toml",
        format!(
            "[telemetry]\notlp-endpoint = \"{}\"\nservice-name = \"from-manifest\"\n",
            receiver.endpoint
        ),
    );
    let server = f.serve_with(&[], &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    assert_eq!(server.get("/hello").0, 200);
    wait_until("the hello span", Duration::from_secs(10), || {
        receiver.spans().iter().any(|s| s.name == "hello")
    });
    let spans = receiver.spans();
    let hello = named(&spans, "hello");
    assert_eq!(hello.service, "from-manifest");
    // A root span: the request had no traceparent.
    assert_eq!(hello.parent_span_id, "");
    assert!(receiver
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "/v1/traces"));
}

#[test]
fn an_unreachable_collector_is_reported_and_serving_goes_on() {
    let port = common::servers::free_port();
    let f = Fixture::with_guests(&["hello"]);
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = f.serve_with(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    assert_eq!(server.get("/hello").0, 200);
    let line = server.wait_for_log("exporting traces to");
    assert!(
        line.contains(&format!("127.0.0.1:{port}/v1/traces")),
        "{line}"
    );
    assert_eq!(server.get("/hello").0, 200);
}

#[test]
fn a_bad_telemetry_table_is_refused_by_line() {
    let f = Fixture::with_guests(&["hello"]);
    f.write(
        "wasmfn.toml",
        "[telemetry]\notlp-endpoint = \"localhost:4318\"\n",
    );
    let out = common::wasmfn()
        .arg("check")
        .arg(f.dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("telemetry.otlp-endpoint") && text.contains("http://127.0.0.1:4318"),
        "{text}"
    );
    f.write(
        "wasmfn.toml",
        "[telemetry]\notlp-endpoint = \"http://127.0.0.1:4318\"\nservice-name = \"shop\"\n",
    );
    let out = common::wasmfn()
        .arg("check")
        .arg(f.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stream_delivery_continues_the_trace_of_the_write_it_records() {
    let receiver = Receiver::start();
    let (collector, seen) = common::header_recorder("traceparent");
    let f = Fixture::with_guests(&["stream-recorder"]);
    f.copy_guest("capabilities", "caps");
    f.write(
        "wasmfn.toml",
        format!(
            "[kv.cache]\nstream = \"changes\"\n\n\
             [sql.main]\n[blob.files]\n\n\
             [functions.caps]\nroutes = [\"/caps/*\"]\nkv = [\"cache\"]\nsql = [\"main\"]\nblob = [\"files\"]\n\n\
             [functions.stream-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.stream-recorder.config]\ncollector = \"{collector}\"\n\n\
             [streams.changes]\nfunction = \"stream-recorder\"\n"
        ),
    );
    let env = export_env(&receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = f.serve_with(&[], &env);
    let r = client()
        .put(server.url("/caps/kv/cache/k1"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .body("v1")
        .send()
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}\n{}",
        r.text().unwrap(),
        server.logs()
    );
    wait_until(
        "the stream consumer's spans",
        Duration::from_secs(15),
        || {
            let spans = receiver.spans();
            spans.iter().any(|s| s.name == "stream-recorder")
                && spans.iter().any(|s| s.name.starts_with("POST "))
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    let spans = receiver.spans();
    eprintln!("{}", tree(&spans));
    let writer = one(&spans, "the writing invocation", |s| {
        s.name == "caps" && s.parent_span_id == CALLER
    });
    let set = named(&spans, "kv set");
    assert_eq!(set.parent_span_id, writer.span_id);
    assert_eq!(set.attr("wasmfn.target"), Some("cache"));
    let delivery = named(&spans, "changes deliver");
    assert_eq!(delivery.trace_id, TRACE);
    assert_eq!(delivery.parent_span_id, set.span_id, "{delivery:#?}");
    assert!(delivery
        .links
        .contains(&(TRACE.to_string(), set.span_id.clone())));
    let consumer = named(&spans, "stream-recorder");
    assert_eq!(consumer.parent_span_id, delivery.span_id);
    assert_eq!(consumer.attr("faas.trigger"), Some("pubsub"));
    let outbound = one(&spans, "the outbound call", |s| s.name.starts_with("POST "));
    assert_eq!(outbound.parent_span_id, consumer.span_id);
    assert_eq!(
        seen.lock().unwrap()[0],
        format!("00-{TRACE}-{}-01", outbound.span_id)
    );
}
