//! `[queues.NAME]` and `[queue-backend]` of `wasmfn.toml`.
//!
//! ```toml
//! [queues.orders]
//! function = "order-worker"      # a `queue` function; without one the queue is only produced to
//! batch-size = 10
//! visibility-timeout = "60s"     # above the function's timeout (default: timeout + 30 s)
//! max-receive-count = 3          # then into `orders-dlq` (or `dead-letter-queue = "..."`)
//!
//! [queue-backend]
//! kind = "nats"                  # "sqlite" (default, embedded) or "nats" (JetStream)
//! url = "nats://127.0.0.1:4222"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{
    named_entries, validate_name, ManifestError, ManifestSection, ParseContext, Shape, TableSpec,
};
use wasmfn_host_core::{parse_duration, parse_size};

use super::QueueConfig;

type At<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> ManifestError + 'a;

/// The queues of a manifest (the section's result). Event rules add the queues they deliver
/// through.
#[derive(Debug, Clone, Default)]
pub struct QueueManifest {
    /// `[queues.NAME]`, plus implicit delivery queues.
    pub queues: Vec<QueueConfig>,
    /// `[queue-backend]`.
    pub backend: QueueBackendChoice,
}

/// The `[queue-backend]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueBackendChoice {
    /// Embedded SQLite (default); `fsync` flushes every commit to stable storage.
    Sqlite {
        /// Survive power loss, not only crashes, at the cost of an fsync per group commit.
        fsync: bool,
    },
    /// NATS JetStream at `url`, in stream `stream`.
    #[cfg(feature = "queues-nats")]
    Nats {
        /// Server URL, e.g. `nats://127.0.0.1:4222`.
        url: String,
        /// JetStream stream holding every queue (default `WASMFN_QUEUES`).
        stream: String,
    },
}

impl Default for QueueBackendChoice {
    fn default() -> Self {
        QueueBackendChoice::Sqlite { fsync: false }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawQueueBackend {
    kind: Option<Spanned<String>>,
    #[serde(default)]
    fsync: bool,
    // Read by the NATS backend only; still accepted (and checked) without it.
    #[cfg_attr(not(feature = "queues-nats"), allow(dead_code))]
    url: Option<String>,
    #[cfg_attr(not(feature = "queues-nats"), allow(dead_code))]
    stream: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawQueue {
    function: Option<String>,
    batch_size: Option<Spanned<i64>>,
    batch_window: Option<Spanned<String>>,
    visibility_timeout: Option<Spanned<String>>,
    max_receive_count: Option<Spanned<i64>>,
    dead_letter_queue: Option<String>,
    retry_backoff: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    max_message_size: Option<Spanned<String>>,
}

/// The queue trigger's part of the manifest.
#[derive(Default)]
pub struct QueueSection;

impl ManifestSection for QueueSection {
    fn tables(&self) -> &'static [TableSpec] {
        &[
            TableSpec {
                name: "queues",
                shape: Shape::Named,
            },
            TableSpec {
                name: "queue-backend",
                shape: Shape::Single,
            },
        ]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let raw: BTreeMap<String, RawQueue> = cx.take_table("queues")?.unwrap_or_default();
        let raw = named_entries(cx, "queues", raw)?;
        let backend: Option<RawQueueBackend> = cx.take_table("queue-backend")?;
        let loc = cx.locator();
        let at = |span, key: &str, msg| loc.at(span, key, msg);
        let mut queues = Vec::new();
        for (name, q) in &raw {
            queues.push(queue_from(name, q, &at)?);
        }
        let backend = queue_backend(backend.as_ref(), &at)?;
        for q in &queues {
            cx.declare("queue", &q.name);
        }
        cx.insert(QueueManifest { queues, backend });
        Ok(())
    }
}

/// The `[queue-backend]` table.
fn queue_backend(
    raw: Option<&RawQueueBackend>,
    at: &At<'_>,
) -> Result<QueueBackendChoice, ManifestError> {
    let mut queue_backend = QueueBackendChoice::default();
    if let Some(b) = raw {
        let kind = b.kind.as_ref().map(|k| (k.span(), k.get_ref().as_str()));
        queue_backend = match kind {
                None | Some((_, "sqlite")) => QueueBackendChoice::Sqlite { fsync: b.fsync },
                #[cfg(feature = "queues-nats")]
                Some((_, "nats")) => QueueBackendChoice::Nats {
                    url: b.url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
                    stream: b.stream.clone().unwrap_or_else(|| "WASMFN_QUEUES".into()),
                },
                #[cfg(not(feature = "queues-nats"))]
                Some((span, "nats")) => {
                    return Err(at(span, "queue-backend.kind", "this wasmfn was built without the NATS queue backend; rebuild wasmfn-host with the `nats` feature (the wasmfn command has every backend)".into()))
                }
                Some((span, other)) => {
                    return Err(at(span, "queue-backend.kind", format!(
                        "unknown queue backend `{other}`: use \"sqlite\" (embedded) or \"nats\" (JetStream)")))
                }
            };
    }
    Ok(queue_backend)
}

fn queue_from(name: &str, q: &RawQueue, at: &At<'_>) -> Result<QueueConfig, ManifestError> {
    let mut c = QueueConfig::new(name);
    let key = |k: &str| format!("queues.{name}.{k}");
    let int = |v: &Option<Spanned<i64>>,
               k: &str,
               lo: i64,
               hi: i64|
     -> Result<Option<i64>, ManifestError> {
        match v {
            None => Ok(None),
            Some(v) if (lo..=hi).contains(v.get_ref()) => Ok(Some(*v.get_ref())),
            Some(v) => Err(at(
                v.span(),
                &key(k),
                format!("{} is out of range {lo}..={hi}", v.get_ref()),
            )),
        }
    };
    let dur = |v: &Option<Spanned<String>>,
               k: &str|
     -> Result<Option<std::time::Duration>, ManifestError> {
        match v {
            None => Ok(None),
            Some(v)
                if v.get_ref().trim() == "0"
                    || v.get_ref().trim() == "0ms"
                    || v.get_ref().trim() == "0s" =>
            {
                Ok(Some(std::time::Duration::ZERO))
            }
            Some(v) => parse_duration(v.get_ref())
                .map(Some)
                .map_err(|e| at(v.span(), &key(k), e)),
        }
    };
    c.function = q.function.clone();
    if let Some(n) = int(&q.batch_size, "batch-size", 1, 10_000)? {
        c.batch_size = n as usize;
    }
    if let Some(n) = int(&q.max_receive_count, "max-receive-count", 1, 1000)? {
        c.max_receive_count = n as u32;
    }
    if let Some(n) = int(&q.concurrency, "concurrency", 1, 1000)? {
        c.concurrency = n as usize;
    }
    if let Some(d) = dur(&q.batch_window, "batch-window")? {
        c.batch_window = d;
    }
    if let Some(d) = dur(&q.visibility_timeout, "visibility-timeout")? {
        c.visibility_timeout = d;
        c.visibility_timeout_set = true;
    }
    if let Some(d) = dur(&q.retry_backoff, "retry-backoff")? {
        c.retry_backoff = d;
    }
    if let Some(s) = &q.max_message_size {
        c.max_message_bytes = parse_size(s.get_ref())
            .map_err(|e| at(s.span(), &key("max-message-size"), e))?
            as usize;
    }
    if let Some(d) = &q.dead_letter_queue {
        validate_name(d)
            .map_err(|m| ManifestError(format!("[queues.{name}] dead-letter-queue: {m}")))?;
        c.dead_letter_queue = d.clone();
    }
    Ok(c)
}
