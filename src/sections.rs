//! Typed views of a manifest's sections for the packaging commands (empty when the manifest
//! declares none).

use wasmfn_host::blob::{BlobBackendConfig, BlobBindings, BlobStores};
use wasmfn_host::config::ConfigValues;
use wasmfn_host::kv::{KvBackendConfig, KvBindings, KvStores};
use wasmfn_host::manifest::Manifest;
use wasmfn_host::outbound::OutboundPolicy;
use wasmfn_host::queue::{QueueConfig, QueueManifest};
use wasmfn_host::scheduler::{ScheduleConfig, ScheduleManifest};
use wasmfn_host::sql::{SqlBackendConfig, SqlBindings, SqlStores};
use wasmfn_host::stream_feed::{StreamConfig, StreamManifest};
use wasmfn_host::FunctionSettings;

/// `[queues.NAME]`, with the event rules' implicit queues.
pub fn queues(m: &Manifest) -> &[QueueConfig] {
    m.get::<QueueManifest>().map_or(&[], |q| &q.queues)
}

/// `[schedules.NAME]`.
pub fn schedules(m: &Manifest) -> &[ScheduleConfig] {
    m.get::<ScheduleManifest>().map_or(&[], |s| &s.schedules)
}

/// `[streams.NAME]`.
pub fn streams(m: &Manifest) -> &[StreamConfig] {
    m.get::<StreamManifest>().map_or(&[], |s| &s.streams)
}

/// The backend of `[kv.NAME]`.
pub fn kv_store<'a>(m: &'a Manifest, name: &str) -> Option<&'a KvBackendConfig> {
    Some(&m.get::<KvStores>()?.get(name)?.config)
}

/// The backend of `[sql.NAME]`.
pub fn sql_store<'a>(m: &'a Manifest, name: &str) -> Option<&'a SqlBackendConfig> {
    Some(&m.get::<SqlStores>()?.get(name)?.config)
}

/// The backend of `[blob.NAME]`.
pub fn blob_store<'a>(m: &'a Manifest, name: &str) -> Option<&'a BlobBackendConfig> {
    Some(&m.get::<BlobStores>()?.get(name)?.config)
}

/// A function's store bindings: key-value, SQL, blob.
pub fn bindings(s: &FunctionSettings) -> [&[String]; 3] {
    [
        s.get::<KvBindings>().map_or(&[], |b| &b.names),
        s.get::<SqlBindings>().map_or(&[], |b| &b.names),
        s.get::<BlobBindings>().map_or(&[], |b| &b.names),
    ]
}

/// A function's config values and secret sources.
pub fn config(s: &FunctionSettings) -> ConfigValues {
    s.get::<ConfigValues>().cloned().unwrap_or_default()
}

/// A function's outbound allow-list.
pub fn outbound(s: &FunctionSettings) -> OutboundPolicy {
    s.get::<OutboundPolicy>().cloned().unwrap_or_default()
}
