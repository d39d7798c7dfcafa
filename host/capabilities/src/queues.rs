//! Queue publishing: `wasmfn:platform/queue-publisher` sends messages to the app's queues
//! through the [`QueueSender`] that the queue trigger provides.

use std::time::Duration;

use futures::future::BoxFuture;
use wasmfn_host_core::InstanceState;
use wasmtime::component::HasSelf;

use crate::service_import::{service, ServiceImportCapability};
use bindings::wasmfn::platform::queue_publisher::{self, Error as PublishError, OutgoingMessage};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world publisher-imports { import wasmfn:platform/queue-publisher@0.1.0; }
        ",
        world: "wasmfn:host-bindings/publisher-imports",
        imports: { default: async },
    });
}

/// A message to enqueue.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    /// Body bytes.
    pub body: Vec<u8>,
    /// Producer attributes.
    pub attributes: Vec<(String, String)>,
    /// Keep the message invisible this long first.
    pub delay: Duration,
}

/// Why a message could not be accepted.
#[derive(Debug)]
pub enum SendError {
    /// No queue of that name is declared (the declared ones).
    UnknownQueue(String, Vec<String>),
    /// A body exceeds the queue's limit.
    TooLarge {
        /// The queue.
        queue: String,
        /// The body's size.
        size: usize,
        /// The queue's limit.
        limit: usize,
    },
    /// The backend failed; nothing was accepted.
    Backend(anyhow::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::UnknownQueue(q, known) => write!(
                f,
                "no queue named `{q}`; declared queues: {} (declare it as [queues.{q}] in wasmfn.toml)",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
            SendError::TooLarge { queue, size, limit } => write!(
                f,
                "message of {size} bytes exceeds queue `{queue}`'s limit of {limit} bytes \
                 (raise `max-message-size`, or store the payload in blob storage and send its key)"
            ),
            SendError::Backend(e) => write!(f, "queue backend failed, nothing was accepted: {e:#}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Accepts messages into the app's queues (implemented by the queue trigger).
pub trait QueueSender: Send + Sync {
    /// Check, then durably store, `messages` in `queue`; their ids.
    fn send<'a>(
        &'a self,
        queue: &'a str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'a, Result<Vec<String>, SendError>>;
}

/// The queue-publishing capability.
pub type QueuePublishCapability = ServiceImportCapability<dyn QueueSender>;

/// The queue-publishing capability, to register.
pub const fn capability() -> QueuePublishCapability {
    ServiceImportCapability::new(
        "queue-publisher",
        "wasmfn:platform/queue-publisher",
        |linker| {
            queue_publisher::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
            Ok(())
        },
    )
}

impl queue_publisher::Host for InstanceState {
    async fn send(
        &mut self,
        queue: String,
        message: OutgoingMessage,
    ) -> Result<String, PublishError> {
        let mut ids = queue_publisher::Host::send_batch(self, queue, vec![message]).await?;
        Ok(ids.pop().unwrap_or_default())
    }

    async fn send_batch(
        &mut self,
        queue: String,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, PublishError> {
        let Some(queues) = service::<dyn QueueSender>(self) else {
            return Err(PublishError::NoSuchQueue(format!(
                "{queue} (no queues are declared in wasmfn.toml)"
            )));
        };
        let messages = messages
            .into_iter()
            .map(|m| NewMessage {
                body: m.body,
                attributes: m.attributes,
                delay: Duration::from_millis(m.delay_ms.unwrap_or(0)),
            })
            .collect();
        queues.send(&queue, messages).await.map_err(|e| match e {
            SendError::UnknownQueue(q, _) => PublishError::NoSuchQueue(q),
            SendError::TooLarge { limit, .. } => PublishError::TooLarge(limit as u64),
            SendError::Backend(e) => PublishError::Other(format!("{e:#}")),
        })
    }
}
