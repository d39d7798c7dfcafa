//! The cluster's deployment files (docs/cluster.md): the Kubernetes example is valid, strictly,
//! against the Kubernetes schemas (`kubernetes-validate`, PyPI), and probes what the host
//! serves; the systemd unit passes `systemd-analyze verify` without a warning.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn validate(file: &Path) -> (bool, String) {
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(file)
        .output()
        .expect("kubernetes-validate is missing: scripts/test installs it from PyPI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_kubernetes_example_is_valid_and_probes_readiness_on_readyz() {
    let file = root().join("deploy/kubernetes/wasmfn.yaml");
    let (ok, text) = validate(&file);
    assert!(ok, "{text}");
    for resource in [
        "secret/wasmfn-backends",
        "deployment/wasmfn",
        "service/wasmfn",
        "horizontalpodautoscaler/wasmfn",
    ] {
        assert!(
            text.contains(&format!("passed for resource {resource}")),
            "{text}"
        );
    }
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert!(yaml.contains("path: /readyz") && yaml.contains("path: /healthz"));
    assert!(yaml.contains("name: wasmfn_queue_messages"));

    // The validator is strict: a misspelt field fails it, so the pass above means something.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, yaml.replace("readinessProbe:", "readinesProbe:")).unwrap();
    let (ok, text) = validate(&bad);
    assert!(!ok, "a misspelt field passed: {text}");
}

#[test]
fn the_systemd_unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    // `verify` checks that ExecStart's program exists: point it at one that does.
    let unit = std::fs::read_to_string(root().join("deploy/systemd/wasmfn.service"))
        .unwrap()
        .replace("/usr/local/bin/wasmfn", "/bin/true");
    let path = dir.path().join("wasmfn.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is missing: scripts/test installs systemd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}
