//! Example: the users REST API, as a serverless function on wasmfn's platform services.
//!
//! - `GET /users`, `GET /users/{id}` (through a key-value read cache with a 60 s TTL,
//!   `x-cache: hit|miss`), `POST /users`, `PUT /users/{id}`, `DELETE /users/{id}`, on the SQL
//!   database bound as `users`;
//! - `PUT /users/{id}/avatar` stores the body in the blob store `avatars` with its content type,
//!   `GET /users/{id}/avatar` serves it back;
//! - every answer carries CORS headers; `OPTIONS` answers the preflight; bad JSON and missing
//!   fields get 400, unknown users 404, other methods 405, a duplicate email 409.
//!
//! The same SQL runs on the embedded SQLite database and on PostgreSQL.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package example:users;
        world users {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasmfn:platform/kv-extensions@0.1.0;
            import wasmfn:platform/sql@0.1.0;
            import wasmfn:platform/blob@0.1.0;
        }
    ",
    world: "example:users/users",
    generate_all,
});

mod http;

use ::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{Request, Response};
use crate::wasi::keyvalue::store;
use crate::wasmfn::platform::{blob, kv_extensions, sql};

/// Cached user reads expire after a minute, so a missed invalidation heals itself.
const CACHE_TTL_MS: u64 = 60_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
)";

#[derive(Serialize, Deserialize)]
struct User {
    id: String,
    name: String,
    email: String,
    created_at: i64,
}

/// What a client may send when creating or updating a user.
#[derive(Deserialize)]
struct UserInput {
    name: Option<String>,
    email: Option<String>,
}

struct Users;

impl ::wasi::exports::http::incoming_handler::Guest for Users {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::read(request);
        let response = route(&request).unwrap_or_else(|e| e);
        response.send(out);
    }
}

::wasi::http::proxy::export!(Users with_types_in ::wasi);

type Outcome = Result<Response, Response>;

fn route(req: &Request) -> Outcome {
    if matches!(req.method, Method::Options) {
        return Ok(Response::empty(204));
    }
    let db = sql::Connection::open("users").map_err(sql_error)?;
    db.execute_batch(SCHEMA).map_err(sql_error)?;
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match (&req.method, segments.as_slice()) {
        (Method::Get, []) => list(&db),
        (Method::Get, [id]) => get(&db, id),
        (Method::Post, []) => create(&db, req),
        (Method::Put, [id]) => update(&db, id, req),
        (Method::Delete, [id]) => delete(&db, id),
        (Method::Put | Method::Delete, []) => Err(Response::error(400, "Missing user id")),
        (Method::Put, [id, "avatar"]) => put_avatar(&db, id, req),
        (Method::Get, [id, "avatar"]) => get_avatar(id),
        _ => Err(Response::error(405, "Method not allowed")),
    }
}

fn sql_error(e: sql::Error) -> Response {
    match e {
        sql::Error::ConstraintViolation(_) => {
            Response::error(409, "A user with this email already exists")
        }
        other => Response::error(500, &format!("database error: {other:?}")),
    }
}

fn text(v: &sql::Value) -> String {
    match v {
        sql::Value::Text(t) => t.clone(),
        sql::Value::Integer(i) => i.to_string(),
        _ => String::new(),
    }
}

fn user_of(row: &[sql::Value]) -> User {
    User {
        id: text(&row[0]),
        name: text(&row[1]),
        email: text(&row[2]),
        created_at: match row[3] {
            sql::Value::Integer(i) => i,
            _ => 0,
        },
    }
}

fn find(db: &sql::Connection, id: &str) -> Result<Option<User>, Response> {
    let rows = db
        .query(
            "SELECT id, name, email, created_at FROM users WHERE id = $1",
            &[sql::Value::Text(id.into())],
        )
        .map_err(sql_error)?;
    Ok(rows.rows.first().map(|r| user_of(r)))
}

fn cache() -> Option<store::Bucket> {
    // The cache is an optimisation: without it, reads go to the database.
    store::open("cache").ok()
}

fn list(db: &sql::Connection) -> Outcome {
    let rows = db
        .query(
            "SELECT id, name, email, created_at FROM users ORDER BY created_at, id",
            &[],
        )
        .map_err(sql_error)?;
    let users: Vec<User> = rows.rows.iter().map(|r| user_of(r)).collect();
    Ok(Response::json(200, &json!(users)))
}

fn get(db: &sql::Connection, id: &str) -> Outcome {
    let key = format!("user:{id}");
    let bucket = cache();
    if let Some(hit) = bucket.as_ref().and_then(|b| b.get(&key).ok().flatten()) {
        let user: serde_json::Value = serde_json::from_slice(&hit).unwrap_or_default();
        return Ok(Response::json(200, &user).with_header("x-cache", "hit"));
    }
    let user = find(db, id)?.ok_or_else(|| Response::error(404, "User not found"))?;
    let body = json!(user);
    if let Some(b) = &bucket {
        let _ = kv_extensions::set_with_ttl(b, &key, body.to_string().as_bytes(), CACHE_TTL_MS);
    }
    Ok(Response::json(200, &body).with_header("x-cache", "miss"))
}

