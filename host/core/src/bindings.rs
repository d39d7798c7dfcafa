//! Host-side bindings generated from `wit/`: the handler exports of the queue, stream,
//! schedule and task worlds (the http world's are wasmtime-wasi-http's).
//!
//! Export-only worlds are used so that instantiating a handler needs nothing but its export;
//! imports are satisfied by the host's linker, which the capabilities fill.

/// The `queue` world's export.
pub mod queue {
    wasmtime::component::bindgen!({
        path: "../../wit",
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
        path: "../../wit",
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
        path: "../../wit",
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
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world task-exports { export wasmfn:platform/task-handler@0.1.0; }
        ",
        world: "wasmfn:host-bindings/task-exports",
        exports: { default: async },
    });
}
