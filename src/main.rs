//! `wasmfn`: the command-line shell over the `wasmfn-host` library.

mod build;
mod check;
mod cost;
mod invoke;
mod logs_cmd;
mod new;
mod package;
mod queue_cmd;
mod sections;
mod status_cmd;
mod watch;
mod wit_tree;
mod workflow_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use wasmfn_host::{Allocator, Host, HostBuilder};

/// Serverless functions as WASI components: serve, invoke, build and precompile them.
#[derive(Parser)]
#[command(name = "wasmfn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WASMFN_LOG_FORMAT")]
    log_format: LogFormat,

    /// Where precompiled components are cached [default: ~/.cache/wasmfn/compiled].
    #[arg(long, global = true, env = "WASMFN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Where durable state (queue database) lives [default: DIR/.wasmfn].
    #[arg(long, global = true, env = "WASMFN_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Apply the manifest's `[env.NAME]` overlay (e.g. `staging`).
    #[arg(long = "env", global = true, env = "WASMFN_ENV", value_name = "NAME")]
    environment: Option<String>,

    /// Compile in memory on every start instead of using the compile cache.
    #[arg(long, global = true)]
    no_cache: bool,

    /// Only read `--cache-dir`, never compile or write there: a folder shared by several hosts,
    /// filled beforehand by `wasmfn compile` (a component missing from it fails to load).
    #[arg(
        long,
        global = true,
        requires = "cache_dir",
        conflicts_with = "no_cache"
    )]
    read_only_cache: bool,

    /// Instance allocator: `pooling` (default; falls back to on-demand if the address space
    /// cannot be reserved) or `on-demand`.
    #[arg(long, global = true, value_enum, default_value_t = AllocatorArg::Pooling)]
    allocator: AllocatorArg,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function in a folder over HTTP.
    ///
    /// A function is a component `NAME.wasm`, or a folder `NAME/` holding a guest source built
    /// to `NAME/NAME.wasm` by `wasmfn build`. HTTP functions answer at `/NAME` and `/NAME/*`
    /// unless `wasmfn.toml` in the folder says otherwise.
    Serve(ServeArgs),
    /// Invoke one function once, in-process, and print its result (like `sam local invoke`).
    Invoke(invoke::InvokeArgs),
    /// Precompile components into the compile cache so that later starts never compile.
    Compile {
        /// Component files or functions folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Build every guest source in a folder into `NAME/NAME.wasm` (Rust, JavaScript, Python,
    /// C, Go), rebuilding only what changed.
    Build(build::BuildArgs),
    /// Create a guest from a template (`wasmfn new --list`), ready for `wasmfn build`.
    New(new::NewArgs),
    /// Validate `wasmfn.toml` and every component against it (bindings, worlds, imports),
    /// opening each declared store; exits non-zero on any problem. Never prints secret values.
    Check {
        /// The functions folder.
        #[arg(default_value = "guests")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of `wasmfn.toml` (for editors and CI validation).
    Schema,
    /// Saga workflows (Step Functions-style state machines over functions).
    #[command(subcommand)]
    Workflow(workflow_cmd::WorkflowCommand),
    /// Package one function for another platform (`lambda`: zip with the bootstrap runtime and
    /// the component precompiled for the architecture).
    Package(package::PackageArgs),
    /// Send one message to a queue of a running `wasmfn serve`.
    Send(queue_cmd::SendArgs),
    /// Put an event on the event bus of a running `wasmfn serve` (routed by `[rules.NAME]`).
    PutEvent(workflow_cmd::PutEventArgs),
    /// Publish a message to a topic of a running `wasmfn serve` (fanned out to its subscriptions).
    Publish(workflow_cmd::PublishArgs),
    /// List the queues of a running `wasmfn serve` with their depths.
    Queues(queue_cmd::ServerArg),
    /// Show the messages of a queue without consuming them (for dead-letter queues).
    DeadLetters {
        /// The dead-letter queue (e.g. `orders-dlq`).
        queue: String,
        #[command(flatten)]
        server: queue_cmd::ServerArg,
    },
    /// Run a schedule of a running `wasmfn serve` once now (for testing).
    Trigger {
        /// The schedule's name in wasmfn.toml.
        schedule: String,
        #[command(flatten)]
        server: queue_cmd::ServerArg,
    },
    /// What the invocations a running `wasmfn serve` measured (or a saved usage file) would
    /// cost on AWS Lambda and Cloudflare Workers, and which of their limits they would break.
    Cost(cost::CostArgs),
    /// Follow the log of a running `wasmfn serve` (its admin listener's live tail), by
    /// function and level; reconnects after a restart without losing lines.
    Logs(logs_cmd::LogsArgs),
    /// Whether a running `wasmfn serve` is live and ready (its /healthz and /readyz), and
    /// what keeps it from being ready; exits non-zero unless ready.
    Status(queue_cmd::ServerArg),
    /// Move every message of a dead-letter queue back to its source queue.
    Redrive {
        /// The dead-letter queue.
        queue: String,
        /// Target queue [default: the queue whose dead-letter queue this is].
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        server: queue_cmd::ServerArg,
    },
}

// Every request allocates and frees many small objects (stores, resource tables, header maps)
// across tasks; mimalloc's per-thread free lists cut glibc malloc's share of the profile (~9%).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum AllocatorArg {
    Pooling,
    OnDemand,
}

