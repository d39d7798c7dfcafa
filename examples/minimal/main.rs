//! The smallest embedding: `wasmfn-host` with `default-features = false` (the core and the http
//! path: config, secrets, logging and outbound HTTP, but no SQLite, no scheduler and no network
//! clients) serving a folder of http functions over real HTTP.
//!
//! ```sh
//! cargo run --release -p wasmfn-example-minimal -- DIR [ADDR]   # serve DIR until Ctrl-C
//! cargo run --release -p wasmfn-example-minimal -- DIR --check  # serve, GET /hello once, exit
//! ```
//!
//! With `--check` it binds a free port, sends `GET /hello/minimal` over a TCP connection, prints
//! the answer and exits non-zero unless it was a 200; it also checks that a manifest using a
//! capability this build leaves out (`[kv.NAME]`) is refused with the feature to enable. CI
//! runs it on `guests/hello`.

use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wasmfn_host::Host;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: minimal DIR [ADDR | --check]")?;
    let mode = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let host = Host::builder().build()?;
    let app = Arc::new(host.load_dir(&dir)?);
    for e in app.load_errors() {
        eprintln!("{e}");
    }
    let check = mode == "--check";
    let addr = if check { "127.0.0.1:0" } else { mode.as_str() };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    println!(
        "serving {} function(s) from {dir} on http://{bound}",
        app.functions().count()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wasmfn_host::server::serve(app, listener, async {
        let _ = stopped.await;
    }));
    if !check {
        tokio::signal::ctrl_c().await?;
        let _ = stop.send(());
        return server.await?;
    }
    let answer = get(bound, "/hello/minimal").await?;
    println!("{}", answer.trim_end());
    let _ = stop.send(());
    server.await??;
    ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "GET /hello/minimal did not answer 200"
    );
    refuses_what_it_leaves_out(&host)
}

/// A manifest declaring a key-value store cannot load on this build: the error names the
/// table and the feature that adds it.
fn refuses_what_it_leaves_out(host: &Host) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wasmfn-minimal-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("wasmfn.toml"), "[kv.cache]\n")?;
    let result = host.load_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let error = match result {
        Ok(_) => {
            anyhow::bail!("a manifest with [kv.cache] loaded on a build without key-value stores")
        }
        Err(e) => e.to_string(),
    };
    println!("{error}");
    ensure!(
        error.contains("wasmfn.toml:1: `kv`") && error.contains("the `kv` feature"),
        "unexpected error for [kv.cache]: {error}"
    );
    Ok(())
}

/// One HTTP/1.1 GET over a fresh connection, answered with the whole response as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}
