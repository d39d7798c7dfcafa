//! The Lambda adapter, measured through cargo-lambda's Runtime API emulator against a bare
//! `lambda_runtime` function in Rust (`adapters/lambda/examples/bare_runtime.rs`) run the same
//! way, side by side:
//!
//! - `cold_start/*`: process start → first invocation answered (the `hello` guest packaged by
//!   `wasmfn package lambda`, loaded from its precompiled form);
//! - `warm/*`: one more invocation of a running process through the emulator, and the adapter's
//!   handler called in-process (event mapping + instantiation + guest), the part the adapter adds.
//!
//! `cargo bench --bench lambda_adapter` (needs `cargo-lambda` and the guests: `scripts/test` sets
//! both up; the bench builds the two runtimes itself).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

fn target_dir() -> PathBuf {
    // .../target/release/wasmfn -> .../target
    Path::new(env!("CARGO_BIN_EXE_wasmfn"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Build `bootstrap` and the bare peer with the profile the package uses.
fn build_runtimes() -> (PathBuf, PathBuf) {
    for extra in [&[][..], &["--example", "bare_runtime"][..]] {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--profile",
                "release-lambda",
                "-p",
                "wasmfn-lambda",
            ])
            .args(extra)
            .env("CARGO_TARGET_DIR", target_dir())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let dir = target_dir().join("release-lambda");
    (dir.join("bootstrap"), dir.join("examples/bare_runtime"))
}

struct Emulator {
    child: Child,
    port: u16,
    _stub: tempfile::TempDir,
    client: reqwest::blocking::Client,
}

impl Emulator {
    fn start() -> Emulator {
        let stub = tempfile::tempdir().unwrap();
        std::fs::create_dir(stub.path().join("src")).unwrap();
        std::fs::write(
            stub.path().join("Cargo.toml"),
            "[package]\nname = \"stub\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(stub.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("cargo-lambda")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--offline",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .arg("--manifest-path")
            .arg(stub.path().join("Cargo.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo-lambda (scripts/test installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "emulator did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Emulator {
            child,
            port,
            _stub: stub,
            client: reqwest::blocking::Client::new(),
        }
    }

    fn invoke(&self, event: &Value) -> Value {
        self.client
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                self.port
            ))
            .json(event)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Start `runtime` in `root` against this emulator.
    fn spawn(&self, runtime: &Path, root: &Path) -> Child {
        Command::new(runtime)
            .current_dir(root)
            .env("LAMBDA_TASK_ROOT", root)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "192")
            .env("WASMFN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_event() -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/hello", "rawQueryString": "",
        "headers": {"accept": "text/plain"},
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "http": {"method": "GET", "path": "/hello", "protocol": "HTTP/1.1",
            "sourceIp": "10.0.0.1", "userAgent": "bench"}, "requestId": "r", "routeKey": "$default",
            "stage": "$default", "time": "30/Nov/2026:10:00:00 +0000", "timeEpoch": 1796000000000u64},
        "isBase64Encoded": false
    })
}

fn lambda_adapter(c: &mut Criterion) {
    let (bootstrap, bare) = build_runtimes();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/hello/hello.wasm");
    assert!(
        hello.exists(),
        "build the guests first: scripts/build-guests"
    );
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("app")).unwrap();
    std::fs::copy(&hello, work.path().join("app/hello.wasm")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["package", "lambda", "hello", "--bootstrap"])
        .arg(&bootstrap)
        .arg("--dir")
        .arg(work.path().join("app"))
        .arg("--out")
        .arg(work.path().join("out"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let package = work.path().join("out/package");
    let emulator = Emulator::start();
    let event = http_event();

    let mut group = c.benchmark_group("lambda_adapter/cold_start");
    group.sample_size(20);
    for (label, runtime, root) in [
        ("wasmfn_bootstrap_hello", &bootstrap, package.as_path()),
        ("bare_lambda_runtime", &bare, work.path()),
    ] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let mut child = emulator.spawn(runtime, root);
                    let answer = emulator.invoke(&event);
                    total += started.elapsed();
                    assert_eq!(answer["statusCode"], 200, "{answer}");
                    let _ = child.kill();
                    let _ = child.wait();
                }
                total
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lambda_adapter/warm");
    for (label, runtime, root) in [
        ("wasmfn_bootstrap_hello", &bootstrap, package.as_path()),
        ("bare_lambda_runtime", &bare, work.path()),
    ] {
        let mut child = emulator.spawn(runtime, root);
        group.bench_function(format!("{label}_via_emulator"), |b| {
            b.iter(|| emulator.invoke(&event))
        });
        let _ = child.kill();
        let _ = child.wait();
    }
    // The adapter's part alone: event mapping, a fresh instance, the guest, the response.
    // As in `bootstrap`: one thread runs the runtime client, the handler and the guest.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = wasmfn_host::Host::builder()
        .read_only_cache(package.join("compiled"))
        .state_dir(work.path().join("state"))
        .build()
        .unwrap();
    let app = host.load_dir(&package).unwrap();
    let function = app.function("hello").unwrap().clone();
    group.bench_function("wasmfn_handler_in_process", |b| {
        b.to_async(&runtime).iter(|| async {
            let r = wasmfn_lambda::handle(&function, event.clone(), Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(r["statusCode"], 200);
        })
    });
    group.finish();
}

criterion_group!(benches, lambda_adapter);
criterion_main!(benches);
