//! C guests: the `*.c` files of the guest folder against bindings generated for its
//! `wit/world.wit` (world `guest`) by wit-bindgen's C generator, compiled by clang for
//! `wasm32-wasi` (reactor) with wasi-libc, then wrapped into a component with the WASI preview1
//! reactor adapter. Bindings and wrapping run inside wasmfn (the `wit-bindgen-c` and
//! `wit-component` crates): only clang and wasi-libc are needed on the machine.
//!
//! The bindings are written to the guest's `gen/` folder (`guest.h`, `guest.c`, and the
//! component type object), where the guest's sources include `gen/guest.h`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::{missing, Guest, Tool};

/// The clang that targets wasm32 (Debian's clang-19 with its wasm32 runtime).
const CLANG: &str = "clang-19";
/// wasi-libc's sysroot as Debian installs it.
const SYSROOT: &str = "/usr";

/// The guest's C sources (not the generated bindings).
pub fn sources(folder: &Path) -> Result<impl Iterator<Item = PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    files.sort();
    Ok(files.into_iter())
}

/// clang, found and versioned.
pub fn tool() -> Result<Tool> {
    let install = "apt-get install -y clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32";
    let out = Command::new(CLANG)
        .arg("--version")
        .output()
        .map_err(|_| missing("clang-19 (with wasi-libc)", install))?;
    if !Path::new(SYSROOT).join("lib/wasm32-wasi/libc.a").is_file() {
        return Err(missing("wasi-libc", install));
    }
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Tool {
        program: CLANG.into(),
        prefix: Vec::new(),
        version: format!("{version}; wit-bindgen-c 0.63; adapter 48"),
    })
}

/// Write the C bindings for `wit_dir`'s world `guest` into `out_dir`.
#[cfg(feature = "c-go-guests")]
pub fn bindings(wit_dir: &Path, out_dir: &Path) -> Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("reading the WIT in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[package], Some("guest"))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out_dir)?;
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        // Unchanged bindings keep their timestamps (editors and make see no change).
        if std::fs::read(&path).is_ok_and(|old| old == contents) {
            continue;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Build guest `g` into `out`.
#[cfg(feature = "c-go-guests")]
pub fn build(g: &Guest, out: &Path) -> Result<()> {
    let gen = g.folder.join("gen");
    bindings(&g.folder.join("wit"), &gen)?;
    let core = out.with_extension("core.wasm");
    let mut clang = Command::new(CLANG);
    clang
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-Wall",
        ])
        .arg(format!("--sysroot={SYSROOT}"))
        .arg("-I")
        .arg(&gen)
        .args(sources(&g.folder)?)
        .arg(gen.join("guest.c"))
        .arg(gen.join("guest_component_type.o"))
        .arg("-o")
        .arg(&core);
    let output = clang.output().context("running clang-19")?;
    if !output.status.success() {
        bail!(
            "clang failed building `{}`:\n{}",
            g.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let module = std::fs::read(&core)?;
    let _ = std::fs::remove_file(&core);
    let component = super::componentize_core(&g.name, &module, false)?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
