//! The distributed queue backend: NATS JetStream, for several hosts sharing queues.
//!
//! All queues live in one work-queue stream (`WASMFN_QUEUES` by default), queue `NAME` on
//! subject `wasmfn.queue.NAME`, each consumed by a durable pull consumer `NAME` with explicit
//! acknowledgement and `ack_wait` = the queue's visibility timeout. A publish is acknowledged by
//! the server only once stored, so an accepted message is durable as with the embedded backend.
//! A failure naks with the backoff as delay; at the maximum receive count the message is
//! republished to the dead-letter queue's subject (with its last error) and acknowledged.
//!
//! Difference from the embedded backend: JetStream 2.9 has no delayed publish, so a delayed
//! message is held back with a nak-with-delay when first fetched; that wait counts as one
//! delivery in its attempt number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
use async_nats::HeaderMap;
use futures::StreamExt as _;

use super::{
    now_ms, BackendFuture, DeadLetter, FailOutcome, NewMessage, QueueBackend, QueueStats, Received,
};

const SUBJECT_PREFIX: &str = "wasmfn.queue.";
const NOT_BEFORE: &str = "Wasmfn-Not-Before";
const ENQUEUED_AT: &str = "Wasmfn-Enqueued-At";
const LAST_ERROR: &str = "Wasmfn-Last-Error";
const RECEIVE_COUNT: &str = "Wasmfn-Receive-Count";
const ATTRIBUTE: &str = "Wasmfn-Attr-";
/// How long one pull request waits on the server for messages.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// Queues in a NATS JetStream stream.
pub struct NatsQueues {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    stream: String,
    visibility: HashMap<String, Duration>,
    /// Delivered, not yet settled messages by id, to ack or nak them later.
    held: Mutex<HashMap<String, jetstream::Message>>,
    /// Deliveries JetStream counted that wasmfn does not (messages released because the
    /// function had no capacity), by message id. Kept by this host only: with several hosts,
    /// a message released on one and failed on another counts the released delivery.
    uncounted: Mutex<HashMap<String, u32>>,
}

impl NatsQueues {
    /// Connect to `url` and make sure the stream and one consumer per queue exist.
    /// `queues` gives each queue's visibility timeout (its consumer's `ack_wait`).
    pub async fn connect(
        url: &str,
        stream_name: &str,
        queues: &[(String, Duration)],
    ) -> Result<Self> {
        let client = async_nats::connect(url).await.with_context(|| {
            format!(
                "cannot connect to NATS at {}; is nats-server running with -js?",
                wasmfn_host_core::secrets::redact_url(url)
            )
        })?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: stream_name.to_string(),
                subjects: vec![format!("{SUBJECT_PREFIX}>")],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("creating JetStream stream {stream_name}: {e}"))?;
        for (name, visibility) in queues {
            stream
                .get_or_create_consumer(name, consumer_config(name, *visibility))
                .await
                .map_err(|e| anyhow!("creating JetStream consumer for queue {name}: {e}"))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                js,
                stream: stream_name.to_string(),
                visibility: queues.iter().cloned().collect(),
                held: Mutex::new(HashMap::new()),
                uncounted: Mutex::new(HashMap::new()),
            }),
        })
    }
}

fn consumer_config(queue: &str, visibility: Duration) -> pull::Config {
    pull::Config {
        durable_name: Some(queue.to_string()),
        filter_subject: format!("{SUBJECT_PREFIX}{queue}"),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: visibility,
        max_deliver: -1,
        ..Default::default()
    }
}

/// Longest failure reason kept in a dead letter's header.
const MAX_REASON: usize = 1024;

/// `text` as a header value: a guest's failure reason may hold CR or LF, which would end the
/// header and start a forged one (or make the message unreadable); those become spaces.
fn header_value(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers?.get(name).map(|v| v.as_str().to_string())
}

