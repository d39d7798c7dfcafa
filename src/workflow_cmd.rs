//! `wasmfn workflow check FILE...`: validate saga workflow definitions (Amazon States Language
//! JSON, or the same shape in TOML) before deploying them; exits non-zero naming the state and
//! the fix for the first problem of each file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use wasmfn_host::workflow::Definition;

/// `wasmfn workflow ...`.
#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Validate definition files (`.json`: States Language; `.toml`: the same shape).
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(command: &WorkflowCommand) -> Result<ExitCode> {
    let WorkflowCommand::Check { files } = command;
    let mut failed = false;
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed = if file.extension().is_some_and(|e| e == "toml") {
            Definition::parse_toml(&text)
        } else {
            Definition::parse_json(&text)
        };
        match parsed {
            Ok(d) => println!(
                "ok    {}: {} states, starts at `{}`",
                file.display(),
                d.states.len(),
                d.start_at
            ),
            Err(e) => {
                failed = true;
                eprintln!("error: {}: {e}", file.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
