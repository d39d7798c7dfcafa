//! Queue publishing: `wasmfn:platform/queue-publisher` sends messages to the app's queues
//! through the [`QueueSender`] that the queue trigger provides.

use std::time::Duration;

use futures::future::BoxFuture;
use wasmfn_host_core::InstanceState;
use wasmtime::component::HasSelf;

use crate::service_import::{grant_key_spec, granted, service, GrantKey, ServiceImportCapability};
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
    /// A message is malformed (an attribute name or value, a delay); nothing was accepted.
    Invalid(String),
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
            SendError::Invalid(why) => write!(f, "{why}; nothing was accepted"),
            SendError::Backend(e) => write!(f, "queue backend failed, nothing was accepted: {e:#}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The longest a message may be held back before its first delivery.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Attributes per message, at most.
pub const MAX_ATTRIBUTES: usize = 64;
/// Bytes of one attribute name, at most.
pub const MAX_ATTRIBUTE_NAME: usize = 256;
/// Bytes of one attribute value, at most.
pub const MAX_ATTRIBUTE_VALUE: usize = 4096;

impl NewMessage {
    /// Check what every backend must be able to carry unchanged: attribute names are HTTP
    /// header tokens (so they travel as NATS headers and `x-wasmfn-attr-` headers), values have
    /// no control characters (a CR or LF would start a forged header), the delay is bounded.
    pub fn validate(&self) -> Result<(), String> {
        if self.delay > MAX_DELAY {
            return Err(format!(
                "a delay of {:?} is longer than the longest allowed, {} days",
                self.delay,
                MAX_DELAY.as_secs() / 86400
            ));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "{} attributes; a message may carry at most {MAX_ATTRIBUTES}",
                self.attributes.len()
            ));
        }
        for (name, value) in &self.attributes {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME || !name.chars().all(token) {
                return Err(format!(
                    "attribute name `{}` is not a token of at most {MAX_ATTRIBUTE_NAME} letters, digits and !#$%&'*+-.^_`|~",
                    name.escape_debug()
                ));
            }
            if name.to_ascii_lowercase().starts_with("nats-") {
                return Err(format!("attribute name `{name}` is reserved (Nats-*)"));
            }
            if value.len() > MAX_ATTRIBUTE_VALUE
                || value.chars().any(|c| c.is_control() && c != '\t')
            {
                return Err(format!(
                    "attribute `{name}`'s value has control characters (CR, LF...) or more than {MAX_ATTRIBUTE_VALUE} bytes"
                ));
            }
        }
        Ok(())
    }
}

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

/// `queues = ["jobs"]` in `[functions.NAME]`: the queues it may send to.
const QUEUES: GrantKey = GrantKey {
    key: "queues",
    what: "queue",
};

/// Its grant keys, and their manifest shapes.
const GRANTS: &[GrantKey] = &[QUEUES];
const GRANT_KEYS: &[wasmfn_host_core::manifest::KeySpec] = &[grant_key_spec("queues")];

/// The queue-publishing capability, to register.
pub const fn capability() -> QueuePublishCapability {
    ServiceImportCapability::new(
        "queue-publisher",
        "wasmfn:platform/queue-publisher",
        |linker| {
            queue_publisher::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
            Ok(())
        },
        GRANTS,
        GRANT_KEYS,
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
        granted::<dyn QueueSender>(self, &QUEUES, &queue).map_err(PublishError::NoSuchQueue)?;
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
        let sent =
            crate::traced::call("queue send", "queue", &queue, queues.send(&queue, messages));
        sent.await.map_err(|e| match e {
            SendError::UnknownQueue(q, _) => PublishError::NoSuchQueue(q),
            SendError::TooLarge { limit, .. } => PublishError::TooLarge(limit as u64),
            e @ SendError::Invalid(_) => PublishError::Other(e.to_string()),
            SendError::Backend(e) => PublishError::Other(format!("{e:#}")),
        })
    }
}