impl Inner {
    async fn consumer(&self, queue: &str) -> Result<jetstream::consumer::Consumer<pull::Config>> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let visibility = self
            .visibility
            .get(queue)
            .copied()
            .unwrap_or(Duration::from_secs(30));
        stream
            .get_or_create_consumer(queue, consumer_config(queue, visibility))
            .await
            .map_err(|e| anyhow!("JetStream consumer for queue {queue}: {e}"))
    }

    async fn publish(
        &self,
        queue: &str,
        m: NewMessage,
        extra: &[(&str, String)],
    ) -> Result<String> {
        let pending = self.send(queue, m, extra).await?;
        let ack = pending
            .await
            .map_err(|e| anyhow!("JetStream did not store the message for {queue}: {e}"))?;
        Ok(ack.sequence.to_string())
    }

    /// Send one message; the returned future resolves once the server stored it. Sending a
    /// whole batch before awaiting any acknowledgement pipelines it.
    async fn send(
        &self,
        queue: &str,
        m: NewMessage,
        extra: &[(&str, String)],
    ) -> Result<jetstream::context::PublishAckFuture> {
        let mut headers = HeaderMap::new();
        let now = now_ms();
        headers.insert(ENQUEUED_AT, now.to_string().as_str());
        if !m.delay.is_zero() {
            headers.insert(
                NOT_BEFORE,
                (now + m.delay.as_millis() as u64).to_string().as_str(),
            );
        }
        for (k, v) in &m.attributes {
            headers.append(format!("{ATTRIBUTE}{k}").as_str(), v.as_str());
        }
        for (k, v) in extra {
            headers.insert(*k, v.as_str());
        }
        self.js
            .publish_with_headers(format!("{SUBJECT_PREFIX}{queue}"), headers, m.body.into())
            .await
            .map_err(|e| anyhow!("publishing to {queue}: {e}"))
    }

    async fn do_receive(&self, queue: &str, max: usize) -> Result<Vec<Received>> {
        let consumer = self.consumer(queue).await?;
        // Each expiring pull request is a window in which the server may hand a message to a
        // request the client has stopped reading: that delivery is counted but never seen and
        // only comes back after `ack_wait`. Long pulls keep such windows rare.
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .map_err(|e| anyhow!("fetching from {queue}: {e}"))?;
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow!("fetching from {queue}: {e}"))?;
            let info = message.info().map_err(|e| anyhow!("{e}"))?;
            let (id, delivered) = (info.stream_sequence.to_string(), info.delivered as u32);
            let headers = message.headers.as_ref();
            let not_before: u64 = header(headers, NOT_BEFORE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let now = now_ms();
            if not_before > now {
                let wait = Duration::from_millis(not_before - now);
                let _ = message.ack_with(AckKind::Nak(Some(wait))).await;
                continue;
            }
            let attributes = attributes_of(headers);
            let enqueued_at = header(headers, ENQUEUED_AT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.push(Received {
                id: id.clone(),
                body: message.payload.to_vec(),
                attributes,
                attempt: self.attempt(&id, delivered),
                enqueued_at,
            });
            self.held.lock().unwrap().insert(id, message);
        }
        Ok(out)
    }

    /// wasmfn's attempt number of a delivery JetStream numbered `delivered`.
    fn attempt(&self, id: &str, delivered: u32) -> u32 {
        let uncounted = self.uncounted.lock().unwrap().get(id).copied();
        delivered.saturating_sub(uncounted.unwrap_or(0)).max(1)
    }

    /// Forget a settled message's uncounted deliveries.
    fn settled(&self, id: &str) {
        self.uncounted.lock().unwrap().remove(id);
    }
}

/// A message's producer attributes, from its `Wasmfn-Attr-` headers.
fn attributes_of(headers: Option<&HeaderMap>) -> Vec<(String, String)> {
    headers
        .map(|h| {
            h.iter()
                .filter_map(|(k, vs)| {
                    let key = AsRef::<str>::as_ref(k).strip_prefix(ATTRIBUTE)?.to_string();
                    Some(
                        vs.iter()
                            .map(move |v| (key.clone(), v.as_str().to_string())),
                    )
                })
                .flatten()
                .collect()
        })
        .unwrap_or_default()
}

impl QueueBackend for NatsQueues {
    fn enqueue(&self, queue: &str, messages: Vec<NewMessage>) -> BackendFuture<Vec<String>> {
        let queue = queue.to_string();
        let this = self.inner.clone();
        Box::pin(async move {
            let mut pending = Vec::with_capacity(messages.len());
            for m in messages {
                pending.push(this.send(&queue, m, &[]).await?);
            }
            let mut ids = Vec::with_capacity(pending.len());
            for ack in pending {
                let ack = ack
                    .await
                    .map_err(|e| anyhow!("JetStream did not store the message for {queue}: {e}"))?;
                ids.push(ack.sequence.to_string());
            }
            Ok(ids)
        })
    }

    fn receive(
        &self,
        queue: &str,
        max: usize,
        _visibility: Duration,
    ) -> BackendFuture<Vec<Received>> {
        let queue = queue.to_string();
        let this = self.inner.clone();
        Box::pin(async move { this.do_receive(&queue, max).await })
    }

    fn ack(&self, _queue: &str, ids: Vec<String>) -> BackendFuture<()> {
        let this = self.inner.clone();
        Box::pin(async move {
            for id in ids {
                let held = this.held.lock().unwrap().remove(&id);
                this.settled(&id);
                if let Some(m) = held {
                    m.double_ack()
                        .await
                        .map_err(|e| anyhow!("acknowledging message {id}: {e}"))?;
                }
            }
            Ok(())
        })
    }

    fn release(&self, queue: &str, ids: Vec<String>, delay: Duration) -> BackendFuture<()> {
        let queue = queue.to_string();
        let this = self.inner.clone();
        Box::pin(async move {
            for id in ids {
                let Some(m) = this.held.lock().unwrap().remove(&id) else {
                    continue;
                };
                *this
                    .uncounted
                    .lock()
                    .unwrap()
                    .entry(id.clone())
                    .or_default() += 1;
                m.ack_with(AckKind::Nak(Some(delay)))
                    .await
                    .map_err(|e| anyhow!("nak of {id} on {queue}: {e}"))?;
            }
            Ok(())
        })
    }

