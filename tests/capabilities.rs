//! The platform capabilities (key-value, SQL, blob) from a real guest through the real
//! binary, each scenario run twice: on the embedded backends (SQLite, a cap-std folder) and on
//! real distributed servers started on loopback (Redis, PostgreSQL, moto's S3).

mod common;

use std::time::Duration;

use common::servers::{postgres, redis, s3, unique};
use common::{client, wait_until, Fixture, Server};
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Embedded,
    Distributed,
}

/// The store tables of a manifest for `backend`, all bindings named `default`.
fn store_tables(backend: Backend, stream: Option<&str>) -> String {
    let stream = stream
        .map(|s| format!("stream = \"{s}\"\n"))
        .unwrap_or_default();
    match backend {
        Backend::Embedded => format!("[kv.default]\n{stream}\n[sql.default]\n{stream}\n[blob.default]\n{stream}\n"),
        Backend::Distributed => format!(
            "[kv.default]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}:\"\n{stream}\n\
             [sql.default]\nbackend = \"postgres\"\nurl = \"{}\"\npool-size = 4\n{stream}\n\
             [blob.default]\nbackend = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\n\
             access-key-id-env = \"TEST_S3_KEY\"\nsecret-access-key-env = \"TEST_S3_SECRET\"\n{stream}\n",
            redis().url(),
            unique("t"),
            postgres().database(),
            s3().bucket(),
            s3().endpoint(),
        ),
    }
}

/// Credentials for moto (it accepts any).
const S3_ENV: &[(&str, &str)] = &[("TEST_S3_KEY", "testing"), ("TEST_S3_SECRET", "testing")];

struct Caps {
    server: Server,
    _fixture: Fixture,
}

impl Caps {
    fn start(backend: Backend) -> Caps {
        Self::start_with(backend, "")
    }

    fn start_with(backend: Backend, extra: &str) -> Caps {
        let f = Fixture::with_guests(&[]);
        f.copy_guest("capabilities", "caps");
        f.write(
            "wasmfn.toml",
            format!(
                "[functions.caps]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n\n{}{extra}",
                store_tables(backend, None)
            ),
        );
        let server = f.serve_with(&[], S3_ENV);
        Caps {
            server,
            _fixture: f,
        }
    }

    fn call(&self, method: &str, path: &str, body: impl Into<Vec<u8>>) -> (u16, String) {
        let r = client()
            .request(
                method.parse().unwrap(),
                self.server.url(&format!("/caps{path}")),
            )
            .body(body.into())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    }

    fn ok(&self, method: &str, path: &str, body: impl Into<Vec<u8>>) -> String {
        let (status, text) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {text}");
        text
    }

    fn sql(&self, sql: &str, params: Value) -> (u16, Value) {
        let (status, text) = self.call(
            "POST",
            "/sql/default",
            json!({"sql": sql, "params": params}).to_string(),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// One scenario, run on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $name() { super::$name(super::Backend::Embedded) } )*
        }
        mod distributed {
            $( #[test] fn $name() { super::$name(super::Backend::Distributed) } )*
        }
    };
}

on_both_backends!(
    kv_crud_and_listing,
    kv_ttl_expires_keys,
    kv_increment_and_compare_and_swap,
    sql_typed_rows_and_errors,
    sql_transactions_commit_roll_back_and_survive_traps,
    blob_objects_with_metadata_ranges_and_streams,
    blob_keys_cannot_escape,
    stores_record_changes_to_streams,
);

fn kv_crud_and_listing(backend: Backend) {
    let c = Caps::start(backend);
    assert_eq!(c.call("GET", "/kv/default/missing", "").0, 404);
    c.ok("PUT", "/kv/default/greeting", "hello");
    assert_eq!(c.ok("GET", "/kv/default/greeting", ""), "hello");
    assert_eq!(c.ok("GET", "/kv-exists/default/greeting", ""), "true");
    c.ok("PUT", "/kv/default/greeting", "bonjour");
    assert_eq!(c.ok("GET", "/kv/default/greeting", ""), "bonjour");
    c.ok("DELETE", "/kv/default/greeting", "");
    assert_eq!(c.ok("GET", "/kv-exists/default/greeting", ""), "false");
    c.ok("DELETE", "/kv/default/greeting", ""); // deleting an absent key succeeds

    for i in 0..25 {
        c.ok(
            "PUT",
            &format!("/kv/default/user%2F{i:02}"),
            format!("u{i}"),
        );
    }
    c.ok("PUT", "/kv/default/other", "x");
    // Page through the prefix with a small limit: every key exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let q = match &cursor {
            Some(cur) => format!("/kv-list/default?prefix=user%2F&limit=7&cursor={cur}"),
            None => "/kv-list/default?prefix=user%2F&limit=7".into(),
        };
        let page: Value = serde_json::from_str(&c.ok("GET", &q, "")).unwrap();
        seen.extend(
            page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string()),
        );
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.replace('/', "%2F")),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    let expected: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    assert_eq!(seen, expected);
    // The standard `wasi:keyvalue` listing sees everything.
    let all: Vec<String> = serde_json::from_str(&c.ok("GET", "/kv-keys/default", "")).unwrap();
    assert_eq!(all.len(), 26, "{all:?}");
    // An unbound store name is refused with the interface's error, and the log says why.
    let (status, body) = c.call("GET", "/kv/elsewhere/x", "");
    assert_eq!(
        (status, body.contains("no-such-store")),
        (404, true),
        "{body}"
    );
    c.server
        .wait_for_log("kv store `elsewhere` is not bound to this function");
}

