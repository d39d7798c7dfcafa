//! The peer in the adapter's benchmarks (`benches/lambda_adapter.rs`): a bare `lambda_runtime`
//! function in Rust answering every event with a fixed HTTP response, without wasm or wasmfn.
//! What the adapter adds is measured against it.
//!
//! `cargo build --profile release-lambda -p wasmfn-lambda --example bare_runtime`

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

fn main() -> Result<(), Error> {
    // The same runtime shape as `bootstrap`: one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(lambda_runtime::run(service_fn(
        |_event: LambdaEvent<Value>| async {
            Ok::<_, Error>(json!({
                "statusCode": 200,
                "headers": {"content-type": "text/plain"},
                "body": "Hello, world!\n"
            }))
        },
    )))
}
