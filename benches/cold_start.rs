//! In-process cold start: instantiate a precompiled component and handle one HTTP request
//! (`hello`), with the pooling allocator and with on-demand allocation.
//!
//! `cargo bench --bench cold_start` (needs `guests/hello/hello.wasm`: run `scripts/build-guests`).

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt as _;
use wasmfn_host::{full_body, Allocator, FunctionSettings, Host};

fn cold_start(c: &mut Criterion) {
    // As in the CLI: no backtrace capture for the errors wasmtime-wasi uses as control flow.
    // SAFETY: set before any other thread is spawned.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/hello/hello.wasm");
    assert!(
        hello.exists(),
        "build the guests first: scripts/build-guests"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("cold_start");
    for (label, allocator) in [
        ("pooling", Allocator::Pooling),
        ("on_demand", Allocator::OnDemand),
    ] {
        let host = Host::builder()
            .allocator(allocator)
            .cache_dir(cache.path())
            .build()
            .unwrap();
        assert_eq!(host.allocator(), allocator);
        let function = host
            .load_component("hello", &hello, FunctionSettings::default())
            .unwrap();
        group.bench_function(format!("hello_http/{label}"), |b| {
            b.to_async(&runtime).iter(|| async {
                let request = http::Request::get("http://localhost/hello")
                    .body(full_body(""))
                    .unwrap();
                let response = function.handle_http(request).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cold_start);
criterion_main!(benches);
