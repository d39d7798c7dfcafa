//! The order example's guests as a test app: `orders` (http), `order-steps` (the saga's
//! tasks), `order-consumer` (the topic's subscribers), wired as in `guests/wasmfn.toml`, and
//! helpers to drive it over the host API.

use serde_json::Value;

use super::{client, wasmfn, Fixture, Server};

pub const SAGA: &str = include_str!("../../guests/order-saga.asl.json");

/// The five saga steps: one `order-steps.wasm` deployed under five names.
pub fn step_functions() -> String {
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

/// What the orders function may reach through its event and workflow imports.
pub const ORDERS_GRANTS: &str =
    "event-sources = [\"shop.orders\"]\ntopics = [\"order-events\"]\nworkflows = [\"order-saga\"]\n";

/// The order example as in `guests/wasmfn.toml`, with the components as files in one folder.
pub fn order_app(extra: &str) -> Fixture {
    let f = Fixture::with_guests(&["orders", "order-steps", "order-consumer"]);
    f.write("order-saga.asl.json", SAGA);
    let mut manifest =
        format!("[kv.orders]\n\n[functions.orders]\nkv = [\"orders\"]\n{ORDERS_GRANTS}\n");
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

pub fn post(server: &Server, path: &str, body: &str) -> (u16, Value) {
    status_and_json(
        client()
            .post(server.url(path))
            .body(body.to_string())
            .send()
            .unwrap(),
    )
}

/// A response's status, and its body as JSON (or as a JSON string when it is not JSON).
pub fn status_and_json(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `POST` `body` to host API `path` on the admin listener; status and the body as JSON.
pub fn admin_post_json(server: &Server, path: &str, body: &str) -> (u16, Value) {
    let r = server
        .admin_post(path)
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

/// `GET` host API `path` on the admin listener, which must answer 200 with JSON.
pub fn admin_json(server: &Server, path: &str) -> Value {
    let r = server.admin_get(path).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "GET admin {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

pub fn get_json(server: &Server, path: &str) -> Value {
    let (status, text) = server.get(path);
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The order saga alone (no queues), on a PostgreSQL execution store shared by every host
/// serving the folder.
pub fn saga_on_postgres(url: &str, definition: &str) -> Fixture {
    let f = Fixture::with_guests(&["orders", "order-steps"]);
    f.write("order-saga.asl.json", definition);
    let mut manifest = format!(
        "[kv.orders]\n\n[functions.orders]\nkv = [\"orders\"]\n{ORDERS_GRANTS}\n\
         [workflows.order-saga]\ndefinition = \"order-saga.asl.json\"\n\n\
         [workflow-store]\nbackend = \"postgres\"\nurl = \"{url}\"\nlease = \"2s\"\n\n"
    );
    manifest.push_str(&step_functions());
    f.write("wasmfn.toml", manifest);
    f
}

/// The saga with a 3 s Wait between payment and shipping, so a kill can land inside it.
pub fn slow_saga() -> String {
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

/// How often each saga step ran for `order`, as the guests themselves counted.
pub fn runs(server: &Server, order: &str) -> Value {
    get_json(server, &format!("/orders/{order}"))["runs"].clone()
}

/// Start the saga for `order` through the host API and wait for it to end.
pub fn run_saga(server: &Server, order: Value) -> (Value, Vec<Value>) {
    let name = format!("order-{}", order["orderId"].as_str().unwrap());
    let (status, body) = admin_post_json(
        server,
        &format!("workflows/order-saga/executions?name={name}&wait=30"),
        &order.to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let described = admin_json(server, &format!("executions/{name}"));
    let history = described["history"].as_array().unwrap().clone();
    (described["execution"].clone(), history)
}

pub fn states(history: &[Value]) -> Vec<String> {
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

/// Run `wasmfn ARGS... --server URL` against `server`; assert it succeeded and return stdout.
pub fn cli(server: &Server, args: &[&str]) -> String {
    let out = wasmfn()
        .args(args)
        .arg("--state-dir")
        .arg(&server.state_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wasmfn {}: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
