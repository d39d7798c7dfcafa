//! Platform capabilities from a guest vs the same backend called natively from Rust:
//! key-value get/set and a SQL point query, on the embedded stores (SQLite) and on real Redis
//! and PostgreSQL servers started on loopback.
//!
//! Each guest iteration is one invocation of `tests/guests/capabilities` running the operation
//! 1000 times (`/caps/bench/...`), so the per-operation cost is
//! `(guest_x1000 - empty_invocation) / 1000`; the native iteration runs the same 1000 operations
//! through the store's backend trait directly. The difference is the host overhead per call
//! (canonical ABI lifting, resource lookup, the binding check).
//!
//! `cargo bench --bench capabilities` (needs the test guests: `scripts/build-guests`; installs
//! nothing: Redis and PostgreSQL come from `scripts/test`'s packages).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt as _;
use wasmfn_host::kv::KvApp;
use wasmfn_host::sql::{Bounds, SqlApp, SqlValue};
use wasmfn_host::{full_body, App, Host};

const N: u32 = 1000;

fn app(host: &Host, runtime: &tokio::runtime::Runtime, stores: &str) -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::guest("capabilities"), dir.path().join("caps.wasm")).unwrap();
    std::fs::write(
        dir.path().join("wasmfn.toml"),
        format!("[functions.caps]\nkv = [\"default\"]\nsql = [\"default\"]\nblob = [\"default\"]\n\n{stores}"),
    )
    .unwrap();
    let app = runtime
        .block_on(async { host.load_dir(dir.path()) })
        .unwrap();
    assert!(
        app.load_errors().is_empty() && app.queue_errors().is_empty(),
        "{:?} {:?}",
        app.load_errors(),
        app.queue_errors()
    );
    (dir, app)
}

async fn invoke(app: &App, path: &str) {
    let request = http::Request::get(format!("http://localhost/caps/bench/default{path}"))
        .body(full_body(""))
        .unwrap();
    let response = app.handle(request).await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

fn capabilities(c: &mut Criterion) {
    // SAFETY: set before any other thread is spawned.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = Host::builder().cache_dir(cache.path()).build().unwrap();
    let backends = [
        ("embedded", String::new()),
        (
            "distributed",
            format!(
                "[kv.default]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"bench:\"\n\
                 [sql.default]\nbackend = \"postgres\"\nurl = \"{}\"\n",
                common::servers::redis().url(),
                common::servers::postgres().database()
            ),
        ),
    ];
    let mut group = c.benchmark_group("capabilities");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for (label, stores) in &backends {
        let (_dir, app) = app(&host, &runtime, stores);
        let kv = app.capability::<KvApp>().unwrap().store("default").unwrap();
        let db = app
            .capability::<SqlApp>()
            .unwrap()
            .store("default")
            .unwrap();
        runtime.block_on(async {
            kv.backend().set("bench", b"value", None).await.unwrap();
            db.backend()
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, v TEXT)",
                    Bounds::within(Duration::from_secs(30)),
                )
                .await
                .unwrap();
            for i in 0..100 {
                db.backend()
                    .query(
                        "INSERT INTO bench (id, v) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                        &[SqlValue::Integer(i), SqlValue::Text(format!("row {i}"))],
                        Bounds::within(Duration::from_secs(30)),
                    )
                    .await
                    .unwrap();
            }
        });
        group.bench_function(format!("{label}/empty_invocation"), |b| {
            b.to_async(&runtime).iter(|| invoke(&app, "?op=none&n=0"))
        });
        for op in ["kv-get", "kv-set", "sql-get"] {
            let query = format!("?op={op}&n={N}");
            group.bench_function(format!("{label}/{op}/guest_x{N}"), |b| {
                b.to_async(&runtime).iter(|| invoke(&app, &query))
            });
            group.bench_function(format!("{label}/{op}/native_x{N}"), |b| {
                b.to_async(&runtime).iter(|| async {
                    for i in 0..N {
                        match op {
                            "kv-get" => {
                                kv.backend().get("bench").await.unwrap();
                            }
                            "kv-set" => kv.backend().set("bench", b"value", None).await.unwrap(),
                            _ => {
                                db.backend()
                                    .query(
                                        "SELECT v FROM bench WHERE id = $1",
                                        &[SqlValue::Integer((i % 100) as i64)],
                                        Bounds::within(Duration::from_secs(30)),
                                    )
                                    .await
                                    .unwrap();
                            }
                        }
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, capabilities);
criterion_main!(benches);
