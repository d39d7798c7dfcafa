//! The Workers side of the tests: bundles made by `wasmfn package workers`, served by real
//! workerd through Miniflare (`adapters/workers/serve-local.mjs`) on loopback.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Fixture;

/// A bundle served by workerd.
pub struct Worker {
    child: Child,
    /// Where it answers HTTP.
    pub url: String,
    /// serve-local.mjs's API firing the `scheduled` and `queue` handlers.
    pub control: String,
    log: Arc<Mutex<String>>,
}

impl Worker {
    pub fn start(bundle: &Path) -> Worker {
        Self::start_with_env(bundle, &[], &[])
    }

    /// [`Worker::start`] with `args` for serve-local.mjs (`--env NAME`) and `vars` in its
    /// environment (secrets the bundle names).
    pub fn start_with_env(bundle: &Path, args: &[&str], vars: &[(String, String)]) -> Worker {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/workers/serve-local.mjs");
        // Its own process group: Miniflare starts workerd as a child of node, and killing node
        // alone would leave workerd running after the test.
        let mut child = Command::new("node")
            .process_group(0)
            .arg(script)
            .arg(bundle)
            .args(args)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node (scripts/test installs Node.js and the Workers tools)");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let (tx, log) = (tx.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    for prefix in ["listening on ", "control on "] {
                        if let Some(url) = line.strip_prefix(prefix) {
                            let _ = tx.send((prefix, url.to_string()));
                        }
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let (mut url, mut control) = (String::new(), String::new());
        while url.is_empty() || control.is_empty() {
            let (which, value) = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("workerd did not start:\n{}", log.lock().unwrap()));
            match which {
                "listening on " => url = value,
                _ => control = value,
            }
        }
        Worker {
            child,
            url,
            control,
            log,
        }
    }

    /// Everything the worker (and workerd) printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// What the worker published to `queue` so far (`[{"id", "body", "attributes"}]`).
    pub fn published(&self, queue: &str) -> serde_json::Value {
        super::client()
            .get(format!("{}/published", self.control))
            .query(&[("name", queue)])
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Fire the `scheduled` handler with `cron`: `outcome` is `ok` or `exception`.
    pub fn scheduled(&self, cron: &str) -> serde_json::Value {
        super::client()
            .post(format!("{}/scheduled", self.control))
            .query(&[("cron", cron)])
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Deliver `messages` (`[{"id", "body"}]`) to the `queue` handler as a batch of `queue`.
    pub fn queue(&self, queue: &str, messages: serde_json::Value) -> serde_json::Value {
        super::client()
            .post(format!("{}/queue", self.control))
            .query(&[("name", queue)])
            .json(&messages)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The whole group: node and the workerd it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `scripts/test` installs jco, Miniflare and wrangler.
pub fn tools() -> PathBuf {
    match std::env::var_os("WASMFN_WORKERS_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/wasmfn/workers-tools")
        }
    }
}

/// Fail with wasmfn's output unless packaging succeeded.
pub fn assert_packaged(output: &Output) {
    assert!(
        output.status.success(),
        "wasmfn package failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
    let output = f.package("workers", name, &out, &[]);
    (f, out, output)
}
