//! `wasmfn status`: is a running `wasmfn serve` alive and ready, and if not, why not.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::queue_cmd::ServerArg;

/// Print the host's liveness and each readiness check; exit 0 only when it is ready.
pub async fn run(server: ServerArg, state: Option<&Path>) -> Result<ExitCode> {
    let admin = server.connect(state)?;
    let (live, _) = admin
        .send(admin.request_at(reqwest::Method::GET, "/healthz"))
        .await?;
    println!(
        "host      {}  ({})",
        if live.is_success() {
            "live"
        } else {
            "not live"
        },
        admin.shown()
    );
    let (status, text) = admin
        .send(admin.request_at(reqwest::Method::GET, "/readyz"))
        .await?;
    let Ok(readiness) = serde_json::from_str::<serde_json::Value>(&text) else {
        anyhow::bail!("/readyz answered {status}: {}", text.trim());
    };
    for check in readiness["checks"].as_array().into_iter().flatten() {
        let ok = check["ok"] == true;
        println!(
            "{:<9} {}",
            check["name"].as_str().unwrap_or_default(),
            if ok { "ok" } else { "FAILING" }
        );
        for problem in check["problems"].as_array().into_iter().flatten() {
            println!("          - {}", problem.as_str().unwrap_or_default());
        }
    }
    let ready = readiness["ready"] == true;
    println!("ready     {}", if ready { "yes" } else { "no" });
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
