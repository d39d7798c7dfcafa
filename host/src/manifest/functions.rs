//! The keys of `wasmfn.toml` that core owns: `[defaults]` and, in `[functions.NAME]`,
//! `component`, `world`, `routes`, the limits (`memory`, `timeout`, `concurrency`,
//! `max-request-body`) and the
//! instance mode (`instances`, `max-uses`, `idle-timeout`, `prewarm`, `max-concurrent`).

use serde::Deserialize;
use toml::Spanned;
use wasmfn_host_core::manifest::ManifestError;
use wasmfn_host_core::{
    parse_duration, parse_size, ConcurrentPolicy, FunctionSettings, InstanceMode, Limits,
    ReusePolicy,
};

pub(super) type At<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> ManifestError + 'a;

/// `[defaults]`, and the same keys of `[functions.NAME]`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSettings {
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    max_request_body: Option<Spanned<String>>,
    instances: Option<Spanned<String>>,
    max_uses: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    prewarm: Option<Spanned<i64>>,
    max_concurrent: Option<Spanned<i64>>,
}

/// The keys of `[functions.NAME]` that core owns (the rest belong to capabilities).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFunction {
    pub(super) component: Option<String>,
    pub(super) world: Option<Spanned<String>>,
    pub(super) routes: Option<Vec<Spanned<String>>>,
    // The settings keys again, not `#[serde(flatten)]`: flattening loses the spans that let
    // errors name the line.
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    max_request_body: Option<Spanned<String>>,
    instances: Option<Spanned<String>>,
    max_uses: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    prewarm: Option<Spanned<i64>>,
    max_concurrent: Option<Spanned<i64>>,
}

impl RawFunction {
    pub(super) fn settings(&self) -> RawSettings {
        RawSettings {
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            concurrency: self.concurrency.clone(),
            max_request_body: self.max_request_body.clone(),
            instances: self.instances.clone(),
            max_uses: self.max_uses.clone(),
            idle_timeout: self.idle_timeout.clone(),
            prewarm: self.prewarm.clone(),
            max_concurrent: self.max_concurrent.clone(),
        }
    }
}

