//! Taking what a guest has already written of its response body before the response head goes
//! out.
//!
//! A guest sets the response head first and writes the body after it, so without this the
//! server flushes the head (and the first chunk) as soon as it has them, and the end of a
//! chunked body as a second write: two packets and two wake-ups of the client for a response
//! of a few bytes. Waiting only for what is ready (the guest's task runs on the same thread and
//! usually finishes its body in the same poll) lets a small response leave in one write, with
//! a `content-length` instead of chunks. A body that is still being produced is passed on
//! unchanged after a couple of turns of the scheduler, so streaming responses keep streaming.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How many times the body may be found not ready (each time the task lets the others on its
/// thread run, the guest's among them) before the head is sent without it. A 0.2 guest has
/// usually finished its body before the first look; a 0.3 guest's body passes through its
/// instance's event loop, a step per turn: with 2 turns 40% of hello responses still left in
/// two writes, with 8 about 1%, with 16 none (`strace -c` under `wrk -c16`). A body that is
/// really still being produced costs 16 polls of nothing, a few microseconds on an idle thread.
const TURNS: usize = 16;

/// Past this many bytes the head goes out with what has been gathered: a large body gains
/// nothing from waiting and would only be held in memory.
const MAX_GATHERED: u64 = 64 << 10;

/// The response body with the frames the guest had ready taken in front; when the body ended
/// among them its exact size is known, which the server turns into a `content-length`.
pub(crate) async fn gather(mut body: HyperOutgoingBody) -> HyperOutgoingBody {
    if body.is_end_stream() {
        return body;
    }
    let mut ready = VecDeque::new();
    let mut size: u64 = 0;
    let mut turns = TURNS;
    loop {
        match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(Some(Ok(frame))) => {
                let trailers = frame.is_trailers();
                size += frame.data_ref().map_or(0, |d| d.len() as u64);
                ready.push_back(Ok(frame));
                if trailers || size >= MAX_GATHERED {
                    return Gathered::boxed(ready, size, Some(body));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                ready.push_back(Err(e));
                return Gathered::boxed(ready, size, None);
            }
            Poll::Ready(None) => return Gathered::boxed(ready, size, None),
            Poll::Pending if turns > 0 => {
                turns -= 1;
                Turn(false).await;
            }
            Poll::Pending => return Gathered::boxed(ready, size, Some(body)),
        }
    }
}

/// Lets every other ready task on this thread run once: wakes itself and returns `Pending`
/// once (without `tokio::task::yield_now`'s extra poll of the I/O driver).
struct Turn(bool);

impl std::future::Future for Turn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Frames already taken from a body, then (if it had not ended) the rest of it.
struct Gathered {
    ready: VecDeque<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>,
    /// Bytes of data in `ready`.
    buffered: u64,
    rest: Option<HyperOutgoingBody>,
}

impl Gathered {
    fn boxed(
        ready: VecDeque<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>,
        buffered: u64,
        rest: Option<HyperOutgoingBody>,
    ) -> HyperOutgoingBody {
        Self {
            ready,
            buffered,
            rest,
        }
        .boxed_unsync()
    }
}

impl Body for Gathered {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.ready.pop_front() {
            if let Ok(data) = frame.as_ref().map(Frame::data_ref) {
                self.buffered -= data.map_or(0, |d| d.len() as u64);
            }
            return Poll::Ready(Some(frame));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.rest {
            // An error among the frames ends the body early; the size is still exact otherwise.
            None => SizeHint::with_exact(self.buffered),
            Some(rest) => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(self.buffered + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(self.buffered + upper);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::sync::mpsc;

    /// A body fed through a channel, as the guest's writes feed a response body.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = wasmtime_wasi_http::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn fed(parts: &[&'static str], open: bool) -> (HyperOutgoingBody, Option<mpsc::Sender<Bytes>>) {
        let (tx, rx) = mpsc::channel(8);
        for p in parts {
            tx.try_send(Bytes::from_static(p.as_bytes())).unwrap();
        }
        (Fed(rx).boxed_unsync(), open.then_some(tx))
    }

    #[tokio::test]
    async fn a_finished_body_becomes_exact_sized() {
        let (body, _) = fed(&["hello ", "world"], false);
        let body = gather(body).await;
        assert_eq!(body.size_hint().exact(), Some(11));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello world");
    }

    #[tokio::test]
    async fn a_body_still_being_written_is_passed_on_with_what_was_ready() {
        let (body, tx) = fed(&["first"], true);
        let body = gather(body).await;
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(body.size_hint().lower(), 5);
        let tx = tx.unwrap();
        tx.send(Bytes::from_static(b" second")).await.unwrap();
        drop(tx);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"first second");
    }

    #[tokio::test]
    async fn a_body_finished_by_another_task_within_its_turns_is_gathered() {
        let (body, tx) = fed(&["a"], true);
        let tx = tx.unwrap();
        tokio::spawn(async move {
            tx.send(Bytes::from_static(b"b")).await.unwrap();
        });
        let body = gather(body).await;
        assert_eq!(body.size_hint().exact(), Some(2));
    }

    #[tokio::test]
    async fn an_ended_body_is_left_alone() {
        let body = gather(
            Full::new(Bytes::new())
                .map_err(|n| match n {})
                .boxed_unsync(),
        )
        .await;
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
