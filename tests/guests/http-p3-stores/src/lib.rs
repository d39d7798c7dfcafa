//! A WASI 0.3 http function that uses a platform store: `GET /KEY?set=VALUE` sets `KEY` in
//! key-value bucket `default` (when `set` is given), then answers its value; `?bucket=NAME`
//! opens another bucket. The store is reached through `wasi:keyvalue/store`, a WASI 0.2
//! interface that a 0.3 guest calls synchronously.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:http-p3-kv;
        world platform {
            import wasi:keyvalue/store@0.2.0-draft;
        }
    ",
    world: "test:http-p3-kv/platform",
    generate_all,
});

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen as rt, wit_future, wit_stream};

wasip3::http::service::export!(Handler);

struct Handler;

fn text(status: u16, body: String) -> Result<Response, ErrorCode> {
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
    drop(trailers_tx);
    response.set_status_code(status).map_err(|()| ErrorCode::InternalError(None))?;
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

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let key = route.rsplit('/').next().unwrap_or_default();
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
}
