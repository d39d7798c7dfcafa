//! `wasmfn logs`: follow the log of a running `wasmfn serve` from another terminal, through its
//! admin listener's live tail (`GET /_wasmfn/logs`), reconnecting without losing lines.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::queue_cmd::ServerArg;

/// Arguments of `wasmfn logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// Only this function's lines.
    #[arg(long, short)]
    function: Option<String>,
    /// This level or worse: error, warn or info.
    #[arg(long, default_value = "info")]
    level: String,
    /// Print each record as the JSON the host sends.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Print records as they come; after a dropped connection (a restart of the host), reconnect
/// and resume after the last record printed.
pub async fn run(args: LogsArgs, state: Option<&Path>) -> Result<ExitCode> {
    let admin = args.server.connect(state)?;
    let mut query = format!("logs?level={}", args.level);
    if let Some(f) = &args.function {
        query.push_str(&format!("&function={f}"));
    }
    let mut last: Option<u64> = None;
    let mut connected_once = false;
    loop {
        let mut request = admin.request(reqwest::Method::GET, &query);
        if let Some(id) = last {
            request = request.header("last-event-id", id.to_string());
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                connected_once = true;
                follow(r, &mut last, args.json).await;
            }
            Ok(r) => {
                let status = r.status();
                bail!(
                    "{} answered {status}: {}",
                    admin.shown(),
                    r.text().await.unwrap_or_default().trim()
                );
            }
            Err(e) if !connected_once => bail!("cannot reach {}: {e}", admin.shown()),
            Err(_) => {}
        }
        // The host went away (a restart?): try again.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Read one event stream to its end, printing its records.
async fn follow(mut response: reqwest::Response, last: &mut Option<u64>, json: bool) {
    let mut pending = String::new();
    let mut id = None;
    while let Ok(Some(chunk)) = response.chunk().await {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(data) = line.strip_prefix("data: ") {
                print_record(data, json);
                if id.is_some() {
                    *last = id;
                }
            } else if line == "event: gap" {
                eprintln!(
                    "(some lines were dropped: this terminal read slower than the host logged)"
                );
            }
        }
    }
}

fn print_record(data: &str, json: bool) {
    let Ok(record) = serde_json::from_str::<serde_json::Value>(data) else {
        return;
    };
    if record.get("seq").is_none() {
        return; // the gap notice's data
    }
    if json {
        println!("{data}");
        return;
    }
    let time = record["time_ms"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let mut line = format!(
        "{time} {:<5} {}",
        record["level"].as_str().unwrap_or_default(),
        record["function"].as_str().unwrap_or("-"),
    );
    let message = record["message"].as_str().unwrap_or_default();
    if !message.is_empty() {
        line.push_str(": ");
        line.push_str(message);
    }
    for (k, v) in record["fields"].as_object().into_iter().flatten() {
        match v.as_str() {
            Some(s) => line.push_str(&format!(" {k}={s}")),
            None => line.push_str(&format!(" {k}={v}")),
        }
    }
    println!("{line}");
}
