//! An HTTP function that allocates without bound: the host's memory limit must stop it.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct MemoryBomb;

impl wasi::exports::http::incoming_handler::Guest for MemoryBomb {
    fn handle(_request: IncomingRequest, _response_out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 16 MiB at a time, touched so the pages are really committed.
            hoard.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

wasi::http::proxy::export!(MemoryBomb);
