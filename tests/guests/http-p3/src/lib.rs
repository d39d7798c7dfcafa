//! A WASI 0.3 http function (`wasi:http/handler@0.3.x`, built with the public `wasip3` crate),
//! for the host's 0.3 tests. Its module state is shared by the requests one instance serves,
//! which lets the tests see how many ran in it at once. Routes are below the function's own
//! path (`/http-p3/slow`), or the whole path when it has one segment (`/trap`):
//!
//! - `GET /slow?ms=N`: waits N ms (an async wait: other requests run meanwhile), then answers
//!   `instance=ID active-max=M served=S`.
//! - `POST /echo`: streams the request body back; request trailers come back as trailers.
//! - `GET /status/N`: an empty response with status N and `x-p3: yes`.
//! - `GET /trap?ms=N`: waits N ms, then panics.
//! - `GET /spin`: loops forever.
//! - `GET /alloc?mb=N`: allocates and touches N MiB (`/memory-bomb`: 1 GiB).
//! - `GET /config/KEY`: the value of `KEY` through `wasi:config/store` (a platform import).
//! - anything else: `hello from wasi 0.3`.

// The platform imports, as 0.2 interfaces: a 0.3 guest calls them synchronously.
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:http-p3;
        world platform {
            import wasi:config/store@0.2.0-rc.1;
        }
    ",
    world: "test:http-p3/platform",
    generate_all,
});

use std::cell::Cell;

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Handler);

thread_local! {
    static INSTANCE: Cell<u64> = const { Cell::new(0) };
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
    static ACTIVE_MAX: Cell<u32> = const { Cell::new(0) };
    static SERVED: Cell<u32> = const { Cell::new(0) };
}

struct Handler;

fn query_number(path: &str, key: &str) -> u64 {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn instance_id() -> u64 {
    INSTANCE.with(|i| {
        if i.get() == 0 {
            i.set(wasip3::random::random::get_random_u64() | 1);
        }
        i.get()
    })
}

/// A response with `status`, `headers` and the text `body`.
fn text(status: u16, headers: Fields, body: String) -> Result<Response, ErrorCode> {
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    drop(trailers_tx);
    response.set_status_code(status).map_err(|()| ErrorCode::InternalError(None))?;
    wit_bindgen::spawn_local(async move {
        body_tx.write_all(body.into_bytes()).await;
    });
    Ok(response)
}

async fn sleep_ms(ms: u64) {
    wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
}

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        // The guest sees the full path: `/FUNCTION/ROUTE`, or `/ROUTE` for a one-segment path.
        let full = path.split('?').next().unwrap_or("");
        let route = match full[1.min(full.len())..].split_once('/') {
            Some((_function, rest)) => format!("/{rest}"),
            None => full.to_string(),
        };
        let id = instance_id();
        SERVED.with(|s| s.set(s.get() + 1));
        match route.as_str() {
            "/slow" => {
                let now = ACTIVE.with(|a| {
                    a.set(a.get() + 1);
                    a.get()
                });
                ACTIVE_MAX.with(|m| m.set(m.get().max(now)));
                sleep_ms(query_number(&path, "ms")).await;
                ACTIVE.with(|a| a.set(a.get() - 1));
                let max = ACTIVE_MAX.with(|m| m.get());
                let served = SERVED.with(|s| s.get());
                text(200, Fields::new(), format!("instance={id} active-max={max} served={served}"))
            }
            "/echo" => {
                let headers = Fields::new();
                let _ = headers.set("content-type", &[b"application/octet-stream".to_vec()]);
                // HTTP/1.1 sends the trailers a response declares: those the request declared.
                let declared = request.get_headers().get("trailer");
                if !declared.is_empty() {
                    let _ = headers.set("trailer", &declared);
                }
                let (done_tx, done_rx) = wit_future::new(|| Ok(()));
                let (mut incoming, incoming_trailers) = Request::consume_body(request, done_rx);
                let (mut body_tx, body_rx) = wit_stream::new();
                let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
                let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
                wit_bindgen::spawn_local(async move {
                    loop {
                        let (result, chunk) = incoming.read(Vec::with_capacity(64 * 1024)).await;
                        if !chunk.is_empty() && !body_tx.write_all(chunk).await.is_empty() {
                            return; // the client went away
                        }
                        if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                            break;
                        }
                    }
                    drop(body_tx);
                    let trailers = incoming_trailers.await;
                    let _ = done_tx.write(Ok(())).await;
                    let _ = trailers_tx.write(trailers).await;
                });
                Ok(response)
            }
            "/trap" => {
                sleep_ms(query_number(&path, "ms")).await;
                panic!("the guest panicked on purpose (GET /trap)");
            }
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/alloc" | "/memory-bomb" => {
                let mb = match query_number(&path, "mb") as usize {
                    0 => 1024,
                    mb => mb,
                };
                let mut v = vec![0u8; mb << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                let touched = std::hint::black_box(&v).iter().filter(|b| **b == 1).count();
                text(200, Fields::new(), format!("touched {touched} pages"))
            }
            r if r.starts_with("/config/") => {
                let key = &r["/config/".len()..];
                match wasi::config::store::get(key) {
                    Ok(Some(value)) => text(200, Fields::new(), value),
                    Ok(None) => text(404, Fields::new(), format!("no config key `{key}`")),
                    Err(e) => text(500, Fields::new(), format!("{e:?}")),
                }
            }
            r if r.starts_with("/status/") => {
                let status = r["/status/".len()..].parse().unwrap_or(500);
                let headers = Fields::new();
                let _ = headers.set("x-p3", &[b"yes".to_vec()]);
                text(status, headers, String::new())
            }
            _ => text(200, Fields::new(), "hello from wasi 0.3\n".into()),
        }
    }
}
