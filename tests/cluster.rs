//! Cluster mode through the real binary: three `wasmfn serve` hosts of one app sharing a real
//! PostgreSQL (the `[cluster]` database, where schedule ticks are claimed) and a real NATS
//! JetStream (the queues). One host is killed with SIGKILL in the middle and started again, and
//! another is paused (SIGSTOP, as a partition would) and resumed; recorders outside the hosts
//! count what every function did. Also: `wasmfn check` refuses a cluster that keeps shared
//! state in an embedded store, naming the setting.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::servers::{postgres, Nats};
use common::{collector, wait_until, wasmfn, Fixture, Server};

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

fn signal(server: &Server, sig: i32) {
    // SAFETY: kill(2) on a child process this test started.
    assert_eq!(unsafe { kill(server.child.id() as i32, sig) }, 0);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One app folder for every host; each host gets its own state folder (as on its own machine)
/// and they share the compile cache (a read-only precompiled folder would do as well).
fn cluster_app(database: &str, nats_port: u16, jobs: &str, ticks: &str) -> Fixture {
    let f = Fixture::with_guests(&["queue-recorder", "schedule-recorder"]);
    f.write(
        "wasmfn.toml",
        format!(
            "[cluster]\nurl = \"{database}\"\nlease = \"3s\"\n\n\
             [queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{nats_port}\"\n\n\
             [functions.queue-recorder]\ntimeout = \"1s\"\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.queue-recorder.config]\ncollector = \"{jobs}\"\n\n\
             [functions.schedule-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.schedule-recorder.config]\ncollector = \"{ticks}\"\n\n\
             [queues.jobs]\nfunction = \"queue-recorder\"\nbatch-size = 10\nconcurrency = 2\nvisibility-timeout = \"2s\"\n\n\
             [schedules.tick]\nfunction = \"schedule-recorder\"\nexpression = \"* * * * * *\"\n"
        ),
    );
    compile_into_cache(&f, &["queue-recorder", "schedule-recorder"]);
    f
}

/// The hosts share one compile cache, filled once beforehand and read-only to them.
fn compile_into_cache(f: &Fixture, functions: &[&str]) {
    let out = wasmfn()
        .arg("compile")
        .arg("--cache-dir")
        .arg(f.cache.path())
        .args(
            functions
                .iter()
                .map(|n| f.dir.path().join(format!("{n}.wasm"))),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host(f: &Fixture, n: usize) -> Server {
    let state = f.dir.path().join(format!("host-{n}"));
    // Credentials for moto's S3 (it accepts any), for the apps that have a blob store.
    f.serve_with(
        &["--state-dir", state.to_str().unwrap(), "--read-only-cache"],
        &[("TEST_S3_KEY", "testing"), ("TEST_S3_SECRET", "testing")],
    )
}

fn send_batch(server: &Server, queue: &str, bodies: &[String]) -> usize {
    let messages: Vec<_> = bodies
        .iter()
        .map(|b| serde_json::json!({ "body": b }))
        .collect();
    let r = server
        .admin_post(&format!("queues/{queue}/batch"))
        .json(&serde_json::json!({ "messages": messages }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
    let v: serde_json::Value = r.json().unwrap();
    v["ids"].as_array().unwrap().len()
}

/// How often each tick of `tick` fired, by scheduled time, counted over every host.
fn tick_counts(lines: &Mutex<Vec<String>>) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for l in lines.lock().unwrap().iter() {
        let mut parts = l.split_whitespace();
        if parts.next() != Some("tick") {
            continue;
        }
        let at: i64 = parts.next().unwrap().parse().unwrap();
        *counts.entry(at).or_default() += 1;
    }
    counts
}

/// Distinct bodies the queue recorder reported, and every report.
fn handled(lines: &Mutex<Vec<String>>) -> (HashSet<String>, usize) {
    let lines = lines.lock().unwrap();
    let bodies = lines
        .iter()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or("").to_string())
        .collect();
    (bodies, lines.len())
}

#[test]
fn three_hosts_fire_each_tick_once_and_lose_no_message_through_kill_9_and_a_pause() {
    let nats = Nats::start();
    let database = postgres().database();
    // 2 ms per report keeps delivery slower than sending, so the kill lands mid-processing.
    let (jobs_url, jobs) = collector(Duration::from_millis(2));
    let (ticks_url, ticks) = collector(Duration::ZERO);
    let f = cluster_app(&database, nats.port, &jobs_url, &ticks_url);
    let mut hosts: Vec<Option<Server>> = (0..3).map(|n| Some(host(&f, n))).collect();
    let started = now_ms();

    // 20,000 messages sent through every host in turn.
    let total = 20_000;
    let mut accepted = 0;
    for (i, chunk) in (0..total).collect::<Vec<_>>().chunks(200).enumerate() {
        let bodies: Vec<String> = chunk.iter().map(|i| format!("m-{i}")).collect();
        accepted += send_batch(hosts[i % 3].as_ref().unwrap(), "jobs", &bodies);
    }
    assert_eq!(accepted, total);
    wait_until(
        "processing to be under way",
        Duration::from_secs(60),
        || handled(&jobs).0.len() >= 4_000,
    );

    // SIGKILL host 0 mid-processing: its batches in flight come back to the others.
    let mut dead = hosts[0].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed_at = now_ms();
    let at_kill = handled(&jobs).0.len();
    assert!(
        at_kill < total,
        "the kill came after everything was handled"
    );
    std::thread::sleep(Duration::from_secs(3));
    hosts[0] = Some(host(&f, 0));

    // Pause host 1 longer than the visibility timeout and the lease, then let it go on.
    std::thread::sleep(Duration::from_secs(1));
    let paused = hosts[1].as_ref().unwrap();
    signal(paused, SIGSTOP);
    let paused_at = now_ms();
    std::thread::sleep(Duration::from_secs(4));
    signal(paused, SIGCONT);
    let resumed_at = now_ms();

    wait_until(
        "every message to be handled",
        Duration::from_secs(180),
        || handled(&jobs).0.len() == total,
    );
    // A few more ticks with all three hosts back.
    std::thread::sleep(Duration::from_secs(3));
    let ended = now_ms();

    let (bodies, reports) = handled(&jobs);
    for i in 0..total {
        assert!(bodies.contains(&format!("m-{i}")), "message m-{i} was lost");
    }
    let duplicates = reports - total;
    eprintln!(
        "queue: {total} messages over 3 hosts, kill -9 of one after {at_kill} handled and a 4 s \
         pause of another: none lost, {duplicates} duplicate deliveries (batches in flight on \
         the killed and the paused host, redelivered after their visibility timeout)"
    );
    assert!(
        duplicates <= 400,
        "far more duplicates than batches in flight: {duplicates}"
    );

    // Every tick from the first whole second to the last, once on the whole cluster. Around
    // the kill a tick may be missing (claimed by the host that died before its run reported).
    let counts = tick_counts(&ticks);
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "ticks fired more than once: {twice:?}");
    let first = (started / 1000 + 1) * 1000;
    let last = (ended / 1000 - 2) * 1000;
    let near = |t: i64, at: i64| (at - 1000..=at + 2000).contains(&t);
    let mut missing = Vec::new();
    for t in (first..=last).step_by(1000) {
        if !counts.contains_key(&t) {
            missing.push(t);
        }
    }
    eprintln!(
        "schedule: {} ticks from {first} to {last} on 3 hosts, each fired once; missing: \
         {missing:?} (kill at {killed_at}, pause {paused_at}..{resumed_at})",
        (last - first) / 1000 + 1
    );
    assert!(
        missing.iter().all(|t| near(*t, killed_at)),
        "ticks missing away from the kill: {missing:?} (kill at {killed_at}); fired: {counts:?}"
    );
    assert!(
        missing.len() <= 1,
        "more than one tick lost to the kill: {missing:?}"
    );
    // The paused host did not fire the ticks it slept through when it woke up.
    for (t, _) in counts.range(paused_at..resumed_at + 1000) {
        assert!(*t >= paused_at - 1000);
    }
    drop(dead);
}

#[test]
fn a_missed_run_is_made_up_once_by_the_whole_cluster() {
    let nats = Nats::start();
    let database = postgres().database();
    let (jobs_url, _jobs) = collector(Duration::ZERO);
    let (ticks_url, ticks) = collector(Duration::ZERO);
    let f = cluster_app(&database, nats.port, &jobs_url, &ticks_url);
    // An hourly schedule that makes up missed runs: the first host to start after a missed
    // hour runs it once, the others see it claimed.
    let manifest = std::fs::read_to_string(f.dir.path().join("wasmfn.toml")).unwrap();
    f.write(
        "wasmfn.toml",
        format!("{manifest}\n[schedules.hourly]\nfunction = \"schedule-recorder\"\nexpression = \"0 * * * *\"\nmissed = \"run-once\"\n"),
    );
    // Pretend the cluster last fired `hourly` three hours ago.
    let three_hours_ago = ((now_ms() - 3 * 3600 * 1000) / 3_600_000) * 3_600_000;
    let first = host(&f, 0);
    wait_until("the first tick", Duration::from_secs(10), || {
        !tick_counts(&ticks).is_empty()
    });
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([&database, "-qAtc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql(&format!(
        "INSERT INTO wasmfn_schedule_ticks (schedule, last_tick) VALUES ('default/hourly', {three_hours_ago}) \
         ON CONFLICT (schedule) DO UPDATE SET last_tick = excluded.last_tick"
    ));
    drop(first);
    let hosts: Vec<Server> = (0..3).map(|n| host(&f, n)).collect();
    let (t0, hour_at_start) = (Instant::now(), now_ms() / 3_600_000);
    wait_until("the missed hourly run", Duration::from_secs(20), || {
        ticks
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("hourly "))
    });
    std::thread::sleep(Duration::from_secs(2));
    let hourly: Vec<String> = ticks
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("hourly "))
        .cloned()
        .collect();
    // An hour that begins during the test brings its own (regular) run.
    let expected = if now_ms() / 3_600_000 == hour_at_start {
        1
    } else {
        2
    };
    assert_eq!(
        hourly.len(),
        expected,
        "the missed run ran {} times: {hourly:?}",
        hourly.len()
    );
    eprintln!(
        "missed hourly run made up once across 3 hosts, {:?} after they started",
        t0.elapsed()
    );

    let counts = tick_counts(&ticks);
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    drop(hosts);
}

