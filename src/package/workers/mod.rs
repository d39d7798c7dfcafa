//! `wasmfn package workers NAME`: one function as a Cloudflare Worker.
//!
//! `jco transpile` turns the component into core modules plus JavaScript glue; the core modules
//! are imported as ES modules (Workers refuse compiling wasm from bytes at run time). WASI comes
//! from `@bytecodealliance/preview2-shim`'s browser build, copied in as `shim/`; the platform
//! services and the event handlers from wasmfn's runtime (`adapters/workers/runtime/`, copied in
//! as `wasmfn/`): `fetch`, `queue` and `scheduled` map to the `http`, `queue` and `schedule`
//! worlds, key-value to KV, SQL to D1, blobs to R2, queue publishing to Queues, config to vars
//! and secrets, outbound HTTP to `fetch` behind the allow-list. Those bindings return Promises
//! while guest calls are synchronous: such components are transpiled in jco's JSPI mode
//! (WebAssembly stack switching, on in workerd), where an import returning a Promise suspends
//! the guest until it settles. A generated `worker.js` ties it together ([`entry`]) and
//! `wrangler.toml` carries the bindings and triggers of every environment ([`wrangler`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use wasmfn_host::Limits;
use wasmfn_host::World;

mod entry;
mod imports;
mod memory;
mod wrangler;

pub use imports::supported_imports;
pub use wrangler::Environment;

/// Workers' limit on the compressed bundle (paid plan; the free plan allows 3 MiB).
const BUNDLE_LIMIT_GZIP: u64 = 10 << 20;

/// Where the npm tools live (`scripts/lib.sh` installs them there).
pub fn tools_dir() -> Result<PathBuf> {
    use wasmfn_host::wasmfn_host_core::private_dir::{check_trusted, user_cache_root, Owner};
    let dir = match std::env::var_os("WASMFN_WORKERS_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => user_cache_root()
            .context("neither XDG_CACHE_HOME nor HOME is set: set WASMFN_WORKERS_TOOLS")?
            .join("workers-tools"),
    };
    // jco runs from there: someone else able to write it could run code as us.
    if dir.exists() {
        check_trusted(&dir, Owner::MeOrRoot)
            .context("the Workers tools folder is not safe to run programs from")?;
    }
    Ok(dir)
}

/// The export jco makes a Promise-returning function in JSPI mode.
fn handler_export(world: World) -> &'static str {
    match world {
        World::Http => "wasi:http/incoming-handler#handle",
        World::Queue => "wasmfn:platform/queue-handler#handle",
        World::Schedule => "wasmfn:platform/schedule-handler#handle",
        World::Stream => "wasmfn:platform/stream-handler#handle",
        World::Task => "wasmfn:platform/task-handler#handle",
    }
}

/// Isolate memory on Workers: the manifest cannot grant more.
const ISOLATE_MEMORY: u64 = 128 << 20;

