//! wasmfn's WIT, embedded in the binary: `wasmfn new` writes it into a guest's `wit/` folder
//! (the guest's own `world.wit` next to `deps/`), so a guest is self-contained and builds the
//! same way wherever it is copied.
//!
//! Layout written: `wit/deps/platform/*.wit` (package `wasmfn:platform`) and `wit/deps/NAME/`
//! for each WASI package it depends on.

use std::path::Path;

use anyhow::{Context as _, Result};

/// (path under the guest's `wit/`, contents).
const FILES: &[(&str, &str)] = &[
    (
        "deps/platform/capabilities.wit",
        include_str!("../wit/capabilities.wit"),
    ),
    ("deps/cli/cli.wit", include_str!("../wit/deps/cli/cli.wit")),
    (
        "deps/clocks/clocks.wit",
        include_str!("../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/config/store.wit",
        include_str!("../wit/deps/config/store.wit"),
    ),
    (
        "deps/config/world.wit",
        include_str!("../wit/deps/config/world.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/http/http.wit",
        include_str!("../wit/deps/http/http.wit"),
    ),
    ("deps/io/io.wit", include_str!("../wit/deps/io/io.wit")),
    (
        "deps/keyvalue/atomic.wit",
        include_str!("../wit/deps/keyvalue/atomic.wit"),
    ),
    (
        "deps/keyvalue/batch.wit",
        include_str!("../wit/deps/keyvalue/batch.wit"),
    ),
    (
        "deps/keyvalue/store.wit",
        include_str!("../wit/deps/keyvalue/store.wit"),
    ),
    (
        "deps/keyvalue/world.wit",
        include_str!("../wit/deps/keyvalue/world.wit"),
    ),
    (
        "deps/logging/logging.wit",
        include_str!("../wit/deps/logging/logging.wit"),
    ),
    (
        "deps/random/random.wit",
        include_str!("../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../wit/deps/sockets/sockets.wit"),
    ),
    ("deps/platform/queue.wit", include_str!("../wit/queue.wit")),
    (
        "deps/platform/schedule.wit",
        include_str!("../wit/schedule.wit"),
    ),
    (
        "deps/platform/stream.wit",
        include_str!("../wit/stream.wit"),
    ),
    ("deps/platform/types.wit", include_str!("../wit/types.wit")),
    (
        "deps/platform/workflow.wit",
        include_str!("../wit/workflow.wit"),
    ),
    (
        "deps/platform/worlds.wit",
        include_str!("../wit/worlds.wit"),
    ),
];

/// Write the platform WIT under `wit_dir` (`deps/`); `wasi_version` rewrites the WASI packages
/// to another 0.2 patch version (componentize-js's engine implements `wasi:http` 0.2.10).
pub fn write_deps(wit_dir: &Path, wasi_version: Option<&str>) -> Result<()> {
    for (path, text) in FILES {
        let dest = wit_dir.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = match wasi_version {
            Some(v) => text
                .replace("@0.2.12", &format!("@{v}"))
                .replace("version = 0.2.12", &format!("version = {v}")),
            None => text.to_string(),
        };
        std::fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
    }
    Ok(())
}
