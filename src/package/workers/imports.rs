//! Which component imports a Worker can provide and where each comes from: WASI from
//! preview2-shim's browser build (`shim/`), the platform services from wasmfn's runtime modules
//! (`adapters/workers/runtime/`, copied in as `wasmfn/`). Platform calls return Promises, so a
//! component importing any of them is transpiled in jco's JSPI mode with those functions
//! suspending ([`async_imports`]).

use std::path::Path;

use anyhow::{bail, Context as _, Result};

/// Every import the adapter maps: (WIT interface, bundle module without `.js`, export).
pub const PROVIDED: &[(&str, &str, &str)] = &[
    ("wasi:cli/environment", "shim/cli", "environment"),
    ("wasi:cli/exit", "shim/cli", "exit"),
    ("wasi:cli/stdin", "shim/cli", "stdin"),
    ("wasi:cli/stdout", "shim/cli", "stdout"),
    ("wasi:cli/stderr", "shim/cli", "stderr"),
    ("wasi:cli/terminal-input", "shim/cli", "terminalInput"),
    ("wasi:cli/terminal-output", "shim/cli", "terminalOutput"),
    ("wasi:cli/terminal-stdin", "shim/cli", "terminalStdin"),
    ("wasi:cli/terminal-stdout", "shim/cli", "terminalStdout"),
    ("wasi:cli/terminal-stderr", "shim/cli", "terminalStderr"),
    (
        "wasi:clocks/monotonic-clock",
        "shim/clocks",
        "monotonicClock",
    ),
    ("wasi:clocks/wall-clock", "shim/clocks", "wallClock"),
    ("wasi:io/error", "shim/io", "error"),
    ("wasi:io/poll", "shim/io", "poll"),
    ("wasi:io/streams", "shim/io", "streams"),
    ("wasi:random/random", "shim/random", "random"),
    ("wasi:random/insecure", "shim/random", "insecure"),
    ("wasi:random/insecure-seed", "shim/random", "insecureSeed"),
    ("wasi:http/types", "shim/http", "types"),
    (
        "wasi:http/outgoing-handler",
        "wasmfn/outbound",
        "outgoingHandler",
    ),
    ("wasi:logging/logging", "wasmfn/worker", "logging"),
    ("wasmfn:platform/types", "wasmfn/worker", "types"),
    ("wasi:keyvalue/store", "wasmfn/kv", "store"),
    ("wasi:keyvalue/atomics", "wasmfn/kv", "atomics"),
    ("wasi:keyvalue/batch", "wasmfn/kv", "batch"),
    ("wasmfn:platform/kv-extensions", "wasmfn/kv", "kvExtensions"),
    ("wasmfn:platform/sql", "wasmfn/sql", "sql"),
    ("wasmfn:platform/blob", "wasmfn/blob", "blob"),
    (
        "wasmfn:platform/queue-publisher",
        "wasmfn/queues",
        "queuePublisher",
    ),
    ("wasi:config/store", "wasmfn/config", "store"),
];

/// wasmfn's runtime modules, written into the bundle's `wasmfn/` folder.
pub const RUNTIME: &[(&str, &str)] = &[
    (
        "trace.js",
        include_str!("../../../adapters/workers/runtime/trace.js"),
    ),
    (
        "worker.js",
        include_str!("../../../adapters/workers/runtime/worker.js"),
    ),
    (
        "platform.js",
        include_str!("../../../adapters/workers/runtime/platform.js"),
    ),
    (
        "kv.js",
        include_str!("../../../adapters/workers/runtime/kv.js"),
    ),
    (
        "sql.js",
        include_str!("../../../adapters/workers/runtime/sql.js"),
    ),
    (
        "blob.js",
        include_str!("../../../adapters/workers/runtime/blob.js"),
    ),
    (
        "config.js",
        include_str!("../../../adapters/workers/runtime/config.js"),
    ),
    (
        "queues.js",
        include_str!("../../../adapters/workers/runtime/queues.js"),
    ),
    (
        "outbound.js",
        include_str!("../../../adapters/workers/runtime/outbound.js"),
    ),
];

/// Functions whose JavaScript side awaits a binding or `fetch`: (interface, functions in
/// jco's `[method]resource.name` notation).
const SUSPENDING: &[(&str, &[&str])] = &[
    (
        "wasi:keyvalue/store",
        &[
            "[method]bucket.get",
            "[method]bucket.set",
            "[method]bucket.delete",
            "[method]bucket.exists",
            "[method]bucket.list-keys",
        ],
    ),
    ("wasi:keyvalue/atomics", &["increment"]),
    (
        "wasi:keyvalue/batch",
        &["get-many", "set-many", "delete-many"],
    ),
    (
        "wasmfn:platform/kv-extensions",
        &[
            "set-with-ttl",
            "ttl",
            "persist",
            "list-prefix",
            "compare-and-swap",
        ],
    ),
    (
        "wasmfn:platform/sql",
        &[
            "[method]connection.query",
            "[method]connection.execute-batch",
            "[static]transaction.commit",
        ],
    ),
    (
        "wasmfn:platform/blob",
        &[
            "[method]container.put",
            "[method]container.get",
            "[method]container.read",
            "[method]container.head",
            "[method]container.delete",
            "[method]container.list-objects",
            "[static]object-writer.finish",
        ],
    ),
    ("wasmfn:platform/queue-publisher", &["send", "send-batch"]),
    // preview2-shim's pollables and fetch body reads return Promises.
    ("wasi:http/outgoing-handler", &[]),
];

