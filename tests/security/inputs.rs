//! Input that used to panic, overflow or poison a queue: message attributes that are no header
//! tokens or carry CR/LF (which on NATS forged `Nats-Msg-Id` or stalled every consumer), delays
//! past any clock, `?wait=NaN`, unbounded `?limit=`. Each is refused with the reason, and the
//! host goes on serving.

use serde_json::json;

use crate::common::servers::Nats;
use crate::common::{Fixture, Server};

fn parked_queue(nats: Option<&Nats>) -> (Fixture, Server) {
    let f = Fixture::with_guests(&["hello"]);
    let backend = nats
        .map(|n| {
            format!(
                "[queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n\n",
                n.port
            )
        })
        .unwrap_or_default();
    f.write("wasmfn.toml", format!("{backend}[queues.parked]\n"));
    let server = f.serve();
    (f, server)
}

fn waiting(server: &Server) -> u64 {
    let v: serde_json::Value = server.admin_get("queues").send().unwrap().json().unwrap();
    v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "parked")
        .map(|q| q["waiting"].as_u64().unwrap())
        .unwrap()
}

fn bad_messages_are_refused_and_good_ones_still_flow(nats: Option<&Nats>) {
    let (_f, server) = parked_queue(nats);
    for (message, expect) in [
        (
            json!({"body": "x", "attributes": {"bad name": "v"}}),
            "attribute name `bad name`",
        ),
        (
            json!({"body": "x", "attributes": {"k": "v\r\nNats-Msg-Id: 1"}}),
            "control characters",
        ),
        (
            json!({"body": "x", "attributes": {"Nats-Msg-Id": "1"}}),
            "reserved",
        ),
        (json!({"body": "x", "delayMs": u64::MAX}), "longest allowed"),
    ] {
        let r = server
            .admin_post("queues/parked/batch")
            .json(&json!({"messages": [message]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{message}");
        let text = r.text().unwrap();
        assert!(
            text.contains(expect) && text.contains("nothing was accepted"),
            "{message}: {text}"
        );
    }
    let r = server
        .admin_post("queues/parked/messages")
        .header("x-wasmfn-delay-ms", "soon")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = server
        .admin_post("queues/parked/messages")
        .header("x-wasmfn-attr-source", "tests")
        .body("good")
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(waiting(&server), 1, "only the good message was accepted");
    let listed: serde_json::Value = server
        .admin_get(&format!("queues/parked/messages?limit={}", u64::MAX))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_messages_are_refused_on_the_embedded_queues() {
    bad_messages_are_refused_and_good_ones_still_flow(None);
}

#[test]
fn bad_messages_are_refused_on_nats() {
    let nats = Nats::start();
    bad_messages_are_refused_and_good_ones_still_flow(Some(&nats));
}

#[test]
fn wait_nan_and_huge_limits_do_not_panic_the_host() {
    let f = Fixture::with_guests(&["hello", "order-steps"]);
    f.write("order-saga.asl.json", crate::common::orders::SAGA);
    f.write(
        "wasmfn.toml",
        format!(
            "[kv.orders]\n\n[workflows.order-saga]\ndefinition = \"order-saga.asl.json\"\n\n{}",
            crate::common::orders::step_functions()
        ),
    );
    let server = f.serve();
    for wait in ["NaN", "inf", "-inf", "1e400"] {
        let r = server
            .admin_post(&format!("workflows/order-saga/executions?wait={wait}"))
            .body(r#"{"orderId": "n", "total": 1}"#)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "wait={wait}: {}", r.status());
    }
    let r = server
        .admin_get("workflows/order-saga/executions?limit=18446744073709551615")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.get("/hello").0, 200, "still serving");
}

#[test]
fn request_bodies_past_the_functions_limit_are_refused() {
    let f = Fixture::with_guests(&["echo", "hello"]);
    f.write(
        "wasmfn.toml",
        "[functions.echo]\nmax-request-body = \"1KiB\"\n",
    );
    let server = f.serve();
    let small = crate::common::client()
        .post(server.url("/echo"))
        .body(vec![b'a'; 1000])
        .send()
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().unwrap().len(), 1000);
    let declared = crate::common::client()
        .post(server.url("/echo"))
        .body(vec![b'a'; 4096])
        .send()
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert!(declared.text().unwrap().contains("max-request-body"));
    // Without Content-Length the guest sees the body fail once it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'b'; 1024])).collect();
    let streamed = crate::common::client()
        .post(server.url("/echo"))
        .body(reqwest::blocking::Body::new(StreamedBody(
            chunks.into_iter(),
        )))
        .send();
    let echoed = streamed
        .ok()
        .and_then(|r| r.bytes().ok())
        .map_or(0, |b| b.len());
    assert!(
        echoed <= 1024,
        "only what fits the limit reached the guest: {echoed} bytes"
    );
    assert_eq!(server.get("/hello").0, 200);
}

/// A body of unknown length (sent chunked), read from an iterator of chunks.
struct StreamedBody<I>(I);

impl<I: Iterator<Item = Result<Vec<u8>, std::io::Error>>> std::io::Read for StreamedBody<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.next() {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok(chunk)) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }
}

#[test]
fn silent_and_trickling_connections_are_closed() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};
    let f = Fixture::with_guests(&["hello"]);
    let server = f.serve();
    let started = Instant::now();
    let silent = std::thread::spawn({
        let addr = server.addr.clone();
        move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = [0u8; 16];
            // EOF: the host hung up on a client that never spoke.
            matches!(s.read(&mut buf), Ok(0) | Err(_))
        }
    });
    let mut trickle = std::net::TcpStream::connect(&server.addr).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    trickle.write_all(b"GET /hello HTTP/1.1\r\n").unwrap();
    let mut closed = false;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_secs(1));
        if trickle.write_all(b"x-slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = trickle.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        closed || !text.contains("200 OK"),
        "a trickled head is never served: {text}"
    );
    assert!(silent.join().unwrap(), "the silent connection was closed");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "closed within the header timeout: {took:?}"
    );
    assert_eq!(server.get("/hello").0, 200, "everyone else is served");
}