fn kv_ttl_expires_keys(backend: Backend) {
    let c = Caps::start(backend);
    c.ok("PUT", "/kv/default/session?ttl=400", "token");
    c.ok("PUT", "/kv/default/kept?ttl=400", "value");
    assert_eq!(c.ok("GET", "/kv/default/session", ""), "token");
    let ttl: u64 = c.ok("GET", "/kv-ttl/default/session", "").parse().unwrap();
    assert!(ttl > 0 && ttl <= 400, "ttl {ttl}");
    assert_eq!(c.ok("POST", "/kv-persist/default/kept", ""), "true");
    assert_eq!(c.ok("GET", "/kv-ttl/default/kept", ""), "none");
    assert_eq!(c.ok("GET", "/kv-ttl/default/never-set", ""), "none");
    wait_until("the key to expire", Duration::from_secs(5), || {
        c.call("GET", "/kv/default/session", "").0 == 404
    });
    assert_eq!(c.ok("GET", "/kv-exists/default/session", ""), "false");
    assert_eq!(c.ok("GET", "/kv/default/kept", ""), "value");
    assert_eq!(c.ok("POST", "/kv-persist/default/session", ""), "false");
    // A zero TTL is refused rather than silently meaning "already expired".
    assert_eq!(c.call("PUT", "/kv/default/z?ttl=0", "v").0, 500);
}

fn kv_increment_and_compare_and_swap(backend: Backend) {
    let c = Caps::start(backend);
    assert_eq!(c.ok("POST", "/kv-incr/default/hits?by=5", ""), "5");
    assert_eq!(c.ok("POST", "/kv-incr/default/hits?by=2", ""), "7");
    assert_eq!(c.ok("GET", "/kv/default/hits", ""), "7");
    c.ok("PUT", "/kv/default/name", "not a number");
    let (status, body) = c.call("POST", "/kv-incr/default/name", "");
    assert_eq!(status, 500, "{body}");
    // CAS: create-if-absent, then a racing writer with a stale expectation loses.
    assert_eq!(
        c.call("POST", "/kv-cas/default/lock?expect=absent", "owner-a")
            .0,
        200
    );
    assert_eq!(
        c.call("POST", "/kv-cas/default/lock?expect=absent", "owner-b")
            .0,
        409
    );
    assert_eq!(
        c.call("POST", "/kv-cas/default/lock?expect=owner-b", "owner-c")
            .0,
        409
    );
    assert_eq!(
        c.call("POST", "/kv-cas/default/lock?expect=owner-a", "owner-c")
            .0,
        200
    );
    assert_eq!(c.ok("GET", "/kv/default/lock", ""), "owner-c");
    // Concurrent increments are atomic.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    c.ok("POST", "/kv-incr/default/counter", "");
                }
            });
        }
    });
    assert_eq!(c.ok("GET", "/kv/default/counter", ""), "100");
}

