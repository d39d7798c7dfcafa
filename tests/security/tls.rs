//! TLS to the distributed backends: PostgreSQL with `sslmode=require` and Redis with
//! `rediss://` connect over TLS and check the server's certificate, against the Mozilla roots
//! or the CA that `SSL_CERT_FILE` names; a server the client cannot verify is refused.

use serde_json::json;

use crate::common::orders::post;
use crate::common::servers::{postgres, redis, test_ca, unique};
use crate::common::{client, wasmfn, Fixture};

fn manifest(sql_url: &str, kv_url: &str) -> String {
    format!(
        "[sql.db]\nbackend = \"postgres\"\nurl = \"{sql_url}\"\n\n\
         [kv.cache]\nbackend = \"redis\"\nurl = \"{kv_url}\"\nprefix = \"{}:\"\n\n\
         [blob.default]\n\n\
         [functions.caps]\nsql = [\"db\"]\nkv = [\"cache\"]\nblob = [\"default\"]\n",
        unique("tls")
    )
}

#[test]
fn backends_are_reached_over_verified_tls() {
    let sql_url = format!("{}?sslmode=require", postgres().database());
    let f = Fixture::with_guests(&[]);
    f.copy_guest("capabilities", "caps");
    f.write("wasmfn.toml", manifest(&sql_url, &redis().tls_url()));
    let ca = test_ca().ca();
    let server = f.serve_with(&[], &[("SSL_CERT_FILE", ca.to_str().unwrap())]);

    // PostgreSQL says the session is encrypted.
    let (status, body) = post(
        &server,
        "/caps/sql/db",
        &json!({"sql": "SELECT ssl::int FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "params": []})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], 1, "{body}");

    // Redis over its TLS port.
    let url = server.url("/caps/kv/cache/greeting");
    assert_eq!(
        client().put(&url).body("hello").send().unwrap().status(),
        200
    );
    assert_eq!(client().get(&url).send().unwrap().text().unwrap(), "hello");
}

#[test]
fn a_backend_whose_certificate_cannot_be_verified_is_refused() {
    // The same servers, but the client does not trust the test CA.
    for (what, sql_url, kv_url) in [
        (
            "PostgreSQL",
            format!("{}?sslmode=require", postgres().database()),
            redis().url(),
        ),
        ("Redis", postgres().database(), redis().tls_url()),
    ] {
        let f = Fixture::with_guests(&[]);
        f.copy_guest("capabilities", "caps");
        f.write("wasmfn.toml", manifest(&sql_url, &kv_url));
        let out = wasmfn()
            .env_remove("SSL_CERT_FILE")
            .arg("--cache-dir")
            .arg(f.cache.path())
            .arg("check")
            .arg(f.dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {text}");
        // PostgreSQL names the certificate; the Redis client retries the failed handshake
        // until its 5 s connect limit, so its error only says the server did not answer.
        let named = match what {
            "PostgreSQL" => text.to_lowercase().contains("certificate"),
            _ => text.contains("[kv.cache]: cannot open"),
        };
        assert!(named, "{what}: {text}");
    }
}
