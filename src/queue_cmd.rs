//! `wasmfn send`, `queues`, `dead-letters`, `redrive` and `trigger`: talk to a running `wasmfn serve`
//! through its `/_wasmfn/` API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

/// Where the running server is.
#[derive(clap::Args)]
pub struct ServerArg {
    /// Base URL of the running `wasmfn serve`.
    #[arg(long, default_value = "http://127.0.0.1:3000", env = "WASMFN_SERVER")]
    server: String,
}

/// Arguments of `wasmfn send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The queue.
    queue: String,
    /// The message body (default: read from --file, else stdin).
    #[arg(long, short)]
    data: Option<String>,
    /// Read the body from this file.
    #[arg(long, conflicts_with = "data")]
    file: Option<PathBuf>,
    /// A message attribute, `KEY=VALUE` (repeatable).
    #[arg(long = "attr", value_parser = parse_attr)]
    attributes: Vec<(String, String)>,
    /// Deliver no sooner than this (e.g. `30s`).
    #[arg(long, value_parser = |s: &str| wasmfn_host::parse_duration(s))]
    delay: Option<std::time::Duration>,
    #[command(flatten)]
    server: ServerArg,
}

pub(crate) fn parse_attr(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

async fn check(response: reqwest::Response) -> Result<serde_json::Value> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{status}: {}", text.trim());
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

impl ServerArg {
    /// The full URL of host API `path` (under `/_wasmfn/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/_wasmfn/{path}", self.server.trim_end_matches('/'))
    }

    /// Send `request`, turning connection failures into a hint and non-2xx into an error.
    pub(crate) async fn call(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let response = request
            .send()
            .await
            .with_context(|| unreachable_hint(&self.server))?;
        check(response).await
    }
}

fn unreachable_hint(server: &str) -> String {
    format!("cannot reach wasmfn at {server}; is `wasmfn serve` running? (set --server)")
}

pub async fn send(args: SendArgs) -> Result<ExitCode> {
    let body = match (&args.data, &args.file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
            b
        }
    };
    let url = args.server.url(&format!("queues/{}/messages", args.queue));
    let mut request = client().post(&url).body(body);
    for (k, v) in &args.attributes {
        request = request.header(format!("x-wasmfn-attr-{k}"), v);
    }
    if let Some(d) = args.delay {
        request = request.header("x-wasmfn-delay-ms", d.as_millis().to_string());
    }
    let value = args.server.call(request).await?;
    println!("accepted: {}", value["ids"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(server: ServerArg) -> Result<ExitCode> {
    let value = server.call(client().get(server.url("queues"))).await?;
    println!(
        "{:<24} {:>9} {:>9}  {:<20} DEAD-LETTER QUEUE",
        "QUEUE", "WAITING", "IN-FLIGHT", "FUNCTION"
    );
    for q in value["queues"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:>9} {:>9}  {:<20} {}",
            q["name"].as_str().unwrap_or_default(),
            q["waiting"],
            q["inFlight"],
            q["function"].as_str().unwrap_or("-"),
            q["deadLetterQueue"].as_str().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dead_letters(queue: String, server: ServerArg) -> Result<ExitCode> {
    let value = server
        .call(client().get(server.url(&format!("queues/{queue}/messages"))))
        .await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn redrive(queue: String, to: Option<String>, server: ServerArg) -> Result<ExitCode> {
    let mut url = server.url(&format!("queues/{queue}/redrive"));
    if let Some(to) = to {
        url.push_str(&format!("?to={to}"));
    }
    let value = server.call(client().post(&url)).await?;
    println!("moved {} message(s) to {}", value["moved"], value["to"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn trigger(schedule: String, server: ServerArg) -> Result<ExitCode> {
    let value = server
        .call(client().post(server.url(&format!("schedules/{schedule}/trigger"))))
        .await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(if value["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
