//! Rust guests: built with cargo for `wasm32-wasip2`, with the rustup target when it is
//! installed, otherwise with Debian's `rustc-web` building std from source (the route that needs
//! only Debian packages; `scripts/setup` installs it). Cargo's own fingerprints make rebuilds
//! incremental; an unchanged artifact is not copied again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::Guest;

/// Whether `folder` holds a guest crate: a `[package]` Cargo.toml producing a component (a
/// `cdylib`, or a command's `src/main.rs`). Plain libraries shared by guests are built as
/// their dependencies.
pub fn is_guest_crate(folder: &Path) -> Result<bool> {
    Ok(package_name(folder)?.is_some())
}

/// The cargo package name of the guest crate in `folder`.
fn package_name(folder: &Path) -> Result<Option<String>> {
    let manifest = folder.join("Cargo.toml");
    if !manifest.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&manifest)?;
    let parsed: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let Some(package) = parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    else {
        return Ok(None);
    };
    let cdylib = parsed
        .get("lib")
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    if !cdylib && !folder.join("src/main.rs").exists() {
        return Ok(None);
    }
    Ok(Some(package.to_string()))
}

/// Build the Rust `guests` of `dir`: one cargo run per workspace (a folder whose Cargo.toml is
/// a workspace builds together; a guest with its own `[workspace]` builds alone).
pub fn build(dir: &Path, guests: &[&Guest], target_dir: Option<PathBuf>) -> Result<()> {
    let toolchain = Toolchain::detect()?;
    let target_dir = match target_dir {
        Some(dir) => dir,
        None => default_target_dir()?,
    };
    println!(
        "Rust: {} guest(s) ({}; target dir {})",
        guests.len(),
        toolchain.describe(),
        target_dir.display()
    );
    let mut packages = Vec::new();
    for g in guests {
        let package = package_name(&g.folder)?.context("not a guest crate")?;
        packages.push(package);
    }
    let workspace = dir.join("Cargo.toml");
    let mut runs: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        let own = is_workspace(&g.folder.join("Cargo.toml"))?;
        let manifest = if !own && is_workspace(&workspace)? {
            workspace.clone()
        } else {
            g.folder.join("Cargo.toml")
        };
        match runs.iter_mut().find(|(m, _)| *m == manifest) {
            Some((_, members)) => members.push(i),
            None => runs.push((manifest, vec![i])),
        }
    }
    for (i, (manifest, members)) in runs.iter().enumerate() {
        let names: Vec<&str> = members.iter().map(|&m| guests[m].name.as_str()).collect();
        println!(
            "[{}/{}] cargo build {}",
            i + 1,
            runs.len(),
            names.join(", ")
        );
        let mut cargo = toolchain.cargo();
        cargo
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(manifest)
            .env("CARGO_TARGET_DIR", &target_dir);
        for &m in members {
            cargo.args(["-p", &packages[m]]);
        }
        let status = cargo.status().context("running cargo")?;
        if !status.success() {
            bail!("cargo failed building {} ({status})", names.join(", "));
        }
    }
    for (g, package) in guests.iter().zip(&packages) {
        let artifact = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = g.output();
        let built = std::fs::read(&artifact).with_context(|| {
            format!(
                "cargo finished but {} is missing: is `{package}` a cdylib?",
                artifact.display()
            )
        })?;
        let unchanged = std::fs::read(&dest).is_ok_and(|old| old == built);
        if !unchanged {
            std::fs::write(&dest, &built).with_context(|| format!("writing {}", dest.display()))?;
        }
        println!(
            "  {:<16} {} ({} KiB{})",
            g.name,
            dest.display(),
            built.len() / 1024,
            if unchanged { ", unchanged" } else { "" }
        );
    }
    Ok(())
}

fn default_target_dir() -> Result<PathBuf> {
    Ok(super::cache_root()?.join("guest-target"))
}

fn is_workspace(manifest: &Path) -> Result<bool> {
    if !manifest.is_file() {
        return Ok(false);
    }
    let parsed: toml::Table = toml::from_str(&std::fs::read_to_string(manifest)?)
        .with_context(|| format!("parsing {}", manifest.display()))?;
    Ok(parsed.contains_key("workspace"))
}

/// How Rust guests are compiled on this machine.
enum Toolchain {
    /// rustup's `wasm32-wasip2` target.
    Rustup,
    /// Debian's rustc-web with std built from its source (`-Zbuild-std`).
    DebianBuildStd { toolbin: PathBuf },
}

impl Toolchain {
    fn detect() -> Result<Toolchain> {
        // `WASMFN_GUEST_TOOLCHAIN=debian` forces the Debian route (to test it, or to avoid rustup).
        let forced = std::env::var("WASMFN_GUEST_TOOLCHAIN").unwrap_or_default();
        if let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() {
            let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if forced != "debian" && sysroot.join("lib/rustlib/wasm32-wasip2/lib").is_dir() {
                return Ok(Toolchain::Rustup);
            }
        }
        let debian_ready = Path::new("/usr/bin/rustc").exists()
            && Path::new("/usr/lib/rustlib/wasm32-wasip2/lib/self-contained/libc.a").exists()
            && Path::new("/usr/bin/wasm-ld-19").exists();
        if debian_ready {
            let toolbin = default_target_dir()?.with_file_name("toolbin");
            std::fs::create_dir_all(&toolbin)?;
            let link = toolbin.join("wasm-ld");
            if !link.exists() {
                std::os::unix::fs::symlink("/usr/bin/wasm-ld-19", &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
            return Ok(Toolchain::DebianBuildStd { toolbin });
        }
        bail!(
            "no Rust toolchain for wasm32-wasip2 found: run `rustup target add wasm32-wasip2`, \
             or `scripts/setup`, which installs it (or Debian's rustc-web fallback)"
        )
    }

    fn describe(&self) -> &'static str {
        match self {
            Toolchain::Rustup => "rustup target wasm32-wasip2",
            Toolchain::DebianBuildStd { .. } => "Debian rustc-web, std built from source",
        }
    }

    fn cargo(&self) -> Command {
        match self {
            Toolchain::Rustup => Command::new("cargo"),
            Toolchain::DebianBuildStd { toolbin } => {
                let path = std::env::var("PATH").unwrap_or_default();
                let mut cargo = Command::new("/usr/bin/cargo");
                cargo
                    .env("PATH", format!("{}:/usr/bin:{path}", toolbin.display()))
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_UNSTABLE_BUILD_STD", "std,panic_abort")
                    .env("CARGO_TARGET_WASM32_WASIP1_LINKER", "/usr/bin/wasm-ld-19");
                cargo
            }
        }
    }
}
