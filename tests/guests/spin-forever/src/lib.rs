//! An HTTP function stuck in an infinite loop: the host must time it out and keep serving.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct SpinForever;

impl wasi::exports::http::incoming_handler::Guest for SpinForever {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        let mut x: u64 = 0;
        loop {
            // `black_box` keeps the optimiser from proving the loop side-effect free.
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

wasi::http::proxy::export!(SpinForever);