/// What blocks on preview2-shim's Promises once any import suspends.
const SUSPENDING_IO: &[&str] = &[
    "wasi:io/poll#poll",
    "wasi:io/poll#[method]pollable.block",
    "wasi:io/streams#[method]input-stream.blocking-read",
    "wasi:io/streams#[method]input-stream.blocking-skip",
    "wasi:io/streams#[method]output-stream.blocking-flush",
    "wasi:io/streams#[method]output-stream.blocking-write-and-flush",
    "wasi:io/streams#[method]output-stream.blocking-splice",
];

/// Refuse a WASI 0.3 component: the bundle's transpiler (jco 1.11, the last for the Node 20
/// that Miniflare runs on here) and its preview2-shim provide WASI 0.2 only, with no async
/// component model (streams, futures, async exports) and no `wasi:*@0.3` interfaces.
fn refuse_wasi_p3(name: &str, bytes: &[u8]) -> Result<()> {
    let mut p3 = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let mut note = |name: &str| {
            if name.starts_with("wasi:")
                && name
                    .split_once('@')
                    .is_some_and(|(_, v)| v.starts_with("0.3."))
            {
                p3.push(format!("`{name}`"));
            }
        };
        match payload? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    note(import?.name.name);
                }
            }
            wasmparser::Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    note(export?.name.name);
                }
            }
            _ => {}
        }
    }
    // Name the handler it exports first: that is what makes it a 0.3 function.
    p3.sort_by_key(|name| !name.contains("wasi:http/handler@"));
    if let Some(first) = p3.first() {
        bail!(
            "`{name}` is a WASI 0.3 component ({first}{}), which Workers bundles cannot carry \
             yet: the transpiler they are built with (jco 1.11 and its preview2-shim) provides \
             WASI 0.2 only, without the async component model; build it against wasi:http 0.2 \
             (`wasmfn new rust-http`) for Workers, or deploy it to `wasmfn serve` or Lambda",
            if p3.len() > 1 {
                format!(" and {} more", p3.len() - 1)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// The component's imported interfaces, without versions (`wasi:http/types`).
fn imports_of(bytes: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let name = import?.name.name;
                    names.push(name.split('@').next().unwrap_or(name).to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// The component's imports, once every one of them can be provided on Workers.
pub fn supported_imports(name: &str, component: &Path) -> Result<Vec<String>> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    refuse_wasi_p3(name, &bytes)?;
    let imports = imports_of(&bytes)?;
    let unsupported: Vec<String> = imports
        .iter()
        .filter(|i| !PROVIDED.iter().any(|(iface, _, _)| iface == i))
        .map(|i| format!("`{i}`"))
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "`{name}` imports {} which Workers cannot provide (no filesystem or sockets in a \
             Worker): use the platform's key-value, SQL or blob storage and outbound HTTP instead",
            unsupported.join(", ")
        );
    }
    Ok(imports)
}

/// The `--async-imports` for jco: empty when nothing the component imports needs to wait,
/// so the component stays synchronous (JSPI adds a stack switch to every call).
pub fn async_imports(imports: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (iface, functions) in SUSPENDING {
        if imports.iter().any(|i| i == iface) {
            out.extend(functions.iter().map(|f| format!("{iface}#{f}")));
        }
    }
    let suspends = SUSPENDING
        .iter()
        .any(|(iface, _)| imports.iter().any(|i| i == iface));
    if suspends {
        out.extend(SUSPENDING_IO.iter().map(|s| s.to_string()));
    }
    out
}

/// Whether the component imports `interface`.
pub fn imports(imports: &[String], interface: &str) -> bool {
    imports.iter().any(|i| i == interface)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_platform_imports_switch_to_jspi() {
        let plain = ["wasi:http/types".to_string(), "wasi:io/streams".to_string()];
        assert!(async_imports(&plain).is_empty());
        let kv = ["wasi:keyvalue/store".to_string()];
        let list = async_imports(&kv);
        assert!(list.contains(&"wasi:keyvalue/store#[method]bucket.get".to_string()));
        assert!(list.contains(&"wasi:io/poll#[method]pollable.block".to_string()));
    }

    #[test]
    fn every_suspending_interface_is_provided() {
        for (iface, _) in SUSPENDING {
            assert!(PROVIDED.iter().any(|(i, _, _)| i == iface), "{iface}");
        }
    }
}
