//! The shared wasmtime [`Engine`]s: pooling allocator, copy-on-write memory images and epoch
//! interruption, configured once per host.
//!
//! A host has two engines. WASI 0.2 components run on one without the component model's
//! concurrency support: with it on, every export call goes through wasmtime's concurrent event
//! loop, which costs a 0.2 "hello" about a fifth of its throughput (benches/README.md). WASI 0.3
//! components (async exports, `async func` imports, streams, futures) run on a second engine
//! with it on, created when the first such component loads. [`Wasi::of_component`] tells
//! which a component needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticker advances the engine's epoch. Guests running longer than one tick
/// yield to the async executor, and timeouts are checked, at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Instance allocation strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots for instances, memories, tables and stacks (the fast default).
    Pooling,
    /// Allocate everything per instance with `mmap` (slower; needs no address-space reservation).
    OnDemand,
}

/// Engine-wide settings. Per-function limits live in [`crate::Limits`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Preferred allocator. Pooling falls back to on-demand, with a logged reason, when the
    /// address space for the pool cannot be reserved.
    pub allocator: Allocator,
    /// Component instances the pool holds at once, across all functions.
    pub pool_instances: u32,
    /// Largest linear memory any instance may have; per-function limits are enforced below this.
    pub max_memory_bytes: u64,
    /// Bytes of each linear memory kept resident (zeroed with `memset` instead of `madvise`) when
    /// a pool slot is reused. Avoids page faults and TLB shootdowns for small guests.
    pub memory_keep_resident: usize,
    /// Bytes of each table kept resident on slot reuse, as above.
    pub table_keep_resident: usize,
    /// How many slot decommits are batched into one `madvise` sweep.
    pub decommit_batch_size: usize,
    /// Use Linux's `PAGEMAP_SCAN` (6.7+) to reset only the pages a guest dirtied, when the
    /// kernel supports it.
    pub pagemap_scan: bool,
    /// Compile for another target triple (e.g. `aarch64-unknown-linux-gnu`) instead of this
    /// machine: for packaging precompiled components; such an engine cannot run them.
    pub target: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            allocator: Allocator::Pooling,
            pool_instances: 1000,
            max_memory_bytes: 4 << 30,
            // With PAGEMAP_SCAN only pages the guest dirtied are reset, by memset, up to this
            // much: a small guest's slot is recycled without any madvise, page fault or TLB
            // shootdown. Without it, this many low bytes are memset on every reuse.
            memory_keep_resident: 2 << 20,
            table_keep_resident: 64 << 10,
            // Decommitting one slot at a time costs one syscall (and one TLB shootdown) per
            // request; batching amortises it.
            decommit_batch_size: 64,
            pagemap_scan: true,
            target: None,
        }
    }
}

/// Which WASI generation a component is built for, and so which engine runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wasi {
    /// WASI 0.2: synchronous exports and imports.
    P2,
    /// WASI 0.3: the component model's native async (async exports or imports, streams,
    /// futures).
    P3,
}

impl Wasi {
    /// What the component in `bytes` needs, judged by the names of its top-level imports and
    /// exports: anything from a `wasi:*@0.3.x` package or `wasmfn:platform@0.2.x` (the async
    /// stores) needs [`Wasi::P3`]. Unparseable bytes say [`Wasi::P2`]; compiling reports why.
    pub fn of_component(bytes: &[u8]) -> Wasi {
        use wasmtime::wasmparser::{Parser, Payload};
        let is_p3 = |name: &str| {
            let Some((package, version)) = name.split_once('@') else {
                return false;
            };
            (package.starts_with("wasi:") && version.starts_with("0.3."))
                || (package.starts_with("wasmfn:platform/") && version.starts_with("0.2."))
        };
        // Nested modules and components sit between their own section and `End`; only the
        // outermost level's names are the component's interface.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else {
                return Wasi::P2;
            };
            match payload {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => break,
                },
                Payload::ComponentImportSection(reader) if depth == 0 => {
                    for import in reader.into_iter().flatten() {
                        if is_p3(import.name.name) {
                            return Wasi::P3;
                        }
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 0 => {
                    for export in reader.into_iter().flatten() {
                        if is_p3(export.name.name) {
                            return Wasi::P3;
                        }
                    }
                }
                _ => {}
            }
        }
        Wasi::P2
    }
}

