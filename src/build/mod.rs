//! `wasmfn build`: compile the guest sources in a folder into components (`NAME/NAME.wasm`).
//!
//! Each subfolder is one guest; its language is detected from its files:
//!
//! | language | detected by | built with |
//! |---|---|---|
//! | Rust | `Cargo.toml` with a `cdylib` (or `src/main.rs`) | cargo, `wasm32-wasip2` ([`rust`]) |
//! | JavaScript | `app.js` + `wit/` | componentize-js ([`componentize`]) |
//! | Python | `app.py` + `wit/` | componentize-py ([`componentize`]) |
//! | C | `*.c` + `wit/` | wit-bindgen C bindings, clang, the preview1 reactor adapter ([`c`]) |
//! | Go | `*.go` + `wit/` | wit-bindgen Go bindings, Go (wasip1), the preview1 reactor adapter ([`go`]) |
//!
//! JavaScript, Python, C and Go guests are content-addressed: a hash of their sources, their WIT
//! and the tool's version names a cached component in `~/.cache/wasmfn/components`, so an
//! unchanged guest is never rebuilt, in this folder or in a fresh clone. Rust guests go through
//! cargo, whose fingerprints already rebuild only what changed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

pub mod c;
pub mod componentize;
pub mod go;
pub mod rust;

/// Arguments of `wasmfn build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The functions folder.
    #[arg(default_value = "guests")]
    pub dir: PathBuf,
    /// Build only these guests (folder names) [default: every guest].
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Cargo target directory for Rust guest builds, shared between folders so std and
    /// dependencies build once [default: ~/.cache/wasmfn/guest-target].
    #[arg(long, env = "WASMFN_GUEST_TARGET_DIR")]
    pub target_dir: Option<PathBuf>,
}

/// A guest's source language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Rust,
    JavaScript,
    Python,
    C,
    Go,
}

impl Language {
    /// The name used in templates and messages.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::JavaScript => "js",
            Language::Python => "python",
            Language::C => "c",
            Language::Go => "go",
        }
    }
}

/// One guest to build.
pub struct Guest {
    /// Function name (the folder name).
    pub name: String,
    pub folder: PathBuf,
    pub language: Language,
}

impl Guest {
    /// Where the component goes.
    pub fn output(&self) -> PathBuf {
        self.folder.join(format!("{}.wasm", self.name))
    }
}

/// The guest in `folder`, if it holds guest sources.
pub fn detect(folder: &Path) -> Result<Option<Guest>> {
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let language = if rust::is_guest_crate(folder)? {
        Language::Rust
    } else if folder.join("wit").is_dir() && folder.join("app.js").is_file() {
        Language::JavaScript
    } else if folder.join("wit").is_dir() && folder.join("app.py").is_file() {
        Language::Python
    } else if folder.join("wit").is_dir() && c::sources(folder)?.next().is_some() {
        Language::C
    } else if folder.join("wit").is_dir() && !go::sources(folder)?.is_empty() {
        Language::Go
    } else {
        return Ok(None);
    };
    Ok(Some(Guest {
        name,
        folder: folder.to_path_buf(),
        language,
    }))
}

/// Every guest in `dir`, by folder name.
pub fn find_guests(dir: &Path) -> Result<Vec<Guest>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut guests = Vec::new();
    for entry in entries {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if path.is_dir() && !hidden {
            if let Some(g) = detect(&path)? {
                guests.push(g);
            }
        }
    }
    Ok(guests)
}

