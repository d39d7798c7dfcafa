//! The Workers adapter (first slice: `http` functions): `wasmfn package workers` builds the
//! bundle with jco, and real workerd (through Miniflare, on loopback, no account) serves it.

mod common;

use common::client;
use common::workers::{package, Worker};

#[test]
fn http_functions_run_in_workerd() {
    let (_f, bundle, output) = package("echo", "echo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("KiB gzip; Workers allow 10 MiB gzip"),
        "{stdout}"
    );
    for file in [
        "worker.js",
        "wrangler.toml",
        "gen/echo.js",
        "gen/echo.core.wasm",
        "shim/http.js",
    ] {
        assert!(bundle.join(file).exists(), "{file}");
    }
    let worker = Worker::start(&bundle);
    let r = client()
        .post(format!("{}/echo/items?q=1&status=201", worker.url))
        .header("x-demo", "one")
        .body("hello, workerd")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-method"], "POST");
    assert_eq!(r.headers()["x-path"], "/echo/items?q=1&status=201");
    assert_eq!(r.headers()["x-demo"], "one");
    assert_eq!(r.text().unwrap(), "hello, workerd");
}

#[test]
fn a_trap_is_a_500_and_the_worker_keeps_serving() {
    let (_f, bundle, output) = package("trap", "trap");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let worker = Worker::start(&bundle);
    for _ in 0..2 {
        let r = client().get(format!("{}/trap", worker.url)).send().unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()["x-wasmfn-error"], "Trap");
    }
    let (_g, hello, output) = package("hello", "hello");
    assert!(output.status.success());
    let worker = Worker::start(&hello);
    let r = client()
        .get(format!("{}/hello/x", worker.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().unwrap(),
        "Hello from wasmfn! You asked for /hello/x\n"
    );
}

#[test]
fn imports_workers_cannot_provide_are_refused_at_packaging() {
    let (_f, _bundle, output) = package("capabilities", "caps");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`caps` imports") && stderr.contains("`wasmfn:platform/sql`"),
        "{stderr}"
    );
    let (_f, _bundle, output) = package("queue-worker", "worker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("`wasi:logging/logging`"),
        "{stderr}"
    );
}
