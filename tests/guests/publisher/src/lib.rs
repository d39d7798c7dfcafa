//! An HTTP function that publishes its request body to the queue named by its path
//! (`/publisher/QUEUE`) through `wasmfn:platform/queue-publisher`, answering with the id.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:publisher;
        world publisher { import wasmfn:platform/queue-publisher@0.1.0; }
    ",
    world: "test:publisher/publisher",
    generate_all,
});

use std::io::{Read as _, Write as _};

use ::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasmfn::platform::queue_publisher::{send, Error, OutgoingMessage};

struct Publisher;

impl ::wasi::exports::http::incoming_handler::Guest for Publisher {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let queue = path.rsplit('/').next().unwrap_or_default().to_string();
        let mut body = Vec::new();
        let incoming = request.consume().unwrap();
        incoming.stream().unwrap().read_to_end(&mut body).unwrap();
        let message = OutgoingMessage {
            body,
            attributes: vec![("via".into(), "guest".into())],
            delay_ms: None,
        };
        let (status, text) = match send(&queue, &message) {
            Ok(id) => (200, id),
            Err(Error::NoSuchQueue(q)) => (404, format!("no such queue: {q}")),
            Err(Error::TooLarge(limit)) => (413, format!("too large (limit {limit})")),
            Err(Error::Other(e)) => (500, e),
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).unwrap();
        let out = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        let mut stream = out.write().unwrap();
        let _ = stream.write_all(text.as_bytes());
        let _ = stream.flush();
        drop(stream);
        OutgoingBody::finish(out, None).unwrap();
    }
}

::wasi::http::proxy::export!(Publisher with_types_in ::wasi);
