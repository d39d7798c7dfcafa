//! The manifest through the real binary: store bindings checked at load, secrets that never
//! leak, the outbound allow-list, `[env.NAME]` overlays, `wasmfn check` and the JSON Schema.

mod common;

use std::time::Duration;

use common::{wasmfn, Fixture};

fn check(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = wasmfn()
        .arg("check")
        .arg(f.dir.path())
        .arg("--cache-dir")
        .arg(f.cache.path())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_function_importing_an_unbound_store_is_refused_and_the_rest_served() {
    let f = Fixture::with_guests(&["hello"]);
    f.copy_guest("capabilities", "caps");
    // A manifest exists, so bindings are explicit: `caps` gets none.
    f.write("wasmfn.toml", "[functions.hello]\nroutes = [\"/hello\"]\n");
    let server = f.serve();
    let log = server.wait_for_log("no key-value store is bound to it");
    assert!(
        log.contains("imports wasi:keyvalue") && log.contains("kv = [\"default\"]"),
        "{log}"
    );
    assert_eq!(server.get("/hello").0, 200);
    assert_eq!(server.get("/caps/kv/default/x").0, 404);
    let (ok, text) = check(&f, &[], &[]);
    assert!(!ok && text.contains("error caps"), "{text}");
}

#[test]
fn binding_an_undeclared_store_names_the_line() {
    let f = Fixture::with_guests(&["hello"]);
    f.write(
        "wasmfn.toml",
        "[functions.hello]\nkv = [\"cache\"]\n\n[sql.main]\nbackend = \"mysql\"\n",
    );
    let (ok, text) = check(&f, &[], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("wasmfn.toml:5: `sql.main.backend`"), "{text}");
    f.write("wasmfn.toml", "[functions.hello]\nkv = [\"cache\"]\n");
    let (ok, text) = check(&f, &[], &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("wasmfn.toml:2: `functions.hello.kv`: no kv store `cache` is declared"),
        "{text}"
    );
    f.write("wasmfn.toml", "[kv.cache]\nbackend = \"redis\"\n");
    let (_, text) = check(&f, &[], &[]);
    assert!(text.contains("needs `url = "), "{text}");
    f.write("wasmfn.toml", "[kv.cache]\npool-size = 3\n");
    let (_, text) = check(&f, &[], &[]);
    assert!(
        text.contains(
            ":2: `kv.cache.pool-size`: `pool-size` does not apply to the `sqlite` backend"
        ),
        "{text}"
    );
}

#[test]
fn secrets_reach_the_guest_and_nothing_else() {
    const SECRET: &str = "s3cr3t-value-4f1d";
    const FILE_SECRET: &str = "file-secret-9e2c";
    let f = Fixture::with_guests(&[]);
    f.copy_guest("capabilities", "caps");
    f.write("token.txt", format!("{FILE_SECRET}\n"));
    f.write(
        "wasmfn.toml",
        "[functions.caps]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n[functions.caps.config]\nregion = \"eu\"\n\
         [functions.caps.secrets]\napi-key = { env = \"TEST_API_KEY\" }\ntoken = { file = \"token.txt\" }\n",
    );
    let server = f.serve_with(&[], &[("TEST_API_KEY", SECRET), ("WASMFN_LOG", "trace")]);
    assert_eq!(server.get("/caps/config/region"), (200, "eu".into()));
    assert_eq!(server.get("/caps/config/api-key"), (200, SECRET.into()));
    assert_eq!(server.get("/caps/config/token"), (200, FILE_SECRET.into()));
    server.wait_for_log("invocation finished");
    std::thread::sleep(Duration::from_millis(200));
    let logs = server.logs();
    assert!(
        !logs.contains(SECRET) && !logs.contains(FILE_SECRET),
        "a secret reached the log"
    );
    let stdout = server.stdout.lock().unwrap().clone();
    assert!(!stdout.contains(SECRET), "a secret reached stdout");
    // `check` names secrets, never their values.
    let (ok, text) = check(&f, &[], &[("TEST_API_KEY", SECRET)]);
    assert!(ok, "{text}");
    assert!(
        text.contains("secrets=api-key,token") && !text.contains(SECRET),
        "{text}"
    );
    // A missing variable fails that function's load, naming the variable.
    let (ok, text) = check(&f, &[], &[]);
    assert!(
        !ok && text.contains("secret `api-key`: environment variable `TEST_API_KEY` is not set"),
        "{text}"
    );
    f.write(
        "wasmfn.toml",
        "[functions.caps.config]\nk = \"v\"\n[functions.caps.secrets]\nk = { env = \"X\" }\n",
    );
    let (_, text) = check(&f, &[], &[]);
    assert!(text.contains("both a config value and a secret"), "{text}");
}

#[test]
fn outbound_http_is_denied_unless_the_host_is_allowed() {
    let (collector, lines) = common::collector(Duration::ZERO);
    let port = collector
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let port = port.split('/').next().unwrap().to_string();
    let target = format!("http://127.0.0.1:{port}/hit");
    let f = Fixture::with_guests(&[]);
    f.copy_guest("capabilities", "open");
    f.copy_guest("capabilities", "closed");
    f.write(
        "wasmfn.toml",
        format!("[functions.open]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\nallowed-outbound-hosts = [\"http://127.0.0.1:{port}\"]\n[functions.closed]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\nallowed-outbound-hosts = [\"*.example.com\"]\n"),
    );
    let server = f.serve();
    let (status, body) = server.get(&format!("/closed/fetch?url={target}"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let log = server.wait_for_log("outbound request to http://127.0.0.1");
    assert!(
        log.contains(&format!(
            "allowed-outbound-hosts = [\"http://127.0.0.1:{port}\"] in [functions.closed]"
        )),
        "{log}"
    );
    assert!(
        lines.lock().unwrap().is_empty(),
        "a denied request reached the target"
    );
    let (status, body) = server.get(&format!("/open/fetch?url={target}"));
    assert_eq!((status, body.as_str()), (200, "status 200"));
    // Without a manifest nothing may go out.
    let bare = Fixture::with_guests(&[]);
    bare.copy_guest("capabilities", "caps");
    let server = bare.serve();
    assert_eq!(server.get(&format!("/caps/fetch?url={target}")).0, 403);
}

#[test]
fn environments_overlay_the_base_manifest() {
    let f = Fixture::with_guests(&[]);
    f.copy_guest("capabilities", "caps");
    f.write(
        "wasmfn.toml",
        "[functions.caps]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n[functions.caps.config]\nstage = \"dev\"\ncolour = \"blue\"\n\n\
         [env.staging.functions.caps.config]\nstage = \"staging\"\n\n\
         [env.staging.kv.default]\npath = \"staging-kv.sqlite\"\n",
    );
    let dev = f.serve();
    assert_eq!(dev.get("/caps/config/stage").1, "dev");
    drop(dev);
    let staging = f.serve_with(&["--env", "staging"], &[]);
    assert_eq!(staging.get("/caps/config/stage").1, "staging");
    assert_eq!(
        staging.get("/caps/config/colour").1,
        "blue",
        "keys not overridden are kept"
    );
    let put = common::client()
        .put(staging.url("/caps/kv/default/x"))
        .body("1")
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    assert!(
        f.dir.path().join("staging-kv.sqlite").exists(),
        "the staging store is used"
    );
    let (ok, text) = check(&f, &["--env", "production"], &[]);
    assert!(
        !ok && text.contains("no environment `production`; declared: staging"),
        "{text}"
    );
}

#[test]
fn the_published_schema_accepts_real_manifests_and_rejects_unknown_keys() {
    let out = wasmfn().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let full = std::fs::read_to_string(root.join("tests/data/full-manifest.toml")).unwrap();
    let as_json =
        |text: &str| serde_json::to_value(toml::from_str::<toml::Value>(text).unwrap()).unwrap();
    for text in [
        full.clone(),
        std::fs::read_to_string(root.join("guests/wasmfn.toml")).unwrap(),
    ] {
        let doc = as_json(&text);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    // The host accepts the same manifest (so schema and parser agree on every key in it).
    let f = Fixture::with_guests(&[]);
    f.write("wasmfn.toml", &full);
    let (_, text) = check(
        &f,
        &["--env", "staging"],
        &[("DATABASE_URL", "postgres://x@127.0.0.1:1/x")],
    );
    assert!(
        !text.contains("unknown field") && !text.contains("wasmfn.toml:"),
        "{text}"
    );
    let bad = as_json("[functions.a]\nmemroy = \"1MiB\"\n");
    assert!(!validator.is_valid(&bad));
    let bad = as_json("[kv.a]\nbackend = \"memcached\"\n");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn guest_logs_are_tagged_with_function_and_invocation() {
    let f = Fixture::with_guests(&[]);
    f.copy_guest("capabilities", "caps");
    let server = f.serve_with(&["--log-format", "json"], &[]);
    assert_eq!(server.get("/caps/log?msg=m1").0, 200);
    assert_eq!(server.get("/caps/log?msg=m2").0, 200);
    // The background log writer may not have written everything yet: wait for every line read
    // below (both invocations' guest output and both "invocation finished" lines).
    server.wait_for_log("stderr m2");
    let logs = server.wait_for_log_count("invocation finished", 2);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |text: &str| {
        lines
            .iter()
            .find(|l| l["message"].as_str() == Some(text))
            .unwrap_or_else(|| panic!("no log line {text}: {lines:#?}"))
            .clone()
    };
    let finished: Vec<u64> = lines
        .iter()
        .filter(|l| l["message"] == "invocation finished")
        .map(|l| l["invocation"].as_u64().unwrap())
        .collect();
    for (msg, invocation) in [("m1", finished[0]), ("m2", finished[1])] {
        for (text, level) in [
            (format!("structured {msg}"), "WARN"),
            (format!("stdout {msg}"), "INFO"),
            (format!("stderr {msg}"), "WARN"),
        ] {
            let line = find(&text);
            assert_eq!(line["function"], "caps", "{line}");
            assert_eq!(line["invocation"].as_u64(), Some(invocation), "{line}");
            assert_eq!(line["level"], level, "{line}");
        }
    }
}
