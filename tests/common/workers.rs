//! The Workers side of the tests: bundles made by `wasmfn package workers`, served by real
//! workerd through Miniflare (`adapters/workers/serve-local.mjs`) on loopback.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{wasmfn, Fixture};

/// A bundle served by workerd.
pub struct Worker {
    child: Child,
    pub url: String,
}

impl Worker {
    pub fn start(bundle: &Path) -> Worker {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/workers/serve-local.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(bundle)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (scripts/test installs Node.js and the Workers tools)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("workerd did not start");
        Worker { child, url }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Package guest `guest` as `name`: (fixture, bundle folder, wasmfn's output).
pub fn package(guest: &str, name: &str) -> (Fixture, PathBuf, Output) {
    package_with(guest, name, "")
}

/// [`package`] with a manifest.
pub fn package_with(guest: &str, name: &str, manifest: &str) -> (Fixture, PathBuf, Output) {
    let f = Fixture::with_guests(&[]);
    f.copy_guest(guest, name);
    f.write("wasmfn.toml", manifest);
    let out = f.dir.path().join("bundle");
    let output = wasmfn()
        .args(["package", "workers", name, "--dir"])
        .arg(f.dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    (f, out, output)
}
