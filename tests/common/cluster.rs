//! Several `wasmfn serve` hosts of one app in a test: each with its own state folder (as on its
//! own machine), sharing a compile cache filled once beforehand; signals to kill or pause one.

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
