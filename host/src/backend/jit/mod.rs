//! The Cranelift JIT tier: IR blocks compiled to host code with the interpreter's exact
//! semantics.
//!
//! `Jit::compile(&Block)` lowers one block (`lower`, `arith`, `regs`) to a Cranelift
//! function `fn(ctx, cpu) -> exit code`, compiles it, and copies the machine code into a
//! `CodeRegion` (`code`: dual-mapped W^X memory). The result is a `CompiledTb` whose
//! safe `run` (`entry`) returns the same `BlockExit` and leaves the same guest state and
//! memory as `interp::run_block` on the same block. Guest memory and helpers are reached
//! through `extern "C"` shims (`rt`); exits follow the protocol in `exits`.
//!
//! The generated code has no relocations: shim and helper addresses are immediates, so a
//! function can be copied anywhere. A `Jit` is single-threaded (it owns the Cranelift
//! contexts); its `CompiledTb`s are `Send + Sync` and may run on any thread.
//!
//! All JIT `unsafe` lives in `code` (mappings), `entry` (the call) and `rt` (shims), each
//! with a safety contract in its header.

mod arith;
mod code;
mod entry;
mod exits;
mod lower;
mod regs;
mod rt;

pub use code::CodeRegion;
pub use entry::CompiledTb;

use crate::ir::Block;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{types, AbiParam, Function, Signature, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use std::sync::Arc;
use thiserror::Error;

/// Default size of one code region (more are mapped as regions fill up).
pub const DEFAULT_REGION_SIZE: usize = 64 << 20;

/// Why a block could not be compiled. The exec loop keeps interpreting such a block.
#[derive(Debug, Error)]
pub enum JitError {
    /// Cranelift does not support the host.
    #[error("cranelift cannot target this host: {0}")]
    Isa(String),
    /// Executable memory could not be mapped.
    #[error("cannot map jit code memory: {0}")]
    CodeMemory(#[from] std::io::Error),
    /// The block uses something the JIT does not lower.
    #[error("block at {pc:#x} is not supported by the jit: {what}")]
    Unsupported {
        /// Guest pc of the block.
        pc: u64,
        /// What is missing.
        what: &'static str,
    },
    /// Cranelift rejected the generated function (a lowering bug).
    #[error("cranelift failed on block at {pc:#x}: {msg}")]
    Codegen {
        /// Guest pc of the block.
        pc: u64,
        /// Cranelift's message.
        msg: String,
    },
    /// The compiled code does not fit in an empty code region.
    #[error("compiled block at {pc:#x} ({len} bytes) does not fit in a code region")]
    TooBig {
        /// Guest pc of the block.
        pc: u64,
        /// Code size.
        len: usize,
    },
}

/// A block compiler and the code memory it fills.
pub struct Jit {
    isa: OwnedTargetIsa,
    cg: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    region: Arc<CodeRegion>,
    region_size: usize,
    compiled: u32,
}

impl Jit {
    /// A compiler for the host CPU with code regions of `DEFAULT_REGION_SIZE`.
    pub fn new() -> Result<Jit, JitError> {
        Jit::with_region_size(DEFAULT_REGION_SIZE)
    }

    /// A compiler whose code regions are `region_size` bytes.
    pub fn with_region_size(region_size: usize) -> Result<Jit, JitError> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| JitError::Isa(format!("setting {k}={v}: {e}")))
        };
        set(&mut flags, "opt_level", "speed")?;
        // The IR verifier is cheap enough for debug and test builds only.
        set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
        // Shims never unwind through compiled code, so no unwind tables are needed.
        set(&mut flags, "unwind_info", "false")?;
        let isa = cranelift_native::builder()
            .map_err(|e| JitError::Isa(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Isa(e.to_string()))?;
        let region = Arc::new(CodeRegion::new(region_size)?);
        Ok(Jit {
            isa,
            cg: cranelift_codegen::Context::new(),
            fctx: FunctionBuilderContext::new(),
            region,
            region_size,
            compiled: 0,
        })
    }

    /// Compile one block.
    pub fn compile(&mut self, b: &Block) -> Result<CompiledTb, JitError> {
        let sites = self.build(b)?;
        let pc = b.pc;
        let code = self
            .cg
            .compile(&*self.isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Codegen { pc, msg: format!("{:?}", e.inner) })?;
        if !code.buffer.relocs().is_empty() {
            return Err(JitError::Codegen { pc, msg: "unexpected relocation".into() });
        }
        let bytes = code.code_buffer();
        let align = (self.isa.function_alignment().preferred as usize).max(16);
        let entry = match self.region.alloc_and_write(bytes, align) {
            Some(p) => p,
            None => {
                let fresh = Arc::new(CodeRegion::new(self.region_size)?);
                let p = fresh
                    .alloc_and_write(bytes, align)
                    .ok_or(JitError::TooBig { pc, len: bytes.len() })?;
                self.region = fresh;
                p
            }
        };
        Ok(CompiledTb::new(entry, self.region.clone(), sites, bytes.len(), pc))
    }

    /// The Cranelift IR for `b` before optimisation (for dumps and failing tests).
    pub fn clif(&mut self, b: &Block) -> Result<String, JitError> {
        self.build(b)?;
        Ok(self.cg.func.display().to_string())
    }

    /// Lower `b` into `self.cg.func`; returns its fault sites.
    fn build(&mut self, b: &Block) -> Result<Vec<exits::FaultSite>, JitError> {
        if b.fixups.iter().flat_map(|f| f.1.iter()).any(|op| !arith::is_pure(op)) {
            // The interpreter runs fix-ups ignoring any stop; only pure ops are lowered.
            return Err(JitError::Unsupported { pc: b.pc, what: "fix-up op that can stop" });
        }
        let call_conv = self.isa.default_call_conv();
        let mut sig = Signature::new(call_conv);
        sig.params.push(AbiParam::new(types::I64)); // ctx
        sig.params.push(AbiParam::new(types::I64)); // cpu
        sig.returns.push(AbiParam::new(types::I64)); // exit code
        self.cg.clear();
        self.cg.func = Function::with_name_signature(UserFuncName::user(0, self.compiled), sig);
        self.compiled = self.compiled.wrapping_add(1);
        let frontend = self.isa.frontend_config();
        Ok(lower::build(&mut self.cg.func, &mut self.fctx, b, call_conv, frontend))
    }
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("region", &self.region)
            .field("compiled", &self.compiled)
            .finish()
    }
}