#[test]
fn check_refuses_a_cluster_that_keeps_shared_state_in_an_embedded_store() {
    let f = Fixture::with_guests(&["queue-recorder", "schedule-recorder"]);
    let check = |manifest: &str| {
        f.write("wasmfn.toml", manifest);
        let out = wasmfn().arg("check").arg(f.dir.path()).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let cluster = "[cluster]\nurl = \"postgres://u@127.0.0.1:1/x\"\n\n";
    let queue = "[queues.jobs]\nfunction = \"queue-recorder\"\n";
    let (ok, text) = check(&format!("{cluster}{queue}"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("queue `jobs`") && text.contains("[queue-backend] kind = \"nats\""),
        "{text}"
    );
    let (ok, text) = check(&format!(
        "{cluster}[functions.schedule-recorder]\nkv = [\"default\"]\n"
    ));
    assert!(!ok, "{text}");
    assert!(
        text.contains("key-value store `default`")
            && text.contains("[kv.default] backend = \"redis\""),
        "{text}"
    );
    // Moved to distributed backends (real ones: `check` opens what the app uses), it passes.
    let nats = Nats::start();
    let (ok, text) = check(&format!(
        "{cluster}[kv.cache]\nbackend = \"redis\"\nurl = \"{}\"\n\n\
         [functions.schedule-recorder]\nkv = [\"cache\"]\n\n\
         [queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n\n{queue}",
        common::servers::redis().url(),
        nats.port
    ));
    assert!(ok, "{text}");
    let (ok, text) = check("[cluster]\nlease = \"10s\"\n");
    assert!(!ok && text.contains("url-env"), "{text}");
    let (ok, text) = check("[cluster]\nurl-env = \"DATABASE_URL\"\nlease = \"10ms\"\n");
    assert!(!ok && text.contains("cluster.lease"), "{text}");
}

/// `METHOD /caps{path}` on `server`, which must answer 200.
fn call(server: &Server, method: &str, path: &str, body: String) -> u16 {
    let r = common::client()
        .request(method.parse().unwrap(), server.url(&format!("/caps{path}")))
        .body(body)
        .send()
        .unwrap();
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
    assert_eq!(distinct(), total, "more records than writes were delivered");
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
fn a_message_put_back_for_want_of_capacity_keeps_its_attempt_number_on_any_host() {
    // An http function that runs one request at a time, fed by a rule's delivery queue with two
    // consumers on each of two hosts: many deliveries find it busy and are put back. A put-back
    // counted as a delivery anywhere would show as attempt 2.
    let nats = Nats::start();
    let f = Fixture::with_guests(&["attempt-logger"]);
    f.write(
        "wasmfn.toml",
        format!(
            "[queue-backend]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\n\n\
             [functions.attempt-logger]\nconcurrency = 1\ntimeout = \"5s\"\n\n\
             [rules.jobs]\npattern = {{ source = [\"test.jobs\"] }}\ntargets = [\"function:attempt-logger\"]\n",
            nats.port
        ),
    );
    compile_into_cache(&f, &["attempt-logger"]);
    let hosts: Vec<Server> = (0..2).map(|n| host(&f, n)).collect();
    // Through a rule: an http function's deliveries queue (on NATS, consumed on both hosts).
    for i in 0..12 {
        let r = hosts[i % 2]
            .admin_post("events")
            .body(format!(
                r#"{{"source": "test.jobs", "type": "Job", "detail": {{"n": {i}}}}}"#
            ))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
    }
    let handled = || -> Vec<String> {
        hosts
            .iter()
            .flat_map(|h| {
                h.logs()
                    .lines()
                    .filter_map(|l| l.split_once("handled ").map(|(_, r)| r.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled().len() < 12 {
        assert!(
            Instant::now() < deadline,
            "{} deliveries; host logs:\n{}\n{}",
            handled().len(),
            hosts[0].logs(),
            hosts[1].logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = handled();
    assert!(
        lines
            .iter()
            .all(|l| l.split_whitespace().nth(2) == Some("1")),
        "a put-back was counted: {lines:?}"
    );
    let put_back = hosts.iter().any(|h| {
        h.logs()
            .contains("messages put back without counting a delivery")
    });
    assert!(
        put_back,
        "no delivery found the function busy: the test proves nothing"
    );
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

/// A host with its own compile cache (the component changes under it in the test).
fn host_compiling(f: &Fixture, n: usize) -> Server {
    let state = f.dir.path().join(format!("host-{n}"));
    f.serve_with(&["--state-dir", state.to_str().unwrap()], &[])
}
