//! Receiving from NATS: one long-lived pull subscription per queue, messages put back on this
//! host, and messages fetched without a subscription.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt as _;

use super::{attributes_of, delayed, header, Inner, ENQUEUED_AT, NOT_BEFORE};
use crate::queue::{now_ms, Received};

/// How long a receive waits for a first message before answering with none (the consumer
/// loop then asks again; the subscription stays open meanwhile). As long as the look for due
/// delayed messages, which happens between receives.
const FETCH_WAIT: Duration = delayed::LOOK_EVERY;
/// How long each pull request of a subscription stays open on the server before the client
/// renews it; a renewal never loses a message, the subscription's inbox stays the same.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// The server's idle heartbeat on an open pull request: two missed ones mean the connection
/// is gone, and the subscription is opened again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

/// One queue's long-lived subscription, opened on first receive.
pub(super) type Subscription = Arc<tokio::sync::Mutex<Option<pull::Stream>>>;

impl Inner {
    /// Take up to `max` messages from `queue`'s subscription: wait up to [`FETCH_WAIT`] for
    /// the first, then take what has already arrived.
    pub(super) async fn do_receive(&self, queue: &str, max: usize) -> Result<Vec<Received>> {
        // Messages put back here and due again come first.
        let due: Vec<Received> = {
            let mut put_back = self.put_back.lock().unwrap();
            let now = tokio::time::Instant::now();
            let mut due = Vec::new();
            if let Some(waiting) = put_back.get_mut(queue) {
                while due.len() < max && waiting.front().is_some_and(|(at, _)| *at <= now) {
                    due.push(waiting.pop_front().expect("checked").1);
                }
            }
            due
        };
        if !due.is_empty() {
            return Ok(due);
        }
        if self.delayed.due_for_look(queue) {
            if let Err(e) = self.delayed.move_due(&self.js, queue).await {
                tracing::warn!(queue, error = %e, "cannot move due delayed messages; trying again");
            }
        }
        let subscription = self
            .subscriptions
            .lock()
            .unwrap()
            .entry(queue.to_string())
            .or_default()
            .clone();
        let mut open = subscription.lock().await;
        if open.is_none() {
            let consumer = self.consumer(queue).await?;
            let stream = consumer
                .stream()
                // About one batch buffered here while the last one runs: what waits on this
                // host counts down its visibility timeout, so keep it small.
                .max_messages_per_batch(max.max(1))
                .expires(PULL_EXPIRES)
                .heartbeat(PULL_HEARTBEAT)
                .messages()
                .await
                .map_err(|e| anyhow!("subscribing to {queue}: {e}"))?;
            *open = Some(stream);
        }
        let stream = open.as_mut().expect("opened above");
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + FETCH_WAIT;
        while out.len() < max {
            // The first message is waited for; after it, only what is already here.
            let next = if out.is_empty() {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                match futures::FutureExt::now_or_never(stream.next()) {
                    Some(next) => next,
                    None => break,
                }
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // A lost connection or missed heartbeats: open a new subscription next
                    // time. Messages taken so far are returned; the rest come back after
                    // their visibility timeout.
                    *open = None;
                    if out.is_empty() {
                        return Err(anyhow!("reading {queue}: {e}"));
                    }
                    tracing::warn!(queue, error = %e, "queue subscription ended; opening a new one");
                    break;
                }
                None => {
                    *open = None;
                    break;
                }
            };
            if let Some(r) = self.take(message).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Take messages of `queue` that are there now, without a subscription (a redrive of a
    /// dead-letter queue, which nobody consumes).
    pub(super) async fn fetch_now(&self, queue: &str, max: usize) -> Result<Vec<Received>> {
        let consumer = self.consumer(queue).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|e| anyhow!("fetching from {queue}: {e}"))?;
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow!("fetching from {queue}: {e}"))?;
            if let Some(r) = self.take(message).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A delivered message as received (held for its settlement), or `None` when it is
    /// delayed and was put back until it is due (only a message sent by a wasmfn before
    /// the side stream of [`delayed`] can be on the queue's subject with a delay).
    async fn take(&self, message: jetstream::Message) -> Result<Option<Received>> {
        let info = message.info().map_err(|e| anyhow!("{e}"))?;
        let headers = message.headers.as_ref();
        let id = header(headers, delayed::ORIGINAL_ID)
            .unwrap_or_else(|| info.stream_sequence.to_string());
        let delivered = info.delivered as u32;
        let not_before: u64 = header(headers, NOT_BEFORE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let now = now_ms();
        if not_before > now {
            let wait = Duration::from_millis(not_before - now);
            let _ = message.ack_with(AckKind::Nak(Some(wait))).await;
            return Ok(None);
        }
        let received = Received {
            id: id.clone(),
            body: message.payload.to_vec(),
            attributes: attributes_of(headers),
            attempt: delivered.max(1),
            enqueued_at: header(headers, ENQUEUED_AT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };
        self.held
            .lock()
            .unwrap()
            .insert(id, (message, received.clone()));
        Ok(Some(received))
    }
}
