//! An HTTP function for queue deliveries that takes 200 ms and writes `handled ID attempt N`
//! to stderr (so the host's log has it), from the `x-wasmfn-message-id` and
//! `x-wasmfn-attempt` headers: a test sees which attempt number each delivery carried.

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct AttemptLogger;

impl wasi::exports::http::incoming_handler::Guest for AttemptLogger {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = request.headers();
        let get = |name: &str| {
            headers
                .get(name)
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let (id, attempt) = (get("x-wasmfn-message-id"), get("x-wasmfn-attempt"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        eprintln!("handled {id} attempt {attempt}");
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        ResponseOutparam::set(response_out, Ok(response));
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasi::http::proxy::export!(AttemptLogger);
