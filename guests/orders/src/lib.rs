//! The shop's order API (an `http` function), showing the event bus and workflows from a guest:
//!
//! | request | does |
//! |---|---|
//! | `POST /orders` (an order) | publishes `OrderPlaced` (source `shop.orders`) on the event bus |
//! | `POST /orders/saga` (an order) | starts the `order-saga` workflow directly, named by `orderId` |
//! | `POST /orders/notify` (an order) | publishes it to the `order-events` topic (attribute `type=OrderNotice`) |
//! | `GET /orders/ID` | which saga steps ran for the order and which subscribers saw it |
//! | `POST /` (an event) | audit: how the `large-orders` rule delivers to this function |

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package example:orders;
        world orders {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasmfn:platform/events@0.1.0;
            import wasmfn:platform/workflows@0.1.0;
        }
    ",
    world: "example:orders/orders",
    generate_all,
});

use std::io::{Read as _, Write as _};

use crate::wasi::keyvalue::{atomics, store};
use ::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use serde_json::{json, Value};
use wasmfn::platform::{events, workflows};

const STEPS: [&str; 5] = ["reserve", "pay", "ship", "refund", "release"];

struct Orders;

fn respond(out: ResponseOutparam, status: u16, body: &Value) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"application/json".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body_out = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body_out.write().unwrap();
    let _ = stream.write_all(body.to_string().as_bytes());
    let _ = stream.flush();
    drop(stream);
    let _ = OutgoingBody::finish(body_out, None);
}

fn count(bucket: &store::Bucket, key: &str) -> u64 {
    // Adding 0 reads a counter without caring how the store encodes it.
    atomics::increment(bucket, key, 0).unwrap_or(0)
}

fn handle(method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
    let bucket = match store::open("orders") {
        Ok(b) => b,
        Err(e) => return (500, json!({"error": format!("{e:?}")})),
    };
    let order = || {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(Value::is_object)
    };
    match (method, path.trim_end_matches('/')) {
        (Method::Post, "/orders") => {
            let Some(order) = order() else {
                return (400, json!({"error": "send the order as a JSON object"}));
            };
            let event = events::Event {
                source: "shop.orders".into(),
                type_: "OrderPlaced".into(),
                detail: order.to_string(),
            };
            match events::publish_events(&[event]) {
                Ok(ids) => (202, json!({"eventId": ids[0]})),
                Err(e) => (500, json!({"error": format!("{e:?}")})),
            }
        }
        (Method::Post, "/orders/saga") => {
            let Some(order) = order() else {
                return (400, json!({"error": "send the order as a JSON object"}));
            };
            let name = order["orderId"].as_str().map(|s| format!("order-{s}"));
            match workflows::start("order-saga", &order.to_string(), name.as_deref()) {
                Ok(id) => (201, json!({"executionId": id})),
                Err(e) => (500, json!({"error": format!("{e:?}")})),
            }
        }
        (Method::Post, "/orders/notify") => {
            // Straight to the topic, with an attribute the subscriptions filter on.
            let message = events::TopicMessage {
                body: body.clone(),
                attributes: vec![("type".into(), "OrderNotice".into())],
            };
            match events::publish("order-events", &message) {
                Ok(id) => (202, json!({"messageId": id})),
                Err(e) => (500, json!({"error": format!("{e:?}")})),
            }
        }
        (Method::Post, "") => {
            // An event delivered by a rule: count it for its order.
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = event["detail"]["orderId"].as_str().unwrap_or("unknown");
            match atomics::increment(&bucket, &format!("audited/{id}"), 1) {
                Ok(_) => (200, json!({"audited": id})),
                Err(e) => (500, json!({"error": format!("{e:?}")})),
            }
        }
        (Method::Get, p) if p.starts_with("/orders/") => {
            let id = &p["/orders/".len()..];
            let runs: serde_json::Map<String, Value> = STEPS
                .iter()
                .map(|s| {
                    (
                        s.to_string(),
                        json!(count(&bucket, &format!("runs/{id}/{s}"))),
                    )
                })
                .collect();
            let seen: serde_json::Map<String, Value> = ["email", "analytics"]
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        json!(count(&bucket, &format!("seen/{c}/{id}"))),
                    )
                })
                .collect();
            let audited = count(&bucket, &format!("audited/{id}"));
            (
                200,
                json!({"orderId": id, "runs": runs, "seen": seen, "audited": audited}),
            )
        }
        _ => (
            404,
            json!({"error": "POST /orders, POST /orders/saga, GET /orders/ID"}),
        ),
    }
}

impl ::wasi::exports::http::incoming_handler::Guest for Orders {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        let method = request.method();
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume() {
            if let Ok(mut stream) = incoming.stream() {
                let _ = stream.read_to_end(&mut body);
            }
        }
        let (status, value) = handle(method, &path, body);
        respond(out, status, &value);
    }
}

::wasi::http::proxy::export!(Orders with_types_in ::wasi);
