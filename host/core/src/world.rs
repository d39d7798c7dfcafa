//! The five handler worlds and how a component's exports identify which one it implements.

use std::fmt;
use std::str::FromStr;

use wasmtime::component::Component;
use wasmtime::Engine;

/// The handler world a function implements (see `wit/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Exports `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.x`.
    Http,
    /// Exports `wasmfn:platform/queue-handler`.
    Queue,
    /// Exports `wasmfn:platform/stream-handler`.
    Stream,
    /// Exports `wasmfn:platform/schedule-handler`.
    Schedule,
    /// Exports `wasmfn:platform/task-handler` (a workflow step).
    Task,
}

impl World {
    /// All worlds, in documentation order.
    pub const ALL: [World; 5] = [
        World::Http,
        World::Queue,
        World::Stream,
        World::Schedule,
        World::Task,
    ];

    /// The world's name as written in manifests and WIT.
    pub fn name(self) -> &'static str {
        match self {
            World::Http => "http",
            World::Queue => "queue",
            World::Stream => "stream",
            World::Schedule => "schedule",
            World::Task => "task",
        }
    }

    /// The export that identifies the world, without its version.
    pub fn export(self) -> &'static str {
        match self {
            World::Http => "wasi:http/incoming-handler",
            World::Queue => "wasmfn:platform/queue-handler",
            World::Stream => "wasmfn:platform/stream-handler",
            World::Schedule => "wasmfn:platform/schedule-handler",
            World::Task => "wasmfn:platform/task-handler",
        }
    }

    /// Versions of the export this host implements (semver-compatible range, as a prefix).
    fn version_prefix(self) -> &'static str {
        match self {
            World::Http => "0.2.",
            _ => "0.1.",
        }
    }

    /// Which world `component` implements, judged by its exports.
    pub fn detect(engine: &Engine, component: &Component) -> Result<World, WorldError> {
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let found: Vec<World> = World::ALL
            .into_iter()
            .filter(|w| exports.iter().any(|e| w.matches_export(e)))
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(WorldError::NoHandler { exports }),
            many => Err(WorldError::Ambiguous(many.to_vec())),
        }
    }

    fn matches_export(self, export: &str) -> bool {
        if self == World::Http && is_http_p3_export(export) {
            return true;
        }
        match export.split_once('@') {
            Some((name, version)) => {
                name == self.export() && version.starts_with(self.version_prefix())
            }
            None => export == self.export(),
        }
    }
}

/// The export of a WASI 0.3 http handler, without its version.
const HTTP_P3_EXPORT: &str = "wasi:http/handler";

/// Versions of [`HTTP_P3_EXPORT`] this host serves: every 0.3.x (a patch release only adds
/// to 0.3.0, which wasmtime links by the component model's semver rules).
const HTTP_P3_VERSION_PREFIX: &str = "0.3.";

fn is_http_p3_export(export: &str) -> bool {
    export.split_once('@').is_some_and(|(name, version)| {
        name == HTTP_P3_EXPORT && version.starts_with(HTTP_P3_VERSION_PREFIX)
    })
}

/// Whether an http component is a WASI 0.3 one (exports `wasi:http/handler@0.3.x`).
pub(crate) fn exports_http_p3(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| is_http_p3_export(name))
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for World {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        World::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                format!("unknown world `{s}`: expected one of http, queue, stream, schedule, task")
            })
    }
}

/// Why a component is not a wasmfn function.
#[derive(Debug, Clone)]
pub enum WorldError {
    /// It exports none of the handler interfaces.
    NoHandler {
        /// What it does export.
        exports: Vec<String>,
    },
    /// It exports more than one handler interface.
    Ambiguous(Vec<World>),
}

impl fmt::Display for WorldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldError::NoHandler { exports } => {
                let exported = if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                };
                write!(
                    f,
                    "it exports {exported}, but a wasmfn function must export one of: \
                     wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x (world http), \
                     wasmfn:platform/queue-handler@0.1.x (world queue), \
                     wasmfn:platform/stream-handler@0.1.x (world stream), \
                     wasmfn:platform/schedule-handler@0.1.x (world schedule), \
                     wasmfn:platform/task-handler@0.1.x (world task); \
                     build it against a world in wit/"
                )
            }
            WorldError::Ambiguous(worlds) => {
                let names: Vec<&str> = worlds.iter().map(|w| w.name()).collect();
                write!(
                    f,
                    "it exports handlers of several worlds ({}); a function implements exactly one",
                    names.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for WorldError {}
