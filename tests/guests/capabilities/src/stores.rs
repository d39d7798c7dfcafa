//! The key-value, SQL and blob routes.

use serde_json::{json, Value as Json};

use crate::wasi::keyvalue::{atomics, store};
use crate::wasmfn::platform::{blob, kv_extensions, sql};
use crate::{Reply, Request};
use ::wasi::http::types::Method;

fn kv_error(e: store::Error) -> Reply {
    match e {
        store::Error::NoSuchStore => Reply::error(404, "no-such-store", ""),
        store::Error::AccessDenied => Reply::error(403, "access-denied", ""),
        store::Error::Other(m) => Reply::error(500, "other", &m),
    }
}

pub fn kv(req: &Request, op: &str, name: &str, key: &str) -> Reply {
    let bucket = match store::open(name) {
        Ok(b) => b,
        Err(e) => return kv_error(e),
    };
    let result: Result<Reply, store::Error> = (|| {
        Ok(match (op, &req.method) {
            ("kv", Method::Get) => match bucket.get(key)? {
                Some(v) => Reply::new(200, v),
                None => Reply::new(404, "absent"),
            },
            ("kv", Method::Put) => {
                match req.param("ttl") {
                    Some(ms) => kv_extensions::set_with_ttl(&bucket, key, &req.body, ms.parse().unwrap_or(0))?,
                    None => bucket.set(key, &req.body)?,
                }
                Reply::new(200, "stored")
            }
            ("kv", Method::Delete) => {
                bucket.delete(key)?;
                Reply::new(200, "deleted")
            }
            ("kv-exists", _) => Reply::new(200, bucket.exists(key)?.to_string()),
            ("kv-ttl", _) => match kv_extensions::ttl(&bucket, key)? {
                Some(ms) => Reply::new(200, ms.to_string()),
                None => Reply::new(200, "none"),
            },
            ("kv-persist", _) => Reply::new(200, kv_extensions::persist(&bucket, key)?.to_string()),
            ("kv-incr", _) => {
                let by = req.param("by").and_then(|b| b.parse().ok()).unwrap_or(1);
                Reply::new(200, atomics::increment(&bucket, key, by)?.to_string())
            }
            ("kv-cas", _) => {
                let expected = match req.param("expect") {
                    Some("absent") | None => None,
                    Some(v) => Some(v.as_bytes().to_vec()),
                };
                let ttl = req.param("ttl").and_then(|t| t.parse().ok());
                let swapped = kv_extensions::compare_and_swap(&bucket, key, expected.as_deref(), &req.body, ttl)?;
                Reply::new(if swapped { 200 } else { 409 }, if swapped { "swapped" } else { "conflict" })
            }
            ("kv-list", _) => {
                let limit = req.param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                let page = kv_extensions::list_prefix(&bucket, req.param("prefix").unwrap_or(""), req.param("cursor"), limit)?;
                Reply::json(200, json!({"keys": page.keys, "cursor": page.cursor}))
            }
            ("kv-keys", _) => {
                let mut all = Vec::new();
                let mut cursor = None;
                loop {
                    let r = bucket.list_keys(cursor)?;
                    all.extend(r.keys);
                    match r.cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                Reply::json(200, json!(all))
            }
            _ => Reply::new(405, "method not allowed"),
        })
    })();
    result.unwrap_or_else(kv_error)
}

fn sql_error(e: sql::Error) -> Reply {
    let (kind, m) = match e {
        sql::Error::NoSuchDatabase(m) => ("no-such-database", m),
        sql::Error::InvalidStatement(m) => ("invalid-statement", m),
        sql::Error::ConstraintViolation(m) => ("constraint-violation", m),
        sql::Error::InvalidParameter(m) => ("invalid-parameter", m),
        sql::Error::Other(m) => ("other", m),
    };
    Reply::error(if kind == "no-such-database" { 404 } else { 400 }, kind, &m)
}

fn to_value(v: &Json) -> sql::Value {
    match v {
        Json::Null => sql::Value::Null,
        Json::Bool(b) => sql::Value::Integer(*b as i64),
        Json::Number(n) if n.is_i64() => sql::Value::Integer(n.as_i64().unwrap()),
        Json::Number(n) => sql::Value::Real(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => sql::Value::Text(s.clone()),
        // {"blob": [bytes]}
        Json::Object(o) => sql::Value::Blob(
            o.get("blob").and_then(Json::as_array).map(|a| a.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect()).unwrap_or_default(),
        ),
        Json::Array(_) => sql::Value::Null,
    }
}

fn from_value(v: sql::Value) -> Json {
    match v {
        sql::Value::Null => Json::Null,
        sql::Value::Integer(i) => json!(i),
        sql::Value::Real(r) => json!(r),
        sql::Value::Text(t) => json!(t),
        sql::Value::Blob(b) => json!({"blob": b}),
    }
}

fn row_set(r: sql::RowSet) -> Json {
    json!({
        "columns": r.columns,
        "rows": r.rows.into_iter().map(|row| row.into_iter().map(from_value).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "rows_affected": r.rows_affected,
        "last_insert_id": r.last_insert_id,
    })
}

fn statement(v: &Json) -> (String, Vec<sql::Value>) {
    let sql = v["sql"].as_str().unwrap_or_default().to_string();
    let params = v["params"].as_array().map(|a| a.iter().map(to_value).collect()).unwrap_or_default();
    (sql, params)
}

pub fn sql(req: &Request, op: &str, name: &str) -> Reply {
    let conn = match sql::Connection::open(name) {
        Ok(c) => c,
        Err(e) => return sql_error(e),
    };
    let body: Json = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(_) if op == "sql-batch" => Json::Null,
        Err(e) => return Reply::new(400, format!("bad JSON: {e}")),
    };
    match op {
        "sql" => {
            let (s, params) = statement(&body);
            match conn.query(&s, &params) {
                Ok(r) => Reply::json(200, row_set(r)),
                Err(e) => sql_error(e),
            }
        }
        "sql-batch" => match conn.execute_batch(&String::from_utf8_lossy(&req.body)) {
            Ok(()) => Reply::new(200, "ok"),
            Err(e) => sql_error(e),
        },
        _ => {
            let tx = match conn.begin() {
                Ok(t) => t,
                Err(e) => return sql_error(e),
            };
            let mut results = Vec::new();
            for st in body["statements"].as_array().cloned().unwrap_or_default() {
                let (s, params) = statement(&st);
                match tx.query(&s, &params) {
                    Ok(r) => results.push(row_set(r)),
                    // A careless guest: carries on (and may commit) after a failed statement.
                    Err(e) if body["continue"].as_bool() == Some(true) => {
                        results.push(json!({ "error": format!("{e:?}") }))
                    }
                    Err(e) => return sql_error(e),
                }
            }
            match body["end"].as_str().unwrap_or("commit") {
                "commit" => {
                    if let Err(e) = sql::Transaction::commit(tx) {
                        return sql_error(e);
                    }
                }
                "rollback" => {
                    if let Err(e) = sql::Transaction::rollback(tx) {
                        return sql_error(e);
                    }
                }
                "trap" => panic!("trapping inside a transaction on purpose"),
                _ => drop(tx),
            }
            Reply::json(200, json!(results))
        }
    }
}

fn blob_error(e: blob::Error) -> Reply {
    match e {
        blob::Error::NoSuchContainer(m) => Reply::error(404, "no-such-container", &m),
        blob::Error::NotFound(m) => Reply::error(404, "not-found", &m),
        blob::Error::InvalidKey(m) => Reply::error(400, "invalid-key", &m),
        blob::Error::InvalidRange => Reply::error(416, "invalid-range", ""),
        blob::Error::Other(m) => Reply::error(500, "other", &m),
    }
}

fn info_json(i: &blob::ObjectInfo) -> Json {
    json!({
        "key": i.key, "size": i.size, "content_type": i.content_type, "etag": i.etag,
        "last_modified": i.last_modified,
        "metadata": i.metadata.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

fn with_info(mut r: Reply, i: &blob::ObjectInfo) -> Reply {
    if let Some(ct) = &i.content_type {
        r = r.header("content-type", ct);
    }
    r = r.header("etag", &i.etag);
    for (k, v) in &i.metadata {
        r = r.header(&format!("x-meta-{k}"), v);
    }
    r
}

pub fn blob(req: &Request, op: &str, name: &str, key: &str) -> Reply {
    let container = match blob::Container::open(name) {
        Ok(c) => c,
        Err(e) => return blob_error(e),
    };
    let range = req.param("offset").map(|o| blob::ByteRange {
        offset: o.parse().unwrap_or(0),
        length: req.param("length").and_then(|l| l.parse().ok()),
    });
    let streamed = req.param("stream") == Some("1");
    let result: Result<Reply, blob::Error> = (|| {
        Ok(match (op, &req.method) {
            ("blob", Method::Put) => {
                let options = blob::PutOptions {
                    content_type: req.header("content-type").map(str::to_string),
                    metadata: req
                        .headers
                        .iter()
                        .filter_map(|(k, v)| k.strip_prefix("x-meta-").map(|m| (m.to_string(), v.clone())))
                        .collect(),
                };
                let info = if streamed {
                    let writer = container.write(key, &options)?;
                    let body = writer.body().map_err(|_| blob::Error::Other("body taken".into()))?;
                    for chunk in req.body.chunks(1000) {
                        body.blocking_write_and_flush(chunk).map_err(|e| blob::Error::Other(format!("{e:?}")))?;
                    }
                    drop(body);
                    blob::ObjectWriter::finish(writer)?
                } else {
                    container.put(key, &req.body, &options)?
                };
                Reply::json(200, info_json(&info))
            }
            ("blob", Method::Get) if streamed => {
                let (info, stream) = container.read(key, range)?;
                let mut data = Vec::new();
                loop {
                    match stream.blocking_read(7000) {
                        Ok(chunk) => data.extend(chunk),
                        Err(crate::wasi::io::streams::StreamError::Closed) => break,
                        Err(e) => return Err(blob::Error::Other(format!("{e:?}"))),
                    }
                }
                with_info(Reply::new(200, data), &info)
            }
            ("blob", Method::Get) => {
                let (info, data) = container.get(key, range)?;
                with_info(Reply::new(200, data), &info)
            }
            ("blob", Method::Delete) => {
                container.delete(key)?;
                Reply::new(200, "deleted")
            }
            ("blob-head", _) => match container.head(key)? {
                Some(i) => Reply::json(200, info_json(&i)),
                None => Reply::new(404, "absent"),
            },
            ("blob-list", _) => {
                let limit = req.param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                let page = container.list_objects(req.param("prefix"), req.param("cursor"), limit)?;
                Reply::json(200, json!({
                    "objects": page.objects.iter().map(info_json).collect::<Vec<_>>(),
                    "cursor": page.cursor,
                }))
            }
            _ => Reply::new(405, "method not allowed"),
        })
    })();
    result.unwrap_or_else(blob_error)
}

/// `n` operations of one kind in a loop, for the per-operation cost in `benches/capabilities.rs`.
pub fn bench(req: &Request, name: &str) -> Reply {
    let n: u32 = req.param("n").and_then(|n| n.parse().ok()).unwrap_or(1);
    match req.param("op").unwrap_or("none") {
        "none" => {}
        "kv-get" => {
            let b = store::open(name).expect("store");
            for _ in 0..n {
                b.get("bench").expect("get");
            }
        }
        "kv-set" => {
            let b = store::open(name).expect("store");
            for _ in 0..n {
                b.set("bench", b"value").expect("set");
            }
        }
        "sql-get" => {
            let c = sql::Connection::open(name).expect("database");
            for i in 0..n {
                c.query("SELECT v FROM bench WHERE id = $1", &[sql::Value::Integer((i % 100) as i64)])
                    .expect("query");
            }
        }
        other => return Reply::new(400, format!("unknown op {other}")),
    }
    Reply::new(200, "done")
}
