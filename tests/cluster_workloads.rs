//! Cluster mode with the app's data and deploys: stream records written through any of three
//! hosts (Redis KV and PostgreSQL SQL changes) delivered once and in order per key through a
//! kill and a pause; the order example's rules, topic and sagas finishing on the hosts that
//! remain; and a rolling restart that never mixes versions on a host.

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::cluster::{compile_into_cache, host, host_compiling, signal, SIGCONT, SIGSTOP};
use common::servers::{postgres, Nats};
use common::{collector, wait_until, Fixture, Server};

/// `METHOD /caps{path}` on `server`, which must answer 200.
fn call(server: &Server, method: &str, path: &str, body: String) -> u16 {
    let r = common::client()
        .request(method.parse().unwrap(), server.url(&format!("/caps{path}")))
        .body(body)
        .send()
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}\n{}", server.addr, server.logs()));
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    assert_eq!(status, 200, "{method} {path}: {text}\n{}", server.logs());
    status
}

#[test]
fn stream_records_from_kv_and_sql_writes_on_any_host_are_delivered_once_in_order_per_key() {
    let database = postgres().database();
    let (url, lines) = collector(Duration::from_millis(3));
    let f = Fixture::with_guests(&["stream-recorder"]);
    f.copy_guest("capabilities", "caps");
    f.write(
        "wasmfn.toml",
        format!(
            "[cluster]\nurl = \"{database}\"\nlease = \"3s\"\n\n\
             [kv.default]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}:\"\nstream = \"changes\"\n\n\
             [sql.default]\nbackend = \"postgres\"\nurl = \"{database}\"\nstream = \"changes\"\n\n\
             [blob.default]\nbackend = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\n\
             access-key-id-env = \"TEST_S3_KEY\"\nsecret-access-key-env = \"TEST_S3_SECRET\"\n\n\
             [functions.caps]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n\n\
             [functions.stream-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.stream-recorder.config]\ncollector = \"{url}\"\n\n\
             [streams.changes]\nfunction = \"stream-recorder\"\nbatch-size = 10\n",
            common::servers::redis().url(),
            common::servers::unique("c"),
            common::servers::s3().bucket(),
            common::servers::s3().endpoint(),
        ),
    );
    compile_into_cache(&f, &["stream-recorder", "caps"]);
    let mut hosts: Vec<Option<Server>> = (0..3).map(|n| Some(host(&f, n))).collect();
    // Host 2 is paused (SIGSTOP) for longer than the lease in the middle of the writes.
    let mut paused_at: Option<Instant> = None;
    let on = |hosts: &[Option<Server>], paused: bool, i: usize| -> usize {
        // The next live (and running) host from `i` on.
        (i..i + 3)
            .map(|j| j % 3)
            .find(|j| hosts[*j].is_some() && !(paused && *j == 2))
            .unwrap()
    };
    let first = hosts[0].as_ref().unwrap();
    assert_eq!(
        call(
            first,
            "POST",
            "/sql-batch/default",
            "CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER)".into()
        ),
        200
    );
    // 1,000 KV writes and 1,000 SQL writes on 10 keys each, spread over the hosts in turn;
    // one host is killed after a third of them and started again after two thirds, another
    // is paused near the end.
    let total = 2_000;
    let mut dead = None;
    for i in 0..1_000usize {
        if i == 333 {
            let mut h = hosts[1].take().unwrap();
            h.child.kill().unwrap();
            h.child.wait().unwrap();
            dead = Some(h);
        }
        if i == 666 {
            hosts[1] = Some(host(&f, 1));
        }
        if i == 800 {
            signal(hosts[2].as_ref().unwrap(), SIGSTOP);
            paused_at = Some(Instant::now());
        }
        if i == 950 {
            // Paused past its leases (3 s): the others took its partitions over.
            let since = paused_at.unwrap().elapsed();
            std::thread::sleep(Duration::from_secs(5).saturating_sub(since));
            signal(hosts[2].as_ref().unwrap(), SIGCONT);
            paused_at = None;
        }
        let h = hosts[on(&hosts, paused_at.is_some(), i)].as_ref().unwrap();
        assert_eq!(
            call(
                h,
                "PUT",
                &format!("/kv/default/user-{}", i % 10),
                format!("v{i}")
            ),
            200
        );
        let sql = if i < 10 {
            json_sql("INSERT INTO items (id, n) VALUES ($1, $2)", i % 10, i)
        } else {
            json_sql("UPDATE items SET n = $2 WHERE id = $1", i % 10, i)
        };
        let h = hosts[on(&hosts, paused_at.is_some(), i + 1)]
            .as_ref()
            .unwrap();
        assert_eq!(call(h, "POST", "/sql/default", sql), 200);
    }
    let distinct = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
            .collect::<HashSet<_>>()
            .len()
    };
    wait_until(
        "every record to be delivered",
        Duration::from_secs(120),
        || distinct() >= total,
    );
    std::thread::sleep(Duration::from_millis(500));
    if distinct() != total {
        // Each key was written 100 times: name those with more records than writes.
        let mut by_key: std::collections::HashMap<String, HashSet<String>> = Default::default();
        for l in lines.lock().unwrap().iter() {
            let (key, seq) = l.split_once(' ').unwrap();
            by_key.entry(key.into()).or_default().insert(seq.into());
        }
        by_key.retain(|_, seqs| seqs.len() != 100);
        panic!(
            "{} records for {total} writes; keys with other than 100: {by_key:?}",
            distinct()
        );
    }
    // In first-delivery order, each key's sequences only go up: nothing reordered or skipped.
    let lines = lines.lock().unwrap().clone();
    let mut seen = HashSet::new();
    let mut last: std::collections::HashMap<String, String> = Default::default();
    let mut keys = HashSet::new();
    for l in &lines {
        let (key, seq) = l.split_once(' ').unwrap();
        keys.insert(key.to_string());
        if !seen.insert(seq.to_string()) {
            continue;
        }
        if let Some(prev) = last.get(key) {
            assert!(seq > prev.as_str(), "{key}: {seq} delivered after {prev}");
        }
        last.insert(key.to_string(), seq.to_string());
    }
    assert_eq!(keys.len(), 20, "10 KV keys and 10 rows: {keys:?}");
    let duplicates = lines.len() - seen.len();
    eprintln!(
        "stream: {total} records from KV and SQL writes on 3 hosts, one killed with SIGKILL and \
         restarted, another paused 5 s: none lost, in order per key, {duplicates} delivered twice"
    );
    let paused = hosts[2].as_ref().unwrap();
    assert!(
        paused.logs().contains("lease moved to another host"),
        "the paused host did not notice it lost its partitions:\n{}",
        paused.logs()
    );
    // The partitions spread over the hosts: each live one, the restarted one included,
    // consumes some (the first host took all 16 and gave back the surplus as others joined).
    for (n, h) in hosts.iter().enumerate() {
        let h = h.as_ref().unwrap();
        wait_until(
            &format!("host {n} to consume a partition"),
            Duration::from_secs(15),
            || h.logs().contains("consuming partition"),
        );
    }
    let h = hosts[0].as_ref().unwrap();
    let streams: serde_json::Value = h.admin_get("streams").send().unwrap().json().unwrap();
    assert_eq!(streams["streams"][0]["undelivered"], 0, "{streams}");
    drop(dead);
}