    fn fail(
        &self,
        queue: &str,
        id: &str,
        reason: &str,
        backoff: Duration,
        max_receives: u32,
        dead_letter_queue: &str,
    ) -> BackendFuture<FailOutcome> {
        let (queue, id, reason, dlq) = (
            queue.to_string(),
            id.to_string(),
            header_value(reason),
            dead_letter_queue.to_string(),
        );
        let this = self.inner.clone();
        Box::pin(async move {
            let Some(m) = this.held.lock().unwrap().remove(&id) else {
                return Ok(FailOutcome::Retried);
            };
            let delivered = m.info().map(|i| i.delivered as u32).unwrap_or(1);
            let delivered = this.attempt(&id, delivered);
            if delivered < max_receives {
                m.ack_with(AckKind::Nak(Some(backoff)))
                    .await
                    .map_err(|e| anyhow!("nak of {id} on {queue}: {e}"))?;
                return Ok(FailOutcome::Retried);
            }
            // The dead letter keeps the producer's attributes, so a redrive restores them.
            let copy = NewMessage {
                body: m.payload.to_vec(),
                attributes: attributes_of(m.headers.as_ref()),
                delay: Duration::ZERO,
            };
            this.publish(
                &dlq,
                copy,
                &[(LAST_ERROR, reason), (RECEIVE_COUNT, delivered.to_string())],
            )
            .await?;
            m.double_ack()
                .await
                .map_err(|e| anyhow!("acknowledging dead-lettered {id}: {e}"))?;
            this.settled(&id);
            Ok(FailOutcome::DeadLettered)
        })
    }

    fn stats(&self, queue: &str) -> BackendFuture<QueueStats> {
        let queue = queue.to_string();
        let this = self.inner.clone();
        Box::pin(async move {
            let mut consumer = this.consumer(&queue).await?;
            let info = consumer.info().await.map_err(|e| anyhow!("{e}"))?;
            let (waiting, in_flight) = (info.num_pending, info.num_ack_pending as u64);
            // Work-queue retention drops acknowledged messages: the first message left on
            // the queue's subject is its oldest.
            let mut oldest_age = None;
            if waiting + in_flight > 0 {
                let subject = format!("{SUBJECT_PREFIX}{queue}");
                let first = match this.js.get_stream_no_info(&this.stream).await {
                    Ok(s) => s.get_first_raw_message_by_subject(&subject, 1).await.ok(),
                    Err(_) => None,
                };
                if let Some(first) = first {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos() as i128;
                    let age_ns = now.saturating_sub(first.time.unix_timestamp_nanos());
                    oldest_age = Some(Duration::from_nanos(age_ns.max(0) as u64));
                }
            }
            Ok(QueueStats {
                name: queue,
                waiting,
                in_flight,
                oldest_age,
            })
        })
    }

    fn peek(&self, queue: &str, limit: usize) -> BackendFuture<Vec<DeadLetter>> {
        let queue = queue.to_string();
        let this = self.inner.clone();
        Box::pin(async move {
            let mut stream = this
                .js
                .get_stream(&this.stream)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let state = stream
                .info()
                .await
                .map_err(|e| anyhow!("{e}"))?
                .state
                .clone();
            let subject = format!("{SUBJECT_PREFIX}{queue}");
            let mut out = Vec::new();
            for seq in state.first_sequence..=state.last_sequence {
                if out.len() >= limit {
                    break;
                }
                let Ok(m) = stream.get_raw_message(seq).await else {
                    continue;
                };
                if m.subject.as_str() != subject {
                    continue;
                }
                out.push(DeadLetter {
                    id: seq.to_string(),
                    body: String::from_utf8_lossy(&m.payload).into_owned(),
                    attributes: attributes_of(Some(&m.headers)),
                    receive_count: header(Some(&m.headers), RECEIVE_COUNT)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    last_error: header(Some(&m.headers), LAST_ERROR),
                });
            }
            Ok(out)
        })
    }

    fn redrive(&self, from: &str, to: &str) -> BackendFuture<u64> {
        let (from, to) = (from.to_string(), to.to_string());
        let this = self.inner.clone();
        Box::pin(async move {
            let mut moved = 0;
            loop {
                let batch = this.do_receive(&from, 100).await?;
                if batch.is_empty() {
                    return Ok(moved);
                }
                for m in batch {
                    let copy = NewMessage {
                        body: m.body,
                        attributes: m.attributes,
                        delay: Duration::ZERO,
                    };
                    this.publish(&to, copy, &[]).await?;
                    let held = this.held.lock().unwrap().remove(&m.id);
                    if let Some(h) = held {
                        h.double_ack().await.map_err(|e| anyhow!("{e}"))?;
                    }
                    moved += 1;
                }
            }
        })
    }

    fn wait_for_work(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        // `receive` already long-polls the server (FETCH_WAIT).
        Box::pin(async {})
    }
}
