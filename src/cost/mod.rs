//! `wasmfn cost`: what the invocations a host measured would cost on AWS Lambda (x86_64 and
//! arm64) and on Cloudflare Workers, and which of those platforms' limits they would break.
//!
//! The usage comes from a running host's `/_wasmfn/usage` (optionally a recent window), or a
//! saved copy of it (`--from`, e.g. recorded after a load run). The prices are in
//! `prices.toml` beside this file, which names its sources and when they were read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasmfn_host::UsageTotals;

use crate::package::sam::lambda_memory_mb;
use crate::queue_cmd::ServerArg;

/// The price table, compiled in.
const PRICES: &str = include_str!("prices.toml");

/// Arguments of `wasmfn cost`.
#[derive(clap::Args)]
pub struct CostArgs {
    /// Only the invocations of about this long ago until now (e.g. `1h`; to a minute)
    /// [default: everything since the host loaded].
    #[arg(long, value_parser = |s: &str| wasmfn_host::parse_duration(s), conflicts_with = "from")]
    since: Option<std::time::Duration>,
    /// Also project a month at this many invocations of each function (with the measured
    /// per-invocation profile, and Workers' monthly base and included usage).
    #[arg(long, value_name = "N")]
    requests_per_month: Option<u64>,
    /// Read the usage from this file (a saved `GET /_wasmfn/usage` answer) instead of
    /// asking a running host.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// `text` (a table and the assumptions) or `json`.
    #[arg(long, default_value = "text")]
    output: Output,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Deserialize)]
struct Prices {
    lambda: LambdaPrices,
    workers: WorkersPrices,
}

#[derive(Deserialize, Serialize)]
struct LambdaPrices {
    source: String,
    read: String,
    request_usd_per_million: f64,
    gb_second_usd_x86_64: f64,
    gb_second_usd_arm64: f64,
    max_timeout_seconds: u64,
    max_memory_mb: u64,
    max_sync_payload_bytes: u64,
}

#[derive(Deserialize, Serialize)]
struct WorkersPrices {
    source: String,
    read: String,
    monthly_base_usd: f64,
    included_requests: u64,
    included_cpu_ms: u64,
    request_usd_per_million: f64,
    cpu_ms_usd_per_million: f64,
    memory_limit_mb: u64,
    cpu_limit_ms: u64,
    free_plan_cpu_limit_ms: u64,
    max_request_body_bytes: u64,
}

/// One function's entry of `/_wasmfn/usage`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionUsage {
    function: String,
    #[serde(default)]
    world: String,
    memory_limit_bytes: u64,
    totals: UsageTotals,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageReport {
    #[serde(default)]
    window_seconds: f64,
    functions: Vec<FunctionUsage>,
}

/// What one function's measured traffic costs, and what a month of it would.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Estimate {
    function: String,
    invocations: u64,
    lambda_memory_mb: u64,
    /// The measured traffic: (Lambda x86_64, Lambda arm64, Workers usage beyond its plan).
    measured_usd: Costs,
    /// The same per million invocations.
    per_million_usd: Option<Costs>,
    /// A month at `--requests-per-month` (Workers with its base fee and included usage).
    monthly_usd: Option<Costs>,
    /// Platform limits the measured profile breaks.
    breaks: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct Costs {
    #[serde(rename = "lambdaX86_64")]
    lambda_x86_64: f64,
    lambda_arm64: f64,
    workers: f64,
}

impl Prices {
    fn load() -> Prices {
        toml::from_str(PRICES).expect("prices.toml is valid (checked by a unit test)")
    }

    /// Lambda (x86_64, arm64) for `totals`: requests, plus each invocation's duration rounded
    /// up to the millisecond at the template's memory size.
    fn lambda(&self, totals: &UsageTotals, memory_mb: u64) -> (f64, f64) {
        let p = &self.lambda;
        let requests = totals.invocations as f64 * p.request_usd_per_million / 1e6;
        let gb_seconds = totals.billed_ms as f64 / 1000.0 * memory_mb as f64 / 1024.0;
        (
            requests + gb_seconds * p.gb_second_usd_x86_64,
            requests + gb_seconds * p.gb_second_usd_arm64,
        )
    }

