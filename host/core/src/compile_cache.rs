//! The on-disk cache of precompiled components (`.cwasm`).
//!
//! Entries are keyed by the BLAKE3 hash of the component's bytes and by the engine's
//! compatibility hash (wasmtime version, target, compiler settings), so a changed `.wasm` or a
//! new wasmtime recompiles automatically while an unchanged one is only deserialized. Each entry
//! carries a checksum of its own bytes: a corrupt file is detected, discarded and rebuilt rather
//! than mapped as executable code.
//!
//! The folder and every entry are checked on each use ([`crate::private_dir`]): they must
//! belong to the user running wasmfn (or root, for a read-only packaged cache) and be writable
//! by no one else. A cache that fails the check is not read; the host compiles in memory
//! instead and says why. There is no shared fallback folder: without `HOME` (or the variables
//! below) nothing is cached.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::private_dir::{check_trusted, ensure_private_dir, Owner};

/// What loading a component through the cache did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a valid cache entry; nothing was compiled.
    Hit,
    /// No entry existed: compiled and stored.
    Compiled,
    /// An entry existed but was corrupt or incompatible: compiled again and replaced.
    Rebuilt,
    /// Caching is disabled: compiled in memory.
    Uncached,
}

impl CacheOutcome {
    /// True when the component was compiled (not deserialized).
    pub fn compiled(self) -> bool {
        !matches!(self, CacheOutcome::Hit)
    }
}

/// A directory of precompiled components.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// Never compile: a missing or unusable entry is an error (packaged deployments).
    read_only: bool,
}

impl CompileCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            read_only: false,
        }
    }

    /// No caching: every load compiles.
    pub fn disabled() -> Self {
        Self {
            dir: None,
            read_only: false,
        }
    }

    /// The default location: `$WASMFN_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmfn/compiled`, else
    /// `~/.cache/wasmfn/compiled`; `None` when none of those variables is set.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WASMFN_CACHE_DIR").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        crate::private_dir::user_cache_root().map(|root| root.join("compiled"))
    }

    /// A cache in [`CompileCache::default_dir`], or none (every load compiles, with a warning)
    /// when there is no such folder.
    pub fn at_default_dir() -> Self {
        match Self::default_dir() {
            Some(dir) => Self::new(dir),
            None => {
                tracing::warn!(
                    "no compile cache: neither WASMFN_CACHE_DIR, XDG_CACHE_HOME nor HOME is \
                     set; every start compiles its components (set one of them to cache)"
                );
                Self::disabled()
            }
        }
    }

    /// The cache folder if it may be read: it exists and passes the owner and mode check.
    fn trusted_dir(&self, dir: &Path) -> Result<bool> {
        if !dir.exists() {
            return Ok(false);
        }
        check_trusted(dir, self.owner()).context("the compile cache is not safe to use")?;
        Ok(true)
    }

    fn owner(&self) -> Owner {
        if self.read_only {
            Owner::MeOrRoot
        } else {
            Owner::Me
        }
    }

    /// A cache that is only read: components must have been precompiled into `dir` (by
    /// `wasmfn_host::Host::precompile`, or [`CompileCache::store`], on an engine for this target), and nothing is compiled at
    /// load. For Lambda-style deployments, where compiling during start-up is what we avoid.
    pub fn read_only(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            read_only: true,
        }
    }

    /// The cache directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Load the component in `bytes` (read from `origin`, used in messages), compiling only when
    /// no valid entry exists.
    pub fn load(
        &self,
        engine: &Engine,
        origin: &Path,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, origin, bytes)?, CacheOutcome::Uncached));
        };
        match self.trusted_dir(dir) {
            Err(e) if !self.read_only => {
                tracing::warn!(error = %format!("{e:#}"), "not using the compile cache");
                return Ok((compile(engine, origin, bytes)?, CacheOutcome::Uncached));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let owner = self.owner();
        let entry = dir.join(entry_name(engine, bytes));
        let mut outcome = CacheOutcome::Compiled;
        if entry.exists() {
            let started = Instant::now();
            match read_entry(engine, &entry, owner) {
                Ok(component) => {
                    tracing::debug!(
                        component = %origin.display(),
                        cache_entry = %entry.display(),
                        micros = started.elapsed().as_micros() as u64,
                        "loaded precompiled component from the compile cache"
                    );
                    return Ok((component, CacheOutcome::Hit));
                }
                Err(e) => {
                    tracing::warn!(
                        component = %origin.display(),
                        cache_entry = %entry.display(),
                        error = %format!("{e:#}"),
                        "compile cache entry is unusable; recompiling and replacing it"
                    );
                    outcome = CacheOutcome::Rebuilt;
                }
            }
        }
        if self.read_only {
            // A package compiled for a baseline CPU of this architecture (`wasmfn package`)
            // carries another engine hash than this machine's native engine: try every entry of
            // this component; wasmtime itself checks that the code can run here.
            let prefix = entry_name(engine, bytes);
            let prefix = &prefix[..32];
            if let Ok(listing) = std::fs::read_dir(dir) {
                for candidate in listing.flatten().map(|e| e.path()) {
                    let name = candidate.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if !name.starts_with(prefix) || name.ends_with(".b3") || candidate == entry {
                        continue;
                    }
                    match read_entry(engine, &candidate, owner) {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        Err(e) => tracing::debug!(cache_entry = %candidate.display(),
                            "precompiled entry not usable here: {e:#}"),
                    }
                }
            }
            anyhow::bail!(
                "{} has no usable precompiled entry in {} for this machine's architecture \
                 and wasmtime build; package it again for this target (`wasmfn package ... --arch`)",
                origin.display(),
                dir.display()
            );
        }
        let serialized = compile_into(engine, origin, bytes, &entry, false)?;
        // SAFETY: `serialized` was produced by `precompile_component` on this very engine.
        let component = unsafe { Component::deserialize(engine, &serialized) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("loading freshly compiled {}", origin.display()))?;
        Ok((component, outcome))
    }

    /// Compile `bytes` into the cache without loading the result, which may be code for another
    /// machine (an engine with [`crate::EngineOptions::target`] set). An intact entry is kept.
    pub fn store(&self, engine: &Engine, origin: &Path, bytes: &[u8]) -> Result<CacheOutcome> {
        let Some(dir) = &self.dir else {
            anyhow::bail!(
                "the compile cache is disabled: nowhere to store {}",
                origin.display()
            );
        };
        ensure_private_dir(dir).context("the compile cache is not safe to use")?;
        let entry = dir.join(entry_name(engine, bytes));
        if verify(&entry, Owner::Me).is_ok() {
            return Ok(CacheOutcome::Hit);
        }
        compile_into(engine, origin, bytes, &entry, true)?;
        Ok(CacheOutcome::Compiled)
    }
}

