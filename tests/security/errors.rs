//! What clients learn when something fails: outside development mode, the error's kind and
//! the invocation id that the host's log line carries, never the trap's text; unknown paths
//! get a bare 404 instead of the route table.

use crate::common::{client, Fixture};

#[test]
fn clients_get_the_kind_and_the_invocation_id_not_the_trap() {
    let f = Fixture::with_guests(&["hello", "trap"]);
    let server = f.serve_with(&[], &[("WASMFN_DEV", "0")]);
    let r = client().get(server.url("/trap")).send().unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-wasmfn-error"], "Trap");
    let id = r.headers()["x-wasmfn-invocation"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.text().unwrap();
    assert_eq!(
        body.trim_end(),
        format!("Trap: invocation {id} failed; its details are in the host's log")
    );
    // The operator finds the whole story under that id: the invocation's own line (the
    // guest's stderr lines carry the id too, and may come first).
    let needle = format!("invocation={id}");
    crate::common::wait_until(
        "the invocation's failure line",
        std::time::Duration::from_secs(10),
        || {
            server.logs().lines().any(|l| {
                l.contains(&needle)
                    && (l.contains("this function always fails") || l.contains("trapped"))
            })
        },
    );

    let (status, body) = server.get("/nowhere");
    assert_eq!(status, 404);
    assert!(
        !body.contains("/hello") && !body.contains("Routes"),
        "{body}"
    );
}

#[test]
fn development_mode_shows_the_trap_and_the_routes() {
    let f = Fixture::with_guests(&["hello", "trap"]);
    let server = f.serve_with(&[], &[("WASMFN_DEV", "1")]);
    let (status, body) = server.get("/trap");
    assert_eq!(status, 500);
    assert!(body.contains("function `trap` trapped"), "{body}");
    let (_, body) = server.get("/nowhere");
    assert!(body.contains("/hello -> hello"), "{body}");
}
