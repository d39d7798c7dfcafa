//! Change records: stores with `stream = "NAME"` append their writes to the app's change feed,
//! a [`ChangeRecorder`] that the stream trigger implements and provides in the app's services.

use wasmfn_host_core::services::Slot;
use wasmfn_host_core::stream::StreamEvent;

/// Where stores record their changes as stream events (`stream = "NAME"` on a store). The
/// stream trigger implements it and provides it in the app's services.
pub trait ChangeRecorder: Send + Sync {
    /// Append `events` to `stream`, durably and in order; their sequences.
    fn append(&self, stream: &str, events: Vec<StreamEvent>) -> anyhow::Result<Vec<String>>;
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

    /// Append events, saying whether they were recorded (a relay that keeps its own change
    /// log deletes from it only what was).
    pub fn try_emit(&self, events: Vec<StreamEvent>) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        match self.recorder.get() {
            Some(recorder) => recorder.append(&self.stream, events).map(drop),
            None => Err(anyhow::anyhow!("this app has no stream feed")),
        }
    }
}
