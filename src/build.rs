//! `wasmfn build`: compile the guest sources in a folder into components (`NAME/NAME.wasm`).
//!
//! Rust guests are built with cargo for `wasm32-wasip2`: with the rustup target when it is
//! installed, otherwise with Debian's `rustc-web` building std from source (the route that needs
//! only Debian packages; `scripts/setup` installs it). Cargo's own fingerprints make rebuilds
//! incremental; an unchanged artifact is not copied again.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _, Result};

/// Arguments of `wasmfn build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The functions folder.
    #[arg(default_value = "guests")]
    dir: PathBuf,
    /// Cargo target directory for guest builds, shared between folders so std and dependencies
    /// build once [default: ~/.cache/wasmfn/guest-target].
    #[arg(long, env = "WASMFN_GUEST_TARGET_DIR")]
    target_dir: Option<PathBuf>,
}

/// A Rust guest: a subfolder with a `[package]` Cargo.toml.
struct RustGuest {
    /// Function name (the folder name).
    name: String,
    folder: PathBuf,
    /// The cargo package name.
    package: String,
}

pub fn run(args: &BuildArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    if !dir.is_dir() {
        bail!("functions folder `{}` does not exist", dir.display());
    }
    let guests = find_rust_guests(dir)?;
    if guests.is_empty() {
        println!("wasmfn build: no guest sources in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let toolchain = Toolchain::detect()?;
    let target_dir = args.target_dir.clone().unwrap_or_else(default_target_dir);
    println!(
        "wasmfn build: {} Rust guest(s) in {} ({}; target dir {})",
        guests.len(),
        dir.display(),
        toolchain.describe(),
        target_dir.display()
    );
    // One cargo run per workspace: a folder whose Cargo.toml is a workspace builds together.
    let workspace = dir.join("Cargo.toml");
    let runs: Vec<(PathBuf, Vec<&RustGuest>)> = if is_workspace(&workspace)? {
        vec![(workspace, guests.iter().collect())]
    } else {
        guests
            .iter()
            .map(|g| (g.folder.join("Cargo.toml"), vec![g]))
            .collect()
    };
    for (i, (manifest, members)) in runs.iter().enumerate() {
        let names: Vec<&str> = members.iter().map(|g| g.name.as_str()).collect();
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
        for g in members {
            cargo.args(["-p", &g.package]);
        }
        let status = cargo.status().context("running cargo")?;
        if !status.success() {
            bail!("cargo failed building {} ({status})", names.join(", "));
        }
    }
    for g in &guests {
        let artifact = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", g.package.replace('-', "_")));
        let dest = g.folder.join(format!("{}.wasm", g.name));
        let built = std::fs::read(&artifact).with_context(|| {
            format!(
                "cargo finished but {} is missing: is `{}` a cdylib?",
                artifact.display(),
                g.package
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
    Ok(ExitCode::SUCCESS)
}

fn default_target_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("wasmfn").join("guest-target")
}

fn find_rust_guests(dir: &Path) -> Result<Vec<RustGuest>> {
    let mut guests = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let folder = entry.path();
        let manifest = folder.join("Cargo.toml");
        if !folder.is_dir() || !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let parsed: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        let Some(package) = parsed
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        else {
            continue;
        };
        // Only crates that produce a component: a `cdylib` library (or a command's main.rs).
        // Plain libraries shared by guests are built as their dependencies.
        let cdylib = parsed
            .get("lib")
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
        if !cdylib && !folder.join("src/main.rs").exists() {
            continue;
        }
        guests.push(RustGuest {
            name: entry.file_name().to_string_lossy().into_owned(),
            folder,
            package: package.to_string(),
        });
    }
    Ok(guests)
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
            let toolbin = default_target_dir().with_file_name("toolbin");
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
