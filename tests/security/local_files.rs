//! Secrets and local files: the compile cache holds native code that is mapped as
//! executable, so a cache folder other users can write is never read, and there is no shared
//! fallback folder when the user has none; credentials in connection URLs reach neither logs
//! nor packages.

use std::os::unix::fs::PermissionsExt as _;

use crate::common::{wasmfn, Fixture};

#[test]
fn a_compile_cache_others_can_write_is_not_used() {
    let f = Fixture::with_guests(&["hello"]);
    std::fs::set_permissions(f.cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let server = f.serve();
    let (status, body) = server.get("/hello");
    assert_eq!(
        status, 200,
        "the function is compiled in memory instead: {body}"
    );
    let logs = server.logs();
    assert!(logs.contains("not using the compile cache"), "{logs}");
    assert!(
        logs.contains("can be written by other users (mode 777)"),
        "{logs}"
    );
    assert!(
        logs.contains("chmod go-w"),
        "the warning says how to fix it: {logs}"
    );
    let written: Vec<_> = std::fs::read_dir(f.cache.path()).unwrap().collect();
    assert!(written.is_empty(), "nothing is written there: {written:?}");

    // Once fixed, the cache is used and its entries are private.
    drop(server);
    std::fs::set_permissions(f.cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = f.serve();
    assert_eq!(server.get("/hello").0, 200);
    let entries: Vec<_> = std::fs::read_dir(f.cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        entries
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "cwasm")),
        "{entries:?}"
    );
    for e in &entries {
        let mode = std::fs::metadata(e).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o022, 0, "{} has mode {mode:o}", e.display());
    }
}

#[test]
fn without_a_home_nothing_is_cached_in_a_shared_folder() {
    let f = Fixture::with_guests(&["hello"]);
    let out = wasmfn()
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("WASMFN_CACHE_DIR")
        .env("TMPDIR", f.cache.path())
        .arg("check")
        .arg(f.dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no compile cache"), "{text}");
    // The temporary folder (here the fixture's) holds no compiled code.
    let planted: Vec<_> = walk(f.cache.path());
    assert!(
        !planted
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".cwasm")),
        "{planted:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn credentials_in_a_nats_url_are_not_logged() {
    let f = Fixture::with_guests(&["queue-worker"]);
    // Nothing listens on port 1: connecting fails, and the error names the server.
    f.write(
        "wasmfn.toml",
        "[queue-backend]\nkind = \"nats\"\nurl = \"nats://alice:s3cret-pw@127.0.0.1:1\"\n\n\
         [queues.jobs]\nfunction = \"queue-worker\"\n",
    );
    let out = wasmfn()
        .arg("serve")
        .arg(f.dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(f.cache.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("nats://***@127.0.0.1:1"), "{text}");
    assert!(
        !text.contains("s3cret-pw"),
        "the password was printed: {text}"
    );
}

#[test]
fn packaging_refuses_a_password_written_in_the_manifest() {
    let f = Fixture::with_guests(&["capabilities"]);
    f.write(
        "wasmfn.toml",
        "[sql.users]\nbackend = \"postgres\"\nurl = \"postgres://app:hunter2@db.internal/app\"\n\n\
         [functions.capabilities]\nsql = [\"users\"]\n",
    );
    let out_dir = tempfile::tempdir().unwrap();
    for target in ["lambda", "workers"] {
        let out = f.package(target, "capabilities", out_dir.path(), &[]);
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{target}: {text}");
        assert!(
            text.contains(
                "[sql.users] url = \"postgres://***@db.internal/app\" carries credentials"
            ),
            "{target}: {text}"
        );
        assert!(text.contains("url-env = \"USERS_URL\""), "{target}: {text}");
        assert!(!text.contains("hunter2"), "{target}: {text}");
    }
}
