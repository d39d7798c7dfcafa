//! Real backend servers for the tests, started on free loopback ports: Redis, PostgreSQL,
//! moto's S3-compatible server and NATS JetStream. Each test binary starts one of each on first
//! use and shares it; every test then takes its own namespace (Redis key prefix, PostgreSQL
//! database, S3 bucket), so tests stay independent while running in parallel.
//!
//! `scripts/test` installs the programs (Debian packages, PyPI's moto).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::wait_until;

/// Shared server processes, stopped when the test binary exits.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static NAMESPACE: AtomicU32 = AtomicU32::new(0);

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn geteuid() -> u32;
}

extern "C" fn stop_children() {
    if let Ok(mut children) = CHILDREN.lock() {
        for child in children.iter_mut() {
            // SAFETY: plain kill(2) (SIGTERM, a clean shutdown) on a process this one spawned.
            unsafe { kill(child.id() as i32, 15) };
            let _ = child.wait();
        }
    }
}

/// Keep a shared server running until the test binary exits.
fn keep_until_exit(child: Child) {
    let mut children = CHILDREN.lock().unwrap();
    if children.is_empty() {
        // SAFETY: registers a plain function without captured state.
        unsafe { atexit(stop_children) };
    }
    children.push(child);
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name unique within this test binary (`prefix` + pid + counter).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NAMESPACE.fetch_add(1, Ordering::Relaxed)
    )
}

fn spawn(what: &str, cmd: &mut Command, port: u16, install_hint: &str) -> Child {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({e}): {install_hint}"));
    wait_until(
        &format!("{what} to listen"),
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    child
}

/// Where Debian keeps PostgreSQL's server programs.
fn pg_bin(program: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop()
        .map(|d| d.join(program))
        .unwrap_or_else(|| PathBuf::from(program))
}

/// A certificate authority for the tests and a server certificate it signed for `localhost`
/// and `127.0.0.1` (made with the `openssl` program once per test binary). Backends serve TLS
/// with it beside plain connections; clients trust it through `SSL_CERT_FILE`.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// The CA's certificate (what `SSL_CERT_FILE` names).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    /// The server certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// The shared test CA.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl not found: install Debian's openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=wasmfn test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestCa { dir }
    })
}

/// Shared Redis: the URL of a fresh namespace is `url()` plus a unique key prefix. It also
/// serves TLS (with [`test_ca`]'s certificate) on `tls_port`.
pub struct Redis {
    pub port: u16,
    pub tls_port: u16,
}

/// The shared Redis server.
pub fn redis() -> &'static Redis {
    static R: OnceLock<Redis> = OnceLock::new();
    R.get_or_init(|| {
        let (port, tls_port) = (free_port(), free_port());
        let ca = test_ca();
        keep_until_exit(spawn(
            "redis-server",
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--tls-port",
                    &tls_port.to_string(),
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(ca.cert())
                .arg("--tls-key-file")
                .arg(ca.key())
                .arg("--tls-ca-cert-file")
                .arg(ca.ca()),
            port,
            "install Debian's redis-server (scripts/test does)",
        ));
        Redis { port, tls_port }
    })
}

impl Redis {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The TLS listener's URL.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port)
    }
}

/// Shared PostgreSQL cluster (trust authentication on loopback).
pub struct Postgres {
    pub port: u16,
    _data: tempfile::TempDir,
}

/// The shared PostgreSQL server.
pub fn postgres() -> &'static Postgres {
    static P: OnceLock<Postgres> = OnceLock::new();
    P.get_or_init(|| {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        // PostgreSQL refuses to run as root: run it as the `postgres` user then.
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { geteuid() } == 0;
        let run = |program: &str| {
            let mut c = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(pg_bin(program));
                c
            } else {
                Command::new(pg_bin(program))
            };
            c.env_remove("PGDATA");
            c
        };
        let pgdata = data.path().join("pgdata");
        // TLS beside plain connections: the server's key must be private to its owner.
        let ca = test_ca();
        let tls = data.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        std::fs::copy(ca.cert(), tls.join("server.pem")).unwrap();
        std::fs::copy(ca.key(), tls.join("server.key")).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                tls.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        if as_root {
            std::fs::create_dir(&pgdata).unwrap();
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL data folder failed");
        }
        let init = run("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&pgdata)
            .output()
            .expect("initdb not found: install Debian's postgresql (scripts/test does)");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        keep_until_exit(spawn(
            "postgres",
            run("postgres")
                .arg("-D")
                .arg(&pgdata)
                .args(["-p", &port.to_string(), "-k"])
                .arg(data.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "ssl=on",
                ])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    tls.join("server.pem").display()
                ))
                .arg("-c")
                .arg(format!("ssl_key_file={}", tls.join("server.key").display())),
            port,
            "install Debian's postgresql (scripts/test does)",
        ));
        Postgres { port, _data: data }
    })
}

impl Postgres {
    /// Create a fresh database and return its URL.
    pub fn database(&self) -> String {
        let name = unique("db");
        let mut last = String::new();
        // The server accepts TCP a moment before it accepts logins.
        for _ in 0..50 {
            let out = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-c",
                ])
                .arg(format!("CREATE DATABASE {name}"))
                .output()
                .expect("psql not found: install Debian's postgresql-client");
            if out.status.success() {
                return format!("postgres://postgres@127.0.0.1:{}/{name}", self.port);
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("creating a PostgreSQL database failed: {last}");
    }
}

/// Run `sql` in the database at `url` with `psql`, which must succeed; what it printed
/// (unaligned, tuples only).
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-qAtc", sql])
        .output()
        .expect("psql not found: install Debian's postgresql-client");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Shared S3-compatible server (moto).
pub struct S3 {
    pub port: u16,
}

/// The shared S3-compatible server.
pub fn s3() -> &'static S3 {
    static S: OnceLock<S3> = OnceLock::new();
    S.get_or_init(|| {
        let port = free_port();
        keep_until_exit(spawn(
            "moto_server",
            Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            port,
            "install moto's S3 server with `pip install 'moto[server]'` (scripts/test does)",
        ));
        S3 { port }
    })
}

impl S3 {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a fresh bucket and return its name.
    pub fn bucket(&self) -> String {
        let name = unique("bucket-");
        let status = super::client()
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .unwrap()
            .status();
        assert!(status.is_success(), "creating bucket {name}: {status}");
        name
    }
}

/// A NATS JetStream server of one's own (queue tests kill and restart things around it).
pub struct Nats {
    child: Child,
    pub port: u16,
    _store: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        let port = free_port();
        let store = tempfile::tempdir().unwrap();
        let child = spawn(
            "nats-server",
            Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(store.path()),
            port,
            "install Debian's nats-server (scripts/test does)",
        );
        Nats {
            child,
            port,
            _store: store,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
