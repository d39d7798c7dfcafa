//! The compile cache, `wasmfn compile` and `wasmfn invoke`, through the real binary.

mod common;

use std::io::Write as _;
use std::process::Stdio;

use common::{wasmfn, Fixture};

fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

#[test]
fn second_start_loads_from_the_cache_without_compiling() {
    let f = Fixture::with_guests(&["hello"]);
    let first = f.serve();
    assert_eq!(first.get("/hello").0, 200);
    let logs = first.wait_for_log("compiled component and stored it");
    assert!(logs.contains("hello.wasm"), "{logs}");
    drop(first);
    assert_eq!(cache_entries(f.cache.path()).len(), 1);

    let second = f.serve();
    assert_eq!(second.get("/hello").0, 200);
    let logs = second.wait_for_log("loaded precompiled component from the compile cache");
    assert!(
        !logs.contains("compiled component and stored"),
        "second start compiled:\n{logs}"
    );
}

#[test]
fn a_corrupted_cache_entry_is_detected_and_rebuilt() {
    let f = Fixture::with_guests(&["hello"]);
    drop(f.serve());
    let entry = cache_entries(f.cache.path()).pop().expect("a cache entry");
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();

    let server = f.serve();
    assert_eq!(server.get("/hello").0, 200);
    let logs = server.wait_for_log("compile cache entry is unusable");
    assert!(logs.contains("checksum mismatch"), "{logs}");
    server.wait_for_log("compiled component and stored it");
    drop(server);
    // The rebuilt entry is valid again: the next start is a clean hit.
    let server = f.serve();
    let logs = server.wait_for_log("loaded precompiled component");
    assert!(!logs.contains("unusable"), "{logs}");
}

#[test]
fn a_changed_component_is_recompiled() {
    let f = Fixture::with_guests(&["hello"]);
    drop(f.serve());
    f.copy_guest("echo", "hello");
    let server = f.serve();
    let logs = server.wait_for_log("compiled component and stored it");
    assert!(logs.contains("hello.wasm"));
    assert_eq!(cache_entries(f.cache.path()).len(), 2);
    assert_eq!(server.get("/hello?status=202").0, 202, "the new code runs");
}

#[test]
fn compile_precompiles_ahead_of_time() {
    let f = Fixture::with_guests(&["hello", "queue-worker"]);
    let run = || {
        let out = wasmfn()
            .arg("compile")
            .arg(f.dir.path())
            .arg("--cache-dir")
            .arg(f.cache.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first.matches("compiled ").count(), 2, "{first}");
    let second = run();
    assert_eq!(second.matches("hit ").count(), 2, "{second}");
}

fn invoke(f: &Fixture, function: &str, event: Option<&str>) -> (bool, serde_json::Value) {
    let mut cmd = wasmfn();
    cmd.args(["invoke", function, "--dir"])
        .arg(f.dir.path())
        .arg("--cache-dir")
        .arg(f.cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    if event.is_some() {
        cmd.args(["--event", "-"]);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(e) = event {
        stdin.write_all(e.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

#[test]
fn invoke_runs_one_event_of_every_world() {
    let f = Fixture::with_guests(&["hello", "queue-worker", "stream-audit", "cron-job", "trap"]);

    let (ok, r) = invoke(
        &f,
        "hello",
        Some(r#"{"method":"POST","path":"/hello/x","body":"hi"}"#),
    );
    assert!(ok);
    assert_eq!(r["status"], 200);
    assert_eq!(r["body"], "Hello from wasmfn! You asked for /hello/x\n");

    let (ok, r) = invoke(
        &f,
        "queue-worker",
        Some(
            r#"{"queue":"orders","messages":[{"id":"a","body":"fine"},{"id":"b","body":"please fail"}]}"#,
        ),
    );
    assert!(ok);
    assert_eq!(r["failures"][0]["id"], "b");
    assert_eq!(r["failures"].as_array().unwrap().len(), 1);

    let (ok, r) = invoke(
        &f,
        "stream-audit",
        Some(
            r#"{"events":[{"type":"change","source":"users","key":"poison","operation":"remove","sequence":"42"}]}"#,
        ),
    );
    assert!(!ok);
    assert_eq!(r["firstFailedSequence"], "42");

    let (ok, r) = invoke(
        &f,
        "cron-job",
        Some(r#"{"schedule":"nightly","expression":"0 3 * * *"}"#),
    );
    assert!(ok);
    assert_eq!(r["ok"], true);

    let (ok, r) = invoke(&f, "trap", None);
    assert!(!ok);
    assert_eq!(r["errorType"], "Trap");

    // A malformed event is refused with the field named.
    let path = f.dir.path().join("bad-event.json");
    std::fs::write(&path, r#"{"messages":[{"body":"x"}],"extra":1}"#).unwrap();
    let out = wasmfn()
        .args(["invoke", "queue-worker", "--dir"])
        .arg(f.dir.path())
        .arg("--event")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a queue batch event") && err.contains("`extra`"),
        "{err}"
    );
}

#[test]
fn invoke_reports_unknown_functions_with_the_available_ones() {
    let f = Fixture::with_guests(&["hello"]);
    let out = wasmfn()
        .args(["invoke", "nope", "--dir"])
        .arg(f.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no function `nope`") && err.contains("available: hello"),
        "{err}"
    );
}
