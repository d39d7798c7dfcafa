//! The live log tail through the real binary: `GET /_wasmfn/logs` streams lines filtered by
//! function and level, resumes after a reconnect, samples for the console without recording
//! every line, and `wasmfn logs` follows a running host from another terminal.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client, wait_until, Fixture, Server};

/// Read a server-sent event stream on a thread: each `data:` line with the `id:` before it.
fn tail(server: &Server, query: &str, last_id: Option<u64>) -> Arc<Mutex<Vec<(u64, String)>>> {
    use std::io::BufRead as _;
    let mut request = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(server.admin_url(&format!("logs{query}")))
        .bearer_auth(&server.admin_token);
    if let Some(id) = last_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut id = 0;
        for line in std::io::BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().unwrap();
            } else if let Some(data) = line.strip_prefix("data: ") {
                sink.lock().unwrap().push((id, data.to_string()));
            }
        }
    });
    seen
}

#[test]
fn the_log_tail_streams_lines_resumes_after_a_reconnect_and_ends_at_shutdown() {
    let f = Fixture::with_guests(&["hello", "trap"]);
    let server = f.serve();
    let unauthorized = client().get(server.admin_url("logs")).send().unwrap();
    assert_eq!(unauthorized.status(), 401);

    let hello = tail(&server, "?function=hello", None);
    let warnings = tail(&server, "?level=warn", None);
    let started = std::time::Instant::now();
    assert_eq!(server.get("/hello").0, 200);
    wait_until("hello's line in the tail", Duration::from_secs(1), || {
        hello
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l.contains("invocation finished"))
    });
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.get("/trap").0, 500);
    wait_until("the trap's warning", Duration::from_secs(2), || {
        warnings
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l.contains("\"function\":\"trap\""))
    });
    // Filters: hello's tail has only hello's lines; the warnings tail no INFO line.
    for (_, line) in hello.lock().unwrap().iter() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["function"], "hello", "{line}");
    }
    for (_, line) in warnings.lock().unwrap().iter() {
        assert!(!line.contains("\"level\":\"INFO\""), "{line}");
    }

    // A client that reconnects with Last-Event-ID gets what it missed, and nothing twice.
    let last = hello.lock().unwrap().last().unwrap().0;
    assert_eq!(server.get("/hello").0, 200);
    assert_eq!(server.get("/hello").0, 200);
    let resumed = tail(&server, "?function=hello", Some(last));
    wait_until("the missed lines", Duration::from_secs(2), || {
        resumed
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains("invocation finished"))
            .count()
            == 2
    });
    assert!(resumed.lock().unwrap().iter().all(|(id, _)| *id > last));

    // Open tails do not hold up a graceful shutdown.
    let stopping = std::time::Instant::now();
    assert!(server.interrupt().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
}

#[test]
fn wasmfn_logs_follows_a_running_host_from_another_terminal() {
    use std::io::BufRead as _;
    let f = Fixture::with_guests(&["hello"]);
    let server = f.serve();
    let mut logs = common::wasmfn()
        .args(["logs", "--function", "hello", "--dir"])
        .arg(f.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let stdout = logs.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    // The tail is open once the command has connected: invoke until its line shows.
    wait_until(
        "hello's line from `wasmfn logs`",
        Duration::from_secs(10),
        || {
            assert_eq!(server.get("/hello").0, 200);
            std::thread::sleep(Duration::from_millis(100));
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("invocation finished"))
        },
    );
    let line = lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("invocation finished"))
        .unwrap()
        .clone();
    assert!(
        line.contains("INFO  hello: invocation finished") && line.contains("world=http"),
        "{line}"
    );
    let _ = logs.kill();
    let _ = logs.wait();
}

/// The INFO lines `server` logged about `function`, as its log file has them.
fn info_lines(server: &Server, function: &str) -> usize {
    let needle = format!("function={function}");
    server
        .logs()
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains(&needle))
        .count()
}

/// The lines of `function` a tail showed, and the lines its `sampled` notices counted.
fn shown_and_skipped(seen: &Mutex<Vec<(u64, String)>>, function: &str) -> (usize, u64) {
    let seen = seen.lock().unwrap();
    let records = seen
        .iter()
        .map(|(_, data)| serde_json::from_str::<serde_json::Value>(data).unwrap());
    let (mut shown, mut skipped) = (0, 0);
    for record in records {
        if record["function"] == function {
            shown += 1;
        }
        skipped += record["skipped"].as_u64().unwrap_or(0);
    }
    (shown, skipped)
}

#[test]
fn while_only_sampled_tails_are_open_the_host_records_a_sample_and_counts_every_line_left_out() {
    let f = Fixture::with_guests(&["hello"]);
    // One server thread: what it left out is told with the next line it records.
    let server = f.serve_with(&["--threads", "1"], &[]);
    let console = tail(&server, "?function=hello&rate=5", None);
    let http = client();
    for _ in 0..300 {
        let r = http.get(server.url("/hello")).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    // After a second the sample's budget has refilled: this one is recorded, carrying the
    // count of those left out before it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.get("/hello").0, 200);
    wait_until("hello's 301 lines logged", Duration::from_secs(5), || {
        info_lines(&server, "hello") >= 301
    });
    let logged = info_lines(&server, "hello");
    wait_until(
        "every line shown or counted by the console's tail",
        Duration::from_secs(5),
        || {
            let (shown, skipped) = shown_and_skipped(&console, "hello");
            shown as u64 + skipped == logged as u64
        },
    );
    let (shown, _) = shown_and_skipped(&console, "hello");
    assert!(
        (5..=20).contains(&shown),
        "{shown} of {logged} lines shown at 5 a second"
    );

    // The ring kept only a sample as well: a tail that wants every line, opened now, finds a
    // few of those lines and the count of the rest.
    let everything = tail(&server, "?function=hello&since=0", None);
    wait_until("the backlog's notice", Duration::from_secs(5), || {
        let (kept, left_out) = shown_and_skipped(&everything, "hello");
        kept as u64 + left_out == logged as u64
    });
    let (kept, _) = shown_and_skipped(&everything, "hello");
    assert!(kept <= 30, "the ring kept {kept} of {logged} lines");

    // From now on it has every line.
    for _ in 0..50 {
        assert_eq!(server.get("/hello").0, 200);
    }
    wait_until("all 50 new lines", Duration::from_secs(5), || {
        shown_and_skipped(&everything, "hello").0 == kept + 50 * (logged / 301)
    });
}
