//! `wasmfn send`, `queues`, `dead-letters`, `redrive` and `trigger`: talk to a running `wasmfn serve`
//! through its `/_wasmfn/` API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

/// How to reach the admin API of a running `wasmfn serve`.
#[derive(clap::Args)]
pub struct ServerArg {
    /// The running host's admin listener, `http://HOST:PORT` or `unix:PATH` [default: what
    /// the host wrote to its state folder's `admin-endpoint`, else http://127.0.0.1:3001].
    #[arg(long, env = "WASMFN_ADMIN", value_name = "URL")]
    admin: Option<String>,
    /// The admin token [default: the state folder's `admin-token`].
    #[arg(
        long,
        env = "WASMFN_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    admin_token: Option<String>,
    /// The functions folder the host serves; its state folder (DIR/.wasmfn unless
    /// --state-dir) holds the admin endpoint and token.
    #[arg(long, default_value = "guests", value_name = "DIR")]
    dir: PathBuf,
}

/// A connection to the admin API, resolved from [`ServerArg`].
pub struct Admin {
    client: reqwest::Client,
    /// `http://HOST:PORT` (for a Unix socket, a placeholder host the socket answers to).
    base: String,
    /// What to call it in messages.
    shown: String,
    token: Option<String>,
}

impl ServerArg {
    /// Find the admin listener and token: flags and environment first, then the files the
    /// serving host wrote to its state folder.
    pub fn connect(&self, state_dir: Option<&Path>) -> Result<Admin> {
        let state = state_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.join(".wasmfn"));
        let endpoint = match &self.admin {
            Some(a) => a.clone(),
            None => wasmfn_host::admin::token::read_endpoint(&state)?
                .unwrap_or_else(|| format!("http://{}", wasmfn_host::admin::DEFAULT_ADDRESS)),
        };
        let (client, base) = match endpoint.strip_prefix("unix:") {
            Some(path) => (
                reqwest::Client::builder().unix_socket(path).build()?,
                "http://localhost".to_string(),
            ),
            None => (
                reqwest::Client::new(),
                endpoint.trim_end_matches('/').to_string(),
            ),
        };
        let token = match (&self.admin_token, endpoint.starts_with("unix:")) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => None,
            (None, false) => wasmfn_host::admin::token::read(&state)?,
        };
        Ok(Admin {
            client,
            base,
            shown: endpoint,
            token,
        })
    }
}

impl Admin {
    /// A request to host API `path` (under `/_wasmfn/`).
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_at(method, &format!("/_wasmfn/{path}"))
    }

    /// A request to `path` of the admin listener (`/readyz`, `/metrics`).
    pub(crate) fn request_at(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    /// `GET` host API `path`.
    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// `POST` to host API `path`.
    pub(crate) fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// Send `request`, turning connection failures into a hint; any status is returned.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String)> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the wasmfn admin API at {}; is `wasmfn serve` running? (set --admin, or --dir/--state-dir to the folder it serves)",
                self.shown
            )
        })?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    /// Where it connects, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Send `request`, turning connection failures into a hint and non-2xx into an error.
    pub(crate) async fn call(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the wasmfn admin API at {}; is `wasmfn serve` running? (set --admin, or --dir/--state-dir to the folder it serves)",
                self.shown
            )
        })?;
        check(response).await
    }
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

pub async fn send(args: SendArgs, state: Option<&Path>) -> Result<ExitCode> {
    let admin = args.server.connect(state)?;
    let body = match (&args.data, &args.file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
            b
        }
    };
    let mut request = admin
        .post(&format!("queues/{}/messages", args.queue))
        .body(body);
    for (k, v) in &args.attributes {
        request = request.header(format!("x-wasmfn-attr-{k}"), v);
    }
    if let Some(d) = args.delay {
        request = request.header("x-wasmfn-delay-ms", d.as_millis().to_string());
    }
    let value = admin.call(request).await?;
    println!("accepted: {}", value["ids"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(server: ServerArg, state: Option<&Path>) -> Result<ExitCode> {
    let admin = server.connect(state)?;
    let value = admin.call(admin.get("queues")).await?;
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

pub async fn dead_letters(
    queue: String,
    server: ServerArg,
    state: Option<&Path>,
) -> Result<ExitCode> {
    let admin = server.connect(state)?;
    let value = admin
        .call(admin.get(&format!("queues/{queue}/messages")))
        .await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn redrive(
    queue: String,
    to: Option<String>,
    server: ServerArg,
    state: Option<&Path>,
) -> Result<ExitCode> {
    let admin = server.connect(state)?;
    let mut path = format!("queues/{queue}/redrive");
    if let Some(to) = to {
        path.push_str(&format!("?to={to}"));
    }
    let value = admin.call(admin.post(&path)).await?;
    println!("moved {} message(s) to {}", value["moved"], value["to"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn trigger(
    schedule: String,
    server: ServerArg,
    state: Option<&Path>,
) -> Result<ExitCode> {
    let admin = server.connect(state)?;
    let value = admin
        .call(admin.post(&format!("schedules/{schedule}/trigger")))
        .await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(if value["ok"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
