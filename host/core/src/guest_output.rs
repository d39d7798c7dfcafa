//! Routes a guest's stdout and stderr into the host's structured logs, one event per line,
//! tagged with the function name.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept whole; longer output is split so a guest cannot grow host memory unbounded.
const MAX_LINE: usize = 16 << 10;

/// A guest output stream (stdout or stderr) that becomes `tracing` events.
#[derive(Clone)]
pub struct GuestOutput {
    function: Arc<str>,
    invocation: Arc<AtomicU64>,
    stream: &'static str,
}

impl GuestOutput {
    pub(crate) fn stdout(function: Arc<str>, invocation: Arc<AtomicU64>) -> Self {
        Self {
            function,
            invocation,
            stream: "stdout",
        }
    }

    pub(crate) fn stderr(function: Arc<str>, invocation: Arc<AtomicU64>) -> Self {
        Self {
            function,
            invocation,
            stream: "stderr",
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            out: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    out: GuestOutput,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let invocation = self.out.invocation.load(Ordering::Relaxed);
        let (trace_id, span_id) = crate::trace::current_ids().unzip();
        if self.out.stream == "stderr" {
            tracing::warn!(target: "guest", function = %self.out.function, invocation, trace_id, span_id, stream = "stderr", "{text}");
        } else {
            tracing::info!(target: "guest", function = %self.out.function, invocation, trace_id, span_id, stream = "stdout", "{text}");
        }
    }

    fn flush_lines(&mut self) {
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if self.buf.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.buf.extend_from_slice(data);
        self.flush_lines();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.emit(&self.buf);
        }
    }
}