/// Build the Worker for `name` (whose checked `imports` these are) into `out`; `environments`
/// holds the top level first, then each `[env.NAME]`.
pub fn package(
    name: &str,
    component: &Path,
    world: World,
    imports: &[String],
    limits: &Limits,
    environments: &[Environment],
    out: &Path,
) -> Result<()> {
    if world == World::Stream {
        bail!(
            "`{name}` implements the `stream` world, and Workers have no change-stream event \
             source; deploy it where the stream lives (wasmfn serve, or Lambda for DynamoDB/S3)"
        );
    }
    if world == World::Task {
        bail!(
            "`{name}` implements the `task` world: tasks run as steps of wasmfn workflows, which \
             the Workers adapter does not host; serve the workflow with `wasmfn serve`"
        );
    }
    let tools_root = tools_dir()?;
    let tools = tools_root.join("node_modules");
    let jco = tools.join("@bytecodealliance/jco/src/jco.js");
    let shim = tools.join("@bytecodealliance/preview2-shim/dist/browser");
    if !jco.exists() || !shim.exists() {
        bail!(
            "jco and preview2-shim are not installed in {}: `scripts/test` installs them (or \
             `npm install --prefix {} @bytecodealliance/jco@1.11.2 @bytecodealliance/preview2-shim@0.26.1`)",
            tools.display(),
            tools_root.display()
        );
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let gen = out.join("gen");
    std::fs::create_dir_all(&gen)?;
    let suspending = imports::async_imports(imports);
    println!(
        "transpiling `{name}` with jco{}",
        if suspending.is_empty() {
            ""
        } else {
            " (JSPI: platform calls suspend the guest)"
        }
    );
    let mut jco_cmd = Command::new("node");
    jco_cmd.arg(&jco).arg("transpile").arg(component).args([
        "--name",
        name,
        "--instantiation",
        "async",
        "--no-nodejs-compat",
        "--no-typescript",
        "--quiet",
    ]);
    if !suspending.is_empty() {
        jco_cmd
            .args(["--async-mode", "jspi", "--async-imports"])
            .args(&suspending)
            .args(["--async-exports", handler_export(world)]);
    }
    let status = jco_cmd
        .arg("-o")
        .arg(&gen)
        .status()
        .context("running node (install Node.js 20 or newer)")?;
    if !status.success() {
        bail!("jco transpile failed for {}", component.display());
    }
    let mut cores: Vec<String> = std::fs::read_dir(&gen)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".wasm"))
        .collect();
    cores.sort();
    for core in &cores {
        memory::cap_memories(&gen.join(core), limits.memory_bytes)?;
    }
    if limits.memory_bytes > ISOLATE_MEMORY {
        println!(
            "  note: memory = {} MiB, but a Worker's isolate has {} MiB (JavaScript included); \
             the isolate's limit applies first",
            limits.memory_bytes >> 20,
            ISOLATE_MEMORY >> 20
        );
    }
    let shim_out = out.join("shim");
    std::fs::create_dir_all(&shim_out)?;
    for entry in std::fs::read_dir(&shim)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "js") {
            std::fs::copy(&path, shim_out.join(path.file_name().unwrap_or_default()))?;
        }
    }
    let runtime = out.join("wasmfn");
    std::fs::create_dir_all(&runtime)?;
    for (file, text) in imports::RUNTIME {
        std::fs::write(runtime.join(file), text)?;
    }
    std::fs::write(
        out.join("worker.js"),
        entry::entry_module(name, world, imports, &cores, limits, environments)?,
    )?;
    std::fs::write(
        out.join("wrangler.toml"),
        wrangler::wrangler_toml(name, environments),
    )?;
    let (raw, gzip) = bundle_size(out)?;
    println!("packaged `{name}` for Cloudflare Workers");
    println!(
        "  {} (bundle {} KiB, {} KiB gzip; Workers allow {} MiB gzip)",
        out.display(),
        raw / 1024,
        gzip / 1024,
        BUNDLE_LIMIT_GZIP >> 20
    );
    within_limit(gzip, BUNDLE_LIMIT_GZIP)
}

/// Refuse a bundle whose compressed size is over Workers' limit.
fn within_limit(gzip: u64, limit: u64) -> Result<()> {
    if gzip > limit {
        bail!(
            "the bundle is {} KiB gzip, over Workers' {} MiB limit: shrink the component \
             (release build, `wasm-opt -Oz`, fewer dependencies)",
            gzip / 1024,
            limit >> 20
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    #[test]
    fn bundles_over_the_limit_are_refused_with_the_fix() {
        assert!(super::within_limit(10 << 20, super::BUNDLE_LIMIT_GZIP).is_ok());
        let err = super::within_limit((10 << 20) + 1, super::BUNDLE_LIMIT_GZIP).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("over Workers' 10 MiB limit") && text.contains("wasm-opt -Oz"),
            "{text}"
        );
    }
}
