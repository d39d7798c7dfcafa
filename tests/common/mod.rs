//! Test support: run the real `wasmfn` binary on a temporary functions folder and talk to it
//! over real HTTP.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod lambda;
pub mod languages;
pub mod orders;
pub mod otlp;
pub mod servers;
pub mod workers;

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `wasmfn` binary under test.
pub fn wasmfn() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmfn"));
    cmd.env("WASMFN_LOG", "info,wasmfn_host=debug");
    cmd
}

/// A built guest component: `guests/NAME/NAME.wasm` or `tests/guests/NAME/NAME.wasm`.
pub fn guest(name: &str) -> PathBuf {
    // A component built elsewhere (the language tests' templates), by path.
    if name.ends_with(".wasm") && Path::new(name).is_file() {
        return PathBuf::from(name);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["guests", "tests/guests"] {
        let p = root.join(dir).join(name).join(format!("{name}.wasm"));
        if p.exists() {
            return p;
        }
    }
    panic!("guest `{name}` is not built: run `scripts/build-guests` (or `scripts/test`) first");
}

/// A temporary functions folder plus its own compile cache.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cache: tempfile::TempDir,
}

impl Fixture {
    /// A folder holding the named guests as `NAME.wasm` files.
    pub fn with_guests(names: &[&str]) -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        };
        for name in names {
            f.copy_guest(name, name);
        }
        f
    }

    /// Copy guest `name` into the folder as function `as_name`.
    pub fn copy_guest(&self, name: &str, as_name: &str) {
        std::fs::copy(guest(name), self.dir.path().join(format!("{as_name}.wasm"))).unwrap();
    }

    /// Write a file into the folder.
    pub fn write(&self, file: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.dir.path().join(file), contents).unwrap();
    }

    /// `wasmfn package TARGET NAME --dir THIS --out OUT EXTRA...`: its output.
    pub fn package(
        &self,
        target: &str,
        name: &str,
        out: &Path,
        extra: &[&str],
    ) -> std::process::Output {
        wasmfn()
            .args(["package", target, name])
            .args(extra)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    }

    /// Start `wasmfn serve` on this folder.
    pub fn serve(&self) -> Server {
        Server::start(self.dir.path(), self.cache.path(), &[])
    }

    /// Start `wasmfn serve` on this folder with extra arguments and environment variables.
    pub fn serve_with(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_env(self.dir.path(), self.cache.path(), args, env)
    }
}

/// A running `wasmfn serve`.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The admin listener's `HOST:PORT`.
    pub admin_addr: String,
    /// The admin token the host wrote to its state folder.
    pub admin_token: String,
    /// Its state folder (where `admin-endpoint` and `admin-token` are).
    pub state_dir: PathBuf,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Start serving `dir` on a free loopback port and wait until it listens.
    pub fn start(dir: &Path, cache: &Path, extra: &[&str]) -> Server {
        Self::start_env(dir, cache, extra, &[])
    }

    /// [`Server::start`] with environment variables for the server process.
    pub fn start_env(dir: &Path, cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        // Development mode unless the test says otherwise: its assertions read errors' text.
        let dev = match env.iter().any(|(k, _)| *k == "WASMFN_DEV") {
            true => &[][..],
            false => &[("WASMFN_DEV", "1")][..],
        };
        let mut child = wasmfn()
            .envs(dev.iter().copied())
            .envs(env.iter().copied())
            .arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(match extra.contains(&"--admin-listen") {
                true => &[][..],
                false => &["--admin-listen", "127.0.0.1:0"][..],
            })
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wasmfn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = stdout.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut admin = String::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("admin API on http://") {
                    admin = addr.to_string();
                }
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send((addr.to_string(), admin.clone()));
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (addr, admin_addr) = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "wasmfn did not start listening; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            });
        let state = extra
            .iter()
            .position(|a| *a == "--state-dir")
            .map(|i| PathBuf::from(extra[i + 1]))
            .unwrap_or_else(|| dir.join(".wasmfn"));
        let admin_token = match env.iter().find(|(k, _)| *k == "WASMFN_ADMIN_TOKEN") {
            Some((_, t)) => t.to_string(),
            None => std::fs::read_to_string(state.join("admin-token"))
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        Server {
            child,
            addr,
            admin_addr,
            admin_token,
            state_dir: state,
            stdout,
            stderr,
        }
    }

    /// `http://ADMIN/_wasmfn/{path}`: host API `path` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}/_wasmfn/{path}", self.admin_addr)
    }

    /// A `GET` of host API `path` with the admin token.
    pub fn admin_get(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        client()
            .get(self.admin_url(path))
            .bearer_auth(&self.admin_token)
    }

    /// A `POST` to host API `path` with the admin token.
    pub fn admin_post(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        client()
            .post(self.admin_url(path))
            .bearer_auth(&self.admin_token)
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`, returning status and body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = client().get(self.url(path)).send().expect("request failed");
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until the logs contain `needle` (logging is asynchronous).
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            if Instant::now() > deadline {
                panic!("log line `{needle}` never appeared; logs:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until the logs contain `needle` at least `count` times.
    pub fn wait_for_log_count(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.matches(needle).count() >= count {
                return logs;
            }
            if Instant::now() > deadline {
                panic!("log line `{needle}` never appeared {count} times; logs:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send SIGINT (Ctrl-C) and wait for the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc_kill(pid, 2) };
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A blocking HTTP client with a generous timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Send raw bytes over TCP and read the whole response (the connection is closed by `close`).
pub fn raw_request(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP server on loopback that records the lines of every request body it receives
/// (the recorder guests report what they handled to it). It lives outside the host, so what it
/// saw survives the host being killed. `delay` slows each answer down.
pub fn collector(delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/record", listener.local_addr().unwrap());
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Some(request) = read_request(&mut reader) else {
                    return;
                };
                let body = request.body;
                std::thread::sleep(delay);
                sink.lock()
                    .unwrap()
                    .extend(String::from_utf8_lossy(&body).lines().map(str::to_string));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, lines)
}

/// One HTTP/1.1 request as the test servers read it.
pub struct Request {
    pub path: String,
    /// Names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The next request on a connection (`Content-Length` bodies); `None` when it closes first.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        path,
        headers,
        body,
    })
}

/// An HTTP server on loopback that records, for every request it answers, the value of its
/// `header` (empty when absent).
pub fn header_recorder(header: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/record", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let value = read_request(&mut reader)
                .and_then(|r| r.header(header).map(str::to_string))
                .unwrap_or_default();
            sink.lock().unwrap().push(value);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

/// Poll `done` every 20 ms until it holds; fail the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send `bodies` to `queue` through `server`'s host API (one batch), which must accept them
/// all; their message ids.
pub fn send_batch(server: &Server, queue: &str, bodies: &[String]) -> Vec<String> {
    let messages: Vec<_> = bodies
        .iter()
        .map(|b| serde_json::json!({ "body": b }))
        .collect();
    let r = server
        .admin_post(&format!("queues/{queue}/batch"))
        .json(&serde_json::json!({ "messages": messages }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
    let v: serde_json::Value = r.json().unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}
