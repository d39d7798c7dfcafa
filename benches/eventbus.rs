//! The event bus and workflow executor on the embedded backends.
//!
//! - **Events routed per second with 100 rules**: events published in batches of 100 through
//!   the bus of an app whose manifest has 100 rules (exact, prefix, numeric and exists
//!   patterns over source, type and detail; 3 match each event, each into its own queue),
//!   durably enqueued; beside it, the same number of messages sent straight to one queue
//!   (what routing adds on top of the queue write).
//! - **Workflow step overhead**: one persisted transition (history row + position, one SQLite
//!   transaction) p50/p99 over 20 000 steps, and the executor's cost per state over a
//!   1 000-state Pass chain (evaluation + persistence, no function call).
//!
//! `cargo bench --bench eventbus`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmfn_host::eventbus::NewEvent;
use wasmfn_host::queue::NewMessage;
use wasmfn_host::workflow::store::{NewExecution, Position, Step, Transition};
use wasmfn_host::workflow::{ExecutionStore, SqliteExecutions, Status};
use wasmfn_host::Host;

const EVENTS: usize = 20_000;

fn manifest_with_rules(dir: &std::path::Path) {
    let mut m = String::new();
    for q in 0..10 {
        m.push_str(&format!("[queues.q{q}]\n"));
    }
    for r in 0..100 {
        let q = r % 10;
        let pattern = match r % 4 {
            0 => format!("{{ source = [\"svc-{r}\"], type = [\"Created\"] }}"),
            1 => format!("{{ source = [{{ prefix = \"svc-{r}-\" }}] }}"),
            2 => format!("{{ type = [\"Updated\"], detail = {{ amount = [{{ numeric = [\">=\", {r}, \"<\", {}] }}] }} }}", r + 1),
            _ => format!("{{ source = [\"svc-{r}\"], detail = {{ flag = [{{ exists = true }}] }} }}"),
        };
        m.push_str(&format!(
            "[rules.r{r}]\ntargets = [\"queue:q{q}\"]\npattern = {pattern}\n"
        ));
    }
    std::fs::write(dir.join("wasmfn.toml"), m).unwrap();
}

/// An event matching 3 of the rules: r0 (exact), r1 (prefix) and r2's numeric range.
fn event(i: usize) -> NewEvent {
    let (source, kind) = match i % 3 {
        0 => ("svc-0".to_string(), "Created"),
        1 => (format!("svc-1-{i}"), "Created"),
        _ => ("svc-x".to_string(), "Updated"),
    };
    NewEvent {
        source,
        r#type: kind.into(),
        detail: json!({"orderId": i, "amount": 2.5, "note": "x".repeat(200)}),
    }
}

