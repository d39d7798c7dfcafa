//! `wasmfn invoke`: run one event through one function in-process and print the result as JSON.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use wasmfn_host::{Function, FunctionSettings, Host};

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
    let (output, ok) =
        wasmfn_host::invoke_json(&function, event.as_deref(), "local-invoke").await?;
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
