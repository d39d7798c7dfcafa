//! The stream trigger through the real binary: order per key, checkpoints across `kill -9`,
//! and poison records parked without stalling the stream.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{wait_until, Fixture, Server};

fn fixture(url: &str, settings: &str) -> Fixture {
    let f = Fixture::with_guests(&["stream-recorder"]);
    f.write(
        "wasmfn.toml",
        format!(
            "[functions.stream-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n[functions.stream-recorder.config]\ncollector = \"{url}\"\n\n\
             [streams.users]\nfunction = \"stream-recorder\"\n{settings}\n"
        ),
    );
    f
}

fn append(server: &Server, keys: &[String]) {
    let events: Vec<_> = keys
        .iter()
        .map(|k| serde_json::json!({"type": "change", "source": "users", "key": k, "operation": "modify", "newImage": {"k": k}}))
        .collect();
    let r = server
        .admin_post("streams/users/records")
        .json(&serde_json::json!({ "events": events }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
}

#[test]
fn records_arrive_in_order_per_key_and_survive_kill_9() {
    let (url, lines) = common::collector(Duration::from_millis(3));
    let f = fixture(&url, "batch-size = 10");
    let server = f.serve();
    let total = 2_000;
    for chunk in (0..total).collect::<Vec<usize>>().chunks(200) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("user-{}", i % 10)).collect();
        append(&server, &keys);
    }
    wait_until("delivery to be under way", Duration::from_secs(60), || {
        lines.lock().unwrap().len() >= 300
    });
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let at_kill = lines.lock().unwrap().len();
    assert!(
        at_kill < total,
        "the kill came after everything was delivered; slow the collector"
    );
    let server = f.serve();
    let distinct = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    wait_until(
        "every record to be delivered",
        Duration::from_secs(120),
        || distinct() == total,
    );
    // In first-delivery order, each key's sequences only go up: nothing reordered, nothing skipped.
    let lines = lines.lock().unwrap().clone();
    let mut seen = std::collections::HashSet::new();
    let mut last: HashMap<String, String> = HashMap::new();
    for l in &lines {
        let (key, seq) = l.split_once(' ').unwrap();
        if !seen.insert(seq.to_string()) {
            continue;
        }
        if let Some(prev) = last.get(key) {
            assert!(seq > prev.as_str(), "{key}: {seq} delivered after {prev}");
        }
        last.insert(key.to_string(), seq.to_string());
    }
    let duplicates = lines.len() - seen.len();
    eprintln!("stream: {total} records, kill -9 after {at_kill} deliveries, none lost, {duplicates} delivered twice");
    let lag: serde_json::Value = server
        .admin_get("streams/users")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(lag["undelivered"], 0);
}

#[test]
fn a_poison_record_is_retried_then_parked_alone() {
    let (url, lines) = common::collector(Duration::ZERO);
    let f = fixture(
        &url,
        "max-retries = 1\nretry-backoff = \"50ms\"\non-failure = \"bisect\"",
    );
    let server = f.serve();
    let keys: Vec<String> = ["a", "b", "poison", "c", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    append(&server, &keys);
    wait_until(
        "the records after the poison one",
        Duration::from_secs(20),
        || lines.lock().unwrap().iter().any(|l| l.starts_with("d ")),
    );
    let parked: serde_json::Value = server
        .admin_get("streams/users/parked")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let parked = parked["parked"].as_array().unwrap().clone();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["key"], "poison");
    assert!(parked[0]["reason"]
        .as_str()
        .unwrap()
        .contains("poison record"));
    let keys: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(
        unique,
        ["a", "b", "c", "d"],
        "records before the poison one count as done: {keys:?}"
    );
}

#[test]
fn bad_stream_records_are_refused() {
    let (url, _lines) = common::collector(Duration::ZERO);
    let f = fixture(&url, "");
    let server = f.serve();
    let r = server
        .admin_post("streams/nope/records")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = server
        .admin_post("streams/users/records")
        .body(r#"{"events":[{"type":"change","source":"s","key":"k","operation":"upsert"}]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("unknown operation `upsert`"));
}

/// A relay stopped between appending its outbox rows to the feed and deleting them (a host
/// killed in that window) leaves them in the outbox, and the next relay appends them again.
/// The feed knows them by their origin and delivers each once, on the host's own feed and on a
/// cluster's. The outbox row is written by hand twice, exactly as such a relay leaves it.
#[test]
fn an_outbox_row_relayed_twice_is_delivered_once() {
    use common::servers::{postgres, psql};
    for cluster in [false, true] {
        let database = postgres().database();
        let (url, lines) = common::collector(Duration::ZERO);
        let f = Fixture::with_guests(&["stream-recorder"]);
        f.copy_guest("capabilities", "caps");
        let cluster_table = if cluster {
            format!("[cluster]\nurl = \"{database}\"\n\n")
        } else {
            String::new()
        };
        f.write(
            "wasmfn.toml",
            format!(
                "{cluster_table}[sql.default]\nbackend = \"postgres\"\nurl = \"{database}\"\nstream = \"changes\"\n\n\
                 [functions.caps]\nsql = [\"default\"]\n\n\
                 [functions.stream-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
                 [functions.stream-recorder.config]\ncollector = \"{url}\"\n\n\
                 [streams.changes]\nfunction = \"stream-recorder\"\n"
            ),
        );
        psql(
            &database,
            "CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER)",
        );
        let server = f.serve();
        let left_behind = "INSERT INTO wasmfn_changes (id, tbl, op, new_row, at) \
             VALUES (424242, 'items', 'INSERT', '{\"id\": 7, \"n\": 1}', '2026-12-01 10:00:00+00')";
        psql(&database, left_behind);
        wait_until("the outbox row's delivery", Duration::from_secs(20), || {
            lines.lock().unwrap().iter().any(|l| l.starts_with("7 "))
        });
        // Appended and deleted; now the same row again, as a relay that died before its
        // delete committed leaves it, then an ordinary write behind it.
        psql(&database, left_behind);
        psql(&database, "INSERT INTO items (id, n) VALUES (8, 1)");
        wait_until(
            "the later write's delivery",
            Duration::from_secs(20),
            || lines.lock().unwrap().iter().any(|l| l.starts_with("8 ")),
        );
        assert_eq!(
            psql(&database, "SELECT count(*) FROM wasmfn_changes"),
            "0",
            "the relay left rows in the outbox:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
        let sevens: Vec<String> = lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("7 "))
            .cloned()
            .collect();
        assert_eq!(
            sevens.len(),
            1,
            "cluster feed: {cluster}; the row relayed twice was delivered as {sevens:?}"
        );
    }
}
