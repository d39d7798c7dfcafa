//! An HTTP function that reads a file through `wasi:filesystem`: a component importing what a
//! Worker cannot provide (the Workers adapter must refuse it by that import's name).

use std::io::Write as _;

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct FileReader;

impl wasi::exports::http::incoming_handler::Guest for FileReader {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let text = std::fs::read_to_string("/data/message.txt").unwrap_or_else(|e| e.to_string());
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().unwrap();
        out.write_all(text.as_bytes()).unwrap();
        drop(out);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasi::http::proxy::export!(FileReader);
