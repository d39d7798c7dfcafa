//! The schedule trigger: cron (5 or 6 fields, parsed by `croner`) and `rate(N unit)` schedules
//! that invoke `schedule` functions, in UTC or a named time zone, without overlapping runs
//! unless allowed, with a stated policy for runs missed while the host was down. Each due
//! tick is claimed first ([`Ticks`]): locally on one host, in PostgreSQL across a cluster, so
//! a tick fires once however many hosts run the schedule.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, SubsecRound as _, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Year};
use croner::Cron;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmfn_host_core::schedule::ScheduledEvent;
use wasmfn_host_core::{InvokeError, Invoker, Service, World};

pub mod manifest;
#[cfg(feature = "schedules-postgres")]
mod postgres;
mod runs;
mod ticks;

pub use manifest::{ScheduleManifest, ScheduleSection};
#[cfg(feature = "schedules-postgres")]
pub use postgres::PostgresTicks;
pub use runs::Run;
pub use ticks::{Claim, LocalTicks, TickFuture, Ticks};

/// When a schedule fires.
#[derive(Clone, Debug)]
pub enum Expression {
    /// A cron expression evaluated in a time zone.
    Cron(Box<Cron>, Tz),
    /// Every fixed interval, counted from the Unix epoch (`rate(5 minutes)` fires at :00,
    /// :05, ...).
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

    /// The last firing at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(d) => {
                let every = d.as_millis().max(1) as i64;
                Utc.timestamp_millis_opt(at.timestamp_millis().div_euclid(every) * every)
                    .single()
            }
            Expression::Cron(cron, tz) => cron
                .find_previous_occurrence(&at.trunc_subsecs(0).with_timezone(tz), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            // Aligned on the epoch, not on when the host started: every host of a cluster
            // computes the same ticks, so their claims meet on one row.
            Expression::Rate(d) => {
                let every = d.as_millis().max(1) as i64;
                let next = (after.timestamp_millis().div_euclid(every) + 1) * every;
                Utc.timestamp_millis_opt(next).single()
            }
            // From the whole second: croner keeps the fraction of `after` in what it finds,
            // which would give every host (and every start) ticks of its own.
            Expression::Cron(cron, tz) => cron
                .find_next_occurrence(&after.trunc_subsecs(0).with_timezone(tz), false)
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
    /// Run once at start-up for everything missed (like `anacron`), as the latest missed
    /// tick, then continue on schedule.
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
    ticks: Arc<dyn Ticks>,
    runs: Arc<runs::RunLog>,
}