fn json_sql(sql: &str, id: usize, n: usize) -> String {
    serde_json::json!({ "sql": sql, "params": [id, n] }).to_string()
}

#[test]
fn two_hundred_orders_through_rules_topics_and_sagas_finish_on_a_cluster_that_loses_a_host() {
    use common::orders::{get_json, order_app, post, slow_saga};
    let nats = Nats::start();
    let database = postgres().database();
    let f = order_app("");
    // A 3 s Wait between payment and shipping: the killed host dies holding executions, which
    // the others take over once its leases lapse.
    f.write("order-saga.asl.json", slow_saga());
    // The order example as a cluster: its KV on Redis, queues on NATS, sagas on PostgreSQL.
    let manifest = std::fs::read_to_string(f.dir.path().join("wasmfn.toml")).unwrap();
    let manifest = manifest.replacen(
        "[kv.orders]\n",
        &format!(
            "[kv.orders]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}:\"\n",
            common::servers::redis().url(),
            common::servers::unique("o")
        ),
        1,
    );
    f.write(
        "wasmfn.toml",
        format!(
            "[cluster]\nurl = \"{database}\"\nlease = \"3s\"\n\n\
             [queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n\n\
             [workflow-store]\nbackend = \"postgres\"\nurl = \"{database}\"\nlease = \"3s\"\n\n{manifest}",
            nats.port
        ),
    );
    let components: Vec<String> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wasm").map(str::to_string)
        })
        .collect();
    compile_into_cache(
        &f,
        &components.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut hosts: Vec<Option<Server>> = (0..3).map(|n| Some(host(&f, n))).collect();
    let total = 200;
    let mut dead = None;
    for i in 0..total {
        if i == 70 {
            let mut h = hosts[1].take().unwrap();
            h.child.kill().unwrap();
            h.child.wait().unwrap();
            dead = Some(h);
        }
        if i == 140 {
            hosts[1] = Some(host(&f, 1));
        }
        let h = (i..i + 3)
            .map(|j| j % 3)
            .find_map(|j| hosts[j].as_ref())
            .unwrap();
        let (status, body) = post(
            h,
            "/orders",
            &format!(r#"{{"orderId": "o-{i}", "total": 5}}"#),
        );
        assert_eq!(status, 202, "{body}");
    }
    let h = hosts[0].as_ref().unwrap();
    let order = |i: usize| get_json(h, &format!("/orders/o-{i}"));
    wait_until(
        "every saga and every subscriber",
        Duration::from_secs(120),
        || {
            (0..total).all(|i| {
                let o = order(i);
                o["runs"]["ship"].as_u64() >= Some(1)
                    && o["seen"]["email"].as_u64() >= Some(1)
                    && o["seen"]["analytics"].as_u64() >= Some(1)
            })
        },
    );
    let (mut reruns, mut redelivered) = (0, 0);
    for i in 0..total {
        let o = order(i);
        for step in ["reserve", "pay", "ship"] {
            reruns += o["runs"][step].as_u64().unwrap() - 1;
        }
        for step in ["refund", "release"] {
            assert_eq!(o["runs"][step], 0, "o-{i} compensated: {o}");
        }
        for consumer in ["email", "analytics"] {
            redelivered += o["seen"][consumer].as_u64().unwrap() - 1;
        }
    }
    let resumed: usize = hosts
        .iter()
        .flatten()
        .map(|h| h.logs().matches("resuming unfinished executions").count())
        .sum();
    assert!(
        resumed > 0,
        "no host took over the killed host's executions"
    );
    eprintln!(
        "orders: {total} orders over 3 hosts, one killed with SIGKILL and restarted: every saga \
         finished, {reruns} step runs repeated (steps in flight on the killed host, run again \
         by the host that took their execution over), {redelivered} topic deliveries repeated"
    );
    assert!(
        reruns <= 20,
        "{reruns} repeated steps: more than were in flight"
    );
    assert!(redelivered <= 60, "{redelivered} repeated deliveries");
    drop(dead);
}

#[test]
fn a_rolling_restart_never_serves_two_versions_of_a_function_on_one_host() {
    // Version 1 of `greet` is the hello component, version 2 the echo component: their
    // answers tell them apart. Three hosts serve one folder under load; the component file is
    // replaced, then the hosts restart one at a time.
    let f = Fixture::with_guests(&[]);
    f.copy_guest("hello", "greet");
    let mut hosts: Vec<Server> = (0..3).map(|n| host_compiling(&f, n)).collect();
    let version = |body: &str| if body.contains("Hello") { 1 } else { 2 };
    let seen: std::sync::Arc<Mutex<Vec<(usize, u8)>>> = Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addrs: std::sync::Arc<Mutex<Vec<String>>> =
        std::sync::Arc::new(Mutex::new(hosts.iter().map(|h| h.url("/greet")).collect()));
    let load: Vec<_> = (0..3)
        .map(|n| {
            let (seen, stop, addrs) = (seen.clone(), stop.clone(), addrs.clone());
            std::thread::spawn(move || {
                let client = common::client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = addrs.lock().unwrap()[n].clone();
                    // A restarting host refuses connections for a moment: that is not a version.
                    if let Ok(r) = client.post(&url).body("x").send() {
                        if let Ok(body) = r.text() {
                            seen.lock().unwrap().push((n, version(&body)));
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    f.copy_guest("echo", "greet");
    for (n, slot) in hosts.iter_mut().enumerate() {
        let old = std::mem::replace(slot, host_compiling(&f, 10 + n));
        addrs.lock().unwrap()[n] = slot.url("/greet");
        drop(old);
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    for n in 0..3 {
        let versions: Vec<u8> = seen
            .iter()
            .filter(|(h, _)| *h == n)
            .map(|(_, v)| *v)
            .collect();
        let switched = versions
            .iter()
            .position(|v| *v == 2)
            .expect("version 2 was served");
        assert!(
            versions[switched..].iter().all(|v| *v == 2),
            "host slot {n} served version 1 after version 2"
        );
        assert!(switched > 0, "host slot {n} never served version 1");
        eprintln!(
            "host slot {n}: {} answers from version 1, then {} from version 2, never mixed",
            switched,
            versions.len() - switched
        );
    }
}
