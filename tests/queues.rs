//! The queue trigger through the real binary: durable acceptance, partial batch failure,
//! retries, dead-letter queues, crash recovery with `kill -9`, and bad inputs.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::servers::Nats;
use common::{client, send_batch, wait_until, Fixture, Server};

/// One line the recorder guest reported: (message id, attempt, body).
type Seen = Arc<Mutex<Vec<(String, u32, String)>>>;

/// The collector, with each reported line split into (id, attempt, body).
fn collector(delay: Duration) -> (String, Seen) {
    let (url, lines) = common::collector(delay);
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    std::thread::spawn(move || loop {
        let batch: Vec<String> = std::mem::take(&mut *lines.lock().unwrap());
        if !batch.is_empty() {
            let mut s = sink.lock().unwrap();
            for l in batch {
                let mut parts = l.splitn(3, ' ');
                let (id, attempt, text) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap_or(""),
                );
                s.push((id.to_string(), attempt.parse().unwrap(), text.to_string()));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    });
    (url, seen)
}

/// Which queue backend a test runs on: the embedded default, or a real NATS server.
enum Backend {
    Sqlite,
    Nats(Nats),
}

impl Backend {
    fn manifest(&self) -> String {
        match self {
            Backend::Sqlite => String::new(),
            Backend::Nats(n) => format!(
                "[queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n\n",
                n.port
            ),
        }
    }
}

fn fixture_on(backend: &Backend, collector_url: &str, queue_settings: &str) -> Fixture {
    let f = Fixture::with_guests(&["queue-recorder", "hello"]);
    f.write(
        "wasmfn.toml",
        format!(
            "{}[functions.queue-recorder]\ntimeout = \"1s\"\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n[functions.queue-recorder.config]\ncollector = \"{collector_url}\"\n\n\
             [queues.jobs]\nfunction = \"queue-recorder\"\n{queue_settings}\n",
            backend.manifest()
        ),
    );
    f
}

fn fixture(collector_url: &str, queue_settings: &str) -> Fixture {
    fixture_on(&Backend::Sqlite, collector_url, queue_settings)
}

fn admin_json(server: &Server, path: &str) -> serde_json::Value {
    server.admin_get(path).send().unwrap().json().unwrap()
}

#[test]
fn failed_messages_alone_are_retried_then_dead_lettered() {
    partial_failure(Backend::Sqlite);
}

#[test]
fn nats_failed_messages_alone_are_retried_then_dead_lettered() {
    partial_failure(Backend::Nats(Nats::start()));
}

fn partial_failure(backend: Backend) {
    let (url, seen) = collector(Duration::ZERO);
    let f = fixture_on(
        &backend,
        &url,
        "max-receive-count = 3\nretry-backoff = \"50ms\"\nbatch-window = \"100ms\"\nvisibility-timeout = \"3s\"",
    );
    let server = f.serve();
    let bodies: Vec<String> = ["ok-1", "ok-2", "fail-3", "ok-4", "fail-5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    send_batch(&server, "jobs", &bodies);
    wait_until("two dead letters", Duration::from_secs(40), || {
        admin_json(&server, "queues/jobs-dlq/messages")["messages"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let seen = seen.lock().unwrap().clone();
    for ok in ["ok-1", "ok-2", "ok-4"] {
        let deliveries: Vec<u32> = seen
            .iter()
            .filter(|(_, _, b)| b == ok)
            .map(|(_, a, _)| *a)
            .collect();
        assert_eq!(deliveries, [1], "{ok} is delivered once: {seen:?}");
    }
    for fail in ["fail-3", "fail-5"] {
        let mut attempts: Vec<u32> = seen
            .iter()
            .filter(|(_, _, b)| b == fail)
            .map(|(_, a, _)| *a)
            .collect();
        attempts.sort();
        assert_eq!(
            attempts,
            [1, 2, 3],
            "{fail} is tried max-receive-count times: {seen:?}"
        );
    }
    // Retries carry only the failed messages.
    assert!(
        seen.iter()
            .filter(|(_, a, _)| *a > 1)
            .all(|(_, _, b)| b.starts_with("fail")),
        "{seen:?}"
    );
    let dead = admin_json(&server, "queues/jobs-dlq/messages");
    for m in dead["messages"].as_array().unwrap() {
        assert_eq!(m["receive_count"], 3);
        assert!(
            m["last_error"]
                .as_str()
                .unwrap()
                .contains("asked to fail, attempt 3"),
            "{m}"
        );
    }
    let queues = admin_json(&server, "queues");
    let jobs = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "jobs")
        .unwrap()
        .clone();
    assert_eq!(
        (jobs["waiting"].as_u64(), jobs["inFlight"].as_u64()),
        (Some(0), Some(0)),
        "{queues}"
    );
    // Redrive puts them back, with a fresh receive count.
    let moved: serde_json::Value = server
        .admin_post("queues/jobs-dlq/redrive")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(moved["moved"], 2);
    assert_eq!(moved["to"], "jobs");
}

#[test]
fn delayed_messages_wait_then_count_attempts_from_one() {
    delayed_messages(Backend::Sqlite);
}

#[test]
fn nats_delayed_messages_wait_then_count_attempts_from_one() {
    delayed_messages(Backend::Nats(Nats::start()));
}

/// A message sent with a delay is not delivered before it is due, counts as waiting
/// meanwhile, and its first delivery is attempt 1 (on NATS too, where the wait must not count
/// as a delivery).
fn delayed_messages(backend: Backend) {
    let (url, seen) = collector(Duration::ZERO);
    let f = fixture_on(
        &backend,
        &url,
        "max-receive-count = 3\nretry-backoff = \"50ms\"\nbatch-window = \"50ms\"",
    );
    let server = f.serve();
    let sent = std::time::Instant::now();
    let mut ids = Vec::new();
    for body in ["ok-late", "fail-late"] {
        let r = server
            .admin_post("queues/jobs/messages")
            .header("x-wasmfn-delay-ms", "2000")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
        let v: serde_json::Value = r.json().unwrap();
        ids.push(v["ids"][0].as_str().unwrap().to_string());
    }
    let jobs = || {
        admin_json(&server, "queues")["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "jobs")
            .unwrap()
            .clone()
    };
    assert_eq!(jobs()["waiting"], 2, "delayed messages count as waiting");
    let peeked = admin_json(&server, "queues/jobs/messages");
    assert_eq!(peeked["messages"].as_array().unwrap().len(), 2, "{peeked}");
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(sent.elapsed()));
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing is delivered before its delay: {:?}",
        seen.lock().unwrap()
    );
    wait_until(
        "the failing one dead-lettered",
        Duration::from_secs(30),
        || {
            admin_json(&server, "queues/jobs-dlq/messages")["messages"]
                .as_array()
                .unwrap()
                .len()
                == 1
        },
    );
    assert!(sent.elapsed() >= Duration::from_millis(2000));
    let seen = seen.lock().unwrap().clone();
    let attempts = |body: &str| {
        let mut a: Vec<u32> = seen
            .iter()
            .filter(|(_, _, b)| b == body)
            .map(|(_, a, _)| *a)
            .collect();
        a.sort();
        a
    };
    assert_eq!(attempts("ok-late"), [1], "{seen:?}");
    assert_eq!(attempts("fail-late"), [1, 2, 3], "{seen:?}");
    // The id a sender got is the id the function sees.
    let ok_id = &seen.iter().find(|(_, _, b)| b == "ok-late").unwrap().0;
    assert_eq!(ok_id, &ids[0], "{seen:?}");
    let dead = admin_json(&server, "queues/jobs-dlq/messages");
    assert_eq!(dead["messages"][0]["receive_count"], 3, "{dead}");
    wait_until("the queue empty", Duration::from_secs(10), || {
        let j = jobs();
        j["waiting"] == 0 && j["inFlight"] == 0
    });
}

#[test]
fn ten_thousand_messages_survive_kill_9() {
    survive_kill_9(Backend::Sqlite);
}

#[test]
fn nats_ten_thousand_messages_survive_kill_9() {
    survive_kill_9(Backend::Nats(Nats::start()));
}

fn survive_kill_9(backend: Backend) {
    // 5 ms per report keeps delivery (about 4,000 messages/s) slower than enqueueing, so the
    // kill lands mid-processing on both backends.
    let (url, seen) = collector(Duration::from_millis(5));
    let f = fixture_on(
        &backend,
        &url,
        "batch-size = 10\nconcurrency = 2\nvisibility-timeout = \"2s\"",
    );
    let server = f.serve();
    let total = 10_000;
    let mut accepted = 0;
    for chunk in (0..total).collect::<Vec<_>>().chunks(100) {
        let bodies: Vec<String> = chunk.iter().map(|i| format!("m-{i}")).collect();
        accepted += send_batch(&server, "jobs", &bodies).len();
    }
    assert_eq!(accepted, total);
    let distinct = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| b.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    wait_until(
        "processing to be under way",
        Duration::from_secs(60),
        || distinct(&seen) >= 2_000,
    );
    // SIGKILL mid-processing: no drain, no flush, batches in flight.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let at_kill = distinct(&seen);
    assert!(
        at_kill < total,
        "the kill came after everything was processed ({at_kill}); slow the collector"
    );

    let server = f.serve();
    wait_until(
        "every message to be handled",
        Duration::from_secs(120),
        || distinct(&seen) == total,
    );
    wait_until("the queue to drain", Duration::from_secs(30), || {
        let q = admin_json(&server, "queues");
        let jobs = q["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "jobs")
            .unwrap()
            .clone();
        jobs["waiting"] == 0 && jobs["inFlight"] == 0
    });
    let seen = seen.lock().unwrap().clone();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, _, body) in &seen {
        *counts.entry(body.as_str()).or_default() += 1;
    }
    for i in 0..total {
        assert!(
            counts.contains_key(format!("m-{i}").as_str()),
            "message m-{i} was lost"
        );
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "{}: kill -9 after {at_kill} of {total} handled: none lost, {duplicates} duplicate deliveries \
         (messages in flight at the kill, redelivered after their visibility timeout)",
        if matches!(backend, Backend::Sqlite) { "sqlite" } else { "nats" }
    );
    assert!(
        duplicates <= 100,
        "far more duplicates than batches in flight: {duplicates}"
    );
}

#[test]
fn bad_queue_inputs_get_clear_errors_and_nothing_is_lost() {
    let (url, _seen) = collector(Duration::ZERO);
    let f = fixture(
        &url,
        "max-message-size = \"1KiB\"\n\n[queues.misbound]\nfunction = \"hello\"",
    );
    let server = f.serve();
    // A guest of the wrong world bound to a queue: named at load.
    let logs = server.wait_for_log("[queues.misbound]");
    assert!(
        logs.contains("function `hello` implements world `http`"),
        "{logs}"
    );
    // ...and its queue still accepts and keeps messages.
    assert_eq!(
        send_batch(&server, "misbound", &["kept".to_string()]).len(),
        1
    );
    let q = admin_json(&server, "queues");
    let misbound = q["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "misbound")
        .unwrap()
        .clone();
    assert_eq!(misbound["waiting"], 1, "{q}");

    let r = server
        .admin_post("queues/nope/messages")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r
        .text()
        .unwrap()
        .contains("no queue named `nope`; declared queues: jobs"));

    let r = server
        .admin_post("queues/jobs/messages")
        .body(vec![b'x'; 2048])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(r.text().unwrap().contains("limit of 1024 bytes"));

    let r = server
        .admin_post("queues/jobs/batch")
        .body("{\"messages\": 1}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("malformed batch"));
}

#[test]
fn send_and_queues_commands_talk_to_the_server() {
    let (url, seen) = collector(Duration::ZERO);
    let f = fixture(&url, "");
    let server = f.serve();
    let out = common::wasmfn()
        .args([
            "send", "jobs", "--data", "from-cli", "--attr", "k=v", "--dir",
        ])
        .arg(f.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("accepted: [\"1\"]"));
    wait_until("the message to be handled", Duration::from_secs(10), || {
        seen.lock().unwrap().iter().any(|(_, _, b)| b == "from-cli")
    });
    let out = common::wasmfn()
        .args(["queues", "--state-dir"])
        .arg(&server.state_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("jobs") && text.contains("queue-recorder") && text.contains("jobs-dlq"),
        "{text}"
    );
    let out = common::wasmfn()
        .args(["send", "jobs", "-d", "x", "--admin", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `wasmfn serve` running?"));
}

#[test]
fn guests_publish_through_the_queue_publisher_import() {
    guest_publish(Backend::Sqlite);
}

#[test]
fn nats_guests_publish_through_the_queue_publisher_import() {
    guest_publish(Backend::Nats(Nats::start()));
}

fn guest_publish(backend: Backend) {
    let (url, seen) = collector(Duration::ZERO);
    let f = fixture_on(&backend, &url, "visibility-timeout = \"3s\"");
    f.copy_guest("publisher", "publisher");
    let manifest = std::fs::read_to_string(f.dir.path().join("wasmfn.toml")).unwrap();
    f.write(
        "wasmfn.toml",
        format!("{manifest}\n[functions.publisher]\nqueues = [\"jobs\", \"nope\"]\n"),
    );
    let server = f.serve();
    let r = client()
        .post(server.url("/publisher/jobs"))
        .body("from-guest")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        !r.text().unwrap().is_empty(),
        "the guest gets the message id"
    );
    wait_until(
        "the published message to be handled",
        Duration::from_secs(10),
        || {
            seen.lock()
                .unwrap()
                .iter()
                .any(|(_, _, b)| b == "from-guest")
        },
    );
    let r = client()
        .post(server.url("/publisher/nope"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.text().unwrap(), "no such queue: nope");
    // A queue it was not granted (another function's dead-letter queue) is refused.
    let r = client()
        .post(server.url("/publisher/jobs-dlq"))
        .body("forged dead letter")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let text = r.text().unwrap();
    assert!(
        text.contains("may not reach queue `jobs-dlq`") && text.contains("[functions.publisher]"),
        "{text}"
    );
}

#[test]
fn a_busy_consumer_waits_for_its_function_instead_of_failing_messages() {
    busy_consumer(Backend::Sqlite);
}

#[test]
fn nats_a_busy_consumer_waits_for_its_function_instead_of_failing_messages() {
    busy_consumer(Backend::Nats(Nats::start()));
}

/// The function runs one invocation at a time (each held ~200 ms by a slow collector) while
/// its queue runs three consumers. A consumer finding no free slot used to fail its message:
/// with `max-receive-count = 1` that dead-lettered two messages of every three.
fn busy_consumer(backend: Backend) {
    let (url, seen) = collector(Duration::from_millis(200));
    let f = Fixture::with_guests(&["queue-recorder"]);
    f.write(
        "wasmfn.toml",
        format!(
            "{}[functions.queue-recorder]\ntimeout = \"5s\"\nconcurrency = 1\n\
             allowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.queue-recorder.config]\ncollector = \"{url}\"\n\n\
             [queues.jobs]\nfunction = \"queue-recorder\"\nbatch-size = 1\nconcurrency = 3\n\
             max-receive-count = 1\n",
            backend.manifest()
        ),
    );
    let server = f.serve();
    let bodies: Vec<String> = (0..9).map(|i| format!("job-{i}")).collect();
    send_batch(&server, "jobs", &bodies);
    wait_until("nine deliveries", Duration::from_secs(30), || {
        seen.lock().unwrap().len() >= 9
    });
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(_, attempt, _)| *attempt == 1),
        "no delivery was counted twice: {seen:?}"
    );
    let dead = admin_json(&server, "queues/jobs-dlq/messages");
    assert_eq!(dead["messages"].as_array().unwrap().len(), 0, "{dead}");
    assert!(
        !server.logs().contains("concurrency limit"),
        "no message failed for want of capacity:\n{}",
        server.logs()
    );
}

#[test]
fn a_visibility_timeout_not_above_the_function_timeout_is_refused() {
    let f = Fixture::with_guests(&["queue-recorder"]);
    f.write(
        "wasmfn.toml",
        "[functions.queue-recorder]\ntimeout = \"30s\"\n\n\
         [queues.jobs]\nfunction = \"queue-recorder\"\nvisibility-timeout = \"30s\"\n\n\
         [queues.other]\nfunction = \"queue-recorder\"\n",
    );
    let out = common::wasmfn()
        .args(["check"])
        .arg(f.dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("[queues.jobs] visibility-timeout = 30s is not longer than function `queue-recorder`'s timeout (30s)"),
        "{text}"
    );
    assert!(
        text.contains("\"60s\""),
        "the error suggests a value: {text}"
    );
    // The queue without a visibility timeout gets one derived from the function's timeout.
    assert!(!text.contains("[queues.other]"), "{text}");
}
