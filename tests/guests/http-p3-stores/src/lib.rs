//! A WASI 0.3 http function that uses the platform's stores both ways:
//!
//! - `GET /KEY?set=VALUE[&bucket=NAME]`: `wasi:keyvalue/store` (a WASI 0.2 interface, called
//!   synchronously): sets `KEY` when `set` is given, then answers its value.
//! - `GET /async/KEY?set=VALUE[&ttl=MS]`: the same through `wasmfn:platform/kv@0.2.0`, whose
//!   calls are `async func`s; answers `VALUE ttl=MS|none`.
//! - `GET /count?n=N`: counts to `N` in SQL through `wasmfn:platform/sql@0.2.0` (async), a
//!   statement that keeps the database busy for a while; `/count-sync?n=N` does it through
//!   `sql@0.1.0` (synchronous). Both answer `counted=N`.
//! - `GET /ping`: answers `in-flight=K`, the requests this instance is serving right now,
//!   itself included.

use std::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({
    path: ["../../../wit", "../../../wit/async"],
    inline: "
        package test:http-p3-stores;
        world platform {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasmfn:platform/sql@0.1.0;
            import wasmfn:platform/sql@0.2.0;
            import wasmfn:platform/kv@0.2.0;
        }
    ",
    world: "test:http-p3-stores/platform",
    generate_all,
});

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen as rt, wit_future, wit_stream};
use wasmfn::platform0_1_0::sql as sql_sync;
use wasmfn::platform0_2_0::{kv, sql};

wasip3::http::service::export!(Handler);

struct Handler;

/// Requests this instance is serving now.
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

/// Counts a request in flight until dropped.
struct InFlight;

impl InFlight {
    fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn text(status: u16, body: String) -> Result<Response, ErrorCode> {
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
    drop(trailers_tx);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(None))?;
    rt::spawn_local(async move {
        body_tx.write_all(body.into_bytes()).await;
    });
    Ok(response)
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// A statement that keeps SQLite busy: count from 1 to `?1`.
const COUNT: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
                     SELECT count(*) FROM c";

fn counted(rows: &[Vec<i64>]) -> String {
    format!(
        "counted={}",
        rows.first().and_then(|r| r.first()).copied().unwrap_or(-1)
    )
}

async fn count_async(n: i64) -> Result<Response, ErrorCode> {
    let db = match sql::Connection::open("default") {
        Ok(db) => db,
        Err(e) => return text(500, format!("open: {e:?}")),
    };
    match db.query(COUNT.into(), vec![sql::Value::Integer(n)]).await {
        Ok(rows) => {
            let ints = rows.rows.iter().map(|r| {
                r.iter()
                    .map(|v| {
                        if let sql::Value::Integer(i) = v {
                            *i
                        } else {
                            -1
                        }
                    })
                    .collect()
            });
            text(200, counted(&ints.collect::<Vec<_>>()))
        }
        Err(e) => text(500, format!("query: {e:?}")),
    }
}

fn count_sync(n: i64) -> Result<Response, ErrorCode> {
    let db = match sql_sync::Connection::open("default") {
        Ok(db) => db,
        Err(e) => return text(500, format!("open: {e:?}")),
    };
    match db.query(COUNT, &[sql_sync::Value::Integer(n)]) {
        Ok(rows) => {
            let ints = rows.rows.iter().map(|r| {
                r.iter()
                    .map(|v| {
                        if let sql_sync::Value::Integer(i) = v {
                            *i
                        } else {
                            -1
                        }
                    })
                    .collect()
            });
            text(200, counted(&ints.collect::<Vec<_>>()))
        }
        Err(e) => text(500, format!("query: {e:?}")),
    }
}

async fn kv_async(key: &str, query: &str) -> Result<Response, ErrorCode> {
    let bucket = match kv::Bucket::open("default") {
        Ok(b) => b,
        Err(e) => return text(500, format!("open: {e:?}")),
    };
    if let Some(value) = param(query, "set") {
        let set = match param(query, "ttl").and_then(|t| t.parse().ok()) {
            Some(ms) => {
                bucket
                    .set_with_ttl(key.into(), value.as_bytes().to_vec(), ms)
                    .await
            }
            None => bucket.set(key.into(), value.as_bytes().to_vec()).await,
        };
        if let Err(e) = set {
            return text(500, format!("set: {e:?}"));
        }
    }
    let ttl = match bucket.ttl(key.into()).await {
        Ok(Some(ms)) => format!("ttl={}", if ms > 0 { "set" } else { "0" }),
        Ok(None) => "ttl=none".to_string(),
        Err(e) => return text(500, format!("ttl: {e:?}")),
    };
    match bucket.get(key.into()).await {
        Ok(Some(value)) => text(200, format!("{} {ttl}", String::from_utf8_lossy(&value))),
        Ok(None) => text(404, format!("no key `{key}`")),
        Err(e) => text(500, format!("get: {e:?}")),
    }
}

fn kv_sync(key: &str, query: &str) -> Result<Response, ErrorCode> {
    let bucket = match wasi::keyvalue::store::open(param(query, "bucket").unwrap_or("default")) {
        Ok(bucket) => bucket,
        Err(e) => return text(500, format!("open: {e:?}")),
    };
    if let Some(value) = param(query, "set") {
        if let Err(e) = bucket.set(key, value.as_bytes()) {
            return text(500, format!("set: {e:?}"));
        }
    }
    match bucket.get(key) {
        Ok(Some(value)) => text(200, String::from_utf8_lossy(&value).into()),
        Ok(None) => text(404, format!("no key `{key}`")),
        Err(e) => text(500, format!("get: {e:?}")),
    }
}

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let _in_flight = InFlight::start();
        let path = request.get_path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let n = || {
            param(query, "n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000)
        };
        let segments: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
        // Routes sit under `/FUNCTION/...` (the default route) or at the top.
        let segments = match segments.first() {
            Some(&"http-p3-stores") => &segments[1..],
            _ => &segments[..],
        };
        match segments {
            ["ping"] => text(
                200,
                format!("in-flight={}", IN_FLIGHT.load(Ordering::SeqCst)),
            ),
            ["count"] => count_async(n()).await,
            ["count-sync"] => count_sync(n()),
            ["async", key] => kv_async(key, query).await,
            [.., key] => kv_sync(key, query),
            [] => text(404, "no route".into()),
        }
    }
}
