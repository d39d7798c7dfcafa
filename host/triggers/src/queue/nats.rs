//! The distributed queue backend: NATS JetStream, for several hosts sharing queues.
//!
//! All queues live in one work-queue stream (`WASMFN_QUEUES` by default), queue `NAME` on
//! subject `wasmfn.queue.NAME`, each consumed by a durable pull consumer `NAME` with explicit
//! acknowledgement and `ack_wait` = the queue's visibility timeout. A publish is acknowledged by
//! the server only once stored, so an accepted message is durable as with the embedded backend.
//! A failure naks with the backoff as delay; at the maximum receive count the message is
//! republished to the dead-letter queue's subject (with its last error) and acknowledged. A
//! message put back for want of capacity is not naked (that would count a delivery): it stays
//! held on this host, its `ack_wait` restarted, and is handed out again here when due, so the
//! attempt number is JetStream's delivery count on every host.
//!
//! Each host reads each queue through one long-lived pull subscription (`consumer.stream()`),
//! which keeps a pull request open on the server and renews it as messages are taken: every
//! message the server hands out reaches a reader, unlike short pull requests, whose expiry
//! can race a delivery (the server counts it, the client never sees it, and it only comes back
//! after `ack_wait`). Several hosts on one durable consumer share its messages.
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
/// How long a receive waits for a first message before answering with none (the consumer
/// loop then asks again; the subscription stays open meanwhile).
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// How long each pull request of a subscription stays open on the server before the client
/// renews it; a renewal never loses a message, the subscription's inbox stays the same.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// The server's idle heartbeat on an open pull request: two missed ones mean the connection
/// is gone, and the subscription is opened again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);

/// One queue's long-lived subscription, opened on first receive.
type Subscription = Arc<tokio::sync::Mutex<Option<pull::Stream>>>;

/// Queues in a NATS JetStream stream.
pub struct NatsQueues {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    stream: String,
    visibility: HashMap<String, Duration>,
    /// Delivered, not yet settled messages by id, to ack or nak them later, with what the
    /// consumer was handed.
    held: Mutex<HashMap<String, (jetstream::Message, Received)>>,
    /// Messages put back for want of capacity, by queue, with when they are due again. They
    /// stay held here (their visibility timeout renewed) instead of going back to the server,
    /// which would count another delivery: so a message's attempt number is JetStream's
    /// delivery count, the same on whichever host it ends up.
    put_back: Mutex<HashMap<String, std::collections::VecDeque<(tokio::time::Instant, Received)>>>,
    /// Each queue's subscription, by queue name.
    subscriptions: Mutex<HashMap<String, Subscription>>,
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
                put_back: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashMap::new()),
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

    /// Take up to `max` messages from `queue`'s subscription: wait up to [`FETCH_WAIT`] for
    /// the first, then take what has already arrived.
    async fn do_receive(&self, queue: &str, max: usize) -> Result<Vec<Received>> {
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
    async fn fetch_now(&self, queue: &str, max: usize) -> Result<Vec<Received>> {
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
    /// delayed and was put back until it is due.
    async fn take(&self, message: jetstream::Message) -> Result<Option<Received>> {
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
                if let Some((m, _)) = held {
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
                let Some((m, received)) = this.held.lock().unwrap().get(&id).cloned() else {
                    continue;
                };
                // Kept here, its visibility timeout started again, and handed out again when
                // due: the server counts no delivery for it.
                m.ack_with(AckKind::Progress)
                    .await
                    .map_err(|e| anyhow!("keeping {id} of {queue}: {e}"))?;
                this.put_back
                    .lock()
                    .unwrap()
                    .entry(queue.clone())
                    .or_default()
                    .push_back((tokio::time::Instant::now() + delay, received));
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
            let Some((m, received)) = this.held.lock().unwrap().remove(&id) else {
                return Ok(FailOutcome::Retried);
            };
            let delivered = received.attempt;
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
                let batch = this.fetch_now(&from, 100).await?;
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
                    if let Some((h, _)) = held {
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
