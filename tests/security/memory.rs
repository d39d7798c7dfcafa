//! The memory limit covers everything an instance allocates: a component holds one linear
//! memory per core module, and a limit applied to each would multiply with their number.

use crate::common::{wasmfn, Fixture};

fn run_with_limit(memory: &str) -> (bool, String) {
    let f = Fixture::with_guests(&[]);
    let component = wat::parse_file(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/two-memories.wat"),
    )
    .unwrap();
    f.write("two-memories.wasm", component);
    f.write(
        "wasmfn.toml",
        format!("[functions.two-memories]\nmemory = \"{memory}\"\n"),
    );
    f.write(
        "event.json",
        r#"{"schedule": "probe", "expression": "rate(1 minute)"}"#,
    );
    let out = wasmfn()
        .args(["--cache-dir"])
        .arg(f.cache.path())
        .args(["invoke", "two-memories", "--dir"])
        .arg(f.dir.path())
        .arg("--event")
        .arg(f.dir.path().join("event.json"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn two_memories_count_together_against_the_limit() {
    // 2 x 41 MiB: each memory is under 64 MiB, both together are not.
    let (ok, text) = run_with_limit("64MiB");
    assert!(!ok, "{text}");
    assert!(
        text.contains("exceeded its memory limit of 64 MiB"),
        "{text}"
    );
    // With room for both, the same run succeeds.
    let (ok, text) = run_with_limit("128MiB");
    assert!(ok, "{text}");
}
