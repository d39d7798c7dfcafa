//! `wasmfn check`: validate a functions folder the way `serve` would load it, and report what
//! each function is bound to (names only: secret values are never printed).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use wasmfn_host::blob::BlobBindings;
use wasmfn_host::config::ConfigValues;
use wasmfn_host::kv::KvBindings;
use wasmfn_host::outbound::OutboundPolicy;
use wasmfn_host::sql::SqlBindings;
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
        let s = f.settings();
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        let config = s.get::<ConfigValues>();
        let names = |pairs: &mut dyn Iterator<Item = &String>| pairs.cloned().collect::<Vec<_>>();
        println!(
            "ok    {:<20} {:<9} kv={} sql={} blob={} outbound={} config={} secrets={}",
            f.name(),
            f.world().name(),
            list(s.get::<KvBindings>().map_or(&[], |b| &b.names)),
            list(s.get::<SqlBindings>().map_or(&[], |b| &b.names)),
            list(s.get::<BlobBindings>().map_or(&[], |b| &b.names)),
            s.get::<OutboundPolicy>().map_or(0, |p| p.allowed.len()),
            list(&names(
                &mut config
                    .into_iter()
                    .flat_map(|c| c.values.iter().map(|(k, _)| k))
            )),
            list(&names(
                &mut config
                    .into_iter()
                    .flat_map(|c| c.secrets.iter().map(|(k, _)| k))
            )),
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
