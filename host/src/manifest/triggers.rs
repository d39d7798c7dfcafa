//! The trigger tables of `wasmfn.toml`: `[queues.NAME]`, `[queue-backend]`, `[schedules.NAME]`
//! and `[streams.NAME]`, parsed and validated with the same file:line errors as the rest.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{validate_name, At, ManifestError};
use crate::limits::{parse_duration, parse_size};

/// The `[queue-backend]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueBackendChoice {
    /// Embedded SQLite (default); `fsync` flushes every commit to stable storage.
    Sqlite {
        /// Survive power loss, not only crashes, at the cost of an fsync per group commit.
        fsync: bool,
    },
    /// NATS JetStream at `url`, in stream `stream`.
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
pub(super) struct RawStream {
    pub(super) function: String,
    pub(super) batch_size: Option<Spanned<i64>>,
    pub(super) max_retries: Option<Spanned<i64>>,
    pub(super) retry_backoff: Option<Spanned<String>>,
    pub(super) on_failure: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSchedule {
    pub(super) function: String,
    pub(super) expression: Spanned<String>,
    pub(super) timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) overlap: bool,
    pub(super) missed: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawQueueBackend {
    pub(super) kind: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) fsync: bool,
    pub(super) url: Option<String>,
    pub(super) stream: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawQueue {
    pub(super) function: Option<String>,
    pub(super) batch_size: Option<Spanned<i64>>,
    pub(super) batch_window: Option<Spanned<String>>,
    pub(super) visibility_timeout: Option<Spanned<String>>,
    pub(super) max_receive_count: Option<Spanned<i64>>,
    pub(super) dead_letter_queue: Option<String>,
    pub(super) retry_backoff: Option<Spanned<String>>,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) max_message_size: Option<Spanned<String>>,
}

/// `[queues.NAME]` tables.
pub(super) fn queues(
    path: &Path,
    raw: &BTreeMap<String, RawQueue>,
    at: &At<'_>,
) -> Result<Vec<crate::queue::QueueConfig>, ManifestError> {
    let mut queues = Vec::new();
    for (name, q) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [queues.{name}]: {m}", path.display())))?;
        queues.push(queue_from(name, q, at)?);
    }
    Ok(queues)
}

/// The `[queue-backend]` table.
pub(super) fn queue_backend(
    raw: Option<&RawQueueBackend>,
    at: &At<'_>,
) -> Result<QueueBackendChoice, ManifestError> {
    let mut queue_backend = QueueBackendChoice::default();
    if let Some(b) = raw {
        let kind = b.kind.as_ref().map(|k| (k.span(), k.get_ref().as_str()));
        queue_backend = match kind {
                None | Some((_, "sqlite")) => QueueBackendChoice::Sqlite { fsync: b.fsync },
                Some((_, "nats")) => QueueBackendChoice::Nats {
                    url: b.url.clone().unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
                    stream: b.stream.clone().unwrap_or_else(|| "WASMFN_QUEUES".into()),
                },
                Some((span, other)) => {
                    return Err(at(span, "queue-backend.kind", format!(
                        "unknown queue backend `{other}`: use \"sqlite\" (embedded) or \"nats\" (JetStream)")))
                }
            };
    }
    Ok(queue_backend)
}

/// `[schedules.NAME]` tables.
pub(super) fn schedules(
    path: &Path,
    raw: &BTreeMap<String, RawSchedule>,
    at: &At<'_>,
) -> Result<Vec<crate::scheduler::ScheduleConfig>, ManifestError> {
    let mut schedules = Vec::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [schedules.{name}]: {m}", path.display())))?;
        let tz = r.timezone.as_ref().map(|t| t.get_ref().as_str());
        let expression =
            crate::scheduler::Expression::parse(r.expression.get_ref(), tz).map_err(|e| {
                let span = match (&r.timezone, e.contains("time zone")) {
                    (Some(t), true) => t.span(),
                    _ => r.expression.span(),
                };
                at(span, &format!("schedules.{name}.expression"), e)
            })?;
        let missed = match r.missed.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "skip")) => crate::scheduler::MissedRuns::Skip,
            Some((_, "run-once")) => crate::scheduler::MissedRuns::RunOnce,
            Some((m, other)) => {
                return Err(at(
                    m.span(),
                    &format!("schedules.{name}.missed"),
                    format!("`{other}` is not a missed-run policy: use \"skip\" or \"run-once\""),
                ))
            }
        };
        schedules.push(crate::scheduler::ScheduleConfig {
            name: name.clone(),
            function: r.function.clone(),
            expression_text: r.expression.get_ref().clone(),
            expression,
            overlap: r.overlap,
            missed,
        });
    }
    Ok(schedules)
}

/// `[streams.NAME]` tables.
pub(super) fn streams(
    path: &Path,
    raw: &BTreeMap<String, RawStream>,
    at: &At<'_>,
) -> Result<Vec<crate::stream_feed::StreamConfig>, ManifestError> {
    let mut streams = Vec::new();
    for (name, r) in raw {
        validate_name(name)
            .map_err(|m| ManifestError(format!("{}: [streams.{name}]: {m}", path.display())))?;
        let mut c = crate::stream_feed::StreamConfig::new(name, &r.function);
        let key = |k: &str| format!("streams.{name}.{k}");
        if let Some(n) = &r.batch_size {
            if !(1..=10_000).contains(n.get_ref()) {
                return Err(at(
                    n.span(),
                    &key("batch-size"),
                    format!("{} is out of range 1..=10000", n.get_ref()),
                ));
            }
            c.batch_size = *n.get_ref() as usize;
        }
        if let Some(n) = &r.max_retries {
            if !(0..=100).contains(n.get_ref()) {
                return Err(at(
                    n.span(),
                    &key("max-retries"),
                    format!("{} is out of range 0..=100", n.get_ref()),
                ));
            }
            c.max_retries = *n.get_ref() as u32;
        }
        if let Some(d) = &r.retry_backoff {
            c.retry_backoff =
                parse_duration(d.get_ref()).map_err(|e| at(d.span(), &key("retry-backoff"), e))?;
        }
        if let Some(p) = &r.on_failure {
            c.on_failure = match p.get_ref().as_str() {
                "bisect" => crate::stream_feed::OnFailure::Bisect,
                "park" => crate::stream_feed::OnFailure::Park,
                other => {
                    return Err(at(
                        p.span(),
                        &key("on-failure"),
                        format!("`{other}`: use \"bisect\" or \"park\""),
                    ))
                }
            };
        }
        streams.push(c);
    }
    Ok(streams)
}

fn queue_from(
    name: &str,
    q: &RawQueue,
    at: &At<'_>,
) -> Result<crate::queue::QueueConfig, ManifestError> {
    let mut c = crate::queue::QueueConfig::new(name);
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
