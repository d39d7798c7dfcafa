//! `wasmfn check`: validate a functions folder the way `serve` would load it, and report what
//! each function is bound to (names only: secret values are never printed).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use wasmfn_host::Host;

/// The JSON Schema of `wasmfn.toml`, as published in `schema/`.
pub const SCHEMA: &str = include_str!("../schema/wasmfn.schema.json");

pub fn run(host: Host, dir: &Path) -> Result<ExitCode> {
    if !dir.is_dir() {
        anyhow::bail!("functions folder `{}` does not exist", dir.display());
    }
    // Manifest errors (file:line:key) end the check here, through `?`.
    let app = host.load_dir(dir)?;
    let mut problems = 0;
    for f in app.functions() {
        let g = f.grants();
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        let (config, secrets) = f.config_names();
        println!(
            "ok    {:<20} {:<9} kv={} sql={} blob={} outbound={} config={} secrets={}",
            f.name(),
            f.world().name(),
            list(&g.stores.kv),
            list(&g.stores.sql),
            list(&g.stores.blob),
            g.outbound.allowed.len(),
            list(config),
            list(secrets),
        );
    }
    for e in app.load_errors() {
        println!("error {:<20} {}", e.function, e.message);
        problems += 1;
    }
    for e in app.queue_errors() {
        println!("error {e}");
        problems += 1;
    }
    if problems == 0 {
        println!(
            "{}: {} function(s), no problems",
            dir.display(),
            app.functions().count()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}: {problems} problem(s)", dir.display());
        Ok(ExitCode::FAILURE)
    }
}
