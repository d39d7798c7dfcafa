//! Spreading connections evenly over the server threads.
//!
//! Each server thread accepts on its own `SO_REUSEPORT` socket, and the kernel hashes new
//! connections over those sockets: 16 connections on two threads often split 10/6, and then
//! one thread is saturated while the other waits (measured here: 37k–45k req/s from run to run
//! of the same `wrk -c16`, lower the more uneven the split). A thread that accepts a connection
//! while another thread has fewer open hands it over there, so the split is as even as the
//! counts allow whatever the hash did. Requests of one connection still stay on one thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A connection moved between threads: deregistered from its accepting thread's reactor.
type Handoff = (std::net::TcpStream, SocketAddr);

/// What the threads of one server share: how many connections each has open, and where to
/// hand one over to each.
pub(crate) struct Spread {
    open: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

impl Spread {
    /// For `threads` threads: the shared counts, and each thread's inbox in thread order.
    pub(crate) fn new(threads: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Arc::new(Self {
            open: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders.into(),
        });
        (spread, receivers)
    }

    /// The thread with the fewest open connections, `me` when it is among them.
    fn least_loaded(&self, me: usize) -> usize {
        let mine = self.open[me].load(Ordering::Relaxed);
        let (other, fewest) = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        // Move a connection only when that evens the split; a tie stays where it was accepted.
        if fewest < mine {
            other
        } else {
            me
        }
    }
}

/// One open connection counted against its thread until it closes.
pub(crate) struct Slot {
    spread: Arc<Spread>,
    thread: usize,
}

impl Slot {
    fn new(spread: &Arc<Spread>, thread: usize) -> Self {
        spread.open[thread].fetch_add(1, Ordering::Relaxed);
        Self::taking_over(spread, thread)
    }

    /// A slot for a connection already counted against `thread` (one handed to it).
    fn taking_over(spread: &Arc<Spread>, thread: usize) -> Self {
        gauge(thread).increment(1.0);
        Self {
            spread: spread.clone(),
            thread,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.spread.open[self.thread].fetch_sub(1, Ordering::Relaxed);
        gauge(self.thread).decrement(1.0);
    }
}

/// `wasmfn_server_thread_connections{thread}`: how the public listener's open connections
/// are spread over the server threads. Looked up per connection, not per request.
fn gauge(thread: usize) -> metrics::Gauge {
    metrics::gauge!("wasmfn_server_thread_connections", "thread" => thread.to_string())
}

/// Server thread `me`'s side: its listener, and its inbox of connections other threads
/// accepted for it.
pub(crate) struct ThreadAccept {
    pub(crate) spread: Arc<Spread>,
    pub(crate) me: usize,
    pub(crate) inbox: mpsc::UnboundedReceiver<Handoff>,
}

impl ThreadAccept {
    /// The next connection this thread serves: one it accepted and keeps, or one handed to it.
    pub(crate) async fn next(
        &mut self,
        listener: &TcpListener,
    ) -> std::io::Result<(TcpStream, SocketAddr, Slot)> {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = accepted?;
                    let target = self.spread.least_loaded(self.me);
                    if target == self.me {
                        return Ok((stream, peer, Slot::new(&self.spread, self.me)));
                    }
                    // Counted against the target at once (the receiving thread's slot takes
                    // the count over), so the next accept anywhere sees it in transit.
                    self.spread.open[target].fetch_add(1, Ordering::Relaxed);
                    let sent = stream
                        .into_std()
                        .map(|std| self.spread.inboxes[target].send((std, peer)));
                    match sent {
                        Ok(Ok(())) => {}
                        // That thread has stopped: serve the connection here.
                        Ok(Err(mpsc::error::SendError((std, peer)))) => {
                            self.spread.open[target].fetch_sub(1, Ordering::Relaxed);
                            let slot = Slot::new(&self.spread, self.me);
                            return Ok((TcpStream::from_std(std)?, peer, slot));
                        }
                        Err(e) => {
                            self.spread.open[target].fetch_sub(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "could not hand a connection over");
                        }
                    }
                }
                Some((std, peer)) = self.inbox.recv() => {
                    // The sender counted it against this thread: the slot takes that over.
                    let slot = Slot::taking_over(&self.spread, self.me);
                    return Ok((TcpStream::from_std(std)?, peer, slot));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_thread_with_fewest_open() {
        let (spread, _inboxes) = Spread::new(3);
        assert_eq!(spread.least_loaded(1), 1, "a tie stays");
        let _a = Slot::new(&spread, 1);
        assert_eq!(spread.least_loaded(1), 0);
        let _b = Slot::new(&spread, 0);
        let _c = Slot::new(&spread, 2);
        assert_eq!(spread.least_loaded(2), 2, "all have one: stays");
        drop(_b);
        assert_eq!(spread.least_loaded(2), 0);
    }
}
