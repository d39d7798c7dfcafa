//! An HTTP function that always traps (a Rust panic compiles to `unreachable`).

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;

impl wasi::exports::http::incoming_handler::Guest for Trap {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        panic!("this function always fails");
    }
}

wasi::http::proxy::export!(Trap);
