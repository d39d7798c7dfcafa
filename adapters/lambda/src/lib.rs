//! # wasmfn-lambda
//!
//! Runs a wasmfn function component on AWS Lambda as a custom runtime (`provided.al2023`):
//! the `bootstrap` binary embeds `wasmfn-host`, loads the packaged component from its
//! precompiled form (no compilation during Init), and maps every Lambda event source onto the
//! handler worlds:
//!
//! | event | world | answer |
//! |---|---|---|
//! | API Gateway REST (v1), HTTP API (v2), Function URLs, ALB | `http` | the matching response shape, binary bodies base64 |
//! | SQS | `queue` | `batchItemFailures` (ReportBatchItemFailures) |
//! | SNS | `queue` | error when any message failed (SNS retries) |
//! | DynamoDB Streams | `stream` (change records, images unwrapped from attribute values) | `batchItemFailures` by sequence number |
//! | S3 notifications | `stream` (object events, keys URL-decoded) | error on failure |
//! | EventBridge scheduled events | `schedule` | error on failure |
//! | Step Functions Task invocations (any JSON: the state's input) | `task` | the output; a failure's `errorType` is its error name |

pub mod dispatch;
pub mod http_events;
pub mod record_events;
pub mod task_events;
pub mod xray;

pub use dispatch::{detect, handle, InvocationError, Source};
