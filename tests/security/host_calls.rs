//! Host calls a guest cannot use to stop the host: SQL statements that never end are stopped
//! at the invocation's deadline without blocking the threads that serve other requests,
//! results larger than the guest's memory are refused before the host holds them, and a
//! PostgreSQL connection goes back to the pool outside any transaction.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::orders::post;
use crate::common::servers::postgres;
use crate::common::{Fixture, Server};

/// A statement that never ends on SQLite or PostgreSQL.
const ENDLESS_CTE: &str =
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";

/// `caps` on database `db` (embedded, or PostgreSQL at `url` with one pooled connection),
/// with a 1 s timeout and 64 MiB of memory; `hello` beside it.
fn fixture(url: Option<&str>) -> (Fixture, Server) {
    let f = Fixture::with_guests(&["hello"]);
    f.copy_guest("capabilities", "caps");
    let backend = match url {
        Some(u) => format!("backend = \"postgres\"\nurl = \"{u}\"\npool-size = 1\n"),
        None => String::new(),
    };
    f.write(
        "wasmfn.toml",
        format!(
            "[sql.db]\n{backend}\n[kv.default]\n[blob.default]\n\n\
             [functions.caps]\nsql = [\"db\"]\nkv = [\"default\"]\nblob = [\"default\"]\n\
             timeout = \"1s\"\nmemory = \"64MiB\"\nconcurrency = 10\n"
        ),
    );
    let server = f.serve();
    (f, server)
}

fn sql(server: &Server, statement: &str) -> (u16, Value) {
    post(
        server,
        "/caps/sql/db",
        &json!({"sql": statement, "params": []}).to_string(),
    )
}

/// Run the endless statement on as many requests at once as the host has serving threads
/// (and one more), and check that `/hello` answers quickly meanwhile and that each of them
/// ends at its deadline.
fn endless_statements_end_at_the_deadline(server: &Server) {
    let started = Instant::now();
    let runaways: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url("/caps/sql/db");
            std::thread::spawn(move || {
                let r = crate::common::client()
                    .post(url)
                    .body(json!({"sql": ENDLESS_CTE, "params": []}).to_string())
                    .send()
                    .unwrap();
                (r.status().as_u16(), r.text().unwrap(), started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let (status, body) = server.get("/hello");
    assert_eq!(status, 200, "{body}");
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "/hello took {:?} while statements ran",
        asked.elapsed()
    );
    for r in runaways {
        let (status, body, took) = r.join().unwrap();
        assert!(
            took < Duration::from_secs(4),
            "the statement ran for {took:?}, past its 1 s deadline"
        );
        assert!(
            status == 504 || (status == 400 && body.contains("deadline")),
            "HTTP {status}: {body}"
        );
    }
}

#[test]
fn embedded_sql_statements_are_bounded() {
    let (_f, server) = fixture(None);
    endless_statements_end_at_the_deadline(&server);
    // 100,000 rows of 1 KB: more than the function's 64 MiB could ever receive.
    let (status, body) = sql(
        &server,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 100000) \
         SELECT n, randomblob(1000) FROM r",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("larger than 64 MiB"), "{body}");
    // The database still serves ordinary statements.
    let (status, body) = sql(&server, "SELECT 41 + 1 AS answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], 42, "{body}");
}

fn psql(url: &str, statement: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-At", "-c", statement])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn postgres_statements_are_bounded_and_connections_come_back_clean() {
    let url = postgres().database();
    let (_f, server) = fixture(Some(&url));
    let (status, body) = sql(&server, "CREATE TABLE t (v INT)");
    assert_eq!(status, 200, "{body}");

    // A statement past the deadline is cancelled on the server, not left running.
    let started = Instant::now();
    let (status, body) = sql(&server, "SELECT pg_sleep(30)");
    assert!(started.elapsed() < Duration::from_secs(4), "{body}");
    assert!(status == 504 || status == 400, "HTTP {status}: {body}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'"
        ),
        "0",
        "the sleeping statement still runs on the server"
    );

    // A result larger than the function's memory is refused.
    let (status, body) = sql(
        &server,
        "SELECT g, repeat('x', 1000) FROM generate_series(1, 100000) g",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("larger than 64 MiB"), "{body}");

    // A plain `BEGIN` must not leave the only pooled connection inside a transaction: the
    // next statement commits on its own and other sessions see it.
    assert_eq!(sql(&server, "BEGIN").0, 200);
    let (status, body) = sql(&server, "INSERT INTO t VALUES (1)");
    assert_eq!(status, 200, "{body}");
    assert_eq!(psql(&url, "SELECT count(*) FROM t"), "1");

    endless_statements_end_at_the_deadline(&server);
}

#[test]
fn whole_blob_reads_past_the_functions_memory_are_refused_before_reading() {
    let f = Fixture::with_guests(&[]);
    f.copy_guest("capabilities", "writer");
    f.copy_guest("capabilities", "reader");
    f.write(
        "wasmfn.toml",
        "[blob.shared]\n[kv.default]\n[sql.default]\n\n\
         [functions.writer]\nblob = [\"shared\"]\nkv = [\"default\"]\nsql = [\"default\"]\n\n\
         [functions.reader]\nblob = [\"shared\"]\nkv = [\"default\"]\nsql = [\"default\"]\n\
         memory = \"16MiB\"\n",
    );
    let server = f.serve();
    let big = vec![7u8; 20 << 20];
    let r = crate::common::client()
        .put(server.url("/writer/blob/shared/big"))
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let (status, body) = server.get("/reader/blob/shared/big");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("(20971520 bytes) is larger than `get` may return to this function (16 MiB"),
        "{body}"
    );
    // A range, or the stream, still works.
    let (status, body) = server.get("/reader/blob/shared/big?offset=0&length=1000");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.len(), 1000);
}

#[test]
fn postgres_commit_after_a_failed_statement_is_not_reported_as_committed() {
    let url = postgres().database();
    let (_f, server) = fixture(Some(&url));
    assert_eq!(sql(&server, "CREATE TABLE t (v INT)").0, 200);
    // A transaction whose statement failed is not reported as committed.
    let (status, body) = post(
        &server,
        "/caps/sql-tx/db",
        &json!({
            "statements": [
                {"sql": "INSERT INTO t VALUES (2)"},
                {"sql": "INSERT INTO missing VALUES (3)"},
            ],
            "continue": true,
            "end": "commit",
        })
        .to_string(),
    );
    assert_eq!(status, 400, "commit must fail: {body}");
    assert!(body.to_string().contains("rolled back"), "{body}");
    assert_eq!(psql(&url, "SELECT count(*) FROM t"), "0");
}
