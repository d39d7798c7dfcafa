//! Change records: stores with `stream = "NAME"` append their writes to the app's change feed,
//! a [`ChangeRecorder`] that the stream trigger implements and provides in the app's services.

use wasmfn_host_core::services::Slot;
use wasmfn_host_core::stream::StreamEvent;

/// Where stores record their changes as stream events (`stream = "NAME"` on a store). The
/// stream trigger implements it and provides it in the app's services.
pub trait ChangeRecorder: Send + Sync {
    /// Append `events` to `stream`, durably and in order; their sequences.
    fn append(&self, stream: &str, events: Vec<StreamEvent>) -> anyhow::Result<Vec<String>>;

    /// Append events that each carry an id unique to where they come from (a relay's outbox
    /// row), skipping those already in the feed: a relay stopped between appending its rows
    /// and deleting them appends them again without duplicating them. Their sequences (an
    /// earlier copy's for one skipped).
    fn append_once(
        &self,
        stream: &str,
        events: Vec<(String, StreamEvent)>,
    ) -> anyhow::Result<Vec<String>>;
}

/// Where one store's writes are recorded: a stream of the app's [`ChangeRecorder`].
#[derive(Clone)]
pub struct ChangeSink {
    recorder: Slot<dyn ChangeRecorder>,
    stream: String,
}

impl ChangeSink {
    /// Record into `stream` of the recorder that `recorder` holds (once provided).
    pub fn new(recorder: Slot<dyn ChangeRecorder>, stream: String) -> Self {
        Self { recorder, stream }
    }

    /// Append events; a failure is logged, never surfaced to the writer whose write succeeded.
    pub fn emit(&self, events: Vec<StreamEvent>) {
        if let Err(e) = self.try_emit(events) {
            tracing::error!(stream = %self.stream, "recording store changes failed: {e:#}");
        }
    }

    /// Append events, saying whether they were recorded.
    pub fn try_emit(&self, events: Vec<StreamEvent>) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.recorder()?.append(&self.stream, events).map(drop)
    }

    /// Append events, each with its id at the origin, once ([`ChangeRecorder::append_once`]),
    /// saying whether they were recorded: a relay that keeps its own change log deletes from
    /// it only what was.
    pub fn try_emit_once(&self, events: Vec<(String, StreamEvent)>) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.recorder()?.append_once(&self.stream, events).map(drop)
    }

    fn recorder(&self) -> anyhow::Result<&std::sync::Arc<dyn ChangeRecorder>> {
        self.recorder
            .get()
            .ok_or_else(|| anyhow::anyhow!("this app has no stream feed"))
    }
}
