//! What an operator sees of a schedule besides its expression: the expression in words, its
//! next firings, and its last runs with their outcomes (kept in memory, the newest 20 per
//! schedule, since the host started).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use wasmfn_host_core::recent::Ring;

use super::Expression;

/// Runs kept per schedule.
const KEEP: usize = 20;

/// One run of a schedule.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The firing it was for (RFC 3339).
    pub scheduled: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// `ok`, `handler_error` or `failed`.
    pub outcome: &'static str,
    /// `timer` or `manual` (run now).
    pub trigger: &'static str,
    /// Why it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last runs of every schedule.
pub(super) struct RunLog(BTreeMap<String, Ring<Run>>);

impl RunLog {
    /// An empty log for the schedules named.
    pub(super) fn new<'a>(schedules: impl IntoIterator<Item = &'a str>) -> Self {
        Self(
            schedules
                .into_iter()
                .map(|name| (name.to_string(), Ring::new(KEEP)))
                .collect(),
        )
    }

    pub(super) fn push(&self, schedule: &str, run: Run) {
        if let Some(runs) = self.0.get(schedule) {
            runs.push(run);
        }
    }

    /// Newest first.
    pub(super) fn of(&self, schedule: &str) -> Vec<Run> {
        self.0
            .get(schedule)
            .map(Ring::newest_first)
            .unwrap_or_default()
    }
}

impl Expression {
    /// The expression in words ("At 02:30 on Monday", "Every 5 minutes"), in English.
    pub fn describe(&self) -> String {
        match self {
            Expression::Rate(d) => {
                let secs = d.as_secs();
                let (n, unit) = [
                    (86_400, "day"),
                    (3600, "hour"),
                    (60, "minute"),
                    (1, "second"),
                ]
                .into_iter()
                .find(|(u, _)| secs % u == 0)
                .map(|(u, name)| (secs / u, name))
                .unwrap_or((secs, "second"));
                if n == 1 {
                    format!("Every {unit}")
                } else {
                    format!("Every {n} {unit}s")
                }
            }
            Expression::Cron(cron, tz) => {
                let words = cron.describe();
                if *tz == chrono_tz::Tz::UTC {
                    format!("{words} (UTC)")
                } else {
                    format!("{words} ({tz})")
                }
            }
        }
    }

    /// The next `n` firings after `after`.
    pub fn next_n(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next);
            at = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_cron_in_words() {
        let rate = Expression::parse("rate(5 minutes)", None).unwrap();
        assert_eq!(rate.describe(), "Every 5 minutes");
        assert_eq!(
            Expression::parse("rate(1 hour)", None).unwrap().describe(),
            "Every hour"
        );
        let cron = Expression::parse("30 2 * * 1", Some("Europe/Paris")).unwrap();
        let words = cron.describe();
        assert!(words.contains("02:30"), "{words}");
        assert!(words.contains("Monday"), "{words}");
        assert!(words.ends_with("(Europe/Paris)"), "{words}");
        let now = Utc::now();
        let next = rate.next_n(now, 3);
        assert_eq!(next.len(), 3);
        assert_eq!((next[2] - next[1]).num_seconds(), 300);
    }
}
