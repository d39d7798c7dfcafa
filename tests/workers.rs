//! The Workers adapter (first slice: `http` functions): `wasmfn package workers` builds the
//! bundle with jco, and real workerd (through Miniflare, on loopback, no account) serves it.

mod common;

use common::client;
use common::workers::{package, package_with, Worker};

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
    let (_f, _bundle, output) = package("stream-audit", "audit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("no change-stream event source"),
        "{stderr}"
    );
    let (_f, _bundle, output) = package_with(
        "cron-job",
        "tick",
        "[schedules.paris]\nfunction = \"tick\"\nexpression = \"0 9 * * *\"\ntimezone = \"Europe/Paris\"\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("schedule `paris`: Workers cron triggers run in UTC"),
        "{stderr}"
    );
}

#[test]
fn queue_batches_and_cron_triggers_reach_their_worlds() {
    let manifest =
        "[queues.orders]\nfunction = \"worker\"\nbatch-size = 25\nmax-receive-count = 4\n\n\
        [schedules.nightly]\nfunction = \"tick\"\nexpression = \"0 3 * * *\"\n\n\
        [schedules.failing]\nfunction = \"tick\"\nexpression = \"rate(15 minutes)\"\n";
    let (_f, bundle, output) = package_with("queue-worker", "worker", manifest);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wrangler = std::fs::read_to_string(bundle.join("wrangler.toml")).unwrap();
    for line in [
        "queue = \"orders\"",
        "max_batch_size = 25",
        "max_retries = 3",
        "dead_letter_queue = \"orders-dlq\"",
    ] {
        assert!(wrangler.contains(line), "{line} in:\n{wrangler}");
    }
    let worker = Worker::start(&bundle);
    let r = worker.queue(
        "orders",
        serde_json::json!([{"id": "m1", "body": "ok"}, {"id": "m2", "body": "please fail"}, {"id": "m3", "body": "fine"}]),
    );
    assert_eq!(r["explicitAcks"], serde_json::json!(["m1", "m3"]), "{r}");
    assert_eq!(
        r["retryMessages"],
        serde_json::json!([{"msgId": "m2"}]),
        "{r}"
    );

    let (_g, bundle, output) = package_with("cron-job", "tick", manifest);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wrangler = std::fs::read_to_string(bundle.join("wrangler.toml")).unwrap();
    assert!(
        wrangler.contains("crons = [\"*/15 * * * *\", \"0 3 * * *\"]"),
        "{wrangler}"
    );
    let worker = Worker::start(&bundle);
    assert_eq!(worker.scheduled("0 3 * * *")["outcome"], "ok");
    assert_eq!(worker.scheduled("*/15 * * * *")["outcome"], "exception");
    common::wait_until(
        "both runs in the log",
        std::time::Duration::from_secs(5),
        || {
            let log = worker.log();
            log.contains("nightly (0 3 * * *) ran") && log.contains("schedule failing failed")
        },
    );
}