/// Compile and write `entry`; `must_write`: a failed write is an error, not a warning.
fn compile_into(
    engine: &Engine,
    origin: &Path,
    bytes: &[u8],
    entry: &Path,
    must_write: bool,
) -> Result<Vec<u8>> {
    let started = Instant::now();
    let serialized = engine
        .precompile_component(bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling {}", origin.display()))?;
    let compile_ms = started.elapsed().as_millis() as u64;
    match write_entry(entry, &serialized) {
        Err(e) if must_write => return Err(e.context(format!("writing {}", entry.display()))),
        Err(e) => tracing::warn!(cache_entry = %entry.display(), error = %format!("{e:#}"),
            "cannot write the compile cache; continuing without it"),
        Ok(()) => tracing::info!(
            component = %origin.display(),
            compile_ms,
            cache_entry = %entry.display(),
            "compiled component and stored it in the compile cache"
        ),
    }
    Ok(serialized)
}

fn compile(engine: &Engine, origin: &Path, bytes: &[u8]) -> Result<Component> {
    let started = Instant::now();
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling {}", origin.display()))?;
    tracing::info!(component = %origin.display(), compile_ms = started.elapsed().as_millis() as u64,
        "compiled component (compile cache disabled)");
    Ok(component)
}

/// `<content hash>-<engine hash>.cwasm`: a new wasmtime or new settings never reuse old code.
fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let content = hash(bytes);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{}-{:016x}.cwasm", &content.to_hex()[..32], hasher.finish())
}

/// Below this size hashing on one core is faster than spreading the work.
const PARALLEL_HASH_MIN: usize = 1 << 20;

/// blake3 of `bytes`, on every core for large inputs (JavaScript and Python components are
/// 12-18 MB, their entries 36 MB).
fn hash(bytes: &[u8]) -> blake3::Hash {
    if bytes.len() < PARALLEL_HASH_MIN {
        return blake3::hash(bytes);
    }
    blake3::Hasher::new().update_rayon(bytes).finalize()
}

/// The checksum written beside an entry (`NAME.cwasm.b3`): a separate file, so that the entry
/// itself is exactly wasmtime's artifact and can be mapped, not copied, when loaded.
fn checksum_path(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".b3");
    PathBuf::from(name)
}

/// Check `entry`'s owner and mode, then its contents against its checksum (hashing the
/// mapped file on every core).
fn verify(entry: &Path, owner: Owner) -> Result<()> {
    check_trusted(entry, owner)?;
    check_trusted(&checksum_path(entry), owner)?;
    let expected = std::fs::read(checksum_path(entry)).context("reading the entry's checksum")?;
    let file = std::fs::File::open(entry).context("reading the entry")?;
    // SAFETY: a read-only mapping of a file in the user's own cache folder; a concurrent
    // rewrite goes through a new file and a rename, never in place.
    let mapped = unsafe { memmap2::Mmap::map(&file) }.context("mapping the entry")?;
    if hash(&mapped).as_bytes()[..] != expected[..] {
        anyhow::bail!("checksum mismatch: the file was modified, truncated or corrupted");
    }
    Ok(())
}

fn read_entry(engine: &Engine, entry: &Path, owner: Owner) -> Result<Component> {
    verify(entry, owner)?;
    // SAFETY: the file was written by `write_entry` from `precompile_component` output, the
    // checksum proves it is unchanged (the cache folder is writable by this user only, so it
    // is not swapped between the check and the mapping), and the file name pins the engine
    // configuration (wasmtime also re-checks compatibility in its header). Mapped, not read:
    // a 36 MB Python entry costs no copy, and its pages load as they are used.
    let component = unsafe { Component::deserialize_file(engine, entry) }?;
    Ok(component)
}

fn write_entry(entry: &Path, serialized: &[u8]) -> Result<()> {
    let dir = entry.parent().expect("entries live in the cache dir");
    // Entries are mapped as executable code: only this user may write them. (The checksum
    // catches corruption, not a deliberate rewrite by someone who can write here.)
    ensure_private_dir(dir)?;
    // Write-then-rename so a crash or a concurrent `wasmfn` never leaves a half-written entry;
    // the temporary files are created exclusively (O_EXCL, unpredictable names), so nothing
    // planted in advance is written through; the checksum goes last, so an entry without one
    // is never trusted.
    let sum_path = checksum_path(entry);
    let _ = std::fs::remove_file(&sum_path);
    persist(dir, entry, serialized)?;
    persist(dir, &sum_path, blake3::hash(serialized).as_bytes())?;
    Ok(())
}

/// Write `contents` to a fresh temporary file in `dir`, then rename it to `path`.
fn persist(dir: &Path, path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut tmp = tempfile::Builder::new()
        .prefix(".entry-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