/// Merge a function's raw settings over the `[defaults]` ones and validate them.
pub(super) fn settings_from(
    own: &RawSettings,
    defaults: &RawSettings,
    table: &str,
    at: &At<'_>,
) -> Result<FunctionSettings, ManifestError> {
    let pick =
        |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| a.clone().or_else(|| b.clone());
    let pick_int =
        |a: &Option<Spanned<i64>>, b: &Option<Spanned<i64>>| a.clone().or_else(|| b.clone());
    let mut limits = Limits::default();
    if let Some(m) = pick(&own.memory, &defaults.memory) {
        let bytes =
            parse_size(m.get_ref()).map_err(|e| at(m.span(), &format!("{table}.memory"), e))?;
        if bytes < (1 << 20) {
            return Err(at(
                m.span(),
                &format!("{table}.memory"),
                "must be at least 1MiB".into(),
            ));
        }
        limits.memory_bytes = bytes;
    }
    if let Some(t) = pick(&own.timeout, &defaults.timeout) {
        limits.timeout = parse_duration(t.get_ref())
            .map_err(|e| at(t.span(), &format!("{table}.timeout"), e))?;
    }
    if let Some(c) = pick_int(&own.concurrency, &defaults.concurrency) {
        let n = *c.get_ref();
        if !(1..=100_000).contains(&n) {
            return Err(at(
                c.span(),
                &format!("{table}.concurrency"),
                format!("{n} is out of range 1..=100000"),
            ));
        }
        limits.max_concurrency = n as u32;
    }
    if let Some(b) = pick(&own.max_request_body, &defaults.max_request_body) {
        limits.max_request_body = parse_size(b.get_ref())
            .map_err(|e| at(b.span(), &format!("{table}.max-request-body"), e))?;
    }
    let mut policy = ReusePolicy::default();
    let max_uses = pick_int(&own.max_uses, &defaults.max_uses);
    if let Some(u) = &max_uses {
        let n = *u.get_ref();
        if n < 1 || n > u32::MAX as i64 {
            return Err(at(
                u.span(),
                &format!("{table}.max-uses"),
                format!("{n} must be at least 1"),
            ));
        }
        policy.max_uses = n as u32;
    }
    if let Some(t) = pick(&own.idle_timeout, &defaults.idle_timeout) {
        policy.idle_timeout = parse_duration(t.get_ref())
            .map_err(|e| at(t.span(), &format!("{table}.idle-timeout"), e))?;
    }
    let prewarm = pick_int(&own.prewarm, &defaults.prewarm);
    if let Some(p) = &prewarm {
        let n = *p.get_ref();
        if !(0..=1000).contains(&n) {
            return Err(at(
                p.span(),
                &format!("{table}.prewarm"),
                format!("{n} is out of range 0..=1000"),
            ));
        }
        policy.prewarm = n as u32;
    }
    let max_concurrent = pick_int(&own.max_concurrent, &defaults.max_concurrent);
    let mut concurrent = ConcurrentPolicy {
        idle_timeout: policy.idle_timeout,
        ..ConcurrentPolicy::default()
    };
    if max_uses.is_some() {
        concurrent.max_uses = policy.max_uses;
    }
    if let Some(c) = &max_concurrent {
        let n = *c.get_ref();
        if !(1..=10_000).contains(&n) {
            return Err(at(
                c.span(),
                &format!("{table}.max-concurrent"),
                format!("{n} is out of range 1..=10000"),
            ));
        }
        concurrent.max_concurrent = n as u32;
    }
    let mode = match pick(&own.instances, &defaults.instances) {
        None => InstanceMode::Fresh,
        Some(m) => match m.get_ref().as_str() {
            "fresh" => InstanceMode::Fresh,
            "reuse" => InstanceMode::Reuse(policy.clone()),
            "concurrent" => InstanceMode::Concurrent(concurrent),
            other => {
                return Err(at(
                    m.span(),
                    &format!("{table}.instances"),
                    format!(
                        "`{other}` is not an instance mode: use \"fresh\", \"reuse\" or \
                         \"concurrent\" (WASI 0.3 http components)"
                    ),
                ))
            }
        },
    };
    if let (false, Some(c)) = (matches!(mode, InstanceMode::Concurrent(_)), &max_concurrent) {
        return Err(at(
            c.span(),
            &format!("{table}.max-concurrent"),
            "requests served at once by one instance: also set instances = \"concurrent\"".into(),
        ));
    }
    if let (InstanceMode::Concurrent(_), Some(p)) = (&mode, &prewarm) {
        return Err(at(
            p.span(),
            &format!("{table}.prewarm"),
            "pre-warming is for instances = \"reuse\"; concurrent instances start on demand".into(),
        ));
    }
    if let (InstanceMode::Fresh, Some(p)) = (&mode, &prewarm) {
        if *p.get_ref() > 0 {
            return Err(at(
                p.span(),
                &format!("{table}.prewarm"),
                "pre-warmed instances are kept for reuse: also set instances = \"reuse\"".into(),
            ));
        }
    }
    Ok(FunctionSettings {
        expected_world: None,
        limits,
        mode,
        extensions: Default::default(),
    })
}

/// A route is an absolute path, optionally ending in `/*` to match everything below it.
pub fn validate_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(format!("route `{route}` must start with `/`"));
    }
    let body = route.strip_suffix("/*").unwrap_or(route);
    if body.contains('*') {
        return Err(format!(
            "route `{route}`: `*` is only allowed as a final `/*`"
        ));
    }
    if body.contains('?') || body.contains('#') {
        return Err(format!(
            "route `{route}` must not contain a query or fragment"
        ));
    }
    Ok(())
}