impl Scheduler {
    /// Schedules whose ticks are claimed in `ticks` ([`LocalTicks`] on one host).
    pub fn new(configs: Vec<ScheduleConfig>, ticks: Arc<dyn Ticks>) -> Self {
        let runs = Arc::new(runs::RunLog::new(configs.iter().map(|c| c.name.as_str())));
        Self {
            schedules: configs.into_iter().map(|c| (c.name.clone(), c)).collect(),
            ticks,
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

    /// Whether the ticks' store answers (a cluster's database; the state file on one host).
    pub async fn probe(&self) -> Result<()> {
        self.ticks.last_fired().await.map(drop)
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
        // The made-up run is the latest missed tick: every host of a cluster that starts
        // after the gap computes the same one, so it is claimed (and run) once.
        let mut due = match (c.missed, last) {
            (MissedRuns::RunOnce, Some(last)) => match c.expression.latest_at_or_before(now) {
                Some(latest) if latest > last => {
                    let since = c.expression.next_after(last).unwrap_or(latest);
                    tracing::info!(schedule = %c.name, missed_since = %since, "running once for firings missed while the host was down");
                    Some(latest)
                }
                _ => c.expression.next_after(now),
            },
            _ => c.expression.next_after(now),
        };
        while let Some(at) = due {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            self.tick(&functions, &c, at).await;
            due = c
                .expression
                .next_after(at.max(Utc::now() - chrono::Duration::milliseconds(1)));
        }
    }

    /// Claim the tick `at` of `c` and, when this host won it, run it in the background.
    async fn tick(&self, functions: &Arc<dyn Invoker>, c: &ScheduleConfig, at: DateTime<Utc>) {
        let tick = at.timestamp_millis();
        match self.ticks.claim(&c.name, tick, !c.overlap).await {
            Ok(Claim::Fire) => {}
            Ok(Claim::Elsewhere) => {
                tracing::debug!(schedule = %c.name, scheduled_time = %at, "fired by another host");
                return;
            }
            Ok(Claim::Busy) => {
                metrics::counter!("wasmfn_schedule_skipped_total", "schedule" => c.name.clone())
                    .increment(1);
                tracing::warn!(schedule = %c.name, scheduled_time = %at, "skipped: the previous run is still running (set `overlap = true` to allow)");
                return;
            }
            Err(e) => {
                // Firing without a claim could fire it twice in a cluster: skip and say so.
                metrics::counter!("wasmfn_schedule_unclaimed_total", "schedule" => c.name.clone())
                    .increment(1);
                tracing::error!(schedule = %c.name, scheduled_time = %at, error = %format!("{e:#}"), "skipped: cannot claim the tick");
                return;
            }
        }
        let (functions, c, ticks, log) = (
            functions.clone(),
            c.clone(),
            self.ticks.clone(),
            self.runs.clone(),
        );
        tokio::spawn(async move {
            let run = fire(&*functions, &c, at, Utc::now(), &log, "timer");
            match ticks.renew_every().filter(|_| !c.overlap) {
                None => drop(run.await),
                Some(every) => {
                    // The run lease outlives a slow run only while this host renews it.
                    tokio::pin!(run);
                    let mut renew =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    loop {
                        tokio::select! {
                            _ = &mut run => break,
                            _ = renew.tick() => {
                                if let Err(e) = ticks.renew(&c.name, tick).await {
                                    tracing::warn!(schedule = %c.name, error = %format!("{e:#}"), "cannot renew the run lease");
                                }
                            }
                        }
                    }
                }
            }
            if let Err(e) = ticks.finish(&c.name, tick).await {
                tracing::warn!(schedule = %c.name, error = %format!("{e:#}"), "cannot end the run lease; the next run waits for it to expire");
            }
        });
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
        // The last ticks (in a cluster, the last any host fired) are read once, by whichever
        // schedule's task gets there first, and shared by the others.
        let last: Arc<tokio::sync::OnceCell<BTreeMap<String, i64>>> = Arc::default();
        self.schedules
            .values()
            .map(|c| {
                let (me, functions, c, mut shutdown, last) = (
                    self.clone(),
                    functions.clone(),
                    c.clone(),
                    shutdown.clone(),
                    last.clone(),
                );
                tokio::spawn(async move {
                    let ticks = last
                        .get_or_init(|| async {
                            me.ticks.last_fired().await.unwrap_or_else(|e| {
                                tracing::warn!(error = %format!("{e:#}"), "cannot read the schedules' last ticks; missed runs are not made up");
                                BTreeMap::new()
                            })
                        })
                        .await;
                    let last = ticks.get(&c.name).copied();
                    me.run(functions, c, last, &mut shutdown).await
                })
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
        // Whole seconds, whatever the fraction of the time asked from.
        assert_eq!(
            every_second.next_after(at("2026-01-01T10:00:00.731Z")),
            Some(at("2026-01-01T10:00:01Z"))
        );
        assert_eq!(
            every_5_min.next_after(at("2026-01-01T10:04:59.999Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        let rate = Expression::parse("rate(5 minutes)", None).unwrap();
        assert_eq!(
            rate.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        // Rates count from the epoch, so every host of a cluster has the same ticks.
        assert_eq!(
            rate.next_after(at("2026-01-01T10:02:30Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        assert!(Expression::parse("rate(1 hour)", None).is_ok());
        // The latest tick up to a time, for making up missed runs.
        assert_eq!(
            every_5_min.latest_at_or_before(at("2026-01-01T10:07:30.5Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        assert_eq!(
            every_5_min.latest_at_or_before(at("2026-01-01T10:05:00Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        assert_eq!(
            rate.latest_at_or_before(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
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
