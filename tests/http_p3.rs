//! WASI 0.3 http components (`wasi:http/handler@0.3.x`, built by the tests with the public
//! `wasip3` crate) through the real binary: served like 0.2 ones, bodies streaming both ways
//! with trailers, several requests at once in one instance in concurrent mode, a trap retiring
//! its instance, and the limits holding.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::time::Duration;

use common::{client, raw_request, Fixture, Server};

/// `instance=ID active-max=M served=S` from the guest's `/slow`.
fn slow_report(body: &str) -> BTreeMap<String, u64> {
    body.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// Send `n` requests for `path` at once; their statuses and bodies.
fn at_once(server: &Server, path: &str, n: usize) -> Vec<(u16, String)> {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let url = server.url(path);
            std::thread::spawn(move || {
                let r = client().get(url).send().unwrap();
                (r.status().as_u16(), r.text().unwrap())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The host's Prometheus page.
fn scrape(server: &Server) -> String {
    client()
        .get(format!("http://{}/metrics", server.admin_addr))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// `wasmfn serve` with one server thread. Each server thread keeps its own 0.3 instances, and
/// the kernel spreads connections over the threads; tests about which requests share an
/// instance use one thread so that every request reaches the same pool.
fn serve_one_thread(f: &Fixture) -> Server {
    f.serve_with(&["--threads", "1"], &[])
}

#[test]
fn a_wasi_0_3_component_is_an_http_function_like_a_0_2_one() {
    let f = Fixture::with_guests(&["http-p3", "hello"]);
    f.write(
        "wasmfn.toml",
        "[functions.http-p3]\nroutes = [\"/p3\", \"/p3/*\"]\n",
    );
    let server = f.serve();
    let (status, body) = server.get("/p3");
    assert_eq!((status, body.as_str()), (200, "hello from wasi 0.3\n"));
    // The guest's whole body was ready when the head went out: sent with its length.
    let raw = raw_request(
        &server.addr,
        b"GET /p3 HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    );
    assert!(raw.contains("content-length: 20\r\n"), "{raw}");
    let response = client().get(server.url("/p3/status/418")).send().unwrap();
    assert_eq!(response.status().as_u16(), 418);
    assert_eq!(response.headers()["x-p3"], "yes");
    // A 0.2 function beside it is unaffected.
    assert_eq!(server.get("/hello").0, 200);
    // The same log line, metrics and API description as any http function.
    server.wait_for_log("status=418");
    let logs = server.logs();
    assert!(
        logs.contains("function=http-p3") && logs.contains("invocation finished"),
        "{logs}"
    );
    let described: serde_json::Value = server
        .admin_get("functions/http-p3")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(described["world"], "http", "{described}");
    assert_eq!(described["wasiHttp"], "0.3", "{described}");
    let metrics = scrape(&server);
    assert!(
        metrics.lines().any(
            |l| l.starts_with("wasmfn_invocations_total") && l.contains("function=\"http-p3\"")
        ),
        "{metrics}"
    );
}

#[test]
fn bodies_stream_both_ways_with_trailers() {
    let f = Fixture::with_guests(&["http-p3"]);
    let server = f.serve();
    // 8 MiB up and back down, every byte in place.
    let sent: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mut response = client()
        .post(server.url("/http-p3/echo"))
        .body(sent.clone())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let mut received = Vec::new();
    response.read_to_end(&mut received).unwrap();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the echoed body differs");
    // A chunked request with a trailer: the body and the trailer come back.
    let response = raw_request(
        &server.addr,
        b"POST /http-p3/echo HTTP/1.1\r\nhost: test\r\nte: trailers\r\n\
          transfer-encoding: chunked\r\ntrailer: x-checksum\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.contains("hello\r\n") && body.contains(" world\r\n"),
        "{response}"
    );
    let after_last_chunk = response.split("\r\n0\r\n").nth(1).unwrap_or_default();
    assert!(
        after_last_chunk.contains("x-checksum: abc123"),
        "{response}"
    );
}

#[test]
fn concurrent_mode_serves_several_requests_in_one_instance_and_fresh_mode_one() {
    let f = Fixture::with_guests(&["http-p3"]);
    f.copy_guest("http-p3", "together");
    f.write(
        "wasmfn.toml",
        "[functions.together]\ninstances = \"concurrent\"\nmax-concurrent = 8\n",
    );
    let server = serve_one_thread(&f);
    // A first request leaves an idle instance waiting for work.
    assert_eq!(server.get("/together/slow?ms=1").0, 200);
    // Eight requests that each wait 600 ms, at once, to each function.
    let together = at_once(&server, "/together/slow?ms=600", 8);
    let alone = at_once(&server, "/http-p3/slow?ms=600", 8);
    let instances = |answers: &[(u16, String)]| -> (BTreeSet<u64>, u64) {
        let mut ids = BTreeSet::new();
        let mut most_at_once = 0;
        for (status, body) in answers {
            assert_eq!(*status, 200, "{body}");
            let report = slow_report(body);
            ids.insert(report["instance"]);
            most_at_once = most_at_once.max(report["active-max"]);
        }
        (ids, most_at_once)
    };
    // Concurrent: fewer instances than requests, each holding several of them at once (a
    // request that arrives while every instance is busy starting another one gets a new
    // instance, as in `wasmtime serve`).
    let (ids, most_at_once) = instances(&together);
    assert!(ids.len() <= 5, "{together:?}");
    assert!(most_at_once >= 3, "{together:?}");
    // Fresh: eight instances, each with one request.
    let (ids, most_at_once) = instances(&alone);
    assert_eq!(ids.len(), 8, "{alone:?}");
    assert_eq!(most_at_once, 1, "{alone:?}");
    // The API shows the mode.
    let described: serde_json::Value = server
        .admin_get("functions/together")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(described["mode"]["kind"], "concurrent", "{described}");
    assert_eq!(described["mode"]["maxConcurrent"], 8, "{described}");
}

#[test]
fn max_concurrent_and_max_uses_bound_an_instance() {
    let f = Fixture::with_guests(&["http-p3"]);
    f.write(
        "wasmfn.toml",
        "[functions.http-p3]\ninstances = \"concurrent\"\nmax-concurrent = 2\nmax-uses = 4\n",
    );
    let server = serve_one_thread(&f);
    let answers = at_once(&server, "/http-p3/slow?ms=400", 6);
    let mut served_by: BTreeMap<u64, u64> = BTreeMap::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let report = slow_report(body);
        assert!(report["active-max"] <= 2, "{answers:?}");
        assert!(report["served"] <= 4, "{answers:?}");
        *served_by.entry(report["instance"]).or_default() += 1;
    }
    assert!(served_by.len() >= 3, "{answers:?}");
    // Sequential requests: a new instance after every fourth.
    let ids: Vec<u64> = (0..8)
        .map(|_| slow_report(&server.get("/http-p3/slow?ms=1").1)["instance"])
        .collect();
    let distinct: BTreeSet<&u64> = ids.iter().collect();
    assert!(distinct.len() >= 2, "{ids:?}");
}

#[test]
fn a_trap_retires_its_instance_with_the_requests_in_it_and_the_next_gets_a_new_one() {
    let f = Fixture::with_guests(&["http-p3"]);
    f.write(
        "wasmfn.toml",
        "[functions.http-p3]\ninstances = \"concurrent\"\nmax-concurrent = 8\n",
    );
    let server = serve_one_thread(&f);
    let before = slow_report(&server.get("/http-p3/slow?ms=1").1)["instance"];
    // Three slow requests, one after another so that each finds the instance waiting on the
    // ones before (requests arriving at the same moment may start instances of their own).
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(150));
            let url = server.url("/http-p3/slow?ms=3000");
            std::thread::spawn(move || {
                let r = client().get(url).send().unwrap();
                let kind = r
                    .headers()
                    .get("x-wasmfn-error")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.status().as_u16(), kind, r.text().unwrap())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = server.get("/http-p3/trap?ms=0");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("panicked") || body.contains("trap"), "{body}");
    for t in waiting {
        let (status, kind, body) = t.join().unwrap();
        assert_eq!(status, 500, "{body}");
        assert_eq!(kind.as_deref(), Some("Trap"), "{body}");
        assert!(body.contains("its instance was retired"), "{body}");
    }
    server.wait_for_log("a WASI 0.3 instance was retired");
    // The next request gets a new instance that works.
    let (status, body) = server.get("/http-p3/slow?ms=1");
    assert_eq!(status, 200, "{body}");
    let after = slow_report(&body);
    assert_ne!(after["instance"], before, "{body}");
    assert_eq!(after["served"], 1, "{body}");
}

#[test]
fn timeout_memory_and_concurrency_limits_hold_in_concurrent_mode() {
    let f = Fixture::with_guests(&["http-p3"]);
    f.copy_guest("http-p3", "few");
    f.write(
        "wasmfn.toml",
        "[functions.http-p3]\ninstances = \"concurrent\"\ntimeout = \"1s\"\nmemory = \"32MiB\"\n\
         [functions.few]\ninstances = \"concurrent\"\nconcurrency = 2\n",
    );
    let server = f.serve();
    // A guest that never yields a response is cut off at its timeout; the function still
    // serves.
    let (status, body) = server.get("/http-p3/spin");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timed out after 1s"), "{body}");
    let (status, body) = server.get("/http-p3/slow?ms=1");
    assert_eq!(status, 200, "{body}");
    // A slow async wait is cut off as well.
    assert_eq!(server.get("/http-p3/slow?ms=5000").0, 504);
    // Memory past the limit fails the request with the limit's message.
    let (status, body) = server.get("/http-p3/alloc?mb=64");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("exceeded its memory limit of 32 MiB"),
        "{body}"
    );
    assert_eq!(server.get("/http-p3/alloc?mb=4").0, 200);
    // The function's concurrency limit holds across its instances: the third is refused.
    let answers = at_once(&server, "/few/slow?ms=800", 3);
    let refused = answers.iter().filter(|(s, _)| *s == 503).count();
    let served = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((refused, served), (1, 2), "{answers:?}");
}

#[test]
fn concurrent_mode_is_refused_for_a_wasi_0_2_component() {
    let f = Fixture::with_guests(&["hello"]);
    f.write(
        "wasmfn.toml",
        "[functions.hello]\ninstances = \"concurrent\"\n",
    );
    let out = common::wasmfn()
        .args(["check", f.dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("needs a WASI 0.3 http component"),
        "{stdout}{stderr}"
    );
}

#[test]
fn a_wasi_0_3_guest_reaches_the_platform_imports() {
    let f = Fixture::with_guests(&["http-p3", "http-p3-stores"]);
    f.write(
        "wasmfn.toml",
        "[kv.default]\n[kv.other]\n\
         [functions.http-p3]\ninstances = \"concurrent\"\n\
         [functions.http-p3.config]\ngreeting = \"hi from config\"\n\
         [functions.http-p3-stores]\ninstances = \"concurrent\"\n\
         kv = [\"default\"]\nsql = [\"default\"]\n",
    );
    let server = f.serve();
    let (status, body) = server.get("/http-p3/config/greeting");
    assert_eq!((status, body.as_str()), (200, "hi from config"));
    assert_eq!(server.get("/http-p3/config/missing").0, 404);
    let (status, body) = server.get("/http-p3-stores/colour?set=green");
    assert_eq!((status, body.as_str()), (200, "green"));
    let (status, body) = server.get("/http-p3-stores/colour");
    assert_eq!((status, body.as_str()), (200, "green"));
    // A bucket the manifest does not grant it stays closed, as for 0.2 guests.
    let (status, body) = server.get("/http-p3-stores/colour?bucket=other");
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with("open:"), "{body}");
}

#[test]
fn the_async_platform_imports_reach_the_same_stores_as_the_0_2_ones() {
    let f = Fixture::with_guests(&["http-p3-stores"]);
    f.write(
        "wasmfn.toml",
        "[functions.http-p3-stores]\ninstances = \"concurrent\"\n\
         kv = [\"default\"]\nsql = [\"default\"]\n",
    );
    let server = f.serve();
    // kv@0.2.0 (async) writes what wasi:keyvalue (sync) reads, and the other way round.
    let (status, body) = server.get("/http-p3-stores/async/colour?set=red&ttl=60000");
    assert_eq!((status, body.as_str()), (200, "red ttl=set"));
    let (status, body) = server.get("/http-p3-stores/colour");
    assert_eq!((status, body.as_str()), (200, "red"));
    let (status, body) = server.get("/http-p3-stores/shape?set=round");
    assert_eq!((status, body.as_str()), (200, "round"));
    let (status, body) = server.get("/http-p3-stores/async/shape");
    assert_eq!((status, body.as_str()), (200, "round ttl=none"));
    // The same TTL bounds as kv-extensions.
    let (status, body) = server.get("/http-p3-stores/async/colour?set=blue&ttl=0");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("ttl-ms must be at least 1"), "{body}");
    // sql@0.2.0 and sql@0.1.0 reach the same database.
    let (status, body) = server.get("/http-p3-stores/count?n=1000");
    assert_eq!((status, body.as_str()), (200, "counted=1000"));
    let (status, body) = server.get("/http-p3-stores/count-sync?n=1000");
    assert_eq!((status, body.as_str()), (200, "counted=1000"));
}

/// `in-flight=K` from the guest's `/ping`.
fn in_flight(body: &str) -> u32 {
    body.strip_prefix("in-flight=").unwrap().parse().unwrap()
}

#[test]
fn a_request_awaiting_an_async_import_leaves_its_instance_free_for_others() {
    let f = Fixture::with_guests(&["http-p3-stores"]);
    f.write(
        "wasmfn.toml",
        "[functions.http-p3-stores]\ninstances = \"concurrent\"\nmax-concurrent = 4\n\
         kv = [\"default\"]\nsql = [\"default\"]\ntimeout = \"60s\"\n",
    );
    let server = serve_one_thread(&f);
    // Counting to ten million keeps SQLite busy for about a second (longer on a loaded machine).
    const SLOW: &str = "?n=10000000";
    let url = server.url(&format!("/http-p3-stores/count{SLOW}"));
    let slow = std::thread::spawn(move || client().get(url).send().unwrap().text().unwrap());
    // While the statement runs, another request is served by the same instance: the guest
    // counts both in flight.
    let mut seen = 0;
    for _ in 0..200 {
        let (status, body) = server.get("/http-p3-stores/ping");
        assert_eq!(status, 200, "{body}");
        seen = in_flight(&body);
        if seen == 2 || slow.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !slow.is_finished(),
        "the statement finished before a second request got in; raise n in {SLOW}"
    );
    assert_eq!(
        seen, 2,
        "the instance never served a second request during the statement"
    );
    assert_eq!(slow.join().unwrap(), "counted=10000000");

    // Through the synchronous sql@0.1.0 the instance is blocked for the statement's length: a
    // request meanwhile never runs beside it there (the pool gives it another instance).
    let url = server.url(&format!("/http-p3-stores/count-sync{SLOW}"));
    let slow = std::thread::spawn(move || client().get(url).send().unwrap().text().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..10 {
        let (status, body) = server.get("/http-p3-stores/ping");
        assert_eq!((status, in_flight(&body)), (200, 1), "{body}");
    }
    assert!(
        !slow.is_finished(),
        "the statement finished before the pings; raise n in {SLOW}"
    );
    assert_eq!(slow.join().unwrap(), "counted=10000000");
}

/// One request on an open keep-alive connection; the response's body (sent with a length).
fn get_on(stream: &mut std::net::TcpStream, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap_or_else(|| panic!("no length: {head}"))
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn connections_are_spread_evenly_over_the_server_threads() {
    let f = Fixture::with_guests(&["http-p3"]);
    let server = f.serve_with(&["--threads", "2"], &[]);
    // Eight connections, each accepted (it has answered) before the next opens: four per
    // thread, whatever the kernel's hash over the two sockets did (it splits eight 4/4 only
    // 27% of times).
    let _connections: Vec<_> = (0..8)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
            get_on(&mut stream, "/http-p3");
            stream
        })
        .collect();
    let metrics = scrape(&server);
    let per_thread: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wasmfn_server_thread_connections{"))
        .collect();
    assert_eq!(per_thread.len(), 2, "{metrics}");
    assert!(
        per_thread.iter().all(|l| l.ends_with(" 4")),
        "{per_thread:?}"
    );
}
