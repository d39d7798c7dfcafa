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
//! A message sent with a delay waits in a side stream until due ([`delayed`]), so the wait
//! counts no delivery either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
use async_nats::HeaderMap;

mod delayed;
mod receive;

use delayed::Delayed;
use receive::Subscription;

use super::{
    now_ms, BackendFuture, DeadLetter, FailOutcome, NewMessage, QueueBackend, QueueStats, Received,
};

const SUBJECT_PREFIX: &str = "wasmfn.queue.";
const NOT_BEFORE: &str = "Wasmfn-Not-Before";
const ENQUEUED_AT: &str = "Wasmfn-Enqueued-At";
const LAST_ERROR: &str = "Wasmfn-Last-Error";
const RECEIVE_COUNT: &str = "Wasmfn-Receive-Count";
const ATTRIBUTE: &str = "Wasmfn-Attr-";

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
    /// Messages sent with a delay, until they are due.
    delayed: Delayed,
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
        let stream = work_queue_stream(&js, stream_name, SUBJECT_PREFIX).await?;
        for (name, visibility) in queues {
            stream
                .get_or_create_consumer(name, consumer_config(name, *visibility))
                .await
                .map_err(|e| anyhow!("creating JetStream consumer for queue {name}: {e}"))?;
        }
        let delayed =
            Delayed::ensure(&js, stream_name, queues.iter().map(|(q, _)| q.as_str())).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                js,
                stream: stream_name.to_string(),
                visibility: queues.iter().cloned().collect(),
                held: Mutex::new(HashMap::new()),
                put_back: Mutex::new(HashMap::new()),
                subscriptions: Mutex::new(HashMap::new()),
                delayed,
            }),
        })
    }
}

/// The durable work-queue stream `name` over the subjects under `prefix`, made if missing.
async fn work_queue_stream(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
) -> Result<jetstream::stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{prefix}>")],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("creating JetStream stream {name}: {e}"))
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

/// A sent message whose storage the server has yet to confirm.
struct Sent {
    ack: jetstream::context::PublishAckFuture,
    /// Put before the stream sequence to make the message's id.
    id_prefix: &'static str,
}

impl Sent {
    /// The message's id, once the server stored it.
    async fn id(self, queue: &str) -> Result<String> {
        let ack = self
            .ack
            .await
            .map_err(|e| anyhow!("JetStream did not store the message for {queue}: {e}"))?;
        Ok(format!("{}{}", self.id_prefix, ack.sequence))
    }
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
        pending.id(queue).await
    }

    /// Send one message (one with a delay to the side stream); the returned future resolves
    /// once the server stored it. Sending a whole batch before awaiting any acknowledgement
    /// pipelines it.
    async fn send(&self, queue: &str, m: NewMessage, extra: &[(&str, String)]) -> Result<Sent> {
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
        let (subject, id_prefix) = if m.delay.is_zero() {
            (format!("{SUBJECT_PREFIX}{queue}"), "")
        } else {
            (
                format!("{}{queue}", delayed::DELAYED_PREFIX),
                delayed::ID_PREFIX,
            )
        };
        let ack = self
            .js
            .publish_with_headers(subject, headers, m.body.into())
            .await
            .map_err(|e| anyhow!("publishing to {queue}: {e}"))?;
        Ok(Sent { ack, id_prefix })
    }

    /// Add up to `limit` messages in total on `subject` of stream `name` to `out`, oldest
    /// first, without taking them.
    async fn peek_stream(
        &self,
        name: &str,
        subject: &str,
        id_prefix: &str,
        limit: usize,
        out: &mut Vec<DeadLetter>,
    ) -> Result<()> {
        let mut stream = self.js.get_stream(name).await.map_err(|e| anyhow!("{e}"))?;
        let state = stream
            .info()
            .await
            .map_err(|e| anyhow!("{e}"))?
            .state
            .clone();
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
            let id = header(Some(&m.headers), delayed::ORIGINAL_ID)
                .unwrap_or_else(|| format!("{id_prefix}{seq}"));
            out.push(DeadLetter {
                id,
                body: String::from_utf8_lossy(&m.payload).into_owned(),
                attributes: attributes_of(Some(&m.headers)),
                receive_count: header(Some(&m.headers), RECEIVE_COUNT)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                last_error: header(Some(&m.headers), LAST_ERROR),
            });
        }
        Ok(())
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
            for sent in pending {
                ids.push(sent.id(&queue).await?);
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
            let delayed = this.delayed.waiting(&this.js, &queue).await?;
            let (waiting, in_flight) = (info.num_pending + delayed, info.num_ack_pending as u64);
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
            let mut out = Vec::new();
            let subject = format!("{SUBJECT_PREFIX}{queue}");
            this.peek_stream(&this.stream, &subject, "", limit, &mut out)
                .await?;
            let subject = format!("{}{queue}", delayed::DELAYED_PREFIX);
            let prefix = delayed::ID_PREFIX;
            this.peek_stream(&this.delayed.stream, &subject, prefix, limit, &mut out)
                .await?;
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
