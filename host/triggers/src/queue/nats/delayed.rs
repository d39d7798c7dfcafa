//! Delayed messages on NATS, kept off the queue until they are due.
//!
//! JetStream 2.9 has no delayed publish. Holding a delayed message back with a nak-with-delay
//! would count that wait as one delivery, so its attempt number would differ from the
//! embedded backend's. Instead a message sent with a delay goes to a side stream
//! (`<stream>_DELAYED`, subject `wasmfn.delayed.NAME`). Whichever host's receive loop looks
//! first moves it to its queue's subject once due. The queue's consumer then sees it for the
//! first time at attempt 1.
//!
//! The move is a publish followed by an acknowledgement. The publish carries a message id
//! (`Nats-Msg-Id`), so a host dying between the two makes no duplicate: the next host's
//! publish is dropped by the server's duplicate window. The message keeps the id it was sent
//! with (`d` and its side-stream sequence) on both sides of the move.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use async_nats::HeaderMap;
use futures::StreamExt as _;

use super::{header, work_queue_stream, NOT_BEFORE, SUBJECT_PREFIX};
use crate::queue::now_ms;

/// Subject prefix of delayed messages in the side stream.
pub(super) const DELAYED_PREFIX: &str = "wasmfn.delayed.";
/// How often each host's receive loop looks for due delayed messages of a queue: the most a
/// delayed message waits past its time, plus a round trip.
pub(super) const LOOK_EVERY: Duration = Duration::from_millis(250);
/// Most delayed messages moved per look; the rest wait for the next one.
const MOVE_BATCH: usize = 256;
/// How long a taken delayed message is held before the server offers it again; a move takes
/// one publish round trip, so this only matters when a host dies in the middle.
const MOVE_WAIT: Duration = Duration::from_secs(10);
/// The header carrying the id a delayed message was sent with.
pub(super) const ORIGINAL_ID: &str = "Wasmfn-Id";
/// The id prefix of messages sent with a delay (their side-stream sequence follows).
pub(super) const ID_PREFIX: &str = "d";

/// The side stream of a queue stream, and its consumers.
pub(super) struct Delayed {
    /// The side stream's name.
    pub(super) stream: String,
    /// Each queue's side-stream consumer, looked up once.
    consumers: tokio::sync::Mutex<HashMap<String, jetstream::consumer::PullConsumer>>,
    /// When this host last looked at each queue's delayed messages.
    last_look: Mutex<HashMap<String, tokio::time::Instant>>,
}

impl Delayed {
    /// Make sure the side stream of `main_stream` and one consumer per queue exist.
    pub(super) async fn ensure(
        js: &jetstream::Context,
        main_stream: &str,
        queues: impl Iterator<Item = &str>,
    ) -> Result<Self> {
        let name = format!("{main_stream}_DELAYED");
        let stream = work_queue_stream(js, &name, DELAYED_PREFIX).await?;
        let mut consumers = HashMap::new();
        for queue in queues {
            let consumer = stream
                .get_or_create_consumer(queue, consumer_config(queue))
                .await
                .map_err(|e| anyhow!("creating the delayed-message consumer of {queue}: {e}"))?;
            consumers.insert(queue.to_string(), consumer);
        }
        Ok(Self {
            stream: name,
            consumers: tokio::sync::Mutex::new(consumers),
            last_look: Mutex::new(HashMap::new()),
        })
    }

    /// `queue`'s side-stream consumer (made on first use for a queue not in the manifest,
    /// such as one named only by a publisher).
    async fn consumer(
        &self,
        js: &jetstream::Context,
        queue: &str,
    ) -> Result<jetstream::consumer::PullConsumer> {
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(queue) {
            return Ok(c.clone());
        }
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let consumer = stream
            .get_or_create_consumer(queue, consumer_config(queue))
            .await
            .map_err(|e| anyhow!("the delayed-message consumer of {queue}: {e}"))?;
        consumers.insert(queue.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// Whether it is time for this host to look at `queue`'s delayed messages again.
    pub(super) fn due_for_look(&self, queue: &str) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last_look.lock().unwrap();
        match last.get(queue) {
            Some(at) if now.duration_since(*at) < LOOK_EVERY => false,
            _ => {
                last.insert(queue.to_string(), now);
                true
            }
        }
    }

    /// Move `queue`'s due delayed messages to its subject; hold the others back until due
    /// (a nak-with-delay on the side stream, whose delivery count nobody reads).
    pub(super) async fn move_due(&self, js: &jetstream::Context, queue: &str) -> Result<usize> {
        let consumer = self.consumer(js, queue).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(MOVE_BATCH)
            .messages()
            .await
            .map_err(|e| anyhow!("fetching delayed messages of {queue}: {e}"))?;
        let mut moved = 0;
        while let Some(message) = batch.next().await {
            let message =
                message.map_err(|e| anyhow!("fetching delayed messages of {queue}: {e}"))?;
            let seq = message.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
            let headers = message.headers.clone().unwrap_or_default();
            let not_before: u64 = header(Some(&headers), NOT_BEFORE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let now = now_ms();
            if not_before > now {
                let wait = Duration::from_millis(not_before - now);
                message
                    .ack_with(AckKind::Nak(Some(wait)))
                    .await
                    .map_err(|e| anyhow!("holding delayed message {seq} of {queue}: {e}"))?;
                continue;
            }
            let id = format!("{ID_PREFIX}{seq}");
            let mut copy = HeaderMap::new();
            for (k, values) in headers.iter() {
                if AsRef::<str>::as_ref(k) == NOT_BEFORE {
                    continue;
                }
                for v in values {
                    copy.append(k.clone(), v.clone());
                }
            }
            copy.insert(ORIGINAL_ID, id.as_str());
            copy.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("wasmfn-delayed-{}-{seq}", self.stream).as_str(),
            );
            js.publish_with_headers(
                format!("{SUBJECT_PREFIX}{queue}"),
                copy,
                message.payload.clone(),
            )
            .await
            .map_err(|e| anyhow!("moving delayed message {id} to {queue}: {e}"))?
            .await
            .map_err(|e| anyhow!("JetStream did not store delayed message {id} on {queue}: {e}"))?;
            message
                .double_ack()
                .await
                .map_err(|e| anyhow!("settling moved delayed message {id} of {queue}: {e}"))?;
            moved += 1;
        }
        Ok(moved)
    }

    /// How many of `queue`'s messages wait in the side stream.
    pub(super) async fn waiting(&self, js: &jetstream::Context, queue: &str) -> Result<u64> {
        let mut consumer = self.consumer(js, queue).await?;
        let info = consumer.info().await.map_err(|e| anyhow!("{e}"))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

fn consumer_config(queue: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(queue.to_string()),
        filter_subject: format!("{DELAYED_PREFIX}{queue}"),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: MOVE_WAIT,
        max_deliver: -1,
        // Held-back messages are many and long-lived; none of them may block a due one.
        max_ack_pending: -1,
        ..Default::default()
    }
}
