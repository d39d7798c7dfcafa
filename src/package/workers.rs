//! `wasmfn package workers NAME`: one function as a Cloudflare Worker. `jco transpile` turns the
//! component into core modules plus JavaScript glue; the core modules are imported as ES modules
//! (Workers refuse compiling wasm from bytes at run time); the WASI imports come from
//! `@bytecodealliance/preview2-shim`'s browser build, copied into the bundle; a generated entry
//! module maps `fetch` to the `http` world. `wrangler.toml` is generated beside it.
//!
//! `fetch`, `queue` and `scheduled` map to the `http`, `queue` and `schedule` worlds
//! (`adapters/workers/runtime.js`); `wrangler.toml` carries the cron triggers and queue
//! consumers of the manifest. Platform stores, config and queue publishing are not mapped yet: a
//! component importing them is refused with the import's name.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use wasmfn_host::manifest::Manifest;
use wasmfn_host::queue::QueueConfig;
use wasmfn_host::scheduler::{Expression, ScheduleConfig};
use wasmfn_host::World;

/// Workers' limit on the compressed bundle (paid plan; the free plan allows 3 MiB).
const BUNDLE_LIMIT_GZIP: u64 = 10 << 20;
/// The compatibility date the bundle is written for.
const COMPATIBILITY_DATE: &str = "2026-04-01";

/// The interfaces preview2-shim's browser build provides: (WIT interface, shim module, export).
const SHIM: &[(&str, &str, &str)] = &[
    ("wasi:cli/environment", "cli", "environment"),
    ("wasi:cli/exit", "cli", "exit"),
    ("wasi:cli/stdin", "cli", "stdin"),
    ("wasi:cli/stdout", "cli", "stdout"),
    ("wasi:cli/stderr", "cli", "stderr"),
    ("wasi:cli/terminal-input", "cli", "terminalInput"),
    ("wasi:cli/terminal-output", "cli", "terminalOutput"),
    ("wasi:cli/terminal-stdin", "cli", "terminalStdin"),
    ("wasi:cli/terminal-stdout", "cli", "terminalStdout"),
    ("wasi:cli/terminal-stderr", "cli", "terminalStderr"),
    ("wasi:clocks/monotonic-clock", "clocks", "monotonicClock"),
    ("wasi:clocks/wall-clock", "clocks", "wallClock"),
    ("wasi:io/error", "io", "error"),
    ("wasi:io/poll", "io", "poll"),
    ("wasi:io/streams", "io", "streams"),
    ("wasi:random/random", "random", "random"),
    ("wasi:random/insecure", "random", "insecure"),
    ("wasi:random/insecure-seed", "random", "insecureSeed"),
    ("wasi:http/types", "http", "types"),
    ("wasi:http/outgoing-handler", "http", "outgoingHandler"),
    // adapters/workers/runtime.js, copied in as shim/wasmfn.js.
    ("wasi:logging/logging", "wasmfn", "logging"),
    ("wasmfn:platform/types", "wasmfn", "types"),
];

/// The wasmfn runtime inside the Worker (event handlers, logging).
const RUNTIME_JS: &str = include_str!("../../adapters/workers/runtime.js");

/// Where the npm tools live (`scripts/lib.sh` installs them there).
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMFN_WORKERS_TOOLS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/wasmfn/workers-tools")
}

