//! Bad inputs: each gets a clear error naming the thing and the fix, and the server keeps
//! serving everything else.

mod common;

use std::time::{Duration, Instant};

use common::{client, guest, wasmfn, Fixture};

#[test]
fn broken_components_are_refused_by_name_and_the_rest_is_served() {
    let f = Fixture::with_guests(&["hello", "not-a-function", "queue-worker"]);
    f.write("notes.wasm", "this is a text file, not wasm\n");
    let hello = std::fs::read(guest("hello")).unwrap();
    f.write("truncated.wasm", &hello[..hello.len() / 2]);
    // The smallest core module: magic plus version 1.
    f.write("core-module.wasm", b"\0asm\x01\0\0\0");
    // A valid component of another world than the manifest expects.
    f.copy_guest("queue-worker", "misdeclared");
    f.write("wasmfn.toml", "[functions.misdeclared]\nworld = \"http\"\n");
    let server = f.serve();

    assert_eq!(
        server.get("/hello").0,
        200,
        "good functions are still served"
    );
    let expect = [
        ("notes.wasm", "not a WebAssembly file"),
        (
            "truncated.wasm",
            "not a valid component (truncated or corrupt?)",
        ),
        (
            "core-module.wasm",
            "is a core WebAssembly module, not a component",
        ),
        (
            "not-a-function.wasm",
            "wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x (world http)",
        ),
        ("misdeclared.wasm", "expected a component of world `http`"),
    ];
    for (file, message) in expect {
        // Log lines arrive asynchronously: wait for each one.
        let logs = server.wait_for_log(message);
        let line = logs
            .lines()
            .find(|l| l.contains(file) && l.contains(message))
            .unwrap_or_else(|| panic!("no error naming {file} with `{message}` in:\n{logs}"));
        assert!(line.contains("ERROR"), "{line}");
    }
    // The wrong-world message also says what the component does export and how to fix it.
    let logs = server.logs();
    assert!(logs.contains("it exports add"), "{logs}");
    assert!(logs.contains("build it against a world in wit/"), "{logs}");
    let stdout = server.stdout.lock().unwrap().clone();
    assert!(stdout.contains("not loaded (5"), "{stdout}");
    // The correctly declared queue function loaded.
    assert!(stdout.contains("queue-worker"), "{stdout}");
}

#[test]
fn a_trapping_guest_gets_500_and_the_host_keeps_serving() {
    let f = Fixture::with_guests(&["hello", "trap"]);
    let server = f.serve();
    for _ in 0..3 {
        let (status, body) = server.get("/trap");
        assert_eq!(status, 500);
        assert!(body.contains("function `trap` trapped"), "{body}");
        assert!(body.contains("unreachable"), "{body}");
        assert_eq!(server.get("/hello").0, 200);
    }
    let logs = server.wait_for_log("error_kind=\"Trap\"");
    assert!(logs.contains("function=trap"), "{logs}");
}

#[test]
fn an_infinite_loop_times_out_and_does_not_block_others() {
    let f = Fixture::with_guests(&["hello", "spin-forever"]);
    f.write(
        "wasmfn.toml",
        "[functions.spin-forever]\ntimeout = \"1s\"\n",
    );
    let server = f.serve();
    let url = server.url("/spin-forever");
    let spinning = std::thread::spawn(move || {
        let started = Instant::now();
        let r = client().get(url).send().unwrap();
        (r.status().as_u16(), r.text().unwrap(), started.elapsed())
    });
    // While one guest spins, others are answered promptly (the spinner yields each epoch).
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(server.get("/hello").0, 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "hello was blocked by the spinning guest"
        );
    }
    let (status, body, took) = spinning.join().unwrap();
    assert_eq!(status, 504);
    assert!(body.contains("timed out after 1s"), "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    // The next invocation works (and times out again on its own schedule).
    assert_eq!(server.get("/hello").0, 200);
    assert_eq!(server.get("/spin-forever").0, 504);
}

#[test]
fn a_memory_bomb_hits_its_limit() {
    let f = Fixture::with_guests(&["hello", "memory-bomb"]);
    f.write(
        "wasmfn.toml",
        "[functions.memory-bomb]\nmemory = \"64MiB\"\n",
    );
    let server = f.serve();
    let (status, body) = server.get("/memory-bomb");
    assert_eq!(status, 500);
    assert!(
        body.contains("exceeded its memory limit of 64 MiB"),
        "{body}"
    );
    assert!(body.contains("raise `memory` in wasmfn.toml"), "{body}");
    assert_eq!(server.get("/hello").0, 200);
    // The default limit (128 MiB) applies without a manifest entry too.
    let g = Fixture::with_guests(&["memory-bomb"]);
    let server = g.serve();
    let (status, body) = server.get("/memory-bomb");
    assert_eq!(status, 500);
    assert!(body.contains("128 MiB"), "{body}");
}

#[test]
fn concurrency_limit_gives_503_with_retry_after() {
    let f = Fixture::with_guests(&["spin-forever"]);
    f.write(
        "wasmfn.toml",
        "[functions.spin-forever]\ntimeout = \"2s\"\nconcurrency = 1\n",
    );
    let server = f.serve();
    let url = server.url("/spin-forever");
    let first = std::thread::spawn(move || client().get(url).send().unwrap().status().as_u16());
    std::thread::sleep(Duration::from_millis(300));
    let second = client().get(server.url("/spin-forever")).send().unwrap();
    assert_eq!(second.status().as_u16(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    assert!(second.text().unwrap().contains("concurrency limit (1)"));
    assert_eq!(first.join().unwrap(), 504);
}

#[test]
fn a_malformed_manifest_is_an_error_with_file_line_and_key() {
    let f = Fixture::with_guests(&["hello"]);
    f.write(
        "wasmfn.toml",
        "[functions.hello]\nroutes = [\"/hi\"]\ntimeout = \"forever\"\n",
    );
    let out = wasmfn()
        .arg("serve")
        .arg(f.dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wasmfn.toml:3: `functions.hello.timeout`"),
        "{err}"
    );
    assert!(err.contains("not a duration"), "{err}");

    f.write("wasmfn.toml", "[functions.hello]\nrouts = [\"/hi\"]\n");
    let out = wasmfn().arg("serve").arg(f.dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown field `routs`") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let out = wasmfn()
        .args(["serve", "/no/such/folder"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`/no/such/folder` does not exist"), "{err}");
}
