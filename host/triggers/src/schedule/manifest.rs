//! `[schedules.NAME]` of `wasmfn.toml`.
//!
//! ```toml
//! [schedules.nightly]
//! function = "cleanup"           # a `schedule` function
//! expression = "0 3 * * *"       # cron (5 or 6 fields) or `rate(5 minutes)`
//! timezone = "Europe/Paris"      # default UTC
//! overlap = false                # skip a firing while the previous run still runs
//! missed = "skip"                # or "run-once" for firings missed while the host was down
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::{
    named_entries, ManifestError, ManifestSection, ParseContext, Shape, TableSpec,
};

use super::{Expression, MissedRuns, ScheduleConfig};

/// The schedules of a manifest (the section's result).
#[derive(Debug, Clone, Default)]
pub struct ScheduleManifest {
    /// `[schedules.NAME]`.
    pub schedules: Vec<ScheduleConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSchedule {
    function: String,
    expression: Spanned<String>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    overlap: bool,
    missed: Option<Spanned<String>>,
}

/// The schedule trigger's part of the manifest.
#[derive(Default)]
pub struct ScheduleSection;

impl ManifestSection for ScheduleSection {
    fn tables(&self) -> &'static [TableSpec] {
        &[TableSpec {
            name: "schedules",
            shape: Shape::Named,
        }]
    }

    fn parse(&self, cx: &mut ParseContext<'_>) -> Result<(), ManifestError> {
        let raw: BTreeMap<String, RawSchedule> = cx.take_table("schedules")?.unwrap_or_default();
        let raw = named_entries(cx, "schedules", raw)?;
        let loc = cx.locator();
        let at = |span, key: &str, msg: String| loc.at(span, key, msg);
        let mut schedules = Vec::new();
        for (name, r) in &raw {
            let tz = r.timezone.as_ref().map(|t| t.get_ref().as_str());
            let expression = Expression::parse(r.expression.get_ref(), tz).map_err(|e| {
                let span = match (&r.timezone, e.contains("time zone")) {
                    (Some(t), true) => t.span(),
                    _ => r.expression.span(),
                };
                at(span, &format!("schedules.{name}.expression"), e)
            })?;
            let missed = match r.missed.as_ref().map(|m| (m, m.get_ref().as_str())) {
                None | Some((_, "skip")) => MissedRuns::Skip,
                Some((_, "run-once")) => MissedRuns::RunOnce,
                Some((m, other)) => {
                    return Err(at(
                        m.span(),
                        &format!("schedules.{name}.missed"),
                        format!(
                            "`{other}` is not a missed-run policy: use \"skip\" or \"run-once\""
                        ),
                    ))
                }
            };
            schedules.push(ScheduleConfig {
                name: name.clone(),
                function: r.function.clone(),
                expression_text: r.expression.get_ref().clone(),
                expression,
                overlap: r.overlap,
                missed,
            });
        }
        cx.insert(ScheduleManifest { schedules });
        Ok(())
    }
}
