//! Event publishing: `wasmfn:platform/events` puts events on the app's event bus and messages
//! on its topics, through the [`EventPublisher`] that the event bus provides.

use futures::future::BoxFuture;
use serde_json::Value;
use wasmfn_host_core::InstanceState;
use wasmtime::component::HasSelf;

use crate::queues::SendError;
use crate::service_import::{grant_key_spec, granted, service, GrantKey, ServiceImportCapability};
use crate::workflows::StartError;
use bindings::wasmfn::platform::events;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world event-imports { import wasmfn:platform/events@0.1.0; }
        ",
        world: "wasmfn:host-bindings/event-imports",
        imports: { default: async },
    });
}

/// An event to publish.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Who emitted it.
    pub source: String,
    /// What happened.
    pub r#type: String,
    /// Its data (a JSON object).
    pub detail: Value,
}

/// Why a publish was refused or failed; when it is returned nothing may be assumed delivered.
#[derive(Debug)]
pub enum PublishError {
    /// No topic of that name (declared ones listed).
    UnknownTopic(String, Vec<String>),
    /// The event or message is malformed.
    Invalid(String),
    /// A target refused it.
    Send(SendError),
    /// A workflow target could not start.
    Workflow(StartError),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::UnknownTopic(t, known) => {
                write!(
                f,
                "no topic named `{t}`; declared: {} (declare it as [topics.{t}] in wasmfn.toml)",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )
            }
            PublishError::Invalid(why) => f.write_str(why),
            PublishError::Send(e) => write!(f, "{e}"),
            PublishError::Workflow(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Routes events and topic messages (implemented by the event bus).
pub trait EventPublisher: Send + Sync {
    /// Route each event to the targets of every matching rule; their ids once every target
    /// holds them.
    fn publish_events(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<Vec<String>, PublishError>>;

    /// Publish to `topic`: a copy in the queue of every subscription whose filter matches.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        body: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<String, PublishError>>;
}

/// The event-publishing capability.
pub type EventPublishCapability = ServiceImportCapability<dyn EventPublisher>;

/// `event-sources = ["shop.orders"]` in `[functions.NAME]`: the sources it may publish
/// events under.
const EVENT_SOURCES: GrantKey = GrantKey {
    key: "event-sources",
    what: "event source",
};

/// `topics = ["order-events"]` in `[functions.NAME]`: the topics it may publish to.
const TOPICS: GrantKey = GrantKey {
    key: "topics",
    what: "topic",
};

/// Its grant keys, and their manifest shapes.
const GRANTS: &[GrantKey] = &[EVENT_SOURCES, TOPICS];
const GRANT_KEYS: &[wasmfn_host_core::manifest::KeySpec] =
    &[grant_key_spec("event-sources"), grant_key_spec("topics")];

/// The event-publishing capability, to register.
pub const fn capability() -> EventPublishCapability {
    ServiceImportCapability::new(
        "events",
        "wasmfn:platform/events",
        |linker| {
            events::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
            Ok(())
        },
        GRANTS,
        GRANT_KEYS,
    )
}

fn publish_error(e: PublishError) -> events::Error {
    match e {
        PublishError::UnknownTopic(t, _) => events::Error::NoSuchTopic(t),
        PublishError::Invalid(why) => events::Error::Invalid(why),
        PublishError::Send(SendError::TooLarge { limit, .. }) => {
            events::Error::TooLarge(limit as u64)
        }
        other => events::Error::Other(other.to_string()),
    }
}

impl events::Host for InstanceState {
    async fn publish_events(
        &mut self,
        list: Vec<events::Event>,
    ) -> Result<Vec<String>, events::Error> {
        let Some(bus) = service::<dyn EventPublisher>(self) else {
            return Err(events::Error::Other(
                "no event rules or topics are declared in wasmfn.toml (add [rules.NAME])".into(),
            ));
        };
        let mut parsed = Vec::with_capacity(list.len());
        for e in list {
            granted::<dyn EventPublisher>(self, &EVENT_SOURCES, &e.source)
                .map_err(events::Error::Invalid)?;
            let detail = serde_json::from_str(&e.detail)
                .map_err(|err| events::Error::Invalid(format!("detail is not JSON: {err}")))?;
            parsed.push(NewEvent {
                source: e.source,
                r#type: e.type_,
                detail,
            });
        }
        crate::traced::call(
            "events publish",
            "events",
            "event-bus",
            bus.publish_events(parsed),
        )
        .await
        .map_err(publish_error)
    }

    async fn publish(
        &mut self,
        topic: String,
        message: events::TopicMessage,
    ) -> Result<String, events::Error> {
        granted::<dyn EventPublisher>(self, &TOPICS, &topic).map_err(events::Error::NoSuchTopic)?;
        let Some(bus) = service::<dyn EventPublisher>(self) else {
            return Err(events::Error::NoSuchTopic(format!(
                "{topic} (no topics are declared in wasmfn.toml)"
            )));
        };
        let published = bus.publish(&topic, message.body, message.attributes);
        crate::traced::call("topic publish", "topic", &topic, published)
            .await
            .map_err(publish_error)
    }
}
