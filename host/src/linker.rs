//! The imports every function may use, linked once per host: WASI 0.2 (filesystem-less: no
//! preopens, no sockets unless granted), `wasi:http`, `wasi:config` and `wasi:logging`.
//!
//! `wasmfn:platform/queue-publisher` publishes to the app's queues, `events` to its event bus
//! and topics, `workflows` starts its workflows; `wasi:keyvalue` (with
//! `kv-extensions`), `sql` and `blob` reach the app's stores (see [`crate::kv`], [`crate::sql`],
//! [`crate::blob`]).
//!
//! Capabilities that are not implemented by this host are left out, so a component importing
//! them is refused at load with the import's name rather than failing at run time.

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;
use wasmtime_wasi_config::WasiConfig;

use crate::bindings::logging::wasi::logging::logging::{self, Level};
use crate::bindings::publisher::wasmfn::platform::queue_publisher::{
    self, Error as PublishError, OutgoingMessage,
};
use crate::queue::dispatcher::SendError;
use crate::queue::NewMessage;
use crate::state::InstanceState;

/// Build the linker shared by all functions of a host.
pub fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut InstanceState| {
        WasiConfig::from(&*s.config)
    })?;
    logging::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
    queue_publisher::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
    {
        use crate::bindings::routing::wasmfn::platform::{events, workflows};
        events::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        workflows::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
    }
    {
        use crate::bindings::stores::wasi::keyvalue::{atomics, batch, store};
        use crate::bindings::stores::wasmfn::platform::{blob, kv_extensions, sql};
        store::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        atomics::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        batch::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        kv_extensions::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        sql::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
        blob::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)?;
    }
    Ok(linker)
}

impl queue_publisher::Host for InstanceState {
    async fn send(
        &mut self,
        queue: String,
        message: OutgoingMessage,
    ) -> Result<String, PublishError> {
        let mut ids = self.send_batch(queue, vec![message]).await?;
        Ok(ids.pop().unwrap_or_default())
    }

    async fn send_batch(
        &mut self,
        queue: String,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<String>, PublishError> {
        let Some(queues) = self.platform.queues.get() else {
            return Err(PublishError::NoSuchQueue(format!(
                "{queue} (no queues are declared in wasmfn.toml)"
            )));
        };
        let messages = messages
            .into_iter()
            .map(|m| NewMessage {
                body: m.body,
                attributes: m.attributes,
                delay: std::time::Duration::from_millis(m.delay_ms.unwrap_or(0)),
            })
            .collect();
        queues.send(&queue, messages).await.map_err(|e| match e {
            SendError::UnknownQueue(q, _) => PublishError::NoSuchQueue(q),
            SendError::TooLarge { limit, .. } => PublishError::TooLarge(limit as u64),
            SendError::Backend(e) => PublishError::Other(format!("{e:#}")),
        })
    }
}

mod routing {
    //! `wasmfn:platform/events` and `wasmfn:platform/workflows` over the app's bus and workflows.
    use crate::bindings::routing::wasmfn::platform::{events, workflows};
    use crate::eventbus::{NewEvent, PublishError};
    use crate::queue::dispatcher::SendError;
    use crate::state::InstanceState;
    use crate::workflow::StartError;

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
            let Some(bus) = self.platform.events.get() else {
                return Err(events::Error::Other(
                    "no event rules or topics are declared in wasmfn.toml (add [rules.NAME])"
                        .into(),
                ));
            };
            let mut parsed = Vec::with_capacity(list.len());
            for e in list {
                let detail = serde_json::from_str(&e.detail)
                    .map_err(|err| events::Error::Invalid(format!("detail is not JSON: {err}")))?;
                parsed.push(NewEvent {
                    source: e.source,
                    r#type: e.type_,
                    detail,
                });
            }
            bus.publish_events(parsed).await.map_err(publish_error)
        }

        async fn publish(
            &mut self,
            topic: String,
            message: events::TopicMessage,
        ) -> Result<String, events::Error> {
            let Some(bus) = self.platform.events.get() else {
                return Err(events::Error::NoSuchTopic(format!(
                    "{topic} (no topics are declared in wasmfn.toml)"
                )));
            };
            bus.publish(&topic, message.body, message.attributes)
                .await
                .map_err(publish_error)
        }
    }

    impl workflows::Host for InstanceState {
        async fn start(
            &mut self,
            workflow: String,
            input: String,
            name: Option<String>,
        ) -> Result<String, workflows::Error> {
            let Some(w) = self.platform.workflows.get() else {
                return Err(workflows::Error::NoSuchWorkflow(format!(
                    "{workflow} (no workflows are declared in wasmfn.toml)"
                )));
            };
            match w.start_execution(&workflow, &input, name.as_deref()).await {
                Ok((id, _)) => Ok(id),
                Err(StartError::UnknownWorkflow(w, _)) => Err(workflows::Error::NoSuchWorkflow(w)),
                Err(StartError::Invalid(why)) => Err(workflows::Error::InvalidInput(why)),
                Err(e) => Err(workflows::Error::Other(e.to_string())),
            }
        }
    }
}

impl logging::Host for InstanceState {
    fn log(&mut self, level: Level, context: String, message: String) {
        let function = &*self.function;
        let invocation = self.invocation.load(std::sync::atomic::Ordering::Relaxed);
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", function, invocation, context, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", function, invocation, context, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", function, invocation, context, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", function, invocation, context, "{message}")
            }
            Level::Error | Level::Critical => {
                tracing::error!(target: "guest", function, invocation, context, critical = matches!(level, Level::Critical), "{message}")
            }
        }
    }
}
