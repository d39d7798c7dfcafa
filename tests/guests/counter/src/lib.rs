//! An HTTP function with module-level state: answers how many requests this instance has seen.
//!
//! In fresh-instance mode every answer is 1; in warm-reuse mode the count grows, which is how the
//! tests tell the two apart.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

static SEEN: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let n = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().unwrap();
        let _ = write!(out, "{n}");
        let _ = out.flush();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
        // `/counter/trap` traps after answering, to prove a trapped instance is not reused.
        if request
            .path_with_query()
            .unwrap_or_default()
            .ends_with("/trap")
        {
            panic!("trap requested");
        }
    }
}

wasi::http::proxy::export!(Counter);
