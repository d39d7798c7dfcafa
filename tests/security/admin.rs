//! The admin surface: the host API lives on its own listener, needs the bearer token (except on
//! a Unix socket, where only our uid may connect), refuses foreign `Host` names and cross-site
//! browser requests, and redrives only dead-letter queues into declared queues.

use std::os::unix::fs::PermissionsExt as _;

use crate::common::{client, wasmfn, Fixture, Server};

const TOKEN: &str = "s3cret-admin-token-for-tests-0123456789";

/// An app with one queue (`jobs`, consumed by queue-worker, dead letters in `jobs-dlq`).
fn queue_app() -> Fixture {
    let f = Fixture::with_guests(&["hello", "queue-worker"]);
    f.write(
        "wasmfn.toml",
        "[queues.jobs]\nfunction = \"queue-worker\"\n\n[queues.parked]\n",
    );
    f
}

fn depth(server: &Server, queue: &str) -> u64 {
    let v: serde_json::Value = server.admin_get("queues").send().unwrap().json().unwrap();
    let q = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == queue)
        .unwrap_or_else(|| panic!("no queue {queue} in {v}"));
    q["waiting"].as_u64().unwrap() + q["inFlight"].as_u64().unwrap()
}

#[test]
fn the_host_api_is_not_served_on_the_public_listener() {
    let f = queue_app();
    let server = f.serve();
    for (method, path) in [
        ("GET", "/_wasmfn/queues"),
        ("POST", "/_wasmfn/queues/parked/messages"),
        ("GET", "/_wasmfn/queues/parked/messages"),
        ("POST", "/_wasmfn/events"),
        ("GET", "/_wasmfn/schedules"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), server.url(path))
            .bearer_auth(&server.admin_token)
            .body("injected")
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path} on the public listener");
        assert!(r.text().unwrap().contains("admin listener"));
    }
    assert_eq!(depth(&server, "parked"), 0, "nothing was enqueued");
    // And the admin listener serves the host API only, never functions.
    let r = client()
        .get(format!("http://{}/hello", server.admin_addr))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn the_admin_listener_needs_the_token_from_the_private_state_file() {
    let f = queue_app();
    let server = f.serve();
    let file = server.state_dir.join("admin-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is private", file.display());
    assert_eq!(server.admin_token.len(), 64);

    let anonymous = client().get(server.admin_url("queues")).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert!(anonymous.text().unwrap().contains("admin-token"));
    let forged = client()
        .post(server.admin_url("queues/parked/messages"))
        .bearer_auth("0000000000000000000000000000000000000000000000000000000000000000")
        .body("forged")
        .send()
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(server.admin_get("queues").send().unwrap().status(), 200);
    assert_eq!(depth(&server, "parked"), 0);

    // A restart reuses the token; a token file others can read is refused at start.
    drop(server);
    let again = f.serve();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        again.admin_token
    );
    drop(again);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = wasmfn()
        .arg("serve")
        .arg(f.dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin-token") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn wasmfn_admin_token_replaces_the_file() {
    let f = queue_app();
    let server = f.serve_with(&[], &[("WASMFN_ADMIN_TOKEN", TOKEN)]);
    assert!(!server.state_dir.join("admin-token").exists());
    assert_eq!(server.admin_get("queues").send().unwrap().status(), 200);
    // The CLI takes the token from the same variable.
    let out = wasmfn()
        .args(["queues", "--state-dir"])
        .arg(&server.state_dir)
        .env("WASMFN_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("jobs-dlq"));
    // Too short a token is refused with the reason.
    let out = wasmfn()
        .arg("serve")
        .arg(f.dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("WASMFN_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
}

#[test]
fn dns_rebinding_and_cross_site_browser_requests_are_refused() {
    let f = queue_app();
    let server = f.serve();
    let port = server.admin_addr.rsplit(':').next().unwrap().to_string();
    // A rebinding attacker's page reaches our address under its own name.
    let rebound = client()
        .get(server.admin_url("queues"))
        .header("host", format!("attacker.example:{port}"))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap();
    assert_eq!(rebound.status(), 421);
    let by_name = client()
        .get(format!("http://localhost:{port}/_wasmfn/queues"))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap();
    assert_eq!(
        by_name.status(),
        200,
        "localhost is one of the listener's names"
    );
    for (header, value) in [
        ("origin", "http://attacker.example".to_string()),
        ("origin", "null".to_string()),
        ("sec-fetch-site", "cross-site".to_string()),
    ] {
        let r = server
            .admin_post("queues/parked/messages")
            .header(header, value.as_str())
            .body("cross-site")
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{header}: {value}");
    }
    assert_eq!(depth(&server, "parked"), 0);
}

#[test]
fn a_unix_socket_admin_listener_admits_our_user_without_a_token() {
    let f = queue_app();
    let socket = f.dir.path().join("admin.sock");
    let arg = format!("unix:{}", socket.display());
    let server = f.serve_with(&["--admin-listen", &arg], &[]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let over_socket = reqwest::blocking::Client::builder()
        .unix_socket(socket.clone())
        .build()
        .unwrap();
    let r = over_socket
        .get("http://localhost/_wasmfn/queues")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The CLI finds the socket in the state folder (no --admin, no token).
    let out = wasmfn()
        .args(["send", "parked", "-d", "over-the-socket", "--dir"])
        .arg(f.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = wasmfn()
        .args(["dead-letters", "parked", "--dir"])
        .arg(f.dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("over-the-socket"));
    drop(server);
}

#[test]
fn redrive_moves_only_a_dead_letter_queue_into_a_declared_queue() {
    let f = queue_app();
    let server = f.serve();
    let send = |queue: &str| {
        let r = server
            .admin_post(&format!("queues/{queue}/messages"))
            .body("m")
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    };
    send("parked");
    send("jobs-dlq");
    for (path, expect) in [
        // A live queue is no dead-letter queue: its messages stay.
        (
            "queues/parked/redrive?to=jobs",
            "no queue's dead-letter queue",
        ),
        // A typo'd target would strand the messages where nobody consumes them.
        (
            "queues/jobs-dlq/redrive?to=jbos",
            "no such queue is declared",
        ),
        ("queues/jobs-dlq/redrive?to=jobs-dlq", "into itself"),
    ] {
        let r = server.admin_post(path).send().unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().unwrap();
        assert!(text.contains(expect), "{path}: {text}");
    }
    assert_eq!(depth(&server, "parked"), 1);
    assert_eq!(depth(&server, "jobs-dlq"), 1);
    let r: serde_json::Value = server
        .admin_post("queues/jobs-dlq/redrive")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (r["moved"].as_u64(), r["to"].as_str()),
        (Some(1), Some("jobs"))
    );
}

/// `schema/admin-api.openapi.json` documents every route of the host API that the code's own
/// route tables (`host/src/control_api/*.rs`) list, and nothing they do not.
#[test]
fn the_openapi_document_lists_every_host_api_route() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("schema/admin-api.openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    // The code's tables: "//! | `METHOD /_wasmfn/queues/NAME/messages?...` | ...".
    let mut in_code = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root.join("host/src/control_api")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let Some(route) = line.strip_prefix("//! | `") else {
                continue;
            };
            let route = route.split(['`', '?']).next().unwrap();
            let (method, path) = route.split_once(' ').unwrap();
            let path: Vec<String> = path
                .split('/')
                .map(|s| match s {
                    "NAME" => "{name}".to_string(),
                    "ID" => "{id}".to_string(),
                    "SEQ" => "{seq}".to_string(),
                    s => s.to_string(),
                })
                .collect();
            in_code.insert(format!("{method} {}", path.join("/")));
        }
    }
    assert!(in_code.len() >= 18, "{in_code:?}");
    let missing: Vec<_> = in_code.difference(&documented).collect();
    assert!(missing.is_empty(), "not in the OpenAPI file: {missing:?}");
    // Beyond the code's tables: the health, metrics and usage routes of the admin listener.
    let extra: Vec<_> = documented
        .difference(&in_code)
        .filter(|r| {
            ![
                "GET /healthz",
                "GET /readyz",
                "GET /metrics",
                "GET /_wasmfn/usage",
                "GET /_wasmfn/logs",
            ]
            .contains(&r.as_str())
        })
        .collect();
    assert!(
        extra.is_empty(),
        "documented but not in the code's tables: {extra:?}"
    );
}
