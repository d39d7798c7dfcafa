//! Embedding wasmfn in another Rust program: load a folder of functions, then handle an HTTP
//! request and a queue batch in-process, with no server and no CLI.
//!
//! `cargo run --release --example embed -- guests`

use http_body_util::BodyExt as _;
use wasmfn_host::{full_body, queue, Host};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "guests".into());
    let host = Host::builder().build()?;
    let app = host.load_dir(&dir)?;

    // An HTTP request, routed exactly as `wasmfn serve` would route it.
    let request = http::Request::get("http://localhost/hello/embedded").body(full_body(""))?;
    let response = app.handle(request).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!(
        "GET /hello/embedded -> {status}: {}",
        String::from_utf8_lossy(&body.to_bytes()).trim()
    );
    anyhow::ensure!(status == 200, "hello failed");

    // A queue batch, straight to a function by name.
    let worker = app
        .function("queue-worker")
        .expect("guests/queue-worker is built");
    let message = |id: &str, body: &str| queue::Message {
        id: id.into(),
        body: body.into(),
        attributes: vec![],
        attempt: 1,
        enqueued_at: 0,
    };
    let batch = queue::Batch {
        queue: "orders".into(),
        messages: vec![message("1", "ok"), message("2", "fail me")],
    };
    let failures = worker
        .invoke_queue(&batch)
        .await?
        .map_err(anyhow::Error::msg)?;
    println!(
        "queue batch of 2 -> failed ids: {:?}",
        failures.iter().map(|f| &f.id).collect::<Vec<_>>()
    );
    anyhow::ensure!(
        failures.len() == 1 && failures[0].id == "2",
        "unexpected failures"
    );
    Ok(())
}
