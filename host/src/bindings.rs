//! Host-side bindings generated from `wit/`: the handler exports of the queue, stream,
//! schedule and task worlds, and the `wasi:logging` import.
//!
//! Export-only worlds are used so that instantiating a handler needs nothing but its export;
//! imports are satisfied by the shared [`crate::linker`].

/// The `queue` world's export.
pub mod queue {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world queue-exports { export wasmfn:platform/queue-handler@0.1.0; }
        ",
        world: "wasmfn:host-bindings/queue-exports",
        exports: { default: async },
    });
}

/// The `stream` world's export.
pub mod stream {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world stream-exports { export wasmfn:platform/stream-handler@0.1.0; }
        ",
        world: "wasmfn:host-bindings/stream-exports",
        exports: { default: async },
    });
}

/// The `schedule` world's export.
pub mod schedule {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world schedule-exports { export wasmfn:platform/schedule-handler@0.1.0; }
        ",
        world: "wasmfn:host-bindings/schedule-exports",
        exports: { default: async },
    });
}

/// The `task` world's export.
pub mod task {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world task-exports { export wasmfn:platform/task-handler@0.1.0; }
        ",
        world: "wasmfn:host-bindings/task-exports",
        exports: { default: async },
    });
}

/// `wasmfn:platform/events` and `wasmfn:platform/workflows`: the event bus, topics and
/// workflow starts.
pub mod routing {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world routing-imports {
                import wasmfn:platform/events@0.1.0;
                import wasmfn:platform/workflows@0.1.0;
            }
        ",
        world: "wasmfn:host-bindings/routing-imports",
        imports: { default: async },
    });
}

/// `wasi:logging`, implemented by routing into `tracing`.
pub mod logging {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world logging-imports { import wasi:logging/logging@0.1.0-draft; }
        ",
        world: "wasmfn:host-bindings/logging-imports",
    });
}

/// `wasmfn:platform/queue-publisher`, implemented over the app's queues.
pub mod publisher {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world publisher-imports { import wasmfn:platform/queue-publisher@0.1.0; }
        ",
        world: "wasmfn:host-bindings/publisher-imports",
        imports: { default: async },
    });
}

/// The platform's storage imports: `wasi:keyvalue` with `kv-extensions`, `sql` and `blob`.
/// Their resources are host-side handles of the stores bound to the function.
pub mod stores {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package wasmfn:host-bindings;
            world store-imports {
                import wasi:keyvalue/store@0.2.0-draft;
                import wasi:keyvalue/atomics@0.2.0-draft;
                import wasi:keyvalue/batch@0.2.0-draft;
                import wasmfn:platform/kv-extensions@0.1.0;
                import wasmfn:platform/sql@0.1.0;
                import wasmfn:platform/blob@0.1.0;
            }
        ",
        world: "wasmfn:host-bindings/store-imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:keyvalue/store.bucket": crate::kv::Bucket,
            "wasmfn:platform/sql.connection": crate::sql::Connection,
            "wasmfn:platform/sql.transaction": crate::sql::Transaction,
            "wasmfn:platform/blob.container": crate::blob::Container,
            "wasmfn:platform/blob.object-writer": crate::blob::ObjectWriter,
        },
    });
}