pub fn run(args: &BuildArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    if !dir.is_dir() {
        bail!("functions folder `{}` does not exist", dir.display());
    }
    let mut guests = find_guests(dir)?;
    if !args.only.is_empty() {
        for name in &args.only {
            if !guests.iter().any(|g| &g.name == name) {
                bail!("no guest `{name}` in {}", dir.display());
            }
        }
        guests.retain(|g| args.only.contains(&g.name));
    }
    if guests.is_empty() {
        println!("wasmfn build: no guest sources in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    build_all(dir, &guests, args.target_dir.clone())?;
    Ok(ExitCode::SUCCESS)
}

/// Build `guests` of `dir`: Rust ones through cargo (one run per workspace), the others one by
/// one through the content-addressed cache. Progress goes to stdout.
pub fn build_all(dir: &Path, guests: &[Guest], target_dir: Option<PathBuf>) -> Result<()> {
    let rust: Vec<&Guest> = guests
        .iter()
        .filter(|g| g.language == Language::Rust)
        .collect();
    let others: Vec<&Guest> = guests
        .iter()
        .filter(|g| g.language != Language::Rust)
        .collect();
    println!(
        "wasmfn build: {} guest(s) in {}",
        guests.len(),
        dir.display()
    );
    if !rust.is_empty() {
        rust::build(dir, &rust, target_dir)?;
    }
    for (i, g) in others.iter().enumerate() {
        let started = Instant::now();
        println!(
            "[{}/{}] {} ({})",
            i + 1,
            others.len(),
            g.name,
            g.language.name()
        );
        let outcome = build_cached(g)?;
        let size = std::fs::metadata(g.output()).map(|m| m.len()).unwrap_or(0);
        println!(
            "  {:<16} {} ({} KiB, {}, {:.1} s)",
            g.name,
            g.output().display(),
            size / 1024,
            outcome,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Build one non-Rust guest unless the cache holds a component for the same inputs.
fn build_cached(g: &Guest) -> Result<&'static str> {
    let tool = match g.language {
        Language::JavaScript | Language::Python => componentize::tool(g.language)?,
        Language::C => c::tool()?,
        Language::Go => go::tool()?,
        Language::Rust => unreachable!("Rust guests build through cargo"),
    };
    let key = content_key(g, &tool.version)?;
    let cached = cache_dir()?.join(format!("{key}.wasm"));
    let output = g.output();
    if cached.is_file() {
        let same = std::fs::read(&output)
            .ok()
            .zip(std::fs::read(&cached).ok())
            .is_some_and(|(a, b)| a == b);
        if same {
            return Ok("unchanged");
        }
        std::fs::copy(&cached, &output).with_context(|| format!("writing {}", output.display()))?;
        return Ok("from the build cache");
    }
    let staged = output.with_extension("wasm.partial");
    match g.language {
        #[cfg(feature = "c-go-guests")]
        Language::C => c::build(g, &staged)?,
        #[cfg(feature = "c-go-guests")]
        Language::Go => go::build(&tool, g, &staged)?,
        #[cfg(not(feature = "c-go-guests"))]
        Language::C | Language::Go => bail!(
            "`{}` is a {} guest, but this wasmfn was built without C and Go guest support; \
             rebuild it with the `c-go-guests` feature (on by default)",
            g.name,
            g.language.name()
        ),
        _ => componentize::build(&tool, g, &staged)?,
    }
    wasmfn_host::wasmfn_host_core::private_dir::ensure_private_dir(&cache_dir()?)?;
    // Copy then rename: a concurrent build of the same guest never sees half a component.
    let partial = cached.with_extension(format!("{}.partial", std::process::id()));
    std::fs::copy(&staged, &partial).with_context(|| format!("caching {}", cached.display()))?;
    std::fs::rename(&partial, &cached)?;
    std::fs::rename(&staged, &output).with_context(|| format!("writing {}", output.display()))?;
    Ok("built")
}

/// Files of a guest that are not its inputs.
pub fn is_output(rel: &Path) -> bool {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    matches!(
        first.as_str(),
        "target" | "node_modules" | "__pycache__" | "gen" | ".wasmfn"
    ) || name.ends_with(".wasm")
        || name.ends_with(".partial")
        || name.starts_with('.')
}

/// The hash of a guest's inputs: language, tool version, every source file (path and bytes).
pub fn content_key(g: &Guest, tool_version: &str) -> Result<String> {
    let mut files = Vec::new();
    collect(&g.folder, &g.folder, &mut files)?;
    files.sort();
    let mut hasher = blake3::Hasher::new();
    hasher.update(g.language.name().as_bytes());
    hasher.update(b"\0");
    hasher.update(tool_version.as_bytes());
    for rel in files {
        hasher.update(b"\0");
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(b"\0");
        hasher.update(&std::fs::read(g.folder.join(&rel))?);
    }
    Ok(hasher.finalize().to_hex()[..32].to_string())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if is_output(&rel) {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// wasmfn's cache folder (`$XDG_CACHE_HOME/wasmfn` or `~/.cache/wasmfn`). Never a shared
/// temporary folder: what is cached there is run.
pub fn cache_root() -> Result<PathBuf> {
    wasmfn_host::wasmfn_host_core::private_dir::user_cache_root().context(
        "neither XDG_CACHE_HOME nor HOME is set, so wasmfn has no private cache folder; set one",
    )
}

/// Components by content key.
fn cache_dir() -> Result<PathBuf> {
    Ok(cache_root()?.join("components"))
}

/// A build tool found on this machine.
pub struct Tool {
    /// How to run it.
    pub program: PathBuf,
    /// Arguments before the build's own (a script for node).
    pub prefix: Vec<std::ffi::OsString>,
    /// Its version, part of the content key.
    pub version: String,
}

/// Wrap a core module (its world embedded) into a component with the WASI preview1 reactor
/// adapter; `realloc_via_memory_grow` for modules without a `cabi_realloc` (Go).
#[cfg(feature = "c-go-guests")]
pub fn componentize_core(
    name: &str,
    module: &[u8],
    realloc_via_memory_grow: bool,
) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .realloc_via_memory_grow(realloc_via_memory_grow)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .with_context(|| format!("making a component of `{name}`"))
}

/// The error for a missing tool: what is missing and the command that installs it.
pub fn missing(tool: &str, install: &str) -> anyhow::Error {
    anyhow::anyhow!("{tool} is not installed: install it with `{install}` (`scripts/setup` does)")
}
