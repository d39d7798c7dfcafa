//! The local host target: `wasmfn serve` over real HTTP for `http` cases, `wasmfn invoke`
//! (the same host library, in one process) for queue, stream and schedule events.

use std::io::Write as _;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::common::{wasmfn, Fixture, Server};
use crate::scenario::{Case, Input, Outcome, Scenario};
use crate::Target;

pub struct Local {
    fixture: Fixture,
    function: String,
    env: Vec<(String, String)>,
    server: Option<Server>,
    invoke_log: String,
}

impl Local {
    pub fn start(s: &Scenario) -> Local {
        let fixture = Fixture::with_guests(&[]);
        fixture.copy_guest(&s.guest, &s.function);
        fixture.write("wasmfn.toml", &s.manifest);
        Local {
            fixture,
            function: s.function.clone(),
            env: s.env.clone().into_iter().collect(),
            server: None,
            invoke_log: String::new(),
        }
    }

    fn http(&mut self, input: &crate::scenario::HttpInput) -> Outcome {
        if self.server.is_none() {
            let env: Vec<(&str, &str)> = self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.server = Some(self.fixture.serve_with(&[], &env));
        }
        let server = self.server.as_ref().unwrap();
        crate::scenario::send_http(&server.url(""), input)
    }

    /// `wasmfn invoke` with `event` on stdin: its JSON answer.
    fn invoke(&mut self, event: Value) -> Value {
        let mut child = wasmfn()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["invoke", &self.function, "--event", "-", "--dir"])
            .arg(self.fixture.dir.path())
            .arg("--cache-dir")
            .arg(self.fixture.cache.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(event.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        self.invoke_log
            .push_str(&String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "wasmfn invoke printed no JSON; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// An invocation error (`errorType`) or a run error (`error`, named `when_error`).
fn error_of(answer: &Value, when_error: &str) -> Option<Outcome> {
    if let Some(kind) = answer["errorType"].as_str() {
        return Some(Outcome::Error(kind.to_string()));
    }
    answer
        .get("error")
        .map(|_| Outcome::Error(when_error.to_string()))
}

impl Target for Local {
    fn run(&mut self, case: &Case) -> Outcome {
        match &case.input {
            Input::Http(input) => self.http(input),
            Input::Queue(q) => {
                let answer = self.invoke(json!({
                    "queue": q.queue,
                    "messages": q.messages.iter().map(|m| json!({"id": m.id, "body": m.body})).collect::<Vec<_>>(),
                }));
                error_of(&answer, "BatchFailed").unwrap_or_else(|| {
                    Outcome::Failed(
                        answer["failures"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|f| f["id"].as_str().unwrap().to_string())
                            .collect(),
                    )
                })
            }
            Input::Stream(s) => {
                let events: Vec<Value> = s
                    .records
                    .iter()
                    .map(|r| {
                        json!({"type": "change", "source": s.source, "sequence": r.sequence, "key": r.key,
                               "operation": r.operation, "oldImage": r.old, "newImage": r.new})
                    })
                    .collect();
                let answer = self.invoke(json!({ "events": events }));
                if let Some(seq) = answer["firstFailedSequence"].as_str() {
                    return Outcome::Failed(vec![seq.to_string()]);
                }
                error_of(&answer, "BatchFailed").unwrap_or(Outcome::Failed(Vec::new()))
            }
            Input::Schedule(s) => {
                let answer = self.invoke(json!({ "schedule": s.name }));
                error_of(&answer, "RunFailed").unwrap_or(Outcome::Ok)
            }
        }
    }

    fn log(&self) -> String {
        let served = self.server.as_ref().map(Server::logs).unwrap_or_default();
        served + &self.invoke_log
    }
}
