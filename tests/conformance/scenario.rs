//! The scenario format (one JSON file per scenario in `scenarios/`) and the target-neutral
//! outcome every target reports, checked against a case's expectation.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// One guest, set up one way, and the cases it must answer alike on every target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What it shows (documentation only).
    #[allow(dead_code)]
    pub description: String,
    /// The built guest (`guests/NAME` or `tests/guests/NAME`).
    pub guest: String,
    /// The function name it is deployed as.
    pub function: String,
    /// `wasmfn.toml` for the function (may be empty).
    #[serde(default)]
    pub manifest: String,
    /// Environment variables of the function's process (secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Requests and events, in order.
    pub cases: Vec<Case>,
    /// The file it came from.
    #[serde(skip)]
    pub file: String,
}

/// One request or event and what must come back.
#[derive(Deserialize)]
pub struct Case {
    /// Shown on failure.
    pub name: String,
    /// The input, by world.
    #[serde(flatten)]
    pub input: Input,
    /// The expected outcome.
    pub expect: Expect,
}

/// A target-neutral input; each target turns it into its own event shape.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// An HTTP request.
    Http(HttpInput),
    /// A batch of queue messages.
    Queue(QueueInput),
    /// A batch of change records.
    Stream(StreamInput),
    /// A schedule firing.
    Schedule(ScheduleInput),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    #[serde(default = "get")]
    pub method: String,
    /// Path and query.
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueInput {
    pub queue: String,
    pub messages: Vec<QueueMessage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueMessage {
    pub id: String,
    pub body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamInput {
    /// The table (or other source) name.
    pub source: String,
    pub records: Vec<StreamRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRecord {
    pub sequence: String,
    /// `insert`, `modify` or `remove`.
    pub operation: String,
    /// The record's key (one string attribute `id` on DynamoDB).
    pub key: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    pub name: String,
}

/// What a case must produce. Unset fields are not checked.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<u16>,
    /// Response headers that must be present with these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// Queue: ids of the failed messages; stream: the first failed sequence number (or none).
    pub failed: Option<Vec<String>>,
    /// Schedule (or any event): succeeded.
    pub ok: Option<bool>,
    /// The invocation failed with this kind (`Trap`, `Timeout`, `RunFailed`, ...).
    pub error: Option<String>,
    /// Lines the function logs while handling it.
    #[serde(default)]
    pub log: Vec<String>,
}

/// What a target reports for one case.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Http {
        status: u16,
        headers: BTreeMap<String, String>,
        body: String,
    },
    /// Queue or stream: the failed ids (empty: all succeeded).
    Failed(Vec<String>),
    /// A schedule (or SNS-style) run succeeded.
    Ok,
    /// The invocation failed with this kind.
    Error(String),
}

impl Expect {
    /// `Err(why)` when `outcome` does not meet the expectation.
    pub fn check(&self, outcome: &Outcome) -> Result<(), String> {
        let mismatch = || Err(format!("got {outcome:?}"));
        if let Some(kind) = &self.error {
            return match outcome {
                Outcome::Error(k) if k == kind => Ok(()),
                _ => mismatch(),
            };
        }
        if let Some(failed) = &self.failed {
            return match outcome {
                Outcome::Failed(f) if f == failed => Ok(()),
                _ => mismatch(),
            };
        }
        if self.ok == Some(true) {
            return match outcome {
                Outcome::Ok => Ok(()),
                _ => mismatch(),
            };
        }
        let Outcome::Http {
            status,
            headers,
            body,
        } = outcome
        else {
            return mismatch();
        };
        if self.status.is_some_and(|s| s != *status) {
            return mismatch();
        }
        if self.body.as_ref().is_some_and(|b| b != body) {
            return mismatch();
        }
        for (k, v) in &self.headers {
            if headers.get(k) != Some(v) {
                return Err(format!("header `{k}`: want {v:?}; got {outcome:?}"));
            }
        }
        Ok(())
    }
}

/// Every scenario in `dir`, sorted by file name.
pub fn load_all(dir: &Path) -> Vec<Scenario> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut s: Scenario =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!s.cases.is_empty(), "{}: no cases", path.display());
            s.file = path.file_name().unwrap().to_string_lossy().into_owned();
            s
        })
        .collect()
}

/// Send an `http` case to `base` (scheme, host and port) over real HTTP: the response, or the
/// error kind a wasmfn host reports in `x-wasmfn-error`.
pub fn send_http(base: &str, input: &HttpInput) -> Outcome {
    let method = reqwest::Method::from_bytes(input.method.as_bytes()).unwrap();
    let mut request = crate::common::client().request(
        method,
        format!("{}{}", base.trim_end_matches('/'), input.path),
    );
    for (k, v) in &input.headers {
        request = request.header(k, v);
    }
    if let Some(body) = &input.body {
        request = request.body(body.clone());
    }
    let response = request.send().unwrap();
    if let Some(kind) = response.headers().get("x-wasmfn-error") {
        return Outcome::Error(kind.to_str().unwrap().to_string());
    }
    Outcome::Http {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: response.text().unwrap(),
    }
}
