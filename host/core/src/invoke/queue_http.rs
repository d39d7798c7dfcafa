//! Messages to an `http` function: an event rule delivers to one through its queue, each
//! message POSTed on its own, the same way on every platform (wasmfn's own queues, SQS on
//! Lambda).

use http_body_util::BodyExt as _;

use super::events::queue::{Batch, MessageFailure};
use crate::function::Function;

impl Function {
    /// POST each message of `batch` to this `http` function: the body as is (JSON when it
    /// starts with `{`), the message's id, queue and attempt in `x-wasmfn-message-id`,
    /// `x-wasmfn-queue` and `x-wasmfn-attempt`, each attribute in `x-wasmfn-attr-NAME`, and
    /// the producer's trace context as the W3C headers. A message fails when the answer is
    /// not a success or the invocation fails.
    ///
    /// Returns the failed messages and the ids of those not tried because the function was at
    /// capacity (to be put back without counting a delivery).
    pub async fn post_messages(&self, batch: &Batch) -> (Vec<MessageFailure>, Vec<String>) {
        let mut failures = Vec::new();
        let mut overloaded = Vec::new();
        for m in &batch.messages {
            let mut request = http::Request::post("http://localhost/")
                .header("x-wasmfn-message-id", &m.id)
                .header("x-wasmfn-queue", &batch.queue)
                .header("x-wasmfn-attempt", m.attempt.to_string());
            if m.body.first() == Some(&b'{') {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
            }
            for (k, v) in &m.attributes {
                request = request.header(format!("x-wasmfn-attr-{k}"), v);
                if k == crate::trace::TRACEPARENT || k == crate::trace::TRACESTATE {
                    request = request.header(k, v);
                }
            }
            let reason = match request.body(crate::full_body(m.body.clone())) {
                Err(e) => Some(format!("message cannot be sent as an HTTP request: {e}")),
                Ok(request) => match self.handle_http(request).await {
                    Err(e) if e.is_overload() => {
                        overloaded.push(m.id.clone());
                        None
                    }
                    Err(e) => Some(e.to_string()),
                    Ok(response) if response.status().is_success() => {
                        // Drain the body so the guest runs to completion.
                        let _ = response.into_body().collect().await;
                        None
                    }
                    Ok(response) => {
                        let status = response.status();
                        let body = response
                            .into_body()
                            .collect()
                            .await
                            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                            .unwrap_or_default();
                        Some(format!("HTTP {status}: {}", body.trim()))
                    }
                },
            };
            if let Some(reason) = reason {
                failures.push(MessageFailure {
                    id: m.id.clone(),
                    reason,
                });
            }
        }
        (failures, overloaded)
    }
}
