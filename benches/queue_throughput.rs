//! Queue throughput end to end on the embedded backend: enqueue → `queue-worker` handler → ack,
//! with batch sizes 1 and 10, plus the added latency of one message through an idle pipeline.
//!
//! `cargo bench --bench queue_throughput` (needs `guests/queue-worker/queue-worker.wasm`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmfn_host::queue::NewMessage;
use wasmfn_host::Host;

const MESSAGES: usize = 20_000;

async fn drained(app: &wasmfn_host::App) -> bool {
    let stats = app.queues().unwrap().stats().await.unwrap();
    stats
        .iter()
        .filter(|s| s.name == "bench")
        .all(|s| s.waiting == 0 && s.in_flight == 0)
}

async fn run(batch_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let worker = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guests/queue-worker/queue-worker.wasm");
    std::fs::copy(&worker, dir.path().join("queue-worker.wasm"))
        .expect("build the guests first: scripts/build-guests");
    std::fs::write(
        dir.path().join("wasmfn.toml"),
        format!("[queues.bench]\nfunction = \"queue-worker\"\nbatch-size = {batch_size}\nconcurrency = 4\n"),
    )
    .unwrap();
    let host = Host::builder()
        .cache_dir(dir.path().join("cache"))
        .build()
        .unwrap();
    let app = Arc::new(host.load_dir(dir.path()).unwrap());
    let queues = app.queues().unwrap().clone();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let _consumers = app.start(stopped);

    // Throughput: producers and consumers run together.
    let started = Instant::now();
    let producer = {
        let queues = queues.clone();
        tokio::spawn(async move {
            for chunk in 0..MESSAGES / 100 {
                let batch: Vec<NewMessage> = (0..100)
                    .map(|i| NewMessage {
                        body: format!("message {}", chunk * 100 + i).into_bytes(),
                        ..Default::default()
                    })
                    .collect();
                queues.send("bench", batch).await.unwrap();
            }
        })
    };
    producer.await.unwrap();
    while !drained(&app).await {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "batch size {batch_size:>2}: {MESSAGES} messages enqueued, handled and acknowledged in {:.2} s = {:>6.0} messages/s",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );

    // Latency: one message at a time through the idle pipeline.
    let mut samples = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        queues
            .send(
                "bench",
                vec![NewMessage {
                    body: format!("probe {i}").into_bytes(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        while !drained(&app).await {
            tokio::task::yield_now().await;
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "batch size {batch_size:>2}: one message enqueue → handled → acknowledged: p50 {:?}, p99 {:?}",
        pct(0.50),
        pct(0.99)
    );
}

fn main() {
    // As in the CLI: no backtrace capture for errors used as control flow.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        run(1).await;
        run(10).await;
    });
}
