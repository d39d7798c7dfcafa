//! The order saga's steps as one `task` component, deployed as five functions
//! (`reserve-inventory`, `process-payment`, `ship-order`, `refund-payment`,
//! `release-inventory`) that differ by their `step` config value.
//!
//! Each run counts itself in the `orders` key-value store (`runs/ORDER/STEP`), so the
//! `orders` function can show exactly which steps ran and how often. For demonstrations and
//! tests the input can ask for failures: `"failAt": "ShipOrder"` fails that state, and
//! `"busyAttempts": 2` makes the payment gateway answer `PaymentGatewayBusy` twice (the saga
//! retries it with backoff); `"sleepMs": 3000` makes every step take that long.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package example:order-steps;
        world order-steps {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasi:config/store@0.2.0-rc.1;
            import wasi:logging/logging@0.1.0-draft;
            export wasmfn:platform/task-handler@0.1.0;
        }
    ",
    world: "example:order-steps/order-steps",
    generate_all,
});

use exports::wasmfn::platform::task_handler::{Guest, TaskContext, TaskError};
use serde_json::{json, Value};
use wasi::keyvalue::{atomics, store};
use wasi::logging::logging::{log, Level};

struct Steps;

fn fail(error: &str, cause: String) -> TaskError {
    TaskError {
        error: error.into(),
        cause,
    }
}

impl Guest for Steps {
    fn handle(context: TaskContext, input: String) -> Result<String, TaskError> {
        let step = wasi::config::store::get("step")
            .ok()
            .flatten()
            .ok_or_else(|| fail("Misconfigured", "config value `step` is not set".into()))?;
        let mut order: Value = serde_json::from_str(&input)
            .map_err(|e| fail("InvalidOrder", format!("input is not JSON: {e}")))?;
        let id = order["orderId"].as_str().unwrap_or("unknown").to_string();
        let bucket =
            store::open("orders").map_err(|e| fail("StoreUnavailable", format!("{e:?}")))?;
        atomics::increment(&bucket, &format!("runs/{id}/{step}"), 1)
            .map_err(|e| fail("StoreUnavailable", format!("{e:?}")))?;
        log(
            Level::Info,
            "order-steps",
            &format!(
                "{step} for order {id} (state {}, attempt {})",
                context.state, context.attempt
            ),
        );
        if let Some(ms) = order["sleepMs"].as_u64() {
            // A slow dependency, for timeouts.
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if order["failAt"].as_str() == Some(context.state.as_str()) {
            let error = match step.as_str() {
                "reserve" => "OutOfStock",
                "pay" => "PaymentDeclined",
                "ship" => "ShippingUnavailable",
                _ => "StepFailed",
            };
            return Err(fail(
                error,
                format!("order {id}: {} failed as asked", context.state),
            ));
        }
        if step == "pay"
            && u64::from(context.attempt) <= order["busyAttempts"].as_u64().unwrap_or(0)
        {
            return Err(fail(
                "PaymentGatewayBusy",
                format!("attempt {}: gateway busy", context.attempt),
            ));
        }
        // Each step leaves its mark on the order, so the execution's output tells the story.
        let mark = match step.as_str() {
            "reserve" => json!({"reservation": format!("res-{id}")}),
            "pay" => json!({"payment": format!("pay-{id}"), "charged": order["total"]}),
            "ship" => json!({"tracking": format!("trk-{id}")}),
            "refund" => json!({"refunded": true}),
            "release" => json!({"released": true}),
            other => return Err(fail("Misconfigured", format!("unknown step `{other}`"))),
        };
        if let (Some(o), Some(m)) = (order.as_object_mut(), mark.as_object()) {
            o.extend(m.clone());
        }
        Ok(order.to_string())
    }
}

export!(Steps);