    /// Workers usage charges for `invocations` and `cpu_ms`, beyond what is `included`.
    fn workers(&self, invocations: f64, cpu_ms: f64, included: bool) -> f64 {
        let p = &self.workers;
        let (requests, cpu) = match included {
            true => (
                (invocations - p.included_requests as f64).max(0.0),
                (cpu_ms - p.included_cpu_ms as f64).max(0.0),
            ),
            false => (invocations, cpu_ms),
        };
        requests * p.request_usd_per_million / 1e6 + cpu * p.cpu_ms_usd_per_million / 1e6
    }

    fn estimate(&self, usage: &FunctionUsage, per_month: Option<u64>) -> Estimate {
        let t = &usage.totals;
        let memory_mb = lambda_memory_mb(usage.memory_limit_bytes);
        let cpu_ms = t.cpu_us as f64 / 1000.0;
        let (x86, arm) = self.lambda(t, memory_mb);
        let measured = Costs {
            lambda_x86_64: x86,
            lambda_arm64: arm,
            workers: self.workers(t.invocations as f64, cpu_ms, false),
        };
        let n = t.invocations as f64;
        let scaled = |by: f64| Costs {
            lambda_x86_64: measured.lambda_x86_64 * by,
            lambda_arm64: measured.lambda_arm64 * by,
            workers: measured.workers * by,
        };
        let per_million = (t.invocations > 0).then(|| scaled(1e6 / n));
        let monthly = per_month.filter(|_| t.invocations > 0).map(|month| {
            let by = month as f64 / n;
            Costs {
                workers: self.workers.monthly_base_usd
                    + self.workers(month as f64, cpu_ms * by, true),
                ..scaled(by)
            }
        });
        Estimate {
            function: usage.function.clone(),
            invocations: t.invocations,
            lambda_memory_mb: memory_mb,
            measured_usd: measured,
            per_million_usd: per_million,
            monthly_usd: monthly,
            breaks: self.breaks(usage, memory_mb),
        }
    }

    /// The platform limits `usage`'s largest invocation would break.
    fn breaks(&self, usage: &FunctionUsage, memory_mb: u64) -> Vec<String> {
        let (t, l, w) = (&usage.totals, &self.lambda, &self.workers);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut out = Vec::new();
        if mib(t.peak_memory) > w.memory_limit_mb as f64 {
            out.push(format!(
                "Workers: peak memory {:.1} MiB is over its {} MB per isolate",
                mib(t.peak_memory),
                w.memory_limit_mb
            ));
        }
        let max_cpu_ms = t.max_cpu_us as f64 / 1000.0;
        if max_cpu_ms > w.cpu_limit_ms as f64 {
            out.push(format!(
                "Workers: an invocation used {max_cpu_ms:.0} ms of CPU, over the Paid plan's default {} ms (raise `limits.cpu_ms`, up to 5 min)",
                w.cpu_limit_ms
            ));
        } else if max_cpu_ms > w.free_plan_cpu_limit_ms as f64 {
            out.push(format!(
                "Workers Free: an invocation used {max_cpu_ms:.1} ms of CPU, over the Free plan's {} ms",
                w.free_plan_cpu_limit_ms
            ));
        }
        if t.max_bytes_in > w.max_request_body_bytes {
            out.push(format!(
                "Workers: a request body of {:.1} MiB is over the {:.0} MiB limit of Free and Pro zones",
                mib(t.max_bytes_in),
                mib(w.max_request_body_bytes)
            ));
        }
        if t.max_wall_us / 1_000_000 > l.max_timeout_seconds {
            out.push(format!(
                "Lambda: an invocation ran {:.0} s, over its {} s timeout",
                t.max_wall_us as f64 / 1e6,
                l.max_timeout_seconds
            ));
        }
        if memory_mb > l.max_memory_mb {
            out.push(format!(
                "Lambda: {memory_mb} MB of memory is over its {} MB",
                l.max_memory_mb
            ));
        }
        if usage.world == "http" {
            for (what, bytes) in [("request", t.max_bytes_in), ("response", t.max_bytes_out)] {
                if bytes > l.max_sync_payload_bytes {
                    out.push(format!(
                        "Lambda: a {what} of {:.1} MiB is over the {:.0} MiB synchronous payload",
                        mib(bytes),
                        mib(l.max_sync_payload_bytes)
                    ));
                }
            }
        }
        out
    }
}

