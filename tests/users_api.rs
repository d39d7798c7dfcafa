//! The example users REST API (`guests/users`) end to end over real HTTP, on the embedded
//! stores, on PostgreSQL + Redis + S3, and packaged as a Cloudflare Worker in workerd (D1, KV,
//! R2); and the config/secret example (`guests/config-demo`).

mod common;

use common::servers::{postgres, redis, s3, unique};
use common::{client, Fixture, Server};
use serde_json::{json, Value};

/// The users manifest binding `stores` (the store tables).
fn users_manifest(stores: &str) -> String {
    format!(
        "[functions.users]\nsql = [\"users\"]\nkv = [\"cache\"]\nblob = [\"avatars\"]\n\n{stores}"
    )
}

const EMBEDDED: &str = "[sql.users]\n[kv.cache]\n[blob.avatars]\n";

fn serve_users(distributed: bool) -> (Fixture, Server) {
    let f = Fixture::with_guests(&["users"]);
    let stores = if distributed {
        format!(
            "[sql.users]\nbackend = \"postgres\"\nurl = \"{}\"\n\
             [kv.cache]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}:\"\n\
             [blob.avatars]\nbackend = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\n",
            postgres().database(),
            redis().url(),
            unique("users"),
            s3().bucket(),
            s3().endpoint()
        )
    } else {
        EMBEDDED.to_string()
    };
    f.write("wasmfn.toml", users_manifest(&stores));
    let server = f.serve_with(
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    (f, server)
}

/// Where the API answers: `base` + path.
struct Api(String);

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

fn call(
    server: &Api,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client()
        .request(method.parse().unwrap(), server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().unwrap())
}

fn users_api(s: &Api) {
    let (status, headers, body) = call(
        s,
        "POST",
        "/users",
        r#"{"name":"Ada","email":"ada@example.com"}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let ada: Value = serde_json::from_str(&body).unwrap();
    let id = ada["id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"], format!("/users/{id}").as_str());

    let (status, headers, body) = call(s, "GET", &format!("/users/{id}"), "");
    assert_eq!(
        (status, &headers["x-cache"]),
        (200, &"miss".parse().unwrap()),
        "{body}"
    );
    let (_, headers, body) = call(s, "GET", &format!("/users/{id}"), "");
    assert_eq!(headers["x-cache"], "hit");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["email"],
        "ada@example.com"
    );

    call(
        s,
        "POST",
        "/users",
        r#"{"name":"Bob","email":"bob@example.com"}"#,
    );
    let (status, _, body) = call(s, "GET", "/users", "");
    assert_eq!(status, 200);
    let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().into())
        .collect();
    assert_eq!(names, ["Ada", "Bob"]);

    // An update invalidates the cached copy.
    let (status, _, body) = call(s, "PUT", &format!("/users/{id}"), r#"{"name":"Ada L."}"#);
    assert_eq!(status, 200, "{body}");
    let (_, headers, body) = call(s, "GET", &format!("/users/{id}"), "");
    assert_eq!(headers["x-cache"], "miss");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["name"],
        "Ada L."
    );

    // Avatar upload keeps its content type.
    let png = [0x89u8, b'P', b'N', b'G', 1, 2, 3];
    let r = client()
        .put(s.url(&format!("/users/{id}/avatar")))
        .header("content-type", "image/png")
        .body(png.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(s.url(&format!("/users/{id}/avatar")))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().unwrap().as_ref(), &png);
    let r = client()
        .put(s.url(&format!("/users/{id}/avatar")))
        .header("content-type", "text/plain")
        .body("no")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Bad input, as the seed's handler answers it.
    let expect = |method: &str, path: &str, body: &str, want: u16, message: &str| {
        let (status, headers, text) = call(s, method, path, body);
        assert_eq!(status, want, "{method} {path}: {text}");
        assert_eq!(
            headers["access-control-allow-origin"], "*",
            "CORS on errors too"
        );
        assert!(text.contains(message), "{method} {path}: {text}");
    };
    expect("POST", "/users", "{not json", 400, "Invalid JSON body");
    expect(
        "POST",
        "/users",
        r#"{"name":"NoEmail"}"#,
        400,
        "name and email are required",
    );
    expect(
        "POST",
        "/users",
        r#"{"name":"Ada2","email":"ada@example.com"}"#,
        409,
        "already exists",
    );
    expect("PUT", "/users", "{}", 400, "Missing user id");
    expect("DELETE", "/users", "", 400, "Missing user id");
    expect("GET", "/users/nope", "", 404, "User not found");
    expect(
        "PUT",
        "/users/nope",
        r#"{"name":"x"}"#,
        404,
        "User not found",
    );
    expect("DELETE", "/users/nope", "", 404, "User not found");
    expect(
        "PATCH",
        &format!("/users/{id}"),
        "{}",
        405,
        "Method not allowed",
    );
    let (status, headers, _) = call(s, "OPTIONS", "/users", "");
    assert_eq!(status, 204);
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("DELETE"));

    let (status, _, _) = call(s, "DELETE", &format!("/users/{id}"), "");
    assert_eq!(status, 204);
    assert_eq!(call(s, "GET", &format!("/users/{id}"), "").0, 404);
    assert_eq!(call(s, "GET", &format!("/users/{id}/avatar"), "").0, 404);
}

#[test]
fn users_api_on_embedded_stores() {
    let (_f, server) = serve_users(false);
    users_api(&Api(server.url("")));
}

#[test]
fn users_api_on_postgres_redis_and_s3() {
    let (_f, server) = serve_users(true);
    users_api(&Api(server.url("")));
}

#[test]
fn users_api_as_a_cloudflare_worker() {
    let (_f, bundle, output) =
        common::workers::package_with("users", "users", &users_manifest(EMBEDDED));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let worker = common::workers::Worker::start(&bundle);
    users_api(&Api(worker.url.clone()));
}

#[test]
fn config_demo_checks_the_secret_without_revealing_it() {
    let f = Fixture::with_guests(&["config-demo"]);
    f.write(
        "wasmfn.toml",
        "[functions.config-demo.config]\ngreeting = \"hi\"\n[functions.config-demo.secrets]\napi-token = { env = \"DEMO_TOKEN\" }\n",
    );
    let s = f.serve_with(&[], &[("DEMO_TOKEN", "tok-8c1e"), ("WASMFN_LOG", "trace")]);
    let auth = |token: Option<&str>| {
        let mut r = client().get(s.url("/config-demo"));
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(auth(None).0, 401);
    assert_eq!(auth(Some("wrong")).0, 401);
    assert_eq!(
        auth(Some("tok-8c1e")),
        (200, json!({"greeting": "hi"}).to_string())
    );
    s.wait_for_log("invocation finished");
    assert!(!s.logs().contains("tok-8c1e"));
}
