//! Per-function resource limits and the instance lifecycle policy.

use std::time::Duration;

/// Limits applied to every invocation of one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to (default 128 MiB, Lambda's smallest size).
    pub memory_bytes: u64,
    /// Wall-clock time one invocation may take, response body included (default 30 s).
    pub timeout: Duration,
    /// Invocations of this function running at once; more are refused with 503 (default 100).
    pub max_concurrency: u32,
    /// Largest HTTP request body it is given (default 32 MiB); a larger `Content-Length` is
    /// refused with 413 before the guest runs, a longer streamed body fails the guest's read.
    pub max_request_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(30),
            max_concurrency: 100,
            max_request_body: 32 << 20,
        }
    }
}

/// How instances are created and reused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InstanceMode {
    /// A fresh, isolated instance per invocation: no state survives between invocations.
    #[default]
    Fresh,
    /// Keep instances warm between invocations, like Lambda's execution-environment reuse:
    /// module-level state initialised in one invocation is visible to the next one served by
    /// the same instance. An instance serves one invocation at a time, is retired after
    /// `max_uses` invocations or `idle_timeout` without work, and is never reused after a trap.
    Reuse(ReusePolicy),
    /// WASI 0.3 http functions only: an instance takes several requests at once (its guest
    /// awaits I/O for one while it works on another), like `wasmtime serve`'s default for 0.3
    /// components. An instance that traps is retired with every request still in it.
    Concurrent(ConcurrentPolicy),
}

/// Bounds on an instance serving requests concurrently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrentPolicy {
    /// Requests one instance serves at once (default 16, as Spin and `wasmtime serve`).
    pub max_concurrent: u32,
    /// Requests one instance serves in all before it is retired (default 128, as Spin and
    /// `wasmtime serve`): bounds what a leak in the guest can grow to.
    pub max_uses: u32,
    /// An instance idle this long is retired (default 60 s).
    pub idle_timeout: Duration,
}

impl Default for ConcurrentPolicy {
    fn default() -> Self {
        Self {
            max_concurrent: 16,
            max_uses: 128,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Bounds on warm-instance reuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Invocations one instance serves before it is discarded (default 1000).
    pub max_uses: u32,
    /// An idle instance older than this is discarded instead of reused (default 60 s).
    pub idle_timeout: Duration,
    /// Instances created before the first invocation and kept warm however long they idle,
    /// like Lambda's provisioned concurrency (default 0).
    pub prewarm: u32,
}

impl Default for ReusePolicy {
    fn default() -> Self {
        Self {
            max_uses: 1000,
            idle_timeout: Duration::from_secs(60),
            prewarm: 0,
        }
    }
}

/// Parse a size such as `128MiB`, `64 MB`, `1GiB` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size: expected e.g. `128MiB` or `1GiB`"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown size unit `{other}` (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parse a duration such as `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: expected e.g. `30s` or `500ms`"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "`{text}`: unknown duration unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{text}`: a duration must be positive"));
    }
    // No setting needs more; and `Duration` panics past u64::MAX seconds.
    if secs > MAX_DURATION_SECS {
        return Err(format!(
            "`{text}` is longer than a year, the longest duration accepted"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The longest duration [`parse_duration`] accepts: a year.
const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        for text in [
            "1000000000000000000000000000000s",
            "99999999999h",
            "366d",
            "9000h",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_duration("8760h").unwrap(),
            Duration::from_secs(365 * 24 * 3600)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
