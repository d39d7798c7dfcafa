//! `wasmfn invoke`: run one event through one function in-process and print the result as JSON.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde_json::json;
use wasmfn_host::{event_json, full_body, Function, FunctionSettings, Host, World};

/// Arguments of `wasmfn invoke`.
#[derive(clap::Args)]
pub struct InvokeArgs {
    /// A function name in `--dir`, or a path to a component file.
    function: String,
    /// The functions folder to find the function in.
    #[arg(long, default_value = "guests")]
    pub(crate) dir: PathBuf,
    /// The event as JSON, from a file or `-` for stdin. HTTP: {"method", "path", "headers",
    /// "body" | "bodyBase64"}; queue: {"queue", "messages": [...]}; stream: {"events": [...]};
    /// schedule: {"schedule", "expression"}; task: the task's JSON input. Default: an empty event (GET /NAME for HTTP).
    #[arg(long, short)]
    event: Option<String>,
}

pub async fn run(host: Host, args: InvokeArgs) -> Result<ExitCode> {
    let function = load(&host, &args)?;
    let event = match args.event.as_deref() {
        None => None,
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the event from stdin")?;
            Some(text)
        }
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading event file {path}"))?,
        ),
    };
    let (output, ok) = match function.world() {
        World::Http => invoke_http(&function, event.as_deref()).await?,
        World::Queue => {
            let batch = event_json::parse_queue_batch(
                event.as_deref().unwrap_or(r#"{"messages":[{"body":""}]}"#),
            )?;
            match function.invoke_queue(&batch).await {
                Ok(r) => (event_json::queue_result_json(&r), r.is_ok()),
                Err(e) => (error_json(&e), false),
            }
        }
        World::Stream => {
            let events =
                event_json::parse_stream_events(event.as_deref().unwrap_or(r#"{"events":[]}"#))?;
            match function.invoke_stream(&events).await {
                Ok(r) => (event_json::stream_result_json(&r), r.is_ok()),
                Err(e) => (error_json(&e), false),
            }
        }
        World::Schedule => {
            let ev = event_json::parse_scheduled_event(event.as_deref().unwrap_or("{}"))?;
            match function.invoke_schedule(&ev).await {
                Ok(r) => (event_json::schedule_result_json(&r), r.is_ok()),
                Err(e) => (error_json(&e), false),
            }
        }
        World::Task => {
            let input = event.as_deref().unwrap_or("{}");
            serde_json::from_str::<serde_json::Value>(input)
                .context("a task's input must be JSON")?;
            let context = wasmfn_host::task::TaskContext {
                execution: "local-invoke".into(),
                workflow: String::new(),
                state: function.name().to_string(),
                attempt: 1,
            };
            match function.invoke_task(&context, input).await {
                Ok(Ok(output)) => (
                    json!({ "output": serde_json::from_str::<serde_json::Value>(&output)
                        .unwrap_or(serde_json::Value::String(output)) }),
                    true,
                ),
                Ok(Err(e)) => (json!({ "error": e.error, "cause": e.cause }), false),
                Err(e) => (error_json(&e), false),
            }
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    if let Some(report) = usage_report(&function).await {
        eprintln!("{report}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load(host: &Host, args: &InvokeArgs) -> Result<Function> {
    let as_path = PathBuf::from(&args.function);
    if args.function.ends_with(".wasm") || as_path.is_file() {
        let name = as_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".into());
        return Ok(host.load_component(&name, &as_path, FunctionSettings::default())?);
    }
    let app = host.load_dir(&args.dir)?;
    if let Some(f) = app.function(&args.function) {
        return Ok(f.clone());
    }
    if let Some(e) = app
        .load_errors()
        .iter()
        .find(|e| e.function == args.function)
    {
        bail!("{e}");
    }
    let names: Vec<String> = app.functions().map(|f| f.name().to_string()).collect();
    bail!(
        "no function `{}` in {}; available: {}",
        args.function,
        args.dir.display(),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

async fn invoke_http(
    function: &Function,
    event: Option<&str>,
) -> Result<(serde_json::Value, bool)> {
    let ev: event_json::HttpEvent = match event {
        Some(text) => serde_json::from_str(text).context("not an HTTP event")?,
        None => serde_json::from_value(json!({ "path": format!("/{}", function.name()) }))?,
    };
    let mut request = http::Request::builder()
        .method(ev.method.as_str())
        .uri(format!("http://localhost{}", ev.path));
    for (k, v) in &ev.headers {
        request = request.header(k, v);
    }
    let request = request
        .body(full_body(ev.body_bytes()?))
        .context("invalid HTTP event")?;
    let response = match function.handle_http(request).await {
        Ok(r) => r,
        Err(e) => return Ok((error_json(&e), false)),
    };
    let status = response.status().as_u16();
    let headers: serde_json::Map<String, serde_json::Value> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response body: {e:?}"))?
        .to_bytes();
    let mut out = json!({ "status": status, "headers": headers });
    match std::str::from_utf8(&body) {
        Ok(text) => out["body"] = json!(text),
        Err(_) => {
            out["bodyBase64"] = json!(base64::engine::general_purpose::STANDARD.encode(&body))
        }
    }
    Ok((out, status < 500))
}

/// What the invocation used, as one line on stderr (like Lambda's `REPORT` line), or `None`
/// when it was refused before it ran.
async fn usage_report(function: &Function) -> Option<String> {
    // An HTTP invocation is counted once its response body has been read and its guest has
    // returned, which can be a moment after the body ends.
    let mut totals = function.usage_totals();
    for _ in 0..100 {
        if totals.invocations > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        totals = function.usage_totals();
    }
    if totals.invocations == 0 {
        return None;
    }
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    Some(format!(
        "REPORT function={} duration={} billed={} ms on-thread={} start={} peak-memory={} \
         (limit {}) in={} B out={} B",
        function.name(),
        ms(totals.wall_us),
        totals.billed_ms,
        ms(totals.cpu_us),
        if totals.cold_starts > 0 {
            "cold"
        } else {
            "warm"
        },
        mib(totals.peak_memory),
        mib(function.limits().memory_bytes),
        totals.bytes_in,
        totals.bytes_out,
    ))
}

fn error_json(e: &wasmfn_host::InvokeError) -> serde_json::Value {
    json!({ "errorType": e.kind(), "errorMessage": e.to_string() })
}
