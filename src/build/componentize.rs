//! JavaScript and Python guests: `app.js` through componentize-js (npm
//! `@bytecodealliance/componentize-js`, SpiderMonkey inside the component) and `app.py` through
//! componentize-py (PyPI, CPython inside the component), each against the guest's own
//! `wit/world.wit` (world `guest`). Both embed an interpreter: components are 12-18 MB and take
//! seconds to build, which is why `wasmfn build` caches them by content hash, and why the host
//! precompiles them once (`wasmfn compile`, the compile cache) instead of at each start.
//!
//! componentize-js's engine implements `wasi:http` 0.2.10, so JavaScript guests are written
//! against WASI 0.2.10 (`wasmfn new` writes their `wit/` so); the host accepts any 0.2.x.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use wasmfn_host::wasmfn_host_core::private_dir::{check_trusted, Owner};

use super::{missing, Guest, Language, Tool};

/// Where `scripts/setup` installs the guest build tools (npm and a Python venv).
pub fn tools_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("WASMFN_GUEST_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => super::cache_root()?.join("guest-tools"),
    };
    // Programs are started from there: someone else able to write it could run code as us.
    if dir.exists() {
        check_trusted(&dir, Owner::MeOrRoot)
            .context("the guest tools folder is not safe to run programs from")?;
    }
    Ok(dir)
}

/// The componentize-js pinned by `scripts/setup`.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// The componentize-py pinned by `scripts/setup`.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The tool building `language`'s guests.
pub fn tool(language: Language) -> Result<Tool> {
    match language {
        Language::JavaScript => js_tool(),
        Language::Python => py_tool(),
        _ => bail!("{} guests are not built by componentize", language.name()),
    }
}

fn js_tool() -> Result<Tool> {
    let tools = tools_dir()?;
    let package = tools.join("node_modules/@bytecodealliance/componentize-js");
    let install = format!(
        "npm install --prefix {} @bytecodealliance/componentize-js@{COMPONENTIZE_JS}",
        tools.display()
    );
    if Command::new("node").arg("--version").output().is_err() {
        return Err(missing(
            "Node.js (for componentize-js)",
            "apt-get install -y nodejs npm",
        ));
    }
    let manifest = std::fs::read_to_string(package.join("package.json"))
        .map_err(|_| missing("componentize-js", &install))?;
    let version: serde_json::Value = serde_json::from_str(&manifest)?;
    Ok(Tool {
        program: "node".into(),
        prefix: vec![package.join("src/cli.js").into()],
        version: format!(
            "componentize-js {}",
            version["version"].as_str().unwrap_or("?")
        ),
    })
}

fn py_tool() -> Result<Tool> {
    let tools = tools_dir()?;
    let venv = tools.join("py/bin/componentize-py");
    let program = if venv.is_file() {
        venv
    } else {
        PathBuf::from("componentize-py")
    };
    let install = format!(
        "python3 -m venv {0}/py && {0}/py/bin/pip install componentize-py=={COMPONENTIZE_PY}",
        tools.display()
    );
    let out = Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|_| missing("componentize-py", &install))?;
    Ok(Tool {
        program,
        prefix: Vec::new(),
        version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    })
}

/// Build guest `g` into `out` with `tool`.
pub fn build(tool: &Tool, g: &Guest, out: &Path) -> Result<()> {
    let mut command = Command::new(&tool.program);
    command.args(&tool.prefix).current_dir(&g.folder);
    match g.language {
        Language::JavaScript => {
            command
                .args(["--wit", "wit", "--world-name", "guest", "-o"])
                .arg(out)
                .arg("app.js");
        }
        Language::Python => {
            command
                .args(["-d", "wit", "-w", "guest", "componentize", "app", "-o"])
                .arg(out);
        }
        _ => bail!("not a componentize language"),
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", tool.program.display()))?;
    if !output.status.success() || !out.is_file() {
        bail!(
            "{} failed building `{}`:\n{}{}",
            tool.version,
            g.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