fn sql_typed_rows_and_errors(backend: Backend) {
    let c = Caps::start(backend);
    c.ok(
        "POST",
        "/sql-batch/default",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
         score DOUBLE PRECISION, photo BYTEA, note TEXT)",
    );
    let (status, r) = c.sql(
        "INSERT INTO people (id, name, score, photo, note) VALUES ($1, $2, $3, $4, $5) RETURNING id, name",
        json!([1, "ada", 9.5, {"blob": [0, 1, 255]}, null]),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rows"], json!([[1, "ada"]]));
    assert_eq!(r["rows_affected"], 1);
    let (_, r) = c.sql(
        "SELECT id, name, score, photo, note FROM people WHERE id = $1",
        json!([1]),
    );
    assert_eq!(
        r["columns"],
        json!(["id", "name", "score", "photo", "note"])
    );
    assert_eq!(
        r["rows"],
        json!([[1, "ada", 9.5, {"blob": [0, 1, 255]}, null]])
    );
    assert_eq!(r["rows_affected"], 0);
    let (_, r) = c.sql(
        "UPDATE people SET score = $1 WHERE id = $2",
        json!([7.25, 1]),
    );
    assert_eq!(r["rows_affected"], 1);

    let (status, r) = c.sql(
        "INSERT INTO people (id, name) VALUES ($1, $2)",
        json!([2, "ada"]),
    );
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("constraint-violation")),
        "{r}"
    );
    let (status, r) = c.sql("SELEC nonsense", json!([]));
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid-statement")),
        "{r}"
    );
    let (status, r) = c.sql("SELECT * FROM no_such_table", json!([]));
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid-statement")),
        "{r}"
    );
    let (status, r) = c.sql("SELECT * FROM people WHERE id = $1", json!([]));
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid-parameter")),
        "{r}"
    );
    let (status, r) = c.sql("SELECT name FROM people WHERE id = $1", json!([1]));
    assert_eq!((status, &r["rows"]), (200, &json!([["ada"]])));
    let (status, body) = c.call("POST", "/sql/elsewhere", "{}");
    assert_eq!(status, 404, "{body}");
}

fn count(c: &Caps, table: &str) -> i64 {
    let (status, r) = c.sql(&format!("SELECT COUNT(*) AS n FROM {table}"), json!([]));
    assert_eq!(status, 200, "{r}");
    r["rows"][0][0].as_i64().unwrap()
}

fn sql_transactions_commit_roll_back_and_survive_traps(backend: Backend) {
    let c = Caps::start(backend);
    c.ok(
        "POST",
        "/sql-batch/default",
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)",
    );
    let tx = |statements: Value, end: &str| {
        c.call(
            "POST",
            "/sql-tx/default",
            json!({"statements": statements, "end": end}).to_string(),
        )
    };
    let insert = |id: i64| json!({"sql": "INSERT INTO ledger (id, amount) VALUES ($1, $2)", "params": [id, 10]});
    // Statements in a transaction see their own writes; commit makes them visible.
    let (status, body) = tx(
        json!([insert(1), insert(2), {"sql": "SELECT COUNT(*) FROM ledger", "params": []}]),
        "commit",
    );
    assert_eq!(status, 200, "{body}");
    let results: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(results[2]["rows"][0][0], 2);
    assert_eq!(count(&c, "ledger"), 2);
    // Rolled back, dropped without commit, or interrupted by a trap: nothing lands.
    assert_eq!(tx(json!([insert(3)]), "rollback").0, 200);
    assert_eq!(tx(json!([insert(4)]), "drop").0, 200);
    let (status, body) = tx(json!([insert(5)]), "trap");
    assert_eq!(status, 500, "{body}");
    // The connection the trapped transaction held is usable again (pool not poisoned).
    wait_until(
        "the rolled-back rows to stay out",
        Duration::from_secs(5),
        || count(&c, "ledger") == 2,
    );
    assert_eq!(tx(json!([insert(6)]), "commit").0, 200);
    assert_eq!(count(&c, "ledger"), 3);
    // A failing statement aborts the transaction with the interface's error.
    let (status, body) = tx(json!([insert(7), insert(7)]), "commit");
    assert_eq!(status, 400, "{body}");
    assert_eq!(count(&c, "ledger"), 3);
}

