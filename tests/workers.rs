//! The Workers adapter: `wasmfn package workers` builds the bundle with jco and the wrangler.toml
//! from the manifest; real workerd (through Miniflare, on loopback, no account) serves it with
//! the bindings wrangler's own configuration code reads from that wrangler.toml.

mod common;

use common::client;
use common::workers::{assert_packaged, package, package_with, Worker};

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
    assert_packaged(&output);
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
    let (_f, _bundle, output) = package("file-reader", "reader");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`reader` imports")
            && stderr.contains("`wasi:filesystem/types`")
            && stderr.contains("`wasi:filesystem/preopens`"),
        "{stderr}"
    );
    // A WASI 0.3 component: refused with the reason (jco's shims are WASI 0.2 only).
    let (_f, _bundle, output) = package("http-p3", "p3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("`p3` is a WASI 0.3 component")
            && stderr.contains("wasi:http/handler@0.3"),
        "{stderr}"
    );
    let (_f, _bundle, output) = package("stream-audit", "audit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("no change-stream event source"),
        "{stderr}"
    );
    let (_f, _bundle, output) = package_with(
        "order-steps",
        "step",
        "[kv.orders]\n[functions.step]\nkv = [\"orders\"]\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("`step` implements the `task` world"),
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
        [schedules.failing]\nfunction = \"tick\"\nexpression = \"rate(15 minutes)\"\n\n\
        [rules.audit]\ntargets = [\"function:worker\"]\n";
    let (_f, bundle, output) = package_with("queue-worker", "worker", manifest);
    assert_packaged(&output);
    let wrangler = std::fs::read_to_string(bundle.join("wrangler.toml")).unwrap();
    // A rule's implicit delivery queue belongs to wasmfn's event bus, not to Cloudflare.
    assert!(!wrangler.contains("_events"), "{wrangler}");
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
    assert_packaged(&output);
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

/// `wrangler deploy --dry-run` on the bundle: wrangler validates the generated configuration
/// and lists the bindings it would upload.
fn wrangler_dry_run(bundle: &std::path::Path, env: &str) -> String {
    let wrangler = common::workers::tools().join("node_modules/.bin/wrangler");
    let out = std::process::Command::new(wrangler)
        .args(["deploy", "--dry-run", "--env", env, "--outdir"])
        .arg(bundle.join(".dry-run"))
        .current_dir(bundle)
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .expect("wrangler (scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "wrangler deploy --dry-run --env '{env}':\n{text}"
    );
    text
}

const CAPS_MANIFEST: &str = r#"
[functions.caps]
routes = ["/caps/*"]
kv = ["cache"]
sql = ["main"]
blob = ["files"]
allowed-outbound-hosts = ["127.0.0.1:*"]

[functions.caps.config]
greeting = "hello from the manifest"

[functions.caps.secrets]
token = { env = "CAPS_TOKEN" }

[kv.cache]
[sql.main]
[blob.files]

[env.staging.functions.caps.config]
greeting = "hello from staging"

[env.staging.functions.caps.secrets]
token = { env = "STAGING_TOKEN" }
"#;

#[test]
fn platform_services_become_bindings_of_every_environment() {
    let (_f, bundle, output) = package_with("capabilities", "caps", CAPS_MANIFEST);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("JSPI"), "{stdout}");
    let wrangler = std::fs::read_to_string(bundle.join("wrangler.toml")).unwrap();
    for line in [
        "[[kv_namespaces]]\nbinding = \"KV_CACHE\"",
        "[[d1_databases]]\nbinding = \"D1_MAIN\"\ndatabase_name = \"main\"",
        "[[r2_buckets]]\nbinding = \"R2_FILES\"\nbucket_name = \"files\"",
        "WASMFN_CONFIG_GREETING = \"hello from the manifest\"",
        "WASMFN_SECRETS = { \"token\" = \"CAPS_TOKEN\" }",
        "WASMFN_ALLOWED_OUTBOUND_HOSTS = [{ \"host\" = \"127.0.0.1\", \"port\" = \"any\" }]",
        "[env.staging.vars]\nWASMFN_CONFIG_GREETING = \"hello from staging\"",
        "#   wrangler secret put STAGING_TOKEN --env staging",
        "[[env.staging.d1_databases]]\nbinding = \"D1_MAIN\"\ndatabase_name = \"main-staging\"",
        "bucket_name = \"files-staging\"",
        // The manifest's default 30 s timeout, as Workers' CPU limit.
        "[limits]\ncpu_ms = 30000",
    ] {
        assert!(wrangler.contains(line), "{line:?} in:\n{wrangler}");
    }
    // Wrangler itself accepts both environments and would bind everything.
    for env in ["", "staging"] {
        let dry = wrangler_dry_run(&bundle, env);
        for binding in [
            "env.KV_CACHE",
            "env.D1_MAIN",
            "env.R2_FILES",
            "env.WASMFN_SECRETS",
        ] {
            assert!(dry.contains(binding), "{binding} for --env '{env}':\n{dry}");
        }
    }

    let secrets = [
        ("CAPS_TOKEN".to_string(), "top-secret".to_string()),
        ("STAGING_TOKEN".to_string(), "staging-secret".to_string()),
    ];
    let staging = Worker::start_with_env(&bundle, &["--env", "staging"], &secrets);
    let get = |w: &Worker, path: &str| {
        let r = client().get(format!("{}{path}", w.url)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(
        get(&staging, "/caps/config/greeting"),
        (200, "hello from staging".into())
    );
    assert_eq!(
        get(&staging, "/caps/config/token"),
        (200, "staging-secret".into())
    );

    let worker = Worker::start_with_env(&bundle, &[], &secrets);
    assert_eq!(
        get(&worker, "/caps/config/greeting"),
        (200, "hello from the manifest".into())
    );
    assert_eq!(
        get(&worker, "/caps/config/token"),
        (200, "top-secret".into())
    );
    assert_eq!(get(&worker, "/caps/config/missing").0, 404);

    // Expiry to the millisecond, below KV's own 60 s floor.
    let put = client()
        .put(format!("{}/caps/kv/cache/brief?ttl=1000", worker.url))
        .body("soon gone")
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let ttl: u64 = get(&worker, "/caps/kv-ttl/cache/brief").1.parse().unwrap();
    assert!(ttl > 0 && ttl <= 1000, "{ttl}");
    assert_eq!(
        get(&worker, "/caps/kv/cache/brief"),
        (200, "soon gone".into())
    );
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(get(&worker, "/caps/kv/cache/brief"), (404, "absent".into()));

    // Outbound HTTP: allowed hosts through fetch, others refused with the manifest line to add.
    let own = format!("{}/caps/config/greeting", worker.url);
    let allowed = get(&worker, &format!("/caps/fetch?url={own}"));
    assert_eq!(allowed, (200, "status 200".into()));
    // The caller's `traceparent` is passed through to the guest's outbound requests.
    let (recorder, seen) = common::header_recorder("traceparent");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client()
        .get(format!("{}/caps/fetch?url={recorder}", worker.url))
        .header("traceparent", traceparent)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(*seen.lock().unwrap(), vec![traceparent.to_string()]);
    let denied = get(&worker, "/caps/fetch?url=http://example.com/");
    assert_eq!(denied.0, 403, "{denied:?}");
    assert!(denied.1.contains("HttpRequestDenied"), "{denied:?}");
    common::wait_until(
        "the denial in the log",
        std::time::Duration::from_secs(5),
        || {
            worker
                .log()
                .contains("add \"example.com\" to allowed-outbound-hosts")
        },
    );

    // D1 has no interactive transactions: writes commit as one batch, reads inside are refused.
    let tx = client()
        .post(format!("{}/caps/sql-tx/main", worker.url))
        .body(r#"{"statements": [{"sql": "SELECT 1", "params": []}], "end": "commit"}"#)
        .send()
        .unwrap();
    assert_eq!(tx.status(), 400);
    assert!(tx.text().unwrap().contains("read before `begin`"));
}

#[test]
fn concurrent_requests_each_get_their_own_instance() {
    let (_f, bundle, output) = package_with("capabilities", "caps", CAPS_MANIFEST);
    assert!(output.status.success());
    let worker = Worker::start(&bundle);
    // Each request suspends in KV several times; interleaved in one instance they would corrupt
    // the guest's stack.
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let url = worker.url.clone();
            std::thread::spawn(move || {
                for round in 0..5 {
                    let key = format!("{}/caps/kv/cache/key-{i}", url);
                    let value = format!("value {i}.{round}");
                    let r = client().put(&key).body(value.clone()).send().unwrap();
                    assert_eq!(r.status(), 200);
                    let r = client().get(&key).send().unwrap();
                    assert_eq!(r.text().unwrap(), value);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = client()
        .get(format!("{}/caps/kv-list/cache?prefix=key-", worker.url))
        .send()
        .unwrap();
    let keys: serde_json::Value = r.json().unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 12, "{keys}");
}

#[test]
fn a_worker_gets_producer_bindings_only_for_the_queues_it_is_granted() {
    let manifest =
        "[queues.orders]\n[queues.audit]\n\n[functions.publisher]\nqueues = [\"orders\"]\n";
    let (_f, bundle, output) = package_with("publisher", "publisher", manifest);
    assert_packaged(&output);
    let wrangler = std::fs::read_to_string(bundle.join("wrangler.toml")).unwrap();
    assert!(wrangler.contains("queue = \"orders\""), "{wrangler}");
    assert!(
        !wrangler.contains("queue = \"audit\""),
        "a queue outside the grant has no binding, so the Worker cannot reach it: {wrangler}"
    );
}

#[test]
fn published_messages_reach_the_queue_with_their_id_and_attributes() {
    let manifest = "[queues.orders]\n\n[functions.publisher]\nqueues = [\"*\"]\n";
    let (_f, bundle, output) = package_with("publisher", "publisher", manifest);
    assert_packaged(&output);
    let wrangler = std::fs::read_to_string(bundle.join("wrangler.toml")).unwrap();
    assert!(
        wrangler.contains("[[queues.producers]]\nbinding = \"QUEUE_ORDERS\"\nqueue = \"orders\""),
        "{wrangler}"
    );
    wrangler_dry_run(&bundle, "");
    let worker = Worker::start(&bundle);
    let r = client()
        .post(format!("{}/publisher/orders", worker.url))
        .body("order #1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.text().unwrap();
    let r = client()
        .post(format!("{}/publisher/unknown", worker.url))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().unwrap(), "no such queue: unknown");
    let mut published = serde_json::Value::Null;
    common::wait_until(
        "the message delivered",
        std::time::Duration::from_secs(10),
        || {
            published = worker.published("orders");
            published.as_array().is_some_and(|a| !a.is_empty())
        },
    );
    assert_eq!(
        published,
        serde_json::json!([{"id": id, "body": "order #1", "attributes": [["via", "guest"]]}])
    );
    // The caller's trace context passes through to what the guest publishes.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client()
        .post(format!("{}/publisher/orders", worker.url))
        .header("traceparent", traceparent)
        .body("order #2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    common::wait_until(
        "the traced message delivered",
        std::time::Duration::from_secs(10),
        || {
            published = worker.published("orders");
            published.as_array().is_some_and(|a| a.len() == 2)
        },
    );
    assert_eq!(
        published[1]["attributes"],
        serde_json::json!([["via", "guest"], ["traceparent", traceparent]])
    );
}