/// A configured engine plus what it was built with.
#[derive(Clone)]
pub struct HostEngine {
    pub(crate) engine: Engine,
    pub(crate) allocator: Allocator,
    ticker_stop: Arc<AtomicBool>,
}

impl HostEngine {
    /// Build the engine for WASI 0.2 components, falling back from pooling to on-demand if the
    /// pool cannot be reserved.
    pub fn new(options: &EngineOptions) -> Result<Self> {
        Self::for_wasi(options, Wasi::P2)
    }

    /// Build the engine for components of `wasi`, as [`HostEngine::new`] does.
    pub fn for_wasi(options: &EngineOptions, wasi: Wasi) -> Result<Self> {
        let (engine, allocator) = match options.allocator {
            Allocator::OnDemand => (
                Engine::new(&base_config(options, wasi))?,
                Allocator::OnDemand,
            ),
            Allocator::Pooling => match Engine::new(&pooling_config(options, wasi)) {
                Ok(engine) => (engine, Allocator::Pooling),
                Err(e) => {
                    tracing::warn!(
                        reason = %format!("{e:#}"),
                        "cannot reserve address space for the pooling allocator \
                         (check `ulimit -v`); falling back to on-demand allocation"
                    );
                    let engine = Engine::new(&base_config(options, wasi))
                        .map_err(anyhow::Error::from)
                        .context("creating the wasmtime engine")?;
                    (engine, Allocator::OnDemand)
                }
            },
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), ticker_stop.clone());
        Ok(Self {
            engine,
            allocator,
            ticker_stop,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The allocator actually in use (after any fallback).
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        // Only the last clone stops the ticker.
        if Arc::strong_count(&self.ticker_stop) == 1 {
            self.ticker_stop.store(true, Ordering::Relaxed);
        }
    }
}

fn base_config(options: &EngineOptions, wasi: Wasi) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Async exports, streams and futures for 0.3 components; off for 0.2 ones, whose every
    // call would otherwise pay for the concurrent event loop.
    let concurrent = wasi == Wasi::P3;
    config.wasm_component_model_async(concurrent);
    config.concurrency_support(concurrent);
    // Timeouts and fair scheduling of CPU-bound guests; far cheaper than fuel.
    config.epoch_interruption(true);
    // Map memory images copy-on-write from the compiled artifact instead of copying data segments.
    config.memory_init_cow(true);
    config.max_wasm_stack(1 << 20);
    // Async host calls (wasi:http bodies, timers) run guests on fibers; 2 MiB leaves room for
    // the 1 MiB wasm stack plus host frames.
    config.async_stack_size(2 << 20);
    if let Some(target) = &options.target {
        // An unknown triple surfaces as an error from `Engine::new`.
        let _ = config.target(target);
    }
    config
}

fn pooling_config(options: &EngineOptions, wasi: Wasi) -> Config {
    let mut config = base_config(options, wasi);
    let n = options.pool_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A component built by wasm-component-ld holds several core instances (the program,
        // adapter shims, fix-ups); JS and Python components hold more.
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 8)
        .total_stacks(n)
        .max_memory_size(options.max_memory_bytes as usize)
        .linear_memory_keep_resident(options.memory_keep_resident)
        .table_keep_resident(options.table_keep_resident)
        .decommit_batch_size(options.decommit_batch_size)
        .pagemap_scan(if options.pagemap_scan {
            Enabled::Auto
        } else {
            Enabled::No
        })
        // Large interpreted guests (componentize-js/-py) declare big tables and instances.
        .table_elements(100_000)
        .max_core_instance_size(16 << 20)
        .max_component_instance_size(16 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("wasmfn-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}
