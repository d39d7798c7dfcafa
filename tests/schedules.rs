//! The schedule trigger through the real binary: cron firing, no overlap, missed runs,
//! `wasmfn trigger`, and bad expressions.

mod common;

use std::time::Duration;

use common::{wasmfn, Fixture};

#[test]
fn an_every_second_schedule_fires_once_per_second() {
    let f = Fixture::with_guests(&["cron-job"]);
    f.write(
        "wasmfn.toml",
        "[schedules.tick]\nfunction = \"cron-job\"\nexpression = \"* * * * * *\"\n",
    );
    let server = f.serve();
    std::thread::sleep(Duration::from_millis(3500));
    let logs = server.logs();
    let runs = logs.matches("tick (* * * * * *) ran").count();
    assert!((3..=4).contains(&runs), "{runs} runs in 3.5 s:\n{logs}");
}

#[test]
fn a_slow_run_does_not_overlap_itself() {
    let f = Fixture::with_guests(&["slow-schedule"]);
    f.write(
        "wasmfn.toml",
        "[schedules.slow]\nfunction = \"slow-schedule\"\nexpression = \"* * * * * *\"\n",
    );
    let server = f.serve();
    std::thread::sleep(Duration::from_millis(6000));
    let logs = server.logs();
    let events: Vec<&str> = logs
        .lines()
        .filter_map(|l| {
            if l.contains("run-start") {
                Some("start")
            } else if l.contains("run-end") {
                Some("end")
            } else {
                None
            }
        })
        .collect();
    assert!(events.len() >= 3, "{logs}");
    for pair in events.windows(2) {
        assert_ne!(pair, ["start", "start"], "two runs overlapped:\n{logs}");
    }
    assert!(
        logs.contains("skipped: the previous run is still running"),
        "{logs}"
    );
}

#[test]
fn missed_runs_follow_the_policy() {
    let f = Fixture::with_guests(&["cron-job"]);
    f.write(
        "wasmfn.toml",
        "[schedules.catchup]\nfunction = \"cron-job\"\nexpression = \"0 * * * *\"\nmissed = \"run-once\"\n\n\
         [schedules.forget]\nfunction = \"cron-job\"\nexpression = \"0 * * * *\"\n",
    );
    // Both last ran three hours ago, while the host was down.
    let three_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 3 * 3600 * 1000;
    std::fs::create_dir_all(f.dir.path().join(".wasmfn")).unwrap();
    f.write(
        ".wasmfn/schedules.json",
        format!("{{\"catchup\":{three_hours_ago},\"forget\":{three_hours_ago}}}"),
    );
    let server = f.serve();
    let logs = server.wait_for_log("catchup (0 * * * *) ran");
    assert!(
        logs.contains("running once for firings missed while the host was down"),
        "{logs}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let logs = server.logs();
    assert_eq!(
        logs.matches("catchup (0 * * * *) ran").count(),
        1,
        "run once, not once per missed hour"
    );
    assert!(
        !logs.contains("forget (0 * * * *) ran"),
        "`skip` does not catch up:\n{logs}"
    );
}

#[test]
fn trigger_runs_a_schedule_now() {
    let f = Fixture::with_guests(&["cron-job"]);
    f.write(
        "wasmfn.toml",
        "[schedules.yearly]\nfunction = \"cron-job\"\nexpression = \"0 0 1 1 *\"\ntimezone = \"Europe/Paris\"\n\n\
         [schedules.failing]\nfunction = \"cron-job\"\nexpression = \"rate(1 day)\"\n",
    );
    let server = f.serve();
    let out = wasmfn()
        .args(["trigger", "yearly", "--state-dir"])
        .arg(&server.state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\": true"));
    server.wait_for_log("yearly (0 0 1 1 *) ran");

    let out = wasmfn()
        .args(["trigger", "failing", "--state-dir"])
        .arg(&server.state_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("schedule failing is set up to fail"));

    let out = wasmfn()
        .args(["trigger", "nope", "--state-dir"])
        .arg(&server.state_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no schedule named `nope`; declared: failing, yearly"));
}

#[test]
fn bad_schedules_are_refused_with_the_line_or_the_reason() {
    let f = Fixture::with_guests(&["cron-job", "hello"]);
    f.write(
        "wasmfn.toml",
        "[schedules.bad]\nfunction = \"cron-job\"\nexpression = \"61 * * * *\"\n",
    );
    let out = wasmfn().arg("serve").arg(f.dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wasmfn.toml:3: `schedules.bad.expression`: invalid cron expression"),
        "{err}"
    );

    f.write(
        "wasmfn.toml",
        "[schedules.bad]\nfunction = \"cron-job\"\nexpression = \"every tuesday\"\n",
    );
    let out = wasmfn().arg("serve").arg(f.dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("neither `rate(N unit)` nor a cron expression"),
        "{err}"
    );

    // A function of the wrong world: the schedule is disabled, the rest is served.
    f.write(
        "wasmfn.toml",
        "[schedules.wrong]\nfunction = \"hello\"\nexpression = \"* * * * * *\"\n",
    );
    let server = f.serve();
    let logs = server.wait_for_log("[schedules.wrong]");
    assert!(
        logs.contains("function `hello` implements world `http`"),
        "{logs}"
    );
    assert_eq!(server.get("/hello").0, 200);
}