async fn routing() {
    let dir = tempfile::tempdir().unwrap();
    manifest_with_rules(dir.path());
    let host = Host::builder().disable_cache().build().unwrap();
    let app = host.load_dir(dir.path()).unwrap();
    let bus = app.events().unwrap().clone();
    let queues = app.queues().unwrap().clone();
    assert_eq!(bus.rules().len(), 100);

    // Warm up the database files.
    bus.publish_events((0..100).map(event).collect())
        .await
        .unwrap();
    let started = Instant::now();
    for chunk in 0..EVENTS / 100 {
        let batch = (chunk * 100..chunk * 100 + 100).map(event).collect();
        bus.publish_events(batch).await.unwrap();
    }
    let routed = started.elapsed();
    let waiting: u64 = queues
        .stats()
        .await
        .unwrap()
        .iter()
        .map(|s| s.waiting)
        .sum();
    assert_eq!(
        waiting as usize,
        EVENTS + 100,
        "each event lands in exactly one queue"
    );

    let started = Instant::now();
    for _ in 0..EVENTS / 100 {
        let batch: Vec<NewMessage> = (0..100)
            .map(|i| NewMessage {
                body: event(i).detail.to_string().into_bytes(),
                ..Default::default()
            })
            .collect();
        queues.send("q9", batch).await.unwrap();
    }
    let direct = started.elapsed();

    // Matching alone: every rule tested against one event.
    let envelope = json!({"source": "svc-x", "type": "Updated", "detail": {"amount": 2.5}});
    let map = envelope.as_object().unwrap();
    let n = 200_000;
    let started = Instant::now();
    let mut matched = 0;
    for _ in 0..n {
        matched += bus.matching_rules(std::hint::black_box(map)).count();
    }
    let matching = started.elapsed();
    assert_eq!(matched, n);

    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!("event bus, 100 rules, batches of 100, embedded SQLite queues:");
    println!(
        "  routed + enqueued : {:>9.0} events/s ({:.1} µs/event)",
        rate(routed),
        routed.as_secs_f64() * 1e6 / EVENTS as f64
    );
    println!(
        "  direct enqueue    : {:>9.0} messages/s (same count, one queue, no routing)",
        rate(direct)
    );
    println!(
        "  ratio             : {:.2}x the time of direct enqueue",
        routed.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "  matching only     : {:.2} µs per event against 100 rules",
        matching.as_secs_f64() * 1e6 / n as f64
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn transitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteExecutions::open(&dir.path().join("workflows.sqlite")).unwrap();
    let input =
        json!({"orderId": "o-1", "items": ["a", "b", "c"], "note": "x".repeat(400)}).to_string();
    store
        .create(NewExecution {
            id: "bench".into(),
            workflow: "w".into(),
            parent: None,
            input: input.clone(),
            start_at: "S0".into(),
            trace: None,
        })
        .await
        .unwrap();
    let mut times = Vec::with_capacity(20_000);
    for i in 0..20_000u64 {
        let step = Step {
            seq: 0,
            state: format!("S{i}"),
            kind: "Task".into(),
            attempt: 1,
            input: input.clone(),
            output: Some(input.clone()),
            error: None,
            cause: None,
            started_at: i,
            ended_at: i,
        };
        let next = Transition::Continue(Position {
            state: format!("S{}", i + 1),
            input: input.clone(),
            attempt: 0,
            wake_at: None,
        });
        let t = Instant::now();
        store.record("bench", Some(step), next).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "workflow step overhead (one persisted transition, ~1 KiB input and output, SQLite WAL):"
    );
    println!(
        "  p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.last().unwrap().as_secs_f64() * 1e6
    );

    // The executor over a chain of Pass states.
    let states: serde_json::Map<String, serde_json::Value> = (0..1000)
        .map(|i| {
            let s = if i == 999 {
                json!({"Type": "Pass", "End": true})
            } else {
                json!({"Type": "Pass", "Next": format!("P{}", i + 1)})
            };
            (format!("P{i}"), s)
        })
        .collect();
    let definition = json!({"StartAt": "P0", "States": states});
    std::fs::write(dir.path().join("chain.json"), definition.to_string()).unwrap();
    std::fs::write(
        dir.path().join("wasmfn.toml"),
        "[workflows.chain]\ndefinition = \"chain.json\"\n",
    )
    .unwrap();
    let host = Host::builder().disable_cache().build().unwrap();
    let app = Arc::new(host.load_dir(dir.path()).unwrap());
    let workflows = app.workflows().unwrap().clone();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let _runner = app.start(stopped);
    let t = Instant::now();
    let (id, _) = workflows
        .start_execution("chain", &input, None)
        .await
        .unwrap();
    let done = workflows
        .wait(&id, Duration::from_secs(120))
        .await
        .unwrap()
        .unwrap();
    let elapsed = t.elapsed();
    assert_eq!(done.status, Status::Succeeded);
    println!(
        "  executor: 1000 Pass states in {:.1} ms = {:.1} µs per state (evaluate + persist)",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / 1000.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        routing().await;
        transitions().await;
    });
}
