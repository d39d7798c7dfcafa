//! `wasmfn workflow ...` (check definitions; start, describe and list executions of a running
//! `wasmfn serve`), `wasmfn put-event` and `wasmfn publish`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use wasmfn_host::workflow::Definition;

use crate::queue_cmd::{parse_attr, Admin, ServerArg};

/// `wasmfn workflow ...`.
#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Validate definition files (`.json`: States Language; `.toml`: the same shape); exits
    /// non-zero naming the state and the fix for the first problem of each file.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start an execution of a workflow of a running `wasmfn serve`.
    Start {
        /// The workflow's name in wasmfn.toml.
        workflow: String,
        /// The input: JSON text, or `@FILE` [default: {}].
        #[arg(long, short)]
        input: Option<String>,
        /// Name the execution (starting the same name again returns the existing one).
        #[arg(long)]
        name: Option<String>,
        /// Wait up to this many seconds for it to end and print it with its history.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<f64>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show an execution with its history (each step's input, output, error and timing).
    Describe {
        /// The execution id.
        execution: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the newest executions of a workflow.
    List {
        /// The workflow's name.
        workflow: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// Arguments of `wasmfn put-event`.
#[derive(clap::Args)]
pub struct PutEventArgs {
    /// Who emits it, e.g. `shop.orders`.
    #[arg(long)]
    source: String,
    /// What happened, e.g. `OrderPlaced`.
    #[arg(long = "type")]
    kind: String,
    /// The event's data: a JSON object, or `@FILE`.
    #[arg(long, default_value = "{}")]
    detail: String,
    #[command(flatten)]
    server: ServerArg,
}

/// Arguments of `wasmfn publish`.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The topic.
    topic: String,
    /// The message body.
    #[arg(long, short)]
    data: String,
    /// A message attribute, `KEY=VALUE` (repeatable), matched by filter policies.
    #[arg(long = "attr", value_parser = parse_attr)]
    attributes: Vec<(String, String)>,
    #[command(flatten)]
    server: ServerArg,
}

/// JSON text given inline or as `@FILE`.
fn json_arg(text: &str, what: &str) -> Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("the {what} is not JSON"))
}

pub async fn run(command: WorkflowCommand, state: Option<&Path>) -> Result<ExitCode> {
    match command {
        WorkflowCommand::Check { files } => check(&files),
        WorkflowCommand::Start {
            workflow,
            input,
            name,
            wait,
            server,
        } => {
            let input = json_arg(input.as_deref().unwrap_or("{}"), "input")?;
            let admin = server.connect(state)?;
            let mut url = format!("workflows/{workflow}/executions");
            let mut query = Vec::new();
            if let Some(n) = &name {
                query.push(format!("name={n}"));
            }
            if let Some(w) = wait {
                query.push(format!("wait={w}"));
            }
            if !query.is_empty() {
                url = format!("{url}?{}", query.join("&"));
            }
            let value = admin.call(admin.post(&url).body(input.to_string())).await?;
            let id = value["executionId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if wait.is_none() {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            describe(&admin, &id).await
        }
        WorkflowCommand::Describe { execution, server } => {
            describe(&server.connect(state)?, &execution).await
        }
        WorkflowCommand::List { workflow, server } => {
            let admin = server.connect(state)?;
            let value = admin
                .call(admin.get(&format!("workflows/{workflow}/executions")))
                .await?;
            println!(
                "{:<32} {:<10} {:<24} STARTED (ms)",
                "EXECUTION", "STATUS", "ERROR"
            );
            for e in value["executions"].as_array().into_iter().flatten() {
                println!(
                    "{:<32} {:<10} {:<24} {}",
                    e["id"].as_str().unwrap_or_default(),
                    e["status"].as_str().unwrap_or_default(),
                    e["error"].as_str().unwrap_or("-"),
                    e["startedAt"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print an execution and its history; exit status says whether it succeeded.
async fn describe(admin: &Admin, id: &str) -> Result<ExitCode> {
    let value = admin.call(admin.get(&format!("executions/{id}"))).await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(match value["execution"]["status"].as_str() {
        Some("SUCCEEDED") => ExitCode::SUCCESS,
        Some("RUNNING") => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    })
}

fn check(files: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = false;
    for file in files {
        if !file.is_file() {
            anyhow::bail!("{}: no such file", file.display());
        }
        match Definition::load(file) {
            Ok(d) => println!(
                "ok    {}: {} states, starts at `{}`",
                file.display(),
                d.states.len(),
                d.start_at
            ),
            Err(e) => {
                failed = true;
                eprintln!("error: {}: {e}", file.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn put_event(args: PutEventArgs, state: Option<&Path>) -> Result<ExitCode> {
    let detail = json_arg(&args.detail, "detail")?;
    let body = json!({ "source": args.source, "type": args.kind, "detail": detail });
    let admin = args.server.connect(state)?;
    let value = admin
        .call(admin.post("events").body(body.to_string()))
        .await?;
    println!("accepted: {}", value["ids"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn publish(args: PublishArgs, state: Option<&Path>) -> Result<ExitCode> {
    let admin = args.server.connect(state)?;
    let mut request = admin
        .post(&format!("topics/{}/messages", args.topic))
        .body(args.data.clone());
    for (k, v) in &args.attributes {
        request = request.header(format!("x-wasmfn-attr-{k}"), v);
    }
    let value = admin.call(request).await?;
    println!("accepted: {}", value["id"]);
    Ok(ExitCode::SUCCESS)
}