fn blob_objects_with_metadata_ranges_and_streams(backend: Backend) {
    let c = Caps::start(backend);
    let put = client()
        .put(c.server.url("/caps/blob/default/avatars/ada.png"))
        .header("content-type", "image/png")
        .header("x-meta-owner", "ada")
        .body(b"0123456789".to_vec())
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    let info: Value = put.json().unwrap();
    assert_eq!(
        (info["size"].as_u64(), info["content_type"].as_str()),
        (Some(10), Some("image/png"))
    );
    let get = client()
        .get(c.server.url("/caps/blob/default/avatars/ada.png"))
        .send()
        .unwrap();
    assert_eq!(get.headers()["content-type"], "image/png");
    assert_eq!(get.headers()["x-meta-owner"], "ada");
    assert_eq!(get.text().unwrap(), "0123456789");
    assert_eq!(
        c.ok("GET", "/blob/default/avatars/ada.png?offset=3&length=4", ""),
        "3456"
    );
    assert_eq!(
        c.ok("GET", "/blob/default/avatars/ada.png?offset=7", ""),
        "789"
    );
    assert_eq!(
        c.ok(
            "GET",
            "/blob/default/avatars/ada.png?offset=2&length=3&stream=1",
            ""
        ),
        "234"
    );
    assert_eq!(
        c.call("GET", "/blob/default/avatars/ada.png?offset=11", "")
            .0,
        416
    );
    let head: Value =
        serde_json::from_str(&c.ok("GET", "/blob-head/default/avatars/ada.png", "")).unwrap();
    assert_eq!(head["metadata"], json!({"owner": "ada"}));
    assert_eq!(head["content_type"], "image/png");

    // A 3 MiB body streamed up and down in chunks, never whole in one call.
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let up = client()
        .put(c.server.url("/caps/blob/default/big.bin?stream=1"))
        .header("content-type", "application/octet-stream")
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(up.status(), 200, "{}", up.text().unwrap());
    let down = client()
        .get(c.server.url("/caps/blob/default/big.bin?stream=1"))
        .send()
        .unwrap();
    assert_eq!(down.bytes().unwrap().as_ref(), &big[..]);

    for i in 0..5 {
        c.ok("PUT", &format!("/blob/default/avatars/{i}.png"), "x");
    }
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!(
                "/blob-list/default?prefix=avatars%2F&limit=2&cursor={}",
                cur.replace('/', "%2F")
            ),
            None => "/blob-list/default?prefix=avatars%2F&limit=2".into(),
        };
        let page: Value = serde_json::from_str(&c.ok("GET", &q, "")).unwrap();
        for o in page["objects"].as_array().unwrap() {
            keys.push(o["key"].as_str().unwrap().to_string());
            if o["key"] == "avatars/ada.png" {
                assert_eq!(
                    o["metadata"],
                    json!({"owner": "ada"}),
                    "listings carry metadata"
                );
            }
        }
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        keys,
        [
            "avatars/0.png",
            "avatars/1.png",
            "avatars/2.png",
            "avatars/3.png",
            "avatars/4.png",
            "avatars/ada.png"
        ]
    );
    c.ok("DELETE", "/blob/default/avatars/ada.png", "");
    assert_eq!(c.call("GET", "/blob/default/avatars/ada.png", "").0, 404);
    assert_eq!(
        c.call("GET", "/blob-head/default/avatars/ada.png", "").0,
        404
    );
    c.ok("DELETE", "/blob/default/avatars/ada.png", "");
}

fn blob_keys_cannot_escape(backend: Backend) {
    let c = Caps::start(backend);
    for key in [
        "..%2Fescape",
        "%2Fetc%2Fpasswd",
        "a%2F..%2F..%2Fb",
        "a%2F%2Fb",
        ".wasmfn%2Findex.sqlite",
    ] {
        let (status, body) = c.call("PUT", &format!("/blob/default/{key}"), "x");
        assert_eq!(status, 400, "{key}: {body}");
        assert!(body.contains("invalid-key"), "{key}: {body}");
        assert_eq!(c.call("GET", &format!("/blob/default/{key}"), "").0, 400);
    }
}

