//! Guests in every language and the developer loop, through the real binary: `wasmfn new` for
//! each template (Rust, JavaScript, Python, C, Go × http, queue, schedule, stream, task), `wasmfn build`
//! detecting the language, `wasmfn serve` / `wasmfn invoke` running them; the build cache;
//! the missing-tool message; `wasmfn serve --watch` swapping a rebuilt guest under load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::languages::{templates, LANGUAGES};
use common::{client, wasmfn, Server};

fn invoke(name: &str, event: &str) -> serde_json::Value {
    let (ok, value) = invoke_status(name, event);
    assert!(ok, "invoke {name}: {value}");
    value
}

/// `wasmfn invoke`: whether it exited 0, and its JSON output with the logs as `log`.
fn invoke_status(name: &str, event: &str) -> (bool, serde_json::Value) {
    let dir = templates();
    let file = dir.join(format!("{name}.event.json"));
    std::fs::write(&file, event).unwrap();
    let out = wasmfn()
        .args(["invoke", name, "--dir"])
        .arg(dir)
        .arg("--event")
        .arg(&file)
        .output()
        .unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("invoke {name}: {}", String::from_utf8_lossy(&out.stderr)));
    value["log"] = String::from_utf8_lossy(&out.stderr).into_owned().into();
    (out.status.success(), value)
}