/// The component's imported interfaces, without versions (`wasi:http/types`).
fn imports_of(bytes: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let name = import?.name.name;
                    names.push(name.split('@').next().unwrap_or(name).to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// The component's imports, once every one of them can be provided on Workers.
pub fn supported_imports(name: &str, component: &Path) -> Result<Vec<String>> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let imports = imports_of(&bytes)?;
    let unsupported: Vec<&String> = imports
        .iter()
        .filter(|i| !SHIM.iter().any(|(iface, _, _)| iface == i))
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "`{name}` imports {} which the Workers adapter cannot provide yet; \
             only WASI CLI, clocks, I/O, random, HTTP and logging are mapped",
            unsupported
                .iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(imports)
}

/// Build the Worker for `name` (whose checked `imports` these are) into `out`.
pub fn package(
    name: &str,
    component: &Path,
    world: World,
    imports: &[String],
    manifest: &Manifest,
    out: &Path,
) -> Result<()> {
    if world == World::Stream {
        bail!(
            "`{name}` implements the `stream` world, and Workers have no change-stream event \
             source; deploy it where the stream lives (wasmfn serve, or Lambda for DynamoDB/S3)"
        );
    }
    let triggers = Triggers::of(manifest, name, world)?;
    let tools = tools_dir().join("node_modules");
    let jco = tools.join("@bytecodealliance/jco/dist/jco.js");
    let shim = tools.join("@bytecodealliance/preview2-shim/dist/browser");
    if !jco.exists() || !shim.exists() {
        bail!(
            "jco and preview2-shim are not installed in {}: `scripts/test` installs them (or \
             `npm install --prefix {} @bytecodealliance/jco@1.35.0 @bytecodealliance/preview2-shim@0.26.1`)",
            tools.display(),
            tools_dir().display()
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let gen = out.join("gen");
    std::fs::create_dir_all(&gen)?;
    println!("transpiling `{name}` with jco");
    let status = Command::new("node")
        .arg(&jco)
        .arg("transpile")
        .arg(component)
        .args([
            "--name",
            name,
            "--instantiation",
            "async",
            "--no-nodejs-compat",
            "--no-typescript",
            "--quiet",
        ])
        .arg("-o")
        .arg(&gen)
        .status()
        .context("running node (install Node.js 20 or newer)")?;
    if !status.success() {
        bail!("jco transpile failed for {}", component.display());
    }
    let shim_out = out.join("shim");
    std::fs::create_dir_all(&shim_out)?;
    for entry in std::fs::read_dir(&shim)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "js") {
            std::fs::copy(&path, shim_out.join(path.file_name().unwrap_or_default()))?;
        }
    }
    std::fs::write(shim_out.join("wasmfn.js"), RUNTIME_JS)?;
    let mut cores: Vec<String> = std::fs::read_dir(&gen)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".wasm"))
        .collect();
    cores.sort();
    std::fs::write(
        out.join("worker.js"),
        entry_module(name, world, imports, &cores, &triggers),
    )?;
    std::fs::write(out.join("wrangler.toml"), wrangler_toml(name, &triggers))?;
    let (raw, gzip) = bundle_size(out)?;
    println!("packaged `{name}` for Cloudflare Workers");
    println!(
        "  {} (bundle {} KiB, {} KiB gzip; Workers allow {} MiB gzip)",
        out.display(),
        raw / 1024,
        gzip / 1024,
        BUNDLE_LIMIT_GZIP >> 20
    );
    if gzip > BUNDLE_LIMIT_GZIP {
        bail!(
            "the bundle is {} KiB gzip, over Workers' {} MiB limit: shrink the component \
             (release build, `wasm-opt -Oz`, fewer dependencies)",
            gzip / 1024,
            BUNDLE_LIMIT_GZIP >> 20
        );
    }
    Ok(())
}

/// The Worker's entry module: the core modules as ES module imports, the shim as imports, and
/// the handlers of `world` from the runtime.
fn entry_module(
    name: &str,
    world: World,
    imports: &[String],
    cores: &[String],
    triggers: &Triggers,
) -> String {
    let mut js = String::from(
        "// Generated by `wasmfn package workers`; edit the manifest, not this file.\n",
    );
    js.push_str(&format!(
        "import {{ instantiate }} from './gen/{name}.js';\n"
    ));
    let mut modules: Vec<&str> = SHIM.iter().map(|(_, m, _)| *m).collect();
    modules.dedup();
    for m in &modules {
        js.push_str(&format!("import * as {m} from './shim/{m}.js';\n"));
    }
    for (i, core) in cores.iter().enumerate() {
        js.push_str(&format!("import core{i} from './gen/{core}';\n"));
    }
    js.push_str("\nconst cores = {\n");
    for (i, core) in cores.iter().enumerate() {
        js.push_str(&format!("  '{core}': core{i},\n"));
    }
    js.push_str("};\nconst imports = {\n");
    for import in imports {
        if let Some((iface, module, export)) = SHIM.iter().find(|(i, _, _)| i == import) {
            js.push_str(&format!("  '{iface}': {module}.{export},\n"));
        }
    }
    js.push_str("};\n// Cron expression -> the manifest's schedule name.\nconst schedules = {\n");
    for (cron, schedule) in &triggers.crons {
        js.push_str(&format!("  {cron:?}: {schedule:?},\n"));
    }
    js.push_str(&format!(
        "}};\n\nexport default wasmfn.worker({{\n  world: '{world}',\n  \
         load: () => instantiate((file) => cores[file], imports),\n  schedules,\n}});\n"
    ));
    js
}