#[test]
fn embedded_blob_symlinks_cannot_lead_outside() {
    let c = Caps::start(Backend::Embedded);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "SECRET-CONTENT-7f3a").unwrap();
    c.ok("PUT", "/blob/default/inside.txt", "inside");
    let root = c._fixture.dir.path().join(".wasmfn/blob/default");
    // A folder symlink pointing out: writing through it is refused, nothing lands outside.
    std::os::unix::fs::symlink(outside.path(), root.join("door")).unwrap();
    let (status, body) = c.call("PUT", "/blob/default/door/planted.txt", "x");
    assert_ne!(status, 200, "{body}");
    assert!(!outside.path().join("planted.txt").exists());
    // A known object replaced by a symlink to a file outside: reading it is refused.
    std::fs::remove_file(root.join("inside.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("inside.txt")).unwrap();
    let (status, body) = c.call("GET", "/blob/default/inside.txt", "");
    assert_ne!(status, 200);
    assert!(!body.contains("SECRET-CONTENT"), "{body}");
    // An absolute symlink too.
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).unwrap();
    c.ok("PUT", "/blob/default/abs2", "x");
    std::fs::remove_file(root.join("abs2")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs2")).unwrap();
    assert_ne!(c.call("GET", "/blob/default/abs2", "").0, 200);
}

fn stores_record_changes_to_streams(backend: Backend) {
    let (url, lines) = common::collector(Duration::ZERO);
    let f = Fixture::with_guests(&["stream-recorder"]);
    f.copy_guest("capabilities", "caps");
    f.write(
        "wasmfn.toml",
        format!(
            "[functions.caps]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n\n\
             [functions.stream-recorder]\nallowed-outbound-hosts = [\"http://127.0.0.1:*\"]\n\
             [functions.stream-recorder.config]\ncollector = \"{url}\"\ndetail = \"json\"\n\n\
             [streams.changes]\nfunction = \"stream-recorder\"\n\n{}",
            store_tables(backend, Some("changes"))
        ),
    );
    let server = f.serve_with(&[], S3_ENV);
    let c = Caps {
        server,
        _fixture: f,
    };
    c.ok("PUT", "/kv/default/k", "v1");
    c.ok("PUT", "/kv/default/k", "v2");
    c.ok("DELETE", "/kv/default/k", "");
    c.ok(
        "POST",
        "/sql-batch/default",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT)",
    );
    c.sql(
        "INSERT INTO items (id, label) VALUES ($1, $2)",
        json!([1, "a"]),
    );
    c.sql("UPDATE items SET label = $1 WHERE id = $2", json!(["b", 1]));
    // A rolled-back change is never recorded.
    c.call("POST", "/sql-tx/default", json!({"statements": [{"sql": "INSERT INTO items (id, label) VALUES (2, 'x')", "params": []}], "end": "rollback"}).to_string());
    c.sql("DELETE FROM items WHERE id = $1", json!([1]));
    c.ok("PUT", "/blob/default/doc.txt", "hello");
    c.ok("DELETE", "/blob/default/doc.txt", "");
    wait_until("8 change records", Duration::from_secs(20), || {
        lines.lock().unwrap().len() >= 8
    });
    std::thread::sleep(Duration::from_millis(300));
    let records: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["source"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
                r["operation"].as_str().or(r["kind"].as_str()).unwrap_or("")
            )
        })
        .collect();
    let kv: Vec<&String> = summary
        .iter()
        .filter(|s| s.starts_with("default k"))
        .collect();
    assert_eq!(
        kv,
        ["default k insert", "default k modify", "default k remove"],
        "{summary:#?}"
    );
    let sql: Vec<&String> = summary
        .iter()
        .filter(|s| s.starts_with("default.items"))
        .collect();
    assert_eq!(
        sql,
        [
            "default.items 1 insert",
            "default.items 1 modify",
            "default.items 1 remove"
        ],
        "{summary:#?}"
    );
    let blob: Vec<&String> = summary.iter().filter(|s| s.contains("doc.txt")).collect();
    assert_eq!(
        blob,
        ["default doc.txt created", "default doc.txt deleted"],
        "{summary:#?}"
    );
    assert_eq!(records.len(), 8, "{summary:#?}");
    let modify = records
        .iter()
        .find(|r| r["source"] == "default.items" && r["operation"] == "modify")
        .unwrap();
    assert_eq!(modify["oldImage"]["label"], "a", "{modify}");
    assert_eq!(modify["newImage"]["label"], "b", "{modify}");
}
