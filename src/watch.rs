//! `wasmfn serve --watch`: when a guest's sources change, rebuild that guest (`wasmfn build`'s
//! machinery) and swap the new component into the running app ([`Host::reload`]). Requests in
//! flight finish on the old build; the other functions are not touched; a failed build or load
//! leaves the old build serving and says why. A component file at the folder's top level
//! (`NAME.wasm`) is reloaded when it changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use notify::{RecursiveMode, Watcher as _};
use wasmfn_host::{App, Host};

use crate::build;

/// Changes arriving within this window are handled together (editors write in bursts).
const SETTLE: Duration = Duration::from_millis(300);

/// Watch `dir` until the returned watcher is dropped.
pub fn start(host: Arc<Host>, app: Arc<App>, dir: PathBuf) -> Result<notify::RecommendedWatcher> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "watching guest sources; changed guests are rebuilt and reloaded");
    std::thread::Builder::new()
        .name("wasmfn-watch".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut changed = BTreeSet::new();
                note(&dir, first, &mut changed);
                while let Ok(more) = rx.recv_timeout(SETTLE) {
                    note(&dir, more, &mut changed);
                }
                for change in changed {
                    apply(&host, &app, &dir, change);
                }
            }
        })?;
    Ok(watcher)
}

/// What changed: a guest's sources, or a top-level component.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Sources(String),
    Component(String),
}

fn note(dir: &Path, event: notify::Result<notify::Event>, changed: &mut BTreeSet<Change>) {
    let Ok(event) = event else { return };
    if event.kind.is_access() {
        return;
    }
    for path in event.paths {
        let Ok(rel) = path.strip_prefix(dir) else {
            continue;
        };
        let mut parts = rel.components();
        let Some(first) = parts.next() else { continue };
        let first = first.as_os_str().to_string_lossy().into_owned();
        let inside: PathBuf = parts.collect();
        if first.starts_with('.') {
            continue;
        }
        if inside.as_os_str().is_empty() {
            if let Some(name) = first.strip_suffix(".wasm") {
                changed.insert(Change::Component(name.to_string()));
            }
        } else if !build::is_output(&inside) {
            changed.insert(Change::Sources(first));
        }
    }
}

fn apply(host: &Host, app: &App, dir: &Path, change: Change) {
    let name = match change {
        Change::Component(name) => name,
        Change::Sources(name) => {
            let guest = match build::detect(&dir.join(&name)) {
                Ok(Some(guest)) => guest,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(function = %name, "cannot read the guest: {e:#}");
                    return;
                }
            };
            let before = std::fs::read(guest.output()).ok();
            if let Err(e) = build::build_all(dir, &[guest], None) {
                tracing::error!(function = %name, "rebuild failed, still serving the previous build: {e:#}");
                return;
            }
            if std::fs::read(dir.join(&name).join(format!("{name}.wasm"))).ok() == before {
                tracing::debug!(function = %name, "rebuilt to the same component");
                return;
            }
            name
        }
    };
    if app.function(&name).is_none() {
        tracing::warn!(function = %name, "not a loaded function: restart `wasmfn serve` to add it");
        return;
    }
    let started = Instant::now();
    match host.reload(app, &name) {
        Ok(_) => tracing::info!(
            function = %name,
            load_ms = started.elapsed().as_millis() as u64,
            "reloaded: new requests run the new build"
        ),
        Err(e) => tracing::error!("reload failed, still serving the previous build: {e}"),
    }
}
