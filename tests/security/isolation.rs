//! Isolation between functions: guest SQL on the embedded backend stays inside its own
//! database file (no ATTACH, no VACUUM INTO, no pragmas that change storage or schema rules).

use serde_json::{json, Value};

use crate::common::orders::post;
use crate::common::{client, Fixture, Server};

/// `caps` with SQL database `mine`; `other` (the same probe) with database `theirs`, and a
/// queue, so that the state folder holds other functions' databases and the queue file.
fn two_tenants() -> (Fixture, Server) {
    let f = Fixture::with_guests(&["queue-worker"]);
    f.copy_guest("capabilities", "caps");
    f.copy_guest("capabilities", "other");
    f.write(
        "wasmfn.toml",
        "[sql.mine]\n[sql.theirs]\n\n\
         [functions.caps]\nsql = [\"mine\"]\nkv = [\"default\"]\nblob = [\"default\"]\n\n\
         [functions.other]\nsql = [\"theirs\"]\nkv = [\"default\"]\nblob = [\"default\"]\n\n\
         [queues.jobs]\nfunction = \"queue-worker\"\n",
    );
    let server = f.serve();
    (f, server)
}

fn sql(server: &Server, function: &str, db: &str, statement: &str) -> (u16, Value) {
    let body = json!({"sql": statement, "params": []}).to_string();
    post(server, &format!("/{function}/sql/{db}"), &body)
}

fn batch(server: &Server, function: &str, db: &str, statements: &str) -> (u16, String) {
    let r = client()
        .post(server.url(&format!("/{function}/sql-batch/{db}")))
        .body(statements.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn refused(what: &str, (status, body): (u16, impl std::fmt::Display)) {
    let text = body.to_string();
    assert_eq!(status, 400, "{what} should be refused: {text}");
    assert!(
        text.contains("not authorized")
            || text.contains("authorization denied")
            || text.contains("too many attached"),
        "{what}: {text}"
    );
}

#[test]
fn embedded_sql_cannot_reach_other_files() {
    let (f, server) = two_tenants();
    let state = f.dir.path().join(".wasmfn");
    let theirs = state.join("sql/theirs.sqlite");
    assert_eq!(
        batch(
            &server,
            "other",
            "theirs",
            "CREATE TABLE secrets (v TEXT); INSERT INTO secrets VALUES ('other team')"
        )
        .0,
        200
    );
    assert!(theirs.is_file(), "{} exists", theirs.display());
    let queue_db = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sqlite" || e == "db"))
        .expect("the queue database in the state folder");

    for target in [&theirs, &queue_db] {
        let path = target.display().to_string();
        refused(
            "ATTACH of another database",
            sql(
                &server,
                "caps",
                "mine",
                &format!("ATTACH DATABASE '{path}' AS stolen"),
            ),
        );
        refused(
            "ATTACH in a batch",
            batch(
                &server,
                "caps",
                "mine",
                &format!("ATTACH '{path}' AS stolen; SELECT * FROM stolen.secrets"),
            ),
        );
        refused(
            "ATTACH by URI",
            sql(
                &server,
                "caps",
                "mine",
                &format!("ATTACH 'file:{path}?mode=ro' AS stolen"),
            ),
        );
    }
    let copy = f.dir.path().join("copied.sqlite");
    refused(
        "VACUUM INTO a new file",
        sql(
            &server,
            "caps",
            "mine",
            &format!("VACUUM INTO '{}'", copy.display()),
        ),
    );
    assert!(!copy.exists(), "VACUUM INTO wrote {}", copy.display());
    for pragma in [
        "PRAGMA journal_mode = OFF",
        "PRAGMA writable_schema = ON",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA temp_store_directory = '/tmp'",
        "PRAGMA mmap_size = 1000000000",
    ] {
        refused(pragma, sql(&server, "caps", "mine", pragma));
    }

    // What a migration or an ORM needs still works.
    assert_eq!(
        batch(
            &server,
            "caps",
            "mine",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"
        )
        .0,
        200
    );
    let (status, r) = sql(
        &server,
        "caps",
        "mine",
        "SELECT name FROM pragma_table_info('t')",
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rows"], json!([["id"], ["v"]]));
    assert_eq!(
        sql(&server, "caps", "mine", "PRAGMA user_version = 3").0,
        200
    );
    let (_, r) = sql(&server, "caps", "mine", "PRAGMA user_version");
    assert_eq!(r["rows"], json!([[3]]));
    let (status, r) = sql(&server, "caps", "mine", "PRAGMA table_info(t)");
    assert_eq!(status, 200, "{r}");
    // And the other team's data is untouched and still theirs alone.
    let (_, r) = sql(&server, "other", "theirs", "SELECT v FROM secrets");
    assert_eq!(r["rows"], json!([["other team"]]));
    let (status, _) = sql(&server, "caps", "theirs", "SELECT v FROM secrets");
    assert_eq!(status, 404, "an unbound database is no such database");
}
