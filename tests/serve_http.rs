//! `wasmfn serve` over real HTTP: routing, faithful requests and responses, streaming bodies,
//! trailers, instance modes, graceful shutdown.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::{client, raw_request, Fixture, Server};

#[test]
fn hello_is_served_at_its_default_routes() {
    let f = Fixture::with_guests(&["hello"]);
    let server = f.serve();
    let (status, body) = server.get("/hello");
    assert_eq!(status, 200);
    assert_eq!(body, "Hello from wasmfn! You asked for /hello\n");
    let (status, body) = server.get("/hello/a/b?x=1");
    assert_eq!(status, 200);
    assert!(body.ends_with("/hello/a/b?x=1\n"), "{body}");
    let response = client().get(server.url("/hello")).send().unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    // The start-up summary names the function and its routes.
    let stdout = server.stdout.lock().unwrap().clone();
    assert!(
        stdout.contains("hello") && stdout.contains("/hello/*"),
        "{stdout}"
    );
    // One structured log line per invocation.
    server.wait_for_log("invocation finished");
    let logs = server.logs();
    assert!(
        logs.contains("function=hello") && logs.contains("status=200"),
        "{logs}"
    );
}

#[test]
fn unknown_route_is_404_listing_the_routes() {
    let f = Fixture::with_guests(&["hello"]);
    let server = f.serve();
    let (status, body) = server.get("/nowhere");
    assert_eq!(status, 404);
    assert!(
        body.contains("`/nowhere`") && body.contains("/hello -> hello"),
        "{body}"
    );
    // `/hello/*` must not capture `/helloworld`.
    assert_eq!(server.get("/helloworld").0, 404);
}

