//! The manifest's memory limit inside a Worker. jco's core modules get a maximum size on every
//! linear memory, so `memory.grow` past the limit fails in the guest (its allocator then
//! aborts: a trap) instead of growing until workerd kills the whole isolate at 128 MB. Each
//! `memory.grow` is also instrumented to set an exported flag global
//! ([`GROW_FAILED_EXPORT`]) when it fails, so the runtime reports that trap as
//! `MemoryLimitExceeded`, as the host does, and any other trap as `Trap`.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use wasm_encoder::reencode::{Error, Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType, ConstExpr, ExportKind, GlobalType, Instruction, ValType};

/// WebAssembly pages are 64 KiB.
const PAGE: u64 = 64 << 10;
/// The exported global that turns 1 once a `memory.grow` failed.
pub const GROW_FAILED_EXPORT: &str = "wasmfn:grow-failed";

/// Reencodes a core module with each memory's maximum at most `max_pages`, and failed grows
/// flagged in a new global.
struct CapMemories {
    max_pages: u64,
    /// A memory whose initial size already exceeds the cap.
    too_small: Option<u64>,
    /// Index of the first added global (scratch, then the flag), when instrumenting.
    added: Option<u32>,
}

impl Reencode for CapMemories {
    type Error = std::convert::Infallible;

    fn memory_type(
        &mut self,
        memory: wasmparser::MemoryType,
    ) -> Result<wasm_encoder::MemoryType, Error<Self::Error>> {
        let mut ty = RoundtripReencoder.memory_type(memory)?;
        if memory.initial > self.max_pages {
            self.too_small = Some(memory.initial);
        }
        let cap = self.max_pages.max(memory.initial);
        ty.maximum = Some(memory.maximum.map_or(cap, |m| m.min(cap)));
        Ok(ty)
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        wasm_encoder::reencode::utils::parse_global_section(self, globals, section)?;
        if self.added.is_some() {
            let i32_mut = GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            };
            globals.global(i32_mut, &ConstExpr::i32_const(0));
            globals.global(i32_mut, &ConstExpr::i32_const(0));
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
        if let Some(first) = self.added {
            exports.export(GROW_FAILED_EXPORT, ExportKind::Global, first + 1);
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), Error<Self::Error>> {
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            match (&op, self.added) {
                (wasmparser::Operator::MemoryGrow { mem }, Some(scratch)) => {
                    // result = memory.grow(n); if result == -1 { flag = 1 }; result
                    f.instruction(&Instruction::MemoryGrow(*mem))
                        .instruction(&Instruction::GlobalSet(scratch))
                        .instruction(&Instruction::GlobalGet(scratch))
                        .instruction(&Instruction::I32Const(-1))
                        .instruction(&Instruction::I32Eq)
                        .instruction(&Instruction::If(BlockType::Empty))
                        .instruction(&Instruction::I32Const(1))
                        .instruction(&Instruction::GlobalSet(scratch + 1))
                        .instruction(&Instruction::End)
                        .instruction(&Instruction::GlobalGet(scratch));
                }
                _ => {
                    f.instruction(&self.instruction(op)?);
                }
            }
        }
        code.function(&f);
        Ok(())
    }
}

/// Where the flag globals go: after every imported and defined global, when the module has
/// the global and export sections to hold them and only 32-bit memories.
fn flag_globals(bytes: &[u8]) -> Result<Option<u32>> {
    let (mut globals, mut has_globals, mut has_exports) = (0u32, false, false);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            wasmparser::Payload::ImportSection(s) => {
                for import in s.into_imports() {
                    match import?.ty {
                        wasmparser::TypeRef::Global(_) => globals += 1,
                        wasmparser::TypeRef::Memory(m) if m.memory64 => return Ok(None),
                        _ => {}
                    }
                }
            }
            wasmparser::Payload::MemorySection(s) => {
                for m in s {
                    if m?.memory64 {
                        return Ok(None);
                    }
                }
            }
            wasmparser::Payload::GlobalSection(s) => {
                has_globals = true;
                globals += s.count();
            }
            wasmparser::Payload::ExportSection(_) => has_exports = true,
            _ => {}
        }
    }
    Ok((has_globals && has_exports).then_some(globals))
}

/// Cap every memory of the core module at `path` to `limit` bytes, in place.
pub fn cap_memories(path: &Path, limit: u64) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cap = CapMemories {
        max_pages: limit.div_ceil(PAGE),
        too_small: None,
        added: flag_globals(&bytes)?,
    };
    let mut module = wasm_encoder::Module::new();
    cap.parse_core_module(&mut module, wasmparser::Parser::new(0), &bytes)
        .map_err(|e| anyhow::anyhow!("rewriting {}: {e:?}", path.display()))?;
    if let Some(initial) = cap.too_small {
        bail!(
            "the component starts with {} KiB of memory, more than its memory limit of {} KiB: \
             raise `memory` in wasmfn.toml",
            initial * PAGE / 1024,
            limit / 1024
        );
    }
    std::fs::write(path, module.finish()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_get_the_cap_as_maximum() {
        let mut module = wasm_encoder::Module::new();
        let mut memories = wasm_encoder::MemorySection::new();
        memories.memory(wasm_encoder::MemoryType {
            minimum: 2,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wasm");
        std::fs::write(&path, module.finish()).unwrap();
        cap_memories(&path, 1 << 20).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut maximum = None;
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            if let wasmparser::Payload::MemorySection(s) = payload.unwrap() {
                maximum = s.into_iter().next().unwrap().unwrap().maximum;
            }
        }
        assert_eq!(maximum, Some(16));
        let err = cap_memories(&path, 64 << 10).unwrap_err().to_string();
        assert!(err.contains("raise `memory`"), "{err}");
    }
}
