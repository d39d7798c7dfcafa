//! [`Runtimes`]: a host's engine and linker for WASI 0.2 components, and the pair for WASI 0.3
//! components, created when the first one loads (see [`crate::Wasi`] for why there are two).

use std::sync::{Arc, OnceLock};

use wasmtime::component::Linker;

use crate::{Capability, EngineOptions, HostEngine, InstanceState, Wasi};

/// An engine and the linker with every import for components on it.
pub struct Runtime {
    /// The engine.
    pub engine: HostEngine,
    /// WASI, `wasi:http` and every capability's imports, for this engine.
    pub linker: Linker<InstanceState>,
}

impl Runtime {
    fn new(
        options: &EngineOptions,
        wasi: Wasi,
        capabilities: &[Arc<dyn Capability>],
    ) -> anyhow::Result<Self> {
        let engine = HostEngine::for_wasi(options, wasi)?;
        let linker = crate::build_linker(engine.engine(), capabilities)?;
        Ok(Self { engine, linker })
    }
}

/// The runtimes of one host, by WASI generation.
pub struct Runtimes {
    options: EngineOptions,
    capabilities: Arc<[Arc<dyn Capability>]>,
    p2: Runtime,
    /// Made on first use: most apps have no 0.3 component, and each engine reserves its own
    /// instance pool.
    p3: OnceLock<Result<Runtime, String>>,
}

impl Runtimes {
    /// The WASI 0.2 runtime now; the 0.3 one on first [`Runtimes::get`].
    pub fn new(
        options: EngineOptions,
        capabilities: Arc<[Arc<dyn Capability>]>,
    ) -> anyhow::Result<Self> {
        let p2 = Runtime::new(&options, Wasi::P2, &capabilities)?;
        Ok(Self {
            options,
            capabilities,
            p2,
            p3: OnceLock::new(),
        })
    }

    /// The WASI 0.2 runtime (what an embedder's `Host::engine` is).
    pub fn p2(&self) -> &Runtime {
        &self.p2
    }

    /// The runtime for components of `wasi`; creating the 0.3 one can fail (e.g. no address
    /// space for another pool), which is then reported for every 0.3 component.
    pub fn get(&self, wasi: Wasi) -> Result<&Runtime, String> {
        match wasi {
            Wasi::P2 => Ok(&self.p2),
            Wasi::P3 => self
                .p3
                .get_or_init(|| {
                    Runtime::new(&self.options, Wasi::P3, &self.capabilities)
                        .map_err(|e| format!("creating the engine for WASI 0.3 components: {e:#}"))
                })
                .as_ref()
                .map_err(Clone::clone),
        }
    }
}