fn main() -> ExitCode {
    // wasmtime-wasi uses errors for ordinary control flow (a closed stream ends every request
    // body); with RUST_BACKTRACE=1 each would capture a backtrace, costing ~4% of throughput.
    // Panics still print backtraces. Set RUST_LIB_BACKTRACE=1 to get them for errors too.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let cli = Cli::parse();
    let traces = trace_export_settings(&cli);
    let _log_guard = init_logging(cli.log_format, traces.as_ref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let builder = host_builder(&cli);
    let state = cli.state_dir.as_deref();
    match cli.command {
        Command::Build(args) => build::run(&args),
        Command::New(args) => new::run(&args),
        Command::Check { dir } => check::run(builder.build()?, &dir),
        Command::Package(args) => package::run(&args, cli.environment.as_deref()),
        Command::Workflow(command) => workflow_cmd::run(command, state).await,
        Command::Schema => {
            print!("{}", check::SCHEMA);
            Ok(ExitCode::SUCCESS)
        }
        Command::Send(args) => queue_cmd::send(args, state).await,
        Command::PutEvent(args) => workflow_cmd::put_event(args, state).await,
        Command::Publish(args) => workflow_cmd::publish(args, state).await,
        Command::Queues(server) => queue_cmd::list(server, state).await,
        Command::Status(server) => status_cmd::run(server, state).await,
        Command::Logs(args) => logs_cmd::run(args, state).await,
        Command::Cost(args) => cost::run(args, state).await,
        Command::Trigger { schedule, server } => queue_cmd::trigger(schedule, server, state).await,
        Command::DeadLetters { queue, server } => {
            queue_cmd::dead_letters(queue, server, state).await
        }
        Command::Redrive { queue, to, server } => {
            queue_cmd::redrive(queue, to, server, state).await
        }
        Command::Serve(args) => serve(builder.dev(args.dev).build()?, args).await,
        Command::Invoke(args) => invoke::run(builder.build()?, args).await,
        Command::Compile { paths } => compile(&builder.build()?, &paths),
    }
}

fn host_builder(cli: &Cli) -> HostBuilder {
    let mut builder = Host::builder().allocator(match cli.allocator {
        AllocatorArg::Pooling => Allocator::Pooling,
        AllocatorArg::OnDemand => Allocator::OnDemand,
    });
    if let Some(dir) = &cli.state_dir {
        builder = builder.state_dir(dir);
    }
    if let Some(env) = &cli.environment {
        builder = builder.environment(env);
    }
    if cli.no_cache {
        builder = builder.disable_cache();
    } else if let Some(dir) = &cli.cache_dir {
        builder = match cli.read_only_cache {
            true => builder.read_only_cache(dir),
            false => builder.cache_dir(dir),
        };
    }
    builder
}

/// Arguments of `wasmfn serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// The functions folder.
    #[arg(default_value = "guests")]
    dir: PathBuf,
    /// Address to listen on.
    #[arg(long, short, default_value = "127.0.0.1:3000", env = "WASMFN_LISTEN")]
    listen: SocketAddr,
    /// Server threads, each with its own event loop and socket [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Rebuild a guest when its sources change and swap it in without dropping requests.
    #[arg(long)]
    watch: bool,
    /// Where the host API (`/_wasmfn/`: queues, events, workflows...) listens: HOST:PORT
    /// (requests need the bearer token in STATE/admin-token or WASMFN_ADMIN_TOKEN) or
    /// unix:PATH (only this user may connect; no token). Never the public listener.
    #[arg(long, default_value = wasmfn_host::admin::DEFAULT_ADDRESS, env = "WASMFN_ADMIN_LISTEN", value_name = "ADDRESS")]
    admin_listen: wasmfn_host::admin::AdminAddress,
    /// Another name clients use for the admin listener, checked against `Host` (which
    /// otherwise must be a loopback name or the bound address); repeatable.
    #[arg(long = "admin-host", value_name = "NAME")]
    admin_hosts: Vec<String>,
    /// Do not record metrics (the admin listener's /metrics then answers 404).
    #[arg(long)]
    no_metrics: bool,
    /// Development mode: failed invocations answer with the error's text (the trap) and 404s
    /// list the routes. Without it clients get the error's kind and the invocation id of the
    /// log line, and a bare 404.
    #[arg(long, env = "WASMFN_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    dev: bool,
}

