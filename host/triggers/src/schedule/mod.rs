//! The schedule trigger: cron (5 or 6 fields, parsed by `croner`) and `rate(N unit)` schedules
//! that invoke `schedule` functions, in UTC or a named time zone, without overlapping runs
//! unless allowed, with a stated policy for runs missed while the host was down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Year};
use croner::Cron;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmfn_host_core::schedule::ScheduledEvent;
use wasmfn_host_core::{InvokeError, Invoker, Service, World};

pub mod manifest;
mod runs;

pub use manifest::{ScheduleManifest, ScheduleSection};
pub use runs::Run;

/// When a schedule fires.
#[derive(Clone, Debug)]
pub enum Expression {
    /// A cron expression evaluated in a time zone.
    Cron(Box<Cron>, Tz),
    /// Every fixed interval.
    Rate(Duration),
}

impl Expression {
    /// Parse `rate(5 minutes)` or a cron expression of 5 fields (minute precision) or 6
    /// (leading seconds field). `timezone` is an IANA name; cron runs in UTC without one.
    pub fn parse(text: &str, timezone: Option<&str>) -> Result<Expression, String> {
        let tz: Tz = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                format!("unknown time zone `{name}` (use an IANA name such as `Europe/Paris`)")
            })?,
        };
        let t = text.trim();
        if let Some(inner) = t.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return parse_rate(inner).map(Expression::Rate);
        }
        let fields = t.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{t}` is neither `rate(N unit)` nor a cron expression of 5 fields \
                 (minute hour day month weekday) or 6 (with leading seconds); it has {fields}"
            ));
        }
        let cron = CronParser::builder()
            .year(Year::Disallowed)
            .build()
            .parse(t)
            .map_err(|e| format!("invalid cron expression `{t}`: {e}"))?;
        Ok(Expression::Cron(Box::new(cron), tz))
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(d) => Some(after + chrono::Duration::from_std(*d).ok()?),
            Expression::Cron(cron, tz) => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

fn parse_rate(inner: &str) -> Result<Duration, String> {
    let mut parts = inner.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "`rate({inner})`: expected `rate(N unit)`, e.g. `rate(5 minutes)`"
        ));
    };
    let n: u64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`rate({inner})`: `{n}` is not a positive whole number"))?;
    let secs = match unit.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => {
            return Err(format!(
                "`rate({inner})`: unknown unit `{unit}` (seconds, minutes, hours, days)"
            ))
        }
    };
    Ok(Duration::from_secs(n * secs))
}

/// What to do about firings missed while the host was not running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedRuns {
    /// Forget them; the next run is the next one due from now (default).
    #[default]
    Skip,
    /// Run once at start-up for everything missed (like `anacron`), then continue on schedule.
    RunOnce,
}

/// A `[schedules.NAME]` manifest entry.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    /// Schedule name.
    pub name: String,
    /// The `schedule` function it runs.
    pub function: String,
    /// The expression as written.
    pub expression_text: String,
    /// The parsed expression.
    pub expression: Expression,
    /// Allow a run to start while the previous one is still running (default false).
    pub overlap: bool,
    /// Missed-run policy.
    pub missed: MissedRuns,
}

/// The schedules of an app.
pub struct Scheduler {
    schedules: BTreeMap<String, ScheduleConfig>,
    running: BTreeMap<String, Arc<AtomicBool>>,
    state_file: PathBuf,
    runs: Arc<runs::RunLog>,
}

impl Scheduler {
    /// Schedules whose last firing times are kept in `state_file`.
    pub fn new(configs: Vec<ScheduleConfig>, state_file: PathBuf) -> Self {
        let running = configs
            .iter()
            .map(|c| (c.name.clone(), Arc::default()))
            .collect();
        let runs = Arc::new(runs::RunLog::new(configs.iter().map(|c| c.name.as_str())));
        Self {
            schedules: configs.into_iter().map(|c| (c.name.clone(), c)).collect(),
            running,
            state_file,
            runs,
        }
    }

    /// Drop (and report) schedules whose function is missing or not of the `schedule` world.
    pub fn validate(&mut self, functions: &dyn Invoker) -> Vec<String> {
        let mut errors = Vec::new();
        self.schedules.retain(|name, c| {
            let problem = match functions.function(&c.function) {
                None => Some(format!("function `{}` is not loaded", c.function)),
                Some(f) if f.world() != World::Schedule => Some(format!(
                    "function `{}` implements world `{}`, but a schedule must run a `schedule` function",
                    c.function,
                    f.world()
                )),
                Some(_) => None,
            };
            if let Some(p) = &problem {
                errors.push(format!("[schedules.{name}]: {p}; the schedule is disabled"));
            }
            problem.is_none()
        });
        errors
    }

    /// The schedules, by name.
    pub fn schedules(&self) -> impl Iterator<Item = &ScheduleConfig> {
        self.schedules.values()
    }

    /// The last runs of schedule `name` since the host started (at most 20), newest first.
    pub fn runs(&self, name: &str) -> Vec<Run> {
        self.runs.of(name)
    }

    /// Run schedule `name` once now, whatever its expression says.
    pub async fn trigger(
        &self,
        functions: &dyn Invoker,
        name: &str,
    ) -> Option<Result<Result<(), String>, InvokeError>> {
        let c = self.schedules.get(name)?;
        let now = Utc::now();
        Some(fire(functions, c, now, now, &self.runs, "manual").await)
    }

    async fn run(
        &self,
        functions: Arc<dyn Invoker>,
        c: ScheduleConfig,
        last_ms: Option<i64>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let now = Utc::now();
        let last = last_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let mut due = match (c.missed, last) {
            (MissedRuns::RunOnce, Some(last)) => match c.expression.next_after(last) {
                Some(missed) if missed <= now => {
                    tracing::info!(schedule = %c.name, missed_since = %missed, "running once for firings missed while the host was down");
                    Some(missed)
                }
                _ => c.expression.next_after(now),
            },
            _ => c.expression.next_after(now),
        };
        let running = self.running[&c.name].clone();
        while let Some(at) = due {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            self.save_state(&c.name, at);
            if !c.overlap && running.swap(true, Ordering::AcqRel) {
                metrics::counter!("wasmfn_schedule_skipped_total", "schedule" => c.name.clone())
                    .increment(1);
                tracing::warn!(schedule = %c.name, scheduled_time = %at, "skipped: the previous run is still running (set `overlap = true` to allow)");
            } else {
                let (functions, c2, running) = (functions.clone(), c.clone(), running.clone());
                let log = self.runs.clone();
                tokio::spawn(async move {
                    let _ = fire(&*functions, &c2, at, Utc::now(), &log, "timer").await;
                    running.store(false, Ordering::Release);
                });
            }
            due = c
                .expression
                .next_after(at.max(Utc::now() - chrono::Duration::milliseconds(1)));
        }
    }

    fn load_state(&self) -> BTreeMap<String, i64> {
        std::fs::read(&self.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_state(&self, name: &str, at: DateTime<Utc>) {
        let mut state = self.load_state();
        state.insert(name.to_string(), at.timestamp_millis());
        let write = || -> Result<()> {
            let tmp = self.state_file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&state)?)?;
            std::fs::rename(&tmp, &self.state_file).context("saving schedule state")
        };
        if let Err(e) = write() {
            tracing::warn!(file = %self.state_file.display(), error = %format!("{e:#}"), "cannot record the schedule's last run");
        }
    }
}

impl Service for Scheduler {
    /// Start one timer task per schedule; they stop when `shutdown` turns true (a run in
    /// progress finishes).
    fn start(
        self: Arc<Self>,
        functions: Arc<dyn Invoker>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let last = self.load_state();
        self.schedules
            .values()
            .map(|c| {
                let (me, functions, c, mut shutdown) =
                    (self.clone(), functions.clone(), c.clone(), shutdown.clone());
                let last = last.get(&c.name).copied();
                tokio::spawn(async move { me.run(functions, c, last, &mut shutdown).await })
            })
            .collect()
    }
}

async fn fire(
    functions: &dyn Invoker,
    c: &ScheduleConfig,
    scheduled: DateTime<Utc>,
    fired: DateTime<Utc>,
    log: &runs::RunLog,
    trigger: &'static str,
) -> Result<Result<(), String>, InvokeError> {
    let started = std::time::Instant::now();
    let function = functions.function(&c.function).expect("validated at load");
    let event = ScheduledEvent {
        schedule: c.name.clone(),
        expression: c.expression_text.clone(),
        scheduled_time: scheduled.timestamp_millis().max(0) as u64,
        fire_time: fired.timestamp_millis().max(0) as u64,
    };
    let result = function.invoke_schedule(&event).await;
    let outcome = match &result {
        Ok(Ok(())) => "ok",
        Ok(Err(_)) => "handler_error",
        Err(_) => "failed",
    };
    log.push(
        &c.name,
        Run {
            scheduled: scheduled.to_rfc3339(),
            started: fired.to_rfc3339(),
            duration_ms: started.elapsed().as_millis() as u64,
            outcome,
            trigger,
            error: match &result {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason.clone()),
                Err(e) => Some(e.to_string()),
            },
        },
    );
    metrics::counter!("wasmfn_schedule_firings_total", "schedule" => c.name.clone(),
        "outcome" => outcome)
    .increment(1);
    if outcome == "ok" {
        metrics::gauge!("wasmfn_schedule_last_success_timestamp_seconds",
            "schedule" => c.name.clone())
        .set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn cron_five_and_six_fields_and_rates() {
        let every_5_min = Expression::parse("*/5 * * * *", None).unwrap();
        assert_eq!(
            every_5_min.next_after(at("2026-01-01T10:02:30Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        let every_second = Expression::parse("* * * * * *", None).unwrap();
        assert_eq!(
            every_second.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-01T10:00:01Z"))
        );
        let rate = Expression::parse("rate(5 minutes)", None).unwrap();
        assert_eq!(
            rate.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        assert!(Expression::parse("rate(1 hour)", None).is_ok());
    }

    #[test]
    fn time_zones_shift_cron_times() {
        let nine_paris = Expression::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:00 in Paris in winter is 08:00 UTC.
        assert_eq!(
            nine_paris.next_after(at("2026-01-15T00:00:00Z")),
            Some(at("2026-01-15T08:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert!(Expression::parse("* * *", None)
            .unwrap_err()
            .contains("it has 3"));
        assert!(Expression::parse("61 * * * *", None)
            .unwrap_err()
            .contains("invalid cron expression"));
        assert!(Expression::parse("rate(5 fortnights)", None)
            .unwrap_err()
            .contains("unknown unit"));
        assert!(Expression::parse("rate(0 minutes)", None)
            .unwrap_err()
            .contains("positive"));
        assert!(Expression::parse("0 9 * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .contains("unknown time zone"));
    }
}
