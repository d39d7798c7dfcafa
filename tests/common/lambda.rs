//! The Lambda side of the tests: cargo-lambda's Runtime API emulator (a real Lambda Runtime
//! API implementation) on loopback, a packaged function's `bootstrap` running against it, and
//! invocations through the emulator's Invoke API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::servers::free_port;
use super::{client, wait_until, Fixture};

/// cargo-lambda's emulator serving only the Runtime and Invoke APIs.
pub struct Emulator {
    child: Child,
    pub port: u16,
    _stub: tempfile::TempDir,
}

impl Emulator {
    pub fn start() -> Emulator {
        let stub = tempfile::tempdir().unwrap();
        std::fs::create_dir(stub.path().join("src")).unwrap();
        std::fs::write(
            stub.path().join("Cargo.toml"),
            "[package]\nname = \"stub\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(stub.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        let port = free_port();
        let child = Command::new("cargo-lambda")
            .args(["lambda", "watch", "--only-lambda-apis", "--offline", "-A", "127.0.0.1", "-P"])
            .arg(port.to_string())
            .arg("--manifest-path")
            .arg(stub.path().join("Cargo.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo-lambda is not installed: scripts/test installs it (pip install --no-deps cargo-lambda==1.9.2)");
        wait_until(
            "the Lambda emulator to listen",
            Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        Emulator {
            child,
            port,
            _stub: stub,
        }
    }

    /// Invoke the function with `event`: `Ok(result)` or `Err((errorType, errorMessage))`.
    pub fn invoke(&self, event: &Value) -> Result<Value, (String, String)> {
        let r = client()
            .post(format!(
                "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                self.port
            ))
            .json(event)
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        let ok = r.status().is_success() && r.headers().get("x-amz-function-error").is_none();
        let body: Value = r.json().unwrap_or(Value::Null);
        if ok {
            Ok(body)
        } else {
            Err((
                body["errorType"].as_str().unwrap_or_default().to_string(),
                body["errorMessage"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ))
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A packaged function's `bootstrap`, running against the emulator.
pub struct Bootstrap {
    child: Child,
    log: PathBuf,
}

impl Bootstrap {
    pub fn start(package: &Path, emulator: &Emulator, env: &[(&str, &str)]) -> Bootstrap {
        Self::start_with(package, emulator, env, &[])
    }

    /// [`Bootstrap::start`] through a launcher (`["qemu-aarch64", "-L", SYSROOT]`).
    pub fn start_with(
        package: &Path,
        emulator: &Emulator,
        env: &[(&str, &str)],
        launcher: &[&str],
    ) -> Bootstrap {
        Self::launch(&package.join("bootstrap"), package, emulator, env, launcher)
    }

    /// A function whose `bootstrap` comes from a layer (unpacked in `opt`, as Lambda puts
    /// layers in `/opt`) and whose code is unpacked in `task_root`.
    pub fn start_layered(
        task_root: &Path,
        opt: &Path,
        emulator: &Emulator,
        env: &[(&str, &str)],
    ) -> Bootstrap {
        Self::launch(&opt.join("bootstrap"), task_root, emulator, env, &[])
    }

    fn launch(
        bootstrap: &Path,
        package: &Path,
        emulator: &Emulator,
        env: &[(&str, &str)],
        launcher: &[&str],
    ) -> Bootstrap {
        let log = package.join("bootstrap.log");
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bootstrap);
                c
            }
            None => Command::new(bootstrap),
        };
        // Each execution environment has its own /tmp (where embedded stores live).
        let tmp = package.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let child = command
            .current_dir(package)
            .env("TMPDIR", &tmp)
            .env("LAMBDA_TASK_ROOT", package)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", emulator.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Bootstrap { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Package `guest` (as function `name`) with `manifest`, returning the unpacked package folder.
pub fn package(guest: &str, name: &str, manifest: &str) -> (Fixture, PathBuf) {
    let f = Fixture::with_guests(&[]);
    f.copy_guest(guest, name);
    f.write("wasmfn.toml", manifest);
    let out = f.dir.path().join("out");
    let status = f.package("lambda", name, &out, &[]).status;
    assert!(status.success(), "wasmfn package lambda failed");
    assert!(out.join(format!("{name}.zip")).exists());
    (f, out.join("package"))
}

pub fn run(guest: &str, name: &str, manifest: &str) -> (Fixture, Emulator, Bootstrap) {
    run_env(guest, name, manifest, &[])
}

/// [`run`] with environment variables for the bootstrap (secrets, config overrides).
pub fn run_env(
    guest: &str,
    name: &str,
    manifest: &str,
    env: &[(&str, &str)],
) -> (Fixture, Emulator, Bootstrap) {
    let (f, pkg) = package(guest, name, manifest);
    let emulator = Emulator::start();
    let bootstrap = Bootstrap::start(&pkg, &emulator, env);
    (f, emulator, bootstrap)
}