#[test]
fn every_template_builds_and_runs() {
    let dir = templates();
    // Precompile first (JavaScript and Python components take seconds each), as a deployment
    // would: `serve` then starts from the compile cache.
    let cache = tempfile::tempdir().unwrap();
    let compiled = wasmfn()
        .arg("compile")
        .arg(dir)
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let server = Server::start(dir, cache.path(), &[]);
    for lang in LANGUAGES {
        // http: the echo.
        let r = client()
            .post(server.url(&format!("/{lang}-http/items?status=201")))
            .header("x-demo", lang.to_string())
            .body(format!("hello from {lang}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{lang}-http");
        assert_eq!(r.headers()["x-method"], "POST", "{lang}-http");
        assert_eq!(r.headers()["x-demo"], *lang);
        assert_eq!(r.text().unwrap(), format!("hello from {lang}"));

        // queue: partial failure.
        let q = invoke(
            &format!("{lang}-queue"),
            r#"{"queue": "orders", "messages": [{"id": "m1", "body": "ok"}, {"id": "m2", "body": "please fail"}]}"#,
        );
        let failed: Vec<&str> = q["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert_eq!(failed, ["m2"], "{lang}-queue: {q}");
        assert!(
            q["log"]
                .as_str()
                .unwrap()
                .contains("queue orders: 2 messages, 1 failed"),
            "{lang}-queue: {q}"
        );

        // schedule: a logged run.
        let s = invoke(
            &format!("{lang}-schedule"),
            r#"{"schedule": "nightly", "expression": "0 3 * * *"}"#,
        );
        assert_eq!(s["ok"], true, "{lang}-schedule: {s}");
        assert!(
            s["log"]
                .as_str()
                .unwrap()
                .contains("nightly (0 3 * * *) ran"),
            "{lang}-schedule: {s}"
        );

        // stream: each change logged with its image sizes.
        let st = invoke(
            &format!("{lang}-stream"),
            r#"{"events": [{"type": "change", "source": "Orders", "sequence": "1", "key": "o1", "operation": "insert", "newImage": {"id": "o1"}}]}"#,
        );
        assert!(
            st["log"]
                .as_str()
                .unwrap()
                .contains("o1 (old 0 bytes, new 11 bytes)"),
            "{lang}-stream: {st}"
        );

        // task: the input wrapped; `reject` fails with an error a workflow's Catch can match.
        let t = invoke(&format!("{lang}-task"), r#"{"order": 7}"#);
        assert_eq!(t["output"]["handledBy"], format!("{lang}-task"), "{t}");
        assert_eq!(t["output"]["input"]["order"], 7, "{lang}-task: {t}");
        assert_eq!(t["output"]["attempt"], 1, "{lang}-task: {t}");
        let (ok, t) = invoke_status(&format!("{lang}-task"), r#"{"reject": true}"#);
        assert!(!ok, "{lang}-task: {t}");
        assert_eq!(t["error"], "Rejected", "{lang}-task: {t}");
    }
}

#[test]
fn builds_are_skipped_when_nothing_changed_and_missing_tools_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let guests = dir.path().join("guests");
    let new = wasmfn()
        .args(["new", "c-http", "api", "--dir"])
        .arg(&guests)
        .output()
        .unwrap();
    assert!(new.status.success());
    let stdout = String::from_utf8_lossy(&new.stdout);
    assert!(stdout.contains("wasmfn build"), "{stdout}");
    let build = |envs: &[(&str, &str)]| {
        let out = wasmfn()
            .arg("build")
            .arg(&guests)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, first) = build(&[]);
    assert!(ok, "{first}");
    assert!(first.contains("[1/1] api (c)"), "{first}");
    let (ok, again) = build(&[]);
    assert!(ok && again.contains("unchanged"), "{again}");
    // Changed sources are built (a fresh marker, so no earlier run has them in the cache).
    let main = guests.join("api/main.c");
    let text = std::fs::read_to_string(&main).unwrap();
    let marker = format!(
        "x-build-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    std::fs::write(
        &main,
        text.replace("\"x-method\"", &format!("\"{marker}\"")),
    )
    .unwrap();
    let (ok, changed) = build(&[]);
    assert!(ok && changed.contains(", built,"), "{changed}");

    // A JavaScript guest without componentize-js installed: the tool and the install command.
    let new = wasmfn()
        .args(["new", "js-queue", "worker", "--dir"])
        .arg(&guests)
        .output()
        .unwrap();
    assert!(new.status.success());
    let (ok, missing) = build(&[("WASMFN_GUEST_TOOLS", "/nonexistent")]);
    assert!(!ok);
    assert!(
        missing.contains("componentize-js is not installed")
            && missing.contains(
                "npm install --prefix /nonexistent @bytecodealliance/componentize-js@0.23.0"
            ),
        "{missing}"
    );
    // Bad template names list the real ones.
    let bad = wasmfn()
        .args(["new", "cobol-http", "x", "--dir"])
        .arg(&guests)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("rust-http"),
        "{stderr}"
    );
}

#[test]
fn watch_swaps_a_rebuilt_guest_without_failing_requests() {
    let dir = tempfile::tempdir().unwrap();
    let guests = dir.path().join("guests");
    for (template, name) in [("c-http", "live"), ("c-http", "other")] {
        let out = wasmfn()
            .args(["new", template, name, "--dir"])
            .arg(&guests)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let out = wasmfn().arg("build").arg(&guests).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start(&guests, cache.path(), &["--watch"]);
    server.wait_for_log("watching guest sources");

    // Load: four clients in a loop, counting failures and responses from the new build.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, new_seen) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url("/live/x");
            let (stop, sent, failed, new_seen) =
                (stop.clone(), sent.clone(), failed.clone(), new_seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    match client().post(&url).body("payload").send() {
                        Ok(r) if r.status() == 200 => {
                            if r.headers().get("x-version").is_some() {
                                new_seen.fetch_add(1, Ordering::Relaxed);
                            }
                            if r.text().unwrap_or_default() != "payload" {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Change the code: every response gains `x-version: 2`.
    let main = guests.join("live/main.c");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        text.replace(
            "push_header(&out, \"x-path\"",
            "push_header(&out, \"x-version\", (const uint8_t *)\"2\", 1);\n  push_header(&out, \"x-path\"",
        ),
    )
    .unwrap();
    let started = Instant::now();
    while new_seen.load(Ordering::Relaxed) < 50 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (sent, failed, new_seen) = (
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        new_seen.load(Ordering::Relaxed),
    );
    assert!(
        new_seen >= 50,
        "the new build never answered:\n{}",
        server.logs()
    );
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the swap"
    );
    // Only the changed guest was rebuilt and reloaded.
    let logs = server.logs();
    assert!(
        logs.contains("function=live") && logs.contains("reloaded"),
        "{logs}"
    );
    assert!(!logs.contains("function=other"), "{logs}");
    let r = client().get(server.url("/live/y")).send().unwrap();
    assert_eq!(r.headers()["x-version"], "2");
    let r = client().get(server.url("/other/y")).send().unwrap();
    assert!(r.headers().get("x-version").is_none());
    eprintln!("watch: {sent} requests during the swap, 0 failed");
}