fn parse_input(req: &Request) -> Result<UserInput, Response> {
    serde_json::from_slice(&req.body).map_err(|_| Response::error(400, "Invalid JSON body"))
}

fn new_id() -> String {
    let bytes = ::wasi::random::random::get_random_bytes(8);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    let t = ::wasi::clocks::wall_clock::now();
    t.seconds as i64 * 1000 + t.nanoseconds as i64 / 1_000_000
}

fn create(db: &sql::Connection, req: &Request) -> Outcome {
    let input = parse_input(req)?;
    let (Some(name), Some(email)) = (input.name, input.email) else {
        return Err(Response::error(400, "name and email are required"));
    };
    let user = User {
        id: new_id(),
        name,
        email,
        created_at: now_ms(),
    };
    db.query(
        "INSERT INTO users (id, name, email, created_at) VALUES ($1, $2, $3, $4)",
        &[
            sql::Value::Text(user.id.clone()),
            sql::Value::Text(user.name.clone()),
            sql::Value::Text(user.email.clone()),
            sql::Value::Integer(user.created_at),
        ],
    )
    .map_err(sql_error)?;
    Ok(Response::json(201, &json!(user)).with_header("location", &format!("/users/{}", user.id)))
}

fn update(db: &sql::Connection, id: &str, req: &Request) -> Outcome {
    let input = parse_input(req)?;
    if input.name.is_none() && input.email.is_none() {
        return Err(Response::error(
            400,
            "nothing to update: send name and/or email",
        ));
    }
    // One statement, so a concurrent update cannot interleave between read and write.
    let rows = db
        .query(
            "UPDATE users SET name = COALESCE($1, name), email = COALESCE($2, email)
             WHERE id = $3 RETURNING id, name, email, created_at",
            &[
                input.name.map_or(sql::Value::Null, sql::Value::Text),
                input.email.map_or(sql::Value::Null, sql::Value::Text),
                sql::Value::Text(id.into()),
            ],
        )
        .map_err(sql_error)?;
    let user = rows
        .rows
        .first()
        .map(|r| user_of(r))
        .ok_or_else(|| Response::error(404, "User not found"))?;
    if let Some(b) = cache() {
        let _ = b.delete(&format!("user:{id}"));
    }
    Ok(Response::json(200, &json!(user)))
}

fn delete(db: &sql::Connection, id: &str) -> Outcome {
    let rows = db
        .query(
            "DELETE FROM users WHERE id = $1",
            &[sql::Value::Text(id.into())],
        )
        .map_err(sql_error)?;
    if rows.rows_affected == 0 {
        return Err(Response::error(404, "User not found"));
    }
    if let Some(b) = cache() {
        let _ = b.delete(&format!("user:{id}"));
    }
    if let Ok(avatars) = blob::Container::open("avatars") {
        let _ = avatars.delete(&format!("{id}/avatar"));
    }
    Ok(Response::empty(204))
}

fn put_avatar(db: &sql::Connection, id: &str, req: &Request) -> Outcome {
    if find(db, id)?.is_none() {
        return Err(Response::error(404, "User not found"));
    }
    let Some(content_type) = req.content_type.clone().filter(|c| c.starts_with("image/")) else {
        return Err(Response::error(
            400,
            "send the avatar with an image/* content type",
        ));
    };
    let avatars =
        blob::Container::open("avatars").map_err(|e| Response::error(500, &format!("{e:?}")))?;
    let options = blob::PutOptions {
        content_type: Some(content_type),
        metadata: vec![("user".into(), id.into())],
    };
    let info = avatars
        .put(&format!("{id}/avatar"), &req.body, &options)
        .map_err(|e| Response::error(500, &format!("{e:?}")))?;
    Ok(Response::json(
        200,
        &json!({"size": info.size, "content_type": info.content_type, "etag": info.etag}),
    ))
}

fn get_avatar(id: &str) -> Outcome {
    let avatars =
        blob::Container::open("avatars").map_err(|e| Response::error(500, &format!("{e:?}")))?;
    match avatars.get(&format!("{id}/avatar"), None) {
        Ok((info, data)) => Ok(Response {
            status: 200,
            content_type: info
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            headers: vec![("etag".into(), info.etag)],
            body: data,
        }),
        Err(blob::Error::NotFound(_)) => Err(Response::error(404, "No avatar for this user")),
        Err(e) => Err(Response::error(500, &format!("{e:?}"))),
    }
}