async fn serve(host: Host, args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        dir,
        listen,
        threads,
        watch,
        admin_listen,
        admin_hosts,
        no_metrics,
        dev: _,
    } = args;
    // Before loading: each function registers its metrics as it loads.
    if !no_metrics {
        wasmfn_host::telemetry::prometheus::install()?;
    }
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !dir.is_dir() {
        bail!(
            "functions folder `{}` does not exist; pass the folder holding your components",
            dir.display()
        );
    }
    let app = Arc::new(host.load_dir(&dir)?);
    let prewarmed = app.prewarm().await;
    if prewarmed > 0 {
        tracing::info!(instances = prewarmed, "pre-warmed instances ready");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state_dir = app.state_dir().expect("a loaded folder has a state folder");
    let admin =
        wasmfn_host::admin::AdminServer::bind(&admin_listen, state_dir, &admin_hosts).await?;
    let admin_address = admin.address().clone();
    // The token goes on a terminal, never into a log file or a supervisor's journal.
    let console = {
        use std::io::IsTerminal as _;
        admin.console_url(std::io::stdout().is_terminal())
    };
    let admin_task = tokio::spawn(admin.serve(app.clone(), {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }));
    // Queue consumers, schedules, stream consumers, the workflow executor.
    let consumers = app.start(stopped.clone());
    let host = Arc::new(host);
    let _watcher = match watch {
        true => Some(watch::start(host.clone(), app.clone(), dir.clone())?),
        false => None,
    };
    let summary = app.clone();
    let mut server = tokio::task::spawn_blocking(move || {
        wasmfn_host::server::serve_threads(app, listen, threads, stopped, |addr| {
            print_summary(&summary, &dir, addr, &admin_address, console.as_deref())
        })
        .with_context(|| format!("cannot listen on {listen}; pick another address with --listen"))
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
        finished = &mut server => return finished?.map(|()| ExitCode::SUCCESS),
    }
    let _ = stop.send(true);
    // Consumers finish the batches they hold (so nothing is left half-processed), then stop.
    for c in consumers {
        let _ = c.await;
    }
    server.await??;
    admin_task.await??;
    Ok(ExitCode::SUCCESS)
}

fn print_summary(
    app: &wasmfn_host::App,
    dir: &std::path::Path,
    addr: SocketAddr,
    admin: &wasmfn_host::admin::AdminAddress,
    console: Option<&str>,
) {
    let functions: Vec<_> = app.functions().collect();
    println!(
        "wasmfn: {} function(s) from {}",
        functions.len(),
        dir.display()
    );
    for f in &functions {
        println!(
            "  {:<20} {:<9} {}",
            f.name(),
            f.world().name(),
            f.source().display()
        );
    }
    if !app.load_errors().is_empty() {
        println!(
            "not loaded ({}; see the errors above):",
            app.load_errors().len()
        );
        for e in app.load_errors() {
            println!("  {:<20} {}", e.function, e.path.display());
        }
    }
    println!("routes:");
    for r in app.routes() {
        println!("  http://{addr}{:<24} -> {}", r.pattern, r.function);
    }
    println!("admin API on {admin}");
    match console {
        Some(url) if url.contains("#token=") => println!("console on {url}"),
        Some(url) => println!("console on {url} (sign in with the token in STATE/admin-token)"),
        None => {}
    }
    println!("listening on http://{addr}");
}

fn compile(host: &Host, paths: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = 0;
    let report = |outcome: wasmfn_host::CacheOutcome, path: &std::path::Path| {
        let label = format!("{outcome:?}").to_lowercase();
        println!("{label:<12} {}", path.display());
    };
    for path in paths {
        if path.is_dir() {
            // Loading a folder compiles (or finds) every function in it.
            let app = host.load_dir(path)?;
            for e in app.load_errors() {
                eprintln!("error: {e}");
            }
            failed += app.load_errors().len();
            for f in app.functions() {
                report(f.cache_outcome(), f.source());
            }
            continue;
        }
        match host.precompile(path) {
            Ok(outcome) => report(outcome, path),
            Err(e) => {
                eprintln!("error: {}: {e:#}", path.display());
                failed += 1;
            }
        }
    }
    if let Some(dir) = host.cache().dir() {
        println!("compile cache: {}", dir.display());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where traces go for the commands that run functions (`serve`, `invoke`): the standard
/// OTEL_* variables, else the functions folder's `[telemetry]`; `None`: not traced.
fn trace_export_settings(cli: &Cli) -> Option<wasmfn_host::telemetry::otlp::ExportSettings> {
    use wasmfn_host::telemetry::otlp::{ExportSettings, TelemetryConfig};
    let dir = match &cli.command {
        Command::Serve(args) => args.dir.as_path(),
        Command::Invoke(args) => args.dir.as_path(),
        _ => return None,
    };
    // A manifest that does not parse is reported when the command loads it; here it only
    // means "no [telemetry]".
    let manifest =
        wasmfn_host::manifest::Manifest::load_from_dir_env(dir, cli.environment.as_deref())
            .ok()
            .flatten();
    ExportSettings::resolve(manifest.as_ref().and_then(|m| m.get::<TelemetryConfig>()))
}

/// What must live until exit: the log writer's thread and the trace exporter (both flush
/// when dropped).
struct LogGuards {
    _writer: tracing_appender::non_blocking::WorkerGuard,
    _traces: Option<wasmfn_host::telemetry::otlp::TraceExport>,
}

fn init_logging(
    format: LogFormat,
    traces: Option<&wasmfn_host::telemetry::otlp::ExportSettings>,
) -> LogGuards {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let directives = std::env::var("WASMFN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".to_string());
    let filter = || EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let tail = wasmfn_host::telemetry::log_tail::layer().with_filter(filter());
    let filter = filter();
    let hint = filter.max_level_hint();
    // Log lines are written by a background thread so request paths never block on stderr.
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    use std::io::IsTerminal as _;
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    let lines = lines.with_filter(wasmfn_host::telemetry::log_line_filter(filter));
    let (otel, export) = wasmfn_host::telemetry::otlp::optional_layer(traces);
    tracing_subscriber::registry()
        .with(lines)
        .with(tail)
        .with(otel)
        .init();
    wasmfn_host::telemetry::cap_log_facade(hint);
    LogGuards {
        _writer: guard,
        _traces: export,
    }
}
