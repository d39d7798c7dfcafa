//! Observability through the real binary: a real Prometheus server scrapes the admin
//! listener's `/metrics` after known traffic and its query API returns the expected series;
//! `/healthz`, `/readyz` and `wasmfn status`; the usage totals and `wasmfn invoke`'s report.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::servers::free_port;
use common::{client, wait_until, Fixture, Server};

const MANIFEST: &str = r#"
[queues.jobs]
function = "queue-worker"

# No consumer: what is sent stays, so its depth is known.
[queues.backlog]
"#;

/// A Prometheus server scraping `server`'s admin listener every second with its token.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(server: &Server) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: wasmfn\n    authorization:\n      type: Bearer\n      \
             credentials_file: {token}\n    static_configs:\n      - targets: ['{admin}']\n",
            token = server.state_dir.join("admin-token").display(),
            admin = server.admin_addr,
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus (scripts/test installs Debian's `prometheus`)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's single series, if it has exactly one.
    fn value(&self, query: &str) -> Option<f64> {
        let response = client()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", query)])
            .send()
            .ok()?
            .json::<serde_json::Value>()
            .ok()?;
        let result = response["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }

    /// Wait until `query` evaluates to `expected` (Prometheus scrapes every second).
    fn expect(&self, query: &str, expected: f64) {
        let mut last = None;
        wait_until(
            &format!("`{query}` = {expected}"),
            Duration::from_secs(30),
            || {
                last = self.value(query);
                last == Some(expected)
            },
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture() -> Fixture {
    let f = Fixture::with_guests(&["hello", "trap", "queue-worker"]);
    f.write("wasmfn.toml", MANIFEST);
    f
}

fn send(server: &Server, queue: &str, count: usize) {
    for i in 0..count {
        let r = server
            .admin_post(&format!("queues/{queue}/messages"))
            .body(format!("message {i}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}

#[test]
fn prometheus_scrapes_the_series_of_known_traffic() {
    let f = fixture();
    let server = f.serve();
    for _ in 0..7 {
        assert_eq!(server.get("/hello").0, 200);
    }
    for _ in 0..2 {
        assert_eq!(server.get("/trap").0, 500);
    }
    send(&server, "backlog", 3);
    send(&server, "jobs", 4);

    let prometheus = Prometheus::scraping(&server);
    prometheus.expect(r#"up{job="wasmfn"}"#, 1.0);
    prometheus.expect(
        r#"wasmfn_invocations_total{function="hello",world="http",outcome="ok"}"#,
        7.0,
    );
    prometheus.expect(
        r#"wasmfn_invocations_total{function="trap",outcome="trap"}"#,
        2.0,
    );
    prometheus.expect(
        r#"wasmfn_invocation_duration_seconds_count{function="hello"}"#,
        7.0,
    );
    // Every hello took under a minute: the last bucket holds them all.
    prometheus.expect(
        r#"wasmfn_invocation_duration_seconds_bucket{function="hello",le="60"}"#,
        7.0,
    );
    prometheus.expect(r#"wasmfn_cold_starts_total{function="hello"}"#, 7.0);
    prometheus.expect(
        r#"wasmfn_invocation_peak_memory_bytes_count{function="hello"}"#,
        7.0,
    );
    prometheus.expect(
        r#"wasmfn_queue_messages{queue="backlog",state="waiting"}"#,
        3.0,
    );
    prometheus.expect(r#"wasmfn_queue_acknowledged_total{queue="jobs"}"#, 4.0);
    prometheus.expect(
        r#"wasmfn_queue_messages{queue="jobs",state="waiting"}"#,
        0.0,
    );
    prometheus.expect(
        r#"wasmfn_invocations_total{function="queue-worker",world="queue",outcome="ok"} > bool 0"#,
        1.0,
    );
    prometheus.expect(r#"wasmfn_invocations_in_flight{function="hello"}"#, 0.0);
    prometheus.expect(
        r#"wasmfn_function_memory_limit_bytes{function="hello"}"#,
        134217728.0,
    );
    prometheus.expect(r#"wasmfn_compile_cache_total{result="miss"} > bool 0"#, 1.0);
    prometheus.expect(
        r#"wasmfn_connection_limit{listener="public"} > bool 0"#,
        1.0,
    );
    prometheus.expect(
        r#"wasmfn_queue_oldest_message_age_seconds{queue="backlog"} > bool 0"#,
        1.0,
    );
    // No invocation ids or message ids as labels: the series count is bounded by the app.
    let series = client()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/series",
            prometheus.port
        ))
        .query(&[("match[]", r#"{job="wasmfn"}"#)])
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    for s in series["data"].as_array().unwrap() {
        let labels = s.as_object().unwrap();
        for key in labels.keys() {
            assert!(
                !["invocation", "id", "message_id", "execution"].contains(&key.as_str()),
                "unbounded label {key} in {s}"
            );
        }
    }
}

#[test]
fn metrics_and_readiness_details_need_the_token_but_liveness_and_the_ready_bit_do_not() {
    let f = fixture();
    let server = f.serve();
    let admin = |path: &str| format!("http://{}{path}", server.admin_addr);
    let live = client().get(admin("/healthz")).send().unwrap();
    assert_eq!(live.status(), 200);
    for path in ["/metrics", "/_wasmfn/usage"] {
        let r = client().get(admin(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{path} without the token");
    }
    // Readiness without the token is one bit, for probes that cannot carry a secret.
    let bit = client().get(admin("/readyz")).send().unwrap();
    assert_eq!(bit.status(), 200);
    assert_eq!(
        bit.json::<serde_json::Value>().unwrap(),
        serde_json::json!({ "ready": true })
    );
    let ready = client()
        .get(admin("/readyz"))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().unwrap();
    assert_eq!(body["ready"], true, "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["functions", "bindings", "queues"]);
    let metrics = client()
        .get(admin("/metrics"))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    // Functions are never served there, nor the admin routes on the public listener.
    assert_eq!(server.get("/metrics").0, 404);
    assert_eq!(server.get("/healthz").0, 404);

    let status = common::wasmfn()
        .arg("status")
        .arg("--dir")
        .arg(f.dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{out}");
    assert!(out.contains("host      live"), "{out}");
    assert!(out.contains("ready     yes"), "{out}");
}

#[test]
fn readiness_names_what_is_broken_and_status_fails() {
    let f = fixture();
    // Not a component: the host serves the rest, but is not ready.
    f.write("broken.wasm", b"not wasm at all");
    let server = f.serve();
    assert_eq!(server.get("/hello").0, 200);
    let ready = client()
        .get(format!("http://{}/readyz", server.admin_addr))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().unwrap();
    assert_eq!(body["ready"], false);
    let functions = &body["checks"][0];
    assert_eq!(functions["name"], "functions");
    assert!(
        functions["problems"][0]
            .as_str()
            .unwrap()
            .contains("broken"),
        "{body}"
    );
    let status = common::wasmfn()
        .arg("status")
        .arg("--dir")
        .arg(f.dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{out}");
    assert!(out.contains("functions FAILING"), "{out}");
    assert!(out.contains("broken"), "{out}");
    assert!(out.contains("ready     no"), "{out}");
}

#[test]
fn usage_totals_add_up_the_invocations() {
    let f = fixture();
    let server = f.serve();
    for _ in 0..5 {
        assert_eq!(server.get("/hello").0, 200);
    }
    let mut hello = serde_json::Value::Null;
    wait_until(
        "five hello invocations counted",
        Duration::from_secs(10),
        || {
            let usage: serde_json::Value =
                server.admin_get("usage").send().unwrap().json().unwrap();
            hello = usage["functions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["function"] == "hello")
                .cloned()
                .unwrap();
            hello["totals"]["invocations"] == 5
        },
    );
    let totals = &hello["totals"];
    assert_eq!(totals["failed"], 0);
    assert_eq!(totals["cold_starts"], 5);
    // Each invocation is billed at least one millisecond.
    assert!(totals["billed_ms"].as_u64().unwrap() >= 5, "{hello}");
    assert!(totals["wall_us"].as_u64().unwrap() > 0, "{hello}");
    assert!(totals["cpu_us"].as_u64().unwrap() <= totals["wall_us"].as_u64().unwrap());
    assert!(totals["peak_memory"].as_u64().unwrap() > 0, "{hello}");
    // hello answers a short greeting: its bytes out are counted.
    assert!(totals["bytes_out"].as_u64().unwrap() >= 5, "{hello}");
    assert_eq!(hello["memoryLimitBytes"], 134217728);
    // The log line of each invocation carries the same figures.
    let logs = server.wait_for_log("bytes_out=");
    assert!(logs.contains("cpu_us="), "{logs}");
    assert!(logs.contains("peak_memory="), "{logs}");
}

#[test]
fn invoke_prints_what_the_invocation_used() {
    let f = fixture();
    let out = common::wasmfn()
        .args(["invoke", "hello", "--dir"])
        .arg(f.dir.path())
        .arg("--cache-dir")
        .arg(f.cache.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let report = err
        .lines()
        .find(|l| l.starts_with("REPORT function=hello"))
        .unwrap_or_else(|| panic!("no REPORT line in:\n{err}"));
    for field in [
        "duration=",
        "billed=",
        "on-thread=",
        "start=cold",
        "peak-memory=",
        "(limit 128.0 MiB)",
        "out=",
    ] {
        assert!(report.contains(field), "{field} in {report}");
    }
}

/// A recorded run: what `GET /_wasmfn/usage` answered after it.
const RECORDED: &str = r#"{
  "windowSeconds": 600.0,
  "functions": [
    {"function": "api", "world": "http", "memoryLimitBytes": 268435456, "timeoutMs": 30000,
     "totals": {"invocations": 1000, "failed": 0, "cold_starts": 1000, "wall_us": 4200000,
                "billed_ms": 5000, "cpu_us": 2000000, "peak_memory": 2097152,
                "bytes_in": 0, "bytes_out": 13000, "max_wall_us": 9000, "max_cpu_us": 4000,
                "max_bytes_in": 0, "max_bytes_out": 13}},
    {"function": "big", "world": "http", "memoryLimitBytes": 536870912, "timeoutMs": 30000,
     "totals": {"invocations": 10, "billed_ms": 600, "cpu_us": 500000,
                "peak_memory": 209715200, "max_cpu_us": 50000, "max_bytes_in": 7340032}}
  ]
}"#;

fn close(actual: &serde_json::Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {actual}"));
    assert!(
        (a - expected).abs() <= expected.abs() * 1e-9,
        "{a} != {expected}"
    );
}

#[test]
fn cost_prices_a_recorded_run_as_computed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usage.json");
    std::fs::write(&file, RECORDED).unwrap();
    let out = common::wasmfn()
        .args([
            "cost",
            "--requests-per-month",
            "50000000",
            "--output",
            "json",
            "--from",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = &v["functions"][0];
    assert_eq!(api["function"], "api");
    // The template's memory: the 256 MiB limit + 64 MB for the runtime.
    assert_eq!(api["lambdaMemoryMb"], 320);
    // Lambda: 1000 requests at $0.20/M, 5000 billed ms at 320/1024 GB = 1.5625 GB-s.
    close(
        &api["measuredUsd"]["lambdaX86_64"],
        0.0002 + 1.5625 * 0.0000166667,
    );
    close(
        &api["measuredUsd"]["lambdaArm64"],
        0.0002 + 1.5625 * 0.0000133334,
    );
    // Workers: 1000 requests at $0.30/M, 2000 CPU ms at $0.02/M.
    close(&api["measuredUsd"]["workers"], 0.0003 + 0.00004);
    close(&api["perMillionUsd"]["workers"], 0.34);
    close(
        &api["perMillionUsd"]["lambdaX86_64"],
        0.2 + 1562.5 * 0.0000166667,
    );
    // A month of 50 M: 50,000 times the measured traffic; Workers pays its $5 base, then
    // 40 M requests and 70 M CPU ms beyond what the plan includes.
    close(
        &api["monthlyUsd"]["lambdaArm64"],
        50_000.0 * (0.0002 + 1.5625 * 0.0000133334),
    );
    close(
        &api["monthlyUsd"]["workers"],
        5.0 + 40.0 * 0.30 + 70.0 * 0.02,
    );
    assert_eq!(api["breaks"], serde_json::json!([]));
    let big: Vec<String> = serde_json::from_value(v["functions"][1]["breaks"].clone()).unwrap();
    assert_eq!(big.len(), 3, "{big:?}");
    assert!(
        big[0].contains("peak memory 200.0 MiB is over its 128 MB"),
        "{big:?}"
    );
    assert!(big[1].contains("Free plan's 10 ms"), "{big:?}");
    assert!(
        big[2].contains("request of 7.0 MiB is over the 6 MiB"),
        "{big:?}"
    );
    assert!(v["prices"]["lambda"]["source"]
        .as_str()
        .unwrap()
        .contains("aws.amazon.com"));

    // The table says what it assumed.
    let text = common::wasmfn()
        .args(["cost", "--from"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("assumptions:"), "{text}");
    assert!(text.contains("free tier not subtracted"), "{text}");
    assert!(text.contains("big: Workers: peak memory"), "{text}");
}

#[test]
fn cost_asks_a_running_host_for_a_recent_window() {
    let f = fixture();
    let server = f.serve();
    for _ in 0..3 {
        assert_eq!(server.get("/hello").0, 200);
    }
    let mut hello = serde_json::Value::Null;
    wait_until(
        "three hello invocations priced",
        Duration::from_secs(10),
        || {
            let out = common::wasmfn()
                .args(["cost", "--since", "1h", "--output", "json", "--dir"])
                .arg(f.dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            hello = v["functions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["function"] == "hello")
                .cloned()
                .unwrap();
            hello["invocations"] == 3
        },
    );
    // 128 MiB + 64 MB; at least 1 ms billed each.
    assert_eq!(hello["lambdaMemoryMb"], 192);
    let x86 = hello["measuredUsd"]["lambdaX86_64"].as_f64().unwrap();
    assert!(
        x86 >= 3.0 * 0.2e-6 + 0.003 * 0.1875 * 0.0000166667,
        "{hello}"
    );
}

#[test]
fn prometheus_scrapes_schedule_stream_and_workflow_series() {
    let f = Fixture::with_guests(&["cron-job", "slow-schedule", "stream-audit"]);
    f.write(
        "wasmfn.toml",
        r#"
[schedules.tick]
function = "cron-job"
expression = "* * * * * *"

# Runs longer than a second: every other firing is skipped.
[schedules.slow]
function = "slow-schedule"
expression = "* * * * * *"

[streams.audit]
function = "stream-audit"

[workflows.two-steps]
definition = "two-steps.json"
"#,
    );
    f.write(
        "two-steps.json",
        r#"{"StartAt": "First", "States": {
             "First": {"Type": "Pass", "Next": "Done"},
             "Done": {"Type": "Succeed"}}}"#,
    );
    let server = f.serve();
    let events: Vec<_> = (0..2)
        .map(|k| serde_json::json!({"type": "change", "source": "users", "key": format!("k{k}"), "operation": "modify"}))
        .collect();
    let r = server
        .admin_post("streams/audit/records")
        .json(&serde_json::json!({ "events": events }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    for _ in 0..2 {
        let r = server
            .admin_post("workflows/two-steps/executions?wait=10")
            .body("{}")
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
    }
    let prometheus = Prometheus::scraping(&server);
    prometheus.expect(
        r#"wasmfn_workflow_executions_total{workflow="two-steps",status="SUCCEEDED"}"#,
        2.0,
    );
    prometheus.expect(
        r#"wasmfn_workflow_step_duration_seconds_count{workflow="two-steps",state="First"}"#,
        2.0,
    );
    // Both ended: none is running any more.
    prometheus.expect(
        r#"wasmfn_workflow_executions_running{workflow="two-steps"}"#,
        0.0,
    );
    prometheus.expect(
        r#"wasmfn_schedule_firings_total{schedule="tick",outcome="ok"} > bool 1"#,
        1.0,
    );
    prometheus.expect(
        r#"wasmfn_schedule_last_success_timestamp_seconds{schedule="tick"} > bool (time() - 60)"#,
        1.0,
    );
    prometheus.expect(
        r#"wasmfn_schedule_skipped_total{schedule="slow"} > bool 0"#,
        1.0,
    );
    prometheus.expect(r#"wasmfn_stream_lag_records{stream="audit"}"#, 0.0);
    prometheus.expect(r#"wasmfn_stream_parked_records{stream="audit"}"#, 0.0);
    prometheus.expect(
        r#"wasmfn_invocations_total{function="stream-audit",world="stream",outcome="ok"} > bool 0"#,
        1.0,
    );
}
