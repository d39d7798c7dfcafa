//! Errors of loading and invoking functions, each naming the function and the fix.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a component could not be loaded as a function. The host keeps serving the others.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The file (or manifest entry) that failed.
    pub path: PathBuf,
    /// The function name it would have had.
    pub function: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "function `{}` ({}): {}",
            self.function,
            self.path.display(),
            self.message
        )
    }
}

impl std::error::Error for LoadError {}

/// Why one invocation failed. The instance involved is discarded; the function keeps serving.
#[derive(Debug, Clone)]
pub enum InvokeError {
    /// The function is already running its maximum number of concurrent invocations.
    Overloaded {
        /// The function.
        function: String,
        /// Its concurrency limit.
        limit: u32,
    },
    /// Every slot of the host's instance pool is in use, by whichever functions.
    HostBusy {
        /// The function.
        function: String,
    },
    /// The invocation ran past the function's timeout.
    Timeout {
        /// The function.
        function: String,
        /// Its timeout.
        after: Duration,
    },
    /// The guest tried to grow its memory past the function's limit.
    MemoryLimit {
        /// The function.
        function: String,
        /// Its memory limit in bytes.
        limit: u64,
    },
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, stack overflow...).
    Trap {
        /// The function.
        function: String,
        /// What the trap was (one line).
        message: String,
        /// The wasm backtrace, for logs (not sent to HTTP clients).
        backtrace: Option<String>,
    },
    /// A fresh instance could not be created.
    Instantiate {
        /// The function.
        function: String,
        /// Why.
        message: String,
    },
    /// The HTTP request's body is larger than the function accepts (`max-request-body`).
    RequestTooLarge {
        /// The function.
        function: String,
        /// Its limit in bytes.
        limit: u64,
    },
    /// The invocation does not fit the function (wrong world for the event, malformed event).
    BadInvocation {
        /// The function.
        function: String,
        /// Why.
        message: String,
    },
}

impl InvokeError {
    /// The HTTP status that reports this error to a client.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            InvokeError::Overloaded { .. } | InvokeError::HostBusy { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            InvokeError::Timeout { .. } => http::StatusCode::GATEWAY_TIMEOUT,
            InvokeError::BadInvocation { .. } => http::StatusCode::BAD_REQUEST,
            InvokeError::RequestTooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            InvokeError::MemoryLimit { .. }
            | InvokeError::Trap { .. }
            | InvokeError::Instantiate { .. } => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the function never ran because there was no capacity for it (its concurrency
    /// limit or the host's instance pool): a reason to retry later, not a failure of the work.
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            InvokeError::Overloaded { .. } | InvokeError::HostBusy { .. }
        )
    }

    /// The wasm backtrace of a trap, when there is one.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            InvokeError::Trap { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }

    /// A short machine-readable kind, for logs and adapters (`errorType` on Lambda).
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Overloaded { .. } | InvokeError::HostBusy { .. } => "Overloaded",
            InvokeError::Timeout { .. } => "Timeout",
            InvokeError::MemoryLimit { .. } => "MemoryLimitExceeded",
            InvokeError::Trap { .. } => "Trap",
            InvokeError::Instantiate { .. } => "InstantiationFailed",
            InvokeError::BadInvocation { .. } => "BadInvocation",
            InvokeError::RequestTooLarge { .. } => "RequestTooLarge",
        }
    }
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::Overloaded { function, limit } => write!(
                f,
                "function `{function}` is at its concurrency limit ({limit}); retry later or \
                 raise `concurrency` in wasmfn.toml"
            ),
            InvokeError::HostBusy { function } => write!(
                f,
                "function `{function}` could not start: every slot of the host's instance pool \
                 is in use; retry later (the pool's size is `EngineOptions::pool_instances`, 1000 \
                 in `wasmfn serve`)"
            ),
            InvokeError::Timeout { function, after } => write!(
                f,
                "function `{function}` timed out after {after:?}; raise `timeout` in wasmfn.toml \
                 if it needs longer"
            ),
            InvokeError::MemoryLimit { function, limit } => write!(
                f,
                "function `{function}` exceeded its memory limit of {} MiB; raise `memory` in \
                 wasmfn.toml if it needs more",
                limit >> 20
            ),
            InvokeError::Trap {
                function, message, ..
            } => {
                write!(f, "function `{function}` trapped: {message}")
            }
            InvokeError::Instantiate { function, message } => {
                write!(
                    f,
                    "function `{function}` could not be instantiated: {message}"
                )
            }
            InvokeError::BadInvocation { function, message } => {
                write!(f, "function `{function}`: {message}")
            }
            InvokeError::RequestTooLarge { function, limit } => write!(
                f,
                "the request body is larger than function `{function}` accepts ({limit} bytes); \
                 raise `max-request-body` in wasmfn.toml if it needs more"
            ),
        }
    }
}

impl std::error::Error for InvokeError {}
