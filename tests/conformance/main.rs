//! The conformance suite: scenarios in `tests/conformance/scenarios/` (see the README there)
//! run with the same guest artifacts on every target, which must answer alike.
//! Targets here: the local host (`wasmfn serve` / `wasmfn invoke`), the Lambda adapter, and the
//! Workers adapter (the scenarios it can run so far; `on_workers::NOT_YET` lists the others).

#[path = "../common/mod.rs"]
mod common;
mod local;
mod on_lambda;
mod on_workers;
mod scenario;

use std::path::Path;
use std::time::{Duration, Instant};

use scenario::{Case, Outcome, Scenario};

/// A place scenarios run.
pub trait Target {
    /// Send one case's input and report what came back.
    fn run(&mut self, case: &Case) -> Outcome;
    /// Everything the function logged so far.
    fn log(&self) -> String;
}

fn scenarios() -> Vec<Scenario> {
    scenario::load_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/scenarios"))
}

/// Run every scenario on one target; fail with every mismatch listed.
fn run_all(target: &str, start: impl Fn(&Scenario) -> Box<dyn Target>) {
    run_scenarios(target, &scenarios(), 10, start);
}

fn run_scenarios(
    target: &str,
    scenarios: &[Scenario],
    at_least: usize,
    start: impl Fn(&Scenario) -> Box<dyn Target>,
) {
    let mut failures = Vec::new();
    let mut cases = 0;
    for s in scenarios {
        let mut t = start(s);
        for case in &s.cases {
            cases += 1;
            let outcome = t.run(case);
            if let Err(why) = case.expect.check(&outcome) {
                failures.push(format!("{target}: {} / {}: {why}", s.file, case.name));
            }
            for line in &case.expect.log {
                let started = Instant::now();
                while !t.log().contains(line.as_str()) && started.elapsed() < Duration::from_secs(5)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !t.log().contains(line.as_str()) {
                    failures.push(format!(
                        "{target}: {} / {}: no log line with {line:?}",
                        s.file, case.name
                    ));
                }
            }
        }
    }
    assert!(
        cases >= at_least,
        "the suite lost its scenarios ({cases} cases)"
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{target}: {cases} cases in {} scenarios passed",
        scenarios.len()
    );
}

#[test]
fn local_host_passes_every_scenario() {
    run_all("local host", |s| Box::new(local::Local::start(s)));
}

#[test]
fn lambda_adapter_passes_every_scenario() {
    run_all("Lambda adapter", |s| {
        Box::new(on_lambda::OnLambda::start(s))
    });
}

#[test]
fn workers_adapter_passes_every_scenario_it_supports() {
    let mut runnable = Vec::new();
    for s in scenarios() {
        match on_workers::NOT_YET
            .iter()
            .find(|(file, ..)| *file == s.file)
        {
            // Still refused at packaging (remove the entry when support lands)...
            Some((_, true, why)) => assert!(
                on_workers::OnWorkers::start(&s).is_err(),
                "{} is listed as refused on Workers ({why}) but now packages: run it",
                s.file
            ),
            // ...or a limit the adapter does not enforce there, listed on purpose.
            Some((_, false, _)) => {}
            None => runnable.push(s),
        }
    }
    run_scenarios("Workers adapter", &runnable, 5, |s| {
        Box::new(on_workers::OnWorkers::start(s).unwrap_or_else(|e| panic!("{}: {e}", s.file)))
    });
}

/// Guests written in every language, made by `wasmfn new` from the `http` template (an echo) and
/// the `queue` template (fails the messages that say `fail`), pass the same echo and
/// partial-failure scenarios as the Rust guests, on the local host.
#[test]
fn guests_in_every_language_pass_the_echo_and_queue_scenarios() {
    for lang in common::languages::LANGUAGES {
        let mut chosen = Vec::new();
        for mut s in scenarios() {
            let world = match s.file.as_str() {
                "http-echo.json" => "http",
                "queue-partial-failure.json" => "queue",
                _ => continue,
            };
            let built = common::languages::component(lang, world);
            s.guest = built.to_string_lossy().into_owned();
            chosen.push(s);
        }
        run_scenarios(&format!("local host, {lang} guests"), &chosen, 8, |s| {
            Box::new(local::Local::start(s))
        });
    }
}

/// WASI 0.3 guests pass the http scenarios that need no platform import, on the local host:
/// the echo with the `rust-http-p3` template, traps, timeouts and the memory limit with the
/// test guest `http-p3`, in the default fresh mode and in concurrent mode.
#[test]
fn wasi_0_3_guests_pass_the_http_scenarios_on_the_local_host() {
    for concurrent in [false, true] {
        let mut chosen = Vec::new();
        for mut s in scenarios() {
            s.guest = match s.file.as_str() {
                "http-echo.json" => common::languages::p3_template()
                    .to_string_lossy()
                    .into_owned(),
                "http-failures.json" | "http-timeout.json" | "http-memory.json" => "http-p3".into(),
                _ => continue,
            };
            if concurrent {
                let table = format!("[functions.{}]", s.function);
                let mode = format!("{table}\ninstances = \"concurrent\"");
                s.manifest = if s.manifest.contains(&table) {
                    s.manifest.replace(&table, &mode)
                } else {
                    format!("{}\n{mode}\n", s.manifest)
                };
            }
            chosen.push(s);
        }
        let target = format!("local host, WASI 0.3 guests, concurrent = {concurrent}");
        run_scenarios(&target, &chosen, 9, |s| Box::new(local::Local::start(s)));
    }
}