/// What triggers the Worker besides HTTP: cron triggers and queue consumers.
#[derive(Default)]
struct Triggers {
    /// (Workers cron expression, schedule name).
    crons: Vec<(String, String)>,
    /// `[[queues.consumers]]` tables.
    queues: Vec<QueueConfig>,
}

impl Triggers {
    fn of(manifest: &Manifest, name: &str, world: World) -> Result<Triggers> {
        let mut t = Triggers::default();
        if world == World::Schedule {
            for s in manifest.schedules.iter().filter(|s| s.function == name) {
                let cron =
                    workers_cron(s).map_err(|e| anyhow::anyhow!("schedule `{}`: {e}", s.name))?;
                t.crons.push((cron, s.name.clone()));
            }
        }
        if world == World::Queue {
            t.queues = manifest
                .queues
                .iter()
                .filter(|q| q.function.as_deref() == Some(name))
                .cloned()
                .collect();
        }
        Ok(t)
    }
}

/// A schedule as a Workers cron trigger (five fields, UTC).
fn workers_cron(s: &ScheduleConfig) -> Result<String, String> {
    match &s.expression {
        Expression::Cron(_, tz) if tz.to_string() != "UTC" => Err(format!(
            "Workers cron triggers run in UTC; `timezone = \"{tz}\"` cannot be kept"
        )),
        Expression::Cron(..) => {
            let fields: Vec<&str> = s.expression_text.split_whitespace().collect();
            match fields[..] {
                [_, _, _, _, _] => Ok(fields.join(" ")),
                ["0", ..] => Ok(fields[1..].join(" ")),
                _ => Err(format!(
                    "`{}` fires at a second; Workers cron triggers have minute precision",
                    s.expression_text
                )),
            }
        }
        Expression::Rate(every) => {
            let minutes = every.as_secs() / 60;
            match minutes {
                _ if !every.as_secs().is_multiple_of(60) || minutes == 0 => {
                    Err("Workers cron triggers run at most once a minute".into())
                }
                m if m < 60 && 60 % m == 0 => Ok(format!("*/{m} * * * *")),
                m if m % 60 == 0 && m < 1440 && 24 % (m / 60) == 0 => {
                    Ok(format!("0 */{} * * *", m / 60))
                }
                1440 => Ok("0 0 * * *".into()),
                _ => Err(format!(
                    "every {minutes} minutes has no cron equivalent; use a cron expression"
                )),
            }
        }
    }
}

fn wrangler_toml(name: &str, triggers: &Triggers) -> String {
    let mut toml = format!(
        "# Generated by `wasmfn package workers`; edit the manifest, not this file.\n\
         name = \"{name}\"\n\
         main = \"worker.js\"\n\
         compatibility_date = \"{COMPATIBILITY_DATE}\"\n\
         # Upload the bundle as is: the core modules are imported as compiled wasm modules.\n\
         no_bundle = true\n\n\
         [[rules]]\n\
         type = \"ESModule\"\n\
         globs = [\"**/*.js\"]\n\n\
         [[rules]]\n\
         type = \"CompiledWasm\"\n\
         globs = [\"**/*.wasm\"]\n"
    );
    if !triggers.crons.is_empty() {
        let crons: Vec<String> = triggers
            .crons
            .iter()
            .map(|(c, _)| format!("{c:?}"))
            .collect();
        toml.push_str(&format!("\n[triggers]\ncrons = [{}]\n", crons.join(", ")));
    }
    for q in &triggers.queues {
        toml.push_str(&format!(
            "\n[[queues.consumers]]\nqueue = {:?}\nmax_batch_size = {}\nmax_batch_timeout = {}\n\
             max_retries = {}\ndead_letter_queue = {:?}\nmax_concurrency = {}\n",
            q.name,
            q.batch_size.min(100),
            q.batch_window.as_secs().min(60),
            q.max_receive_count.saturating_sub(1),
            q.dead_letter_queue,
            q.concurrency.max(1),
        ));
    }
    toml
}

/// Total bytes of the uploaded files, raw and gzip-compressed.
fn bundle_size(out: &Path) -> Result<(u64, u64)> {
    let mut files = Vec::new();
    super::collect(out, out, &mut files)?;
    let mut raw = 0;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "js" || e == "wasm"))
    {
        let bytes = std::fs::read(out.join(file))?;
        raw += bytes.len() as u64;
        encoder.write_all(&bytes)?;
    }
    Ok((raw, encoder.finish()?.len() as u64))
}
