//! Guests in every language, made by the real `wasmfn new` from each template and built by the
//! real `wasmfn build` (JavaScript and Python components come from its content-addressed build
//! cache after the first run). Built once per test process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The languages with templates.
pub const LANGUAGES: &[&str] = &["rust", "js", "python", "c", "go"];
/// The worlds every language has a template for.
pub const WORLDS: &[&str] = &["http", "queue", "schedule", "stream", "task"];

/// A folder holding guest `LANG-WORLD` for every template, built.
pub fn templates() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let guests = dir.path().join("guests");
            for lang in LANGUAGES {
                for world in WORLDS {
                    let name = format!("{lang}-{world}");
                    let out = super::wasmfn()
                        .args(["new", &name, &name, "--dir"])
                        .arg(&guests)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "wasmfn new {name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            let out = super::wasmfn().arg("build").arg(&guests).output().unwrap();
            assert!(
                out.status.success(),
                "wasmfn build:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (dir, guests)
        })
        .1
}

/// The built component of template `LANG-WORLD`.
pub fn component(lang: &str, world: &str) -> PathBuf {
    let name = format!("{lang}-{world}");
    templates().join(&name).join(format!("{name}.wasm"))
}

/// The `rust-http-p3` template (WASI 0.3 echo), made by `wasmfn new` and built by
/// `wasmfn build`. Built once per test process.
pub fn p3_template() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let guests = dir.path().join("guests");
            let out = super::wasmfn()
                .args(["new", "rust-http-p3", "echo-p3", "--dir"])
                .arg(&guests)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "wasmfn new rust-http-p3: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = super::wasmfn().arg("build").arg(&guests).output().unwrap();
            assert!(
                out.status.success(),
                "wasmfn build:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let built = guests.join("echo-p3/echo-p3.wasm");
            (dir, built)
        })
        .1
}
