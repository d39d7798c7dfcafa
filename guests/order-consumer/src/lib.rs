//! A subscriber of the `order-events` topic, deployed twice (`email`, `analytics`, told apart
//! by the `consumer` config value). Each order event it handles is counted in the `orders`
//! key-value store (`seen/CONSUMER/ORDER`). An order whose detail has `"failConsumer"` equal
//! to this consumer's name fails here (and is retried, then dead-lettered) without holding
//! up the other subscriber; `"slowConsumer"` (with `"sleepMs"`) makes it slow instead.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package example:order-consumer;
        world order-consumer {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasi:config/store@0.2.0-rc.1;
            export wasmfn:platform/queue-handler@0.1.0;
        }
    ",
    world: "example:order-consumer/order-consumer",
    generate_all,
});

use exports::wasmfn::platform::queue_handler::{Batch, Guest, MessageFailure};
use serde_json::Value;
use wasi::keyvalue::{atomics, store};

struct Consumer;

impl Guest for Consumer {
    fn handle(batch: Batch) -> Result<Vec<MessageFailure>, String> {
        let me = wasi::config::store::get("consumer")
            .ok()
            .flatten()
            .unwrap_or_else(|| "consumer".into());
        let bucket = store::open("orders").map_err(|e| format!("{e:?}"))?;
        let mut failures = Vec::new();
        for m in batch.messages {
            let event: Value = serde_json::from_slice(&m.body).unwrap_or(Value::Null);
            // Events from the bus carry the order in `detail`; plain topic messages are the order.
            let order = if event["detail"].is_object() {
                &event["detail"]
            } else {
                &event
            };
            let id = order["orderId"].as_str().unwrap_or("unknown");
            if order["slowConsumer"].as_str() == Some(me.as_str()) {
                // A slow subscriber, to show it delays only its own queue.
                let ms = order["sleepMs"].as_u64().unwrap_or(1000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            if order["failConsumer"].as_str() == Some(me.as_str()) {
                failures.push(MessageFailure {
                    id: m.id,
                    reason: format!("{me} cannot handle order {id}"),
                });
                continue;
            }
            atomics::increment(&bucket, &format!("seen/{me}/{id}"), 1)
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(failures)
    }
}

export!(Consumer);
