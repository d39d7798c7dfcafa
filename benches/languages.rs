//! The same hello HTTP function (`wasmfn new LANG-http`, an echo) in every guest language:
//! loading the precompiled component from the compile cache (what a restart costs), a cold
//! request (fresh instance per invocation, wasmfn's default) and throughput with 4 requests in
//! flight on 2 worker threads.
//!
//! `cargo bench --bench languages` (needs the release `wasmfn` binary and the language tools:
//! `scripts/test` installs both). The guests are created and built with the real binary in a
//! temporary folder; the build cache makes that fast after the first time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt as _;
use wasmfn_host::{full_body, Function, FunctionSettings, Host};

const LANGUAGES: &[&str] = &["rust", "c", "go", "js", "python"];

fn wasmfn_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("release/wasmfn");
    assert!(
        bin.exists(),
        "build it first: cargo build --release ({})",
        bin.display()
    );
    bin
}

/// `hello-LANG/hello-LANG.wasm` for every language, built in `dir`.
fn build_guests(dir: &Path) -> Vec<(String, PathBuf)> {
    let bin = wasmfn_binary();
    for lang in LANGUAGES {
        let ok = std::process::Command::new(&bin)
            .args([
                "new",
                &format!("{lang}-http"),
                &format!("hello-{lang}"),
                "--dir",
            ])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "wasmfn new {lang}-http");
    }
    let ok = std::process::Command::new(&bin)
        .arg("build")
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "wasmfn build");
    LANGUAGES
        .iter()
        .map(|l| {
            let name = format!("hello-{l}");
            let path = dir.join(&name).join(format!("{name}.wasm"));
            (l.to_string(), path)
        })
        .collect()
}

async fn request(function: &Function, name: &str) {
    let request = http::Request::post(format!("http://localhost/{name}"))
        .body(full_body("hello"))
        .unwrap();
    let response = function.handle_http(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
}

fn languages(c: &mut Criterion) {
    // As in the CLI: no backtrace capture for the errors wasmtime-wasi uses as control flow.
    // SAFETY: set before any other thread is spawned.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    let dir = tempfile::tempdir().unwrap();
    let guests = build_guests(dir.path());
    let cache = tempfile::tempdir().unwrap();
    let host = Host::builder().cache_dir(cache.path()).build().unwrap();
    for (_, path) in &guests {
        host.precompile(path).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("languages");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (lang, path) in &guests {
        let size = std::fs::metadata(path).unwrap().len();
        eprintln!("{lang}: component {} KiB", size / 1024);
        let name = format!("hello-{lang}");
        group.bench_function(format!("load_precompiled/{lang}"), |b| {
            b.iter(|| {
                host.load_component(&name, path, FunctionSettings::default())
                    .unwrap()
            })
        });
        let function = host
            .load_component(&name, path, FunctionSettings::default())
            .unwrap();
        group.bench_function(format!("cold_request/{lang}"), |b| {
            b.to_async(&runtime).iter(|| request(&function, &name))
        });
        // Throughput: batches of 4 concurrent requests; the figure is time per request.
        group.bench_function(format!("per_request_4_in_flight/{lang}"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let function = function.clone();
                let name = name.clone();
                async move {
                    let started = Instant::now();
                    for _ in 0..iters.div_ceil(4) {
                        let batch: Vec<_> = (0..4)
                            .map(|_| {
                                let (f, n) = (function.clone(), name.clone());
                                tokio::spawn(async move { request(&f, &n).await })
                            })
                            .collect();
                        for t in batch {
                            t.await.unwrap();
                        }
                    }
                    // ~iters requests ran: criterion divides by iters.
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, languages);
criterion_main!(benches);
