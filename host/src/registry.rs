//! The one list of what this host is made of: every capability (linked into each host, its
//! manifest section parsed first), then the manifest sections of the triggers and
//! orchestration. Adding a capability is one line in [`capabilities`]; a trigger adds its
//! section to [`trigger_sections`] and its service to [`crate::load`].
//!
//! Order matters for parsing only: a section may read the sections parsed before it (an event
//! rule's targets are checked against the queues and workflows).

use std::sync::Arc;

use wasmfn_host_capabilities as caps;
use wasmfn_host_core::manifest::ManifestSection;
use wasmfn_host_core::Capability;

/// Host-wide options the capabilities are built with.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Environment variables `PREFIX_KEY` override config values (the Lambda adapter).
    pub(crate) config_env_prefix: Option<String>,
}

/// Every capability of this build.
pub(crate) fn capabilities(options: &Options) -> Vec<Arc<dyn Capability>> {
    vec![
        Arc::new(caps::config::ConfigCapability::with_env_prefix(
            options.config_env_prefix.clone(),
        )),
        Arc::new(caps::logging::LoggingCapability),
        Arc::new(caps::outbound::OutboundCapability),
        #[cfg(feature = "kv")]
        Arc::new(caps::kv::KvCapability::default()),
        #[cfg(feature = "sql")]
        Arc::new(caps::sql::SqlCapability::default()),
        #[cfg(feature = "blob")]
        Arc::new(caps::blob::BlobCapability::default()),
        #[cfg(feature = "queues")]
        Arc::new(caps::queues::capability()),
        #[cfg(feature = "events")]
        Arc::new(caps::events::capability()),
        #[cfg(feature = "workflows")]
        Arc::new(caps::workflows::capability()),
    ]
}

/// The manifest sections of the triggers and orchestration of this build.
pub(crate) fn trigger_sections() -> Vec<Arc<dyn ManifestSection>> {
    vec![
        #[cfg(feature = "queues")]
        Arc::new(wasmfn_host_triggers::queue::manifest::QueueSection),
        #[cfg(feature = "schedules")]
        Arc::new(wasmfn_host_triggers::schedule::ScheduleSection),
        #[cfg(feature = "streams")]
        Arc::new(wasmfn_host_triggers::stream::StreamSection),
        #[cfg(feature = "workflows")]
        Arc::new(wasmfn_host_orchestration::workflow::WorkflowSection),
        #[cfg(feature = "events")]
        Arc::new(wasmfn_host_orchestration::eventbus::EventSection),
        #[cfg(feature = "otlp")]
        Arc::new(crate::telemetry::otlp::TelemetrySection),
        // Last: it checks what the others parsed.
        Arc::new(crate::cluster::ClusterSection),
    ]
}

/// Every manifest section: the capabilities', then the triggers'.
pub(crate) fn sections() -> Sections {
    Sections {
        capabilities: capabilities(&Options::default())
            .into_iter()
            .map(|c| c as Arc<dyn ManifestSection>)
            .collect(),
        triggers: trigger_sections(),
    }
}

/// The manifest sections of this build, in registration order.
pub(crate) struct Sections {
    pub(crate) capabilities: Vec<Arc<dyn ManifestSection>>,
    pub(crate) triggers: Vec<Arc<dyn ManifestSection>>,
}

impl Sections {
    /// All of them.
    pub(crate) fn all(&self) -> impl Iterator<Item = &dyn ManifestSection> {
        self.capabilities.iter().chain(&self.triggers).map(|s| &**s)
    }
}

/// Tables of the manifest whose section this build leaves out, with the feature adding it.
pub(crate) fn absent_tables() -> &'static [(&'static str, &'static str)] {
    &[
        #[cfg(not(feature = "kv"))]
        ("kv", "kv"),
        #[cfg(not(feature = "sql"))]
        ("sql", "sql"),
        #[cfg(not(feature = "blob"))]
        ("blob", "blob"),
        #[cfg(not(feature = "queues"))]
        ("queues", "queues"),
        #[cfg(not(feature = "queues"))]
        ("queue-backend", "queues"),
        #[cfg(not(feature = "schedules"))]
        ("schedules", "schedules"),
        #[cfg(not(feature = "streams"))]
        ("streams", "streams"),
        #[cfg(not(feature = "workflows"))]
        ("workflows", "workflows"),
        #[cfg(not(feature = "workflows"))]
        ("workflow-store", "workflows"),
        #[cfg(not(feature = "events"))]
        ("topics", "events"),
        #[cfg(not(feature = "events"))]
        ("rules", "events"),
        #[cfg(not(feature = "otlp"))]
        ("telemetry", "otlp"),
    ]
}

/// The feature adding function key `key`, when this build leaves its capability out.
pub(crate) fn absent_function_key(key: &str) -> Option<&'static str> {
    let absent: &[(&str, &str)] = &[
        #[cfg(not(feature = "kv"))]
        ("kv", "kv"),
        #[cfg(not(feature = "sql"))]
        ("sql", "sql"),
        #[cfg(not(feature = "blob"))]
        ("blob", "blob"),
        #[cfg(not(feature = "queues"))]
        ("queues", "queues"),
        #[cfg(not(feature = "events"))]
        ("event-sources", "events"),
        #[cfg(not(feature = "events"))]
        ("topics", "events"),
        #[cfg(not(feature = "workflows"))]
        ("workflows", "workflows"),
    ];
    absent.iter().find(|(k, _)| *k == key).map(|(_, f)| *f)
}
