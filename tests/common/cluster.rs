//! Several `wasmfn serve` hosts of one app in a test: each with its own state folder (as on its
//! own machine), sharing a compile cache filled once beforehand; signals to kill or pause one;
//! HTTP load spread over them as a load balancer would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{wasmfn, Fixture, Server};

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
pub const SIGSTOP: i32 = 19;
pub const SIGCONT: i32 = 18;

/// Send `sig` to `server`'s process.
pub fn signal(server: &Server, sig: i32) {
    // SAFETY: kill(2) on a child process this test started.
    assert_eq!(unsafe { kill(server.child.id() as i32, sig) }, 0);
}

/// The time now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The hosts share one compile cache, filled once beforehand and read-only to them.
pub fn compile_into_cache(f: &Fixture, functions: &[&str]) {
    let out = wasmfn()
        .arg("compile")
        .arg("--cache-dir")
        .arg(f.cache.path())
        .args(
            functions
                .iter()
                .map(|n| f.dir.path().join(format!("{n}.wasm"))),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Host `n` of `f`: its own state folder, the shared read-only compile cache.
pub fn host(f: &Fixture, n: usize) -> Server {
    let state = f.dir.path().join(format!("host-{n}"));
    // Credentials for moto's S3 (it accepts any), for the apps that have a blob store.
    f.serve_with(
        &["--state-dir", state.to_str().unwrap(), "--read-only-cache"],
        &[("TEST_S3_KEY", "testing"), ("TEST_S3_SECRET", "testing")],
    )
}

/// A host with its own compile cache (the component changes under it in the test).
pub fn host_compiling(f: &Fixture, n: usize) -> Server {
    let state = f.dir.path().join(format!("host-{n}"));
    f.serve_with(&["--state-dir", state.to_str().unwrap()], &[])
}

/// HTTP load spread over the hosts as a load balancer with health checks would: each request
/// goes to the next host in turn and, if that host does not answer (dead, paused), to the
/// next, so every request is served while one host is down. A host that answers with a
/// server error is counted apart: that is a failure of the platform, not of the host.
pub struct HttpLoad {
    /// Each host's `HOST:PORT`, updated when one is started again.
    pub hosts: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    worker: Option<std::thread::JoinHandle<HttpTally>>,
}

/// What an [`HttpLoad`] saw.
#[derive(Debug, Default)]
pub struct HttpTally {
    /// Requests served (200), in the end, by some host.
    pub served: usize,
    /// Requests that no host served.
    pub unserved: usize,
    /// Tries a host did not answer (connection refused, timeout): the balancer moved on.
    pub unanswered: usize,
    /// Answers with a status of 500 or above.
    pub server_errors: Vec<String>,
    /// Requests served by each host, by its address.
    pub by_host: BTreeMap<String, usize>,
}

impl HttpLoad {
    /// Start sending `GET path` to `hosts` until [`HttpLoad::finish`].
    pub fn start(hosts: Vec<String>, path: &'static str) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let hosts = Arc::new(Mutex::new(hosts));
        let (list, stopping) = (hosts.clone(), stop.clone());
        let worker = std::thread::spawn(move || {
            // A paused host holds the request: one second is this balancer's health check.
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(1))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut tally = HttpTally::default();
            let mut next = 0;
            while !stopping.load(Ordering::Relaxed) {
                let addrs = list.lock().unwrap().clone();
                let mut served = false;
                for _ in 0..addrs.len() {
                    let slot = next % addrs.len();
                    next += 1;
                    match client.get(format!("http://{}{path}", addrs[slot])).send() {
                        Ok(r) if r.status() == 200 => {
                            *tally.by_host.entry(addrs[slot].clone()).or_default() += 1;
                            served = true;
                            break;
                        }
                        Ok(r) if r.status().is_server_error() => {
                            let status = r.status();
                            tally.server_errors.push(format!(
                                "{status} from host {slot}: {}",
                                r.text().unwrap_or_default()
                            ));
                        }
                        Ok(_) | Err(_) => tally.unanswered += 1,
                    }
                }
                if served {
                    tally.served += 1;
                } else {
                    tally.unserved += 1;
                }
            }
            tally
        });
        HttpLoad {
            hosts,
            stop,
            worker: Some(worker),
        }
    }

    /// Point slot `n` at a host started again (on a new port).
    pub fn replace(&self, n: usize, addr: &str) {
        self.hosts.lock().unwrap()[n] = addr.to_string();
    }

    /// Stop and tell what happened.
    pub fn finish(mut self) -> HttpTally {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.take().unwrap().join().unwrap()
    }
}