/// `wasmfn cost`.
pub async fn run(args: CostArgs, state: Option<&Path>) -> Result<ExitCode> {
    let report: UsageReport = match &args.from {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the usage file {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a `/_wasmfn/usage` answer ({{\"functions\": [...]}})",
                    path.display()
                )
            })?
        }
        None => {
            let admin = args.server.connect(state)?;
            let path = match args.since {
                Some(d) => format!("usage?since={}", d.as_secs_f64()),
                None => "usage".to_string(),
            };
            serde_json::from_value(admin.call(admin.get(&path)).await?)
                .context("the host's /_wasmfn/usage answer has an unexpected shape")?
        }
    };
    let prices = Prices::load();
    let estimates: Vec<Estimate> = report
        .functions
        .iter()
        .map(|f| prices.estimate(f, args.requests_per_month))
        .collect();
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "windowSeconds": report.window_seconds,
                "requestsPerMonth": args.requests_per_month,
                "functions": estimates,
                "prices": { "lambda": prices.lambda, "workers": prices.workers },
            }))?
        ),
        Output::Text => print_text(&report, &estimates, &prices, args.requests_per_month),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(report: &UsageReport, estimates: &[Estimate], prices: &Prices, month: Option<u64>) {
    println!(
        "measured: {:.0} s of invocations ({} functions)\n",
        report.window_seconds,
        estimates.len()
    );
    let usd = |v: f64| format!("${v:.6}");
    println!(
        "{:<22} {:>11} {:>9}  {:>15} {:>15} {:>15}",
        "FUNCTION", "INVOCATIONS", "LAMBDA MB", "LAMBDA x86_64", "LAMBDA arm64", "WORKERS"
    );
    for e in estimates {
        let c = e.per_million_usd.unwrap_or(e.measured_usd);
        println!(
            "{:<22} {:>11} {:>9}  {:>15} {:>15} {:>15}",
            e.function,
            e.invocations,
            e.lambda_memory_mb,
            usd(c.lambda_x86_64),
            usd(c.lambda_arm64),
            usd(c.workers)
        );
    }
    println!("(per million invocations, at the measured profile)");
    if let Some(month) = month {
        println!("\na month at {month} invocations of each function:");
        for e in estimates {
            if let Some(c) = e.monthly_usd {
                println!(
                    "{:<22} Lambda x86_64 {:>12}  arm64 {:>12}  Workers {:>12}",
                    e.function,
                    format!("${:.2}", c.lambda_x86_64),
                    format!("${:.2}", c.lambda_arm64),
                    format!("${:.2}", c.workers)
                );
            }
        }
    }
    let broken: Vec<_> = estimates.iter().filter(|e| !e.breaks.is_empty()).collect();
    if !broken.is_empty() {
        println!("\nlimits the measured invocations would break:");
        for e in broken {
            for b in &e.breaks {
                println!("  {}: {b}", e.function);
            }
        }
    }
    let (l, w) = (&prices.lambda, &prices.workers);
    println!(
        "\nassumptions:\n\
         - Lambda: {} (read {}); ${}/M requests, ${}/GB-s x86_64, ${}/GB-s arm64; each \
         invocation billed for its wall time rounded up to 1 ms at the memory size `wasmfn \
         package lambda` sets (the guest's limit + 64 MB); free tier not subtracted.\n\
         - Workers: {} (read {}); ${}/M requests and ${}/M CPU ms beyond {} requests and {} CPU \
         ms a month, ${} a month base (per account, in the monthly figure only); CPU time is \
         the time the invocation ran on a host thread here.\n\
         - The same component, the same traffic: Lambda's and Workers' own runtimes are not \
         measured here.",
        l.source,
        l.read,
        l.request_usd_per_million,
        l.gb_second_usd_x86_64,
        l.gb_second_usd_arm64,
        w.source,
        w.read,
        w.request_usd_per_million,
        w.cpu_ms_usd_per_million,
        w.included_requests,
        w.included_cpu_ms,
        w.monthly_base_usd
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_table_parses() {
        let p = Prices::load();
        assert!(p.lambda.gb_second_usd_arm64 < p.lambda.gb_second_usd_x86_64);
        assert!(!p.workers.source.is_empty());
    }
}