#[test]
fn requests_and_responses_pass_through_faithfully() {
    let f = Fixture::with_guests(&["echo"]);
    let server = f.serve();
    let response = client()
        .put(server.url("/echo/items/7?status=201"))
        .header("x-request-id", "abc-123")
        .header("x-multi", "one")
        .body("payload bytes")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let h = response.headers();
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(h["x-method"], "PUT");
    assert_eq!(h["x-path"], "/echo/items/7?status=201");
    assert_eq!(response.text().unwrap(), "payload bytes");

    let response = client()
        .delete(server.url("/echo?status=404"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.headers()["x-method"], "DELETE");
}

#[test]
fn large_bodies_stream_both_ways() {
    let f = Fixture::with_guests(&["echo"]);
    let server = f.serve();
    // 8 MiB of non-repeating bytes, so a dropped or reordered chunk cannot go unnoticed.
    let mut body = Vec::with_capacity(8 << 20);
    let mut x: u32 = 0x1234_5678;
    while body.len() < 8 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        body.extend_from_slice(&x.to_le_bytes());
    }
    let response = client()
        .post(server.url("/echo"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let echoed = response.bytes().unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "echoed body differs from the request body");
}

#[test]
fn a_finished_small_body_has_a_length_and_a_body_in_progress_still_streams() {
    let f = Fixture::with_guests(&["hello", "echo"]);
    let server = f.serve();
    // hello writes its body and returns: the response is sent whole, with its length.
    let response = raw_request(
        &server.addr,
        b"GET /hello HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    );
    assert!(response.contains("content-length: 40\r\n"), "{response}");
    assert!(!response.contains("transfer-encoding"), "{response}");
    // A HEAD request gets the same length and no body.
    let response = raw_request(
        &server.addr,
        b"HEAD /hello HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    );
    assert!(response.ends_with("\r\n\r\n"), "{response}");
    // echo answers while the request body is still arriving: the head and the first chunk
    // come back before the client has sent the rest.
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = stream.read(&mut buf).expect("the first chunk streams back");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").unwrap();
    while !String::from_utf8_lossy(&seen).contains("\r\n0\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("second"));
}

#[test]
fn response_trailers_are_sent() {
    let f = Fixture::with_guests(&["echo"]);
    let server = f.serve();
    let response = raw_request(
        &server.addr,
        b"POST /echo?trailers=1 HTTP/1.1\r\nhost: test\r\nte: trailers\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("transfer-encoding: chunked"),
        "{response}"
    );
    // The trailer follows the last (empty) chunk.
    let after_last_chunk = response.split("\r\n0\r\n").nth(1).unwrap_or_default();
    assert!(after_last_chunk.contains("x-trailer: done"), "{response}");
}

#[test]
fn fresh_mode_isolates_invocations_and_reuse_mode_keeps_state() {
    let f = Fixture::with_guests(&["counter"]);
    f.copy_guest("counter", "warm");
    f.write(
        "wasmfn.toml",
        "[functions.warm]\ninstances = \"reuse\"\nmax-uses = 3\n",
    );
    let server = f.serve();
    // Fresh (default): every request sees a new instance.
    for _ in 0..3 {
        assert_eq!(server.get("/counter").1, "1");
    }
    // Reuse: module state survives, up to max-uses, then a new instance starts over.
    let seen: Vec<String> = (0..4).map(|_| server.get("/warm").1).collect();
    assert_eq!(seen, ["1", "2", "3", "1"]);
    // A trapped instance is never reused: after the trap the count restarts.
    assert_eq!(server.get("/warm").1, "2");
    let (status, _) = server.get("/warm/trap");
    assert_eq!(status, 200, "the response was sent before the trap");
    assert_eq!(server.get("/warm").1, "1");
}

#[test]
fn manifest_sets_explicit_routes() {
    let f = Fixture::with_guests(&["hello", "echo"]);
    f.write(
        "wasmfn.toml",
        "[functions.hello]\nroutes = [\"/\", \"/greet/*\"]\n\n[functions.echo]\nworld = \"http\"\n",
    );
    let server = f.serve();
    assert_eq!(server.get("/").0, 200);
    assert!(server.get("/greet/you").1.contains("/greet/you"));
    assert_eq!(
        server.get("/hello").0,
        404,
        "explicit routes replace the defaults"
    );
    assert_eq!(server.get("/echo").0, 200);
}

#[test]
fn ctrl_c_drains_in_flight_requests() {
    let f = Fixture::with_guests(&["echo"]);
    let server = f.serve();
    // A request whose body arrives slowly is in flight when the signal comes.
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\nconnection: close\r\n\r\nfirst")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let waiter = std::thread::spawn(move || server.interrupt());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown started...
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "the listener should be closed during the drain"
    );
    // ...but the in-flight request completes.
    stream.write_all(b"-last").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\r\n5\r\nfirst\r\n5\r\n-last\r\n0\r\n"),
        "{response}"
    );
    let status = waiter.join().unwrap();
    assert!(status.success(), "wasmfn (pid {pid}) exited with {status}");
}

#[test]
fn on_demand_allocator_serves_too() {
    let f = Fixture::with_guests(&["hello"]);
    let server = Server::start(f.dir.path(), f.cache.path(), &["--allocator", "on-demand"]);
    assert_eq!(server.get("/hello").0, 200);
}

#[test]
fn pooling_falls_back_to_on_demand_when_address_space_is_limited() {
    let f = Fixture::with_guests(&["hello"]);
    // 64 GiB of address space: plenty for one on-demand instance, far too little for the pool.
    let script = format!(
        "ulimit -v 67108864 && exec {} serve {} --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --cache-dir {}",
        env!("CARGO_BIN_EXE_wasmfn"),
        f.dir.path().display(),
        f.cache.path().display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0 {
        if let Some(a) = line.trim().strip_prefix("listening on http://") {
            addr = Some(a.to_string());
            break;
        }
        line.clear();
    }
    let addr = addr.expect("server did not start");
    let body = client()
        .get(format!("http://{addr}/hello"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(body.starts_with("Hello from wasmfn!"));
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("falling back to on-demand allocation"),
        "{err}"
    );
}

#[test]
fn idle_warm_instances_expire() {
    let f = Fixture::with_guests(&["counter"]);
    f.write(
        "wasmfn.toml",
        "[functions.counter]\ninstances = \"reuse\"\nidle-timeout = \"300ms\"\n",
    );
    let server = f.serve();
    assert_eq!(server.get("/counter").1, "1");
    assert_eq!(server.get("/counter").1, "2");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.get("/counter").1,
        "1",
        "an idle instance past its timeout is not reused"
    );
}

#[test]
fn prewarmed_instances_are_ready_at_start_and_outlive_the_idle_timeout() {
    let f = Fixture::with_guests(&["counter"]);
    f.write(
        "wasmfn.toml",
        "[functions.counter]\ninstances = \"reuse\"\nidle-timeout = \"300ms\"\nprewarm = 1\n",
    );
    let server = f.serve();
    server.wait_for_log("pre-warmed instances ready");
    assert_eq!(server.get("/counter").1, "1");
    assert_eq!(server.get("/counter").1, "2");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.get("/counter").1,
        "3",
        "pre-warmed capacity is kept however long it idles"
    );
}
