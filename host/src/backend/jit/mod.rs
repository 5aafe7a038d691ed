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
mod chain;
mod code;
mod entry;
mod exits;
mod lower;
mod regs;
mod rt;

pub use chain::{ChainState, CodeGen, LinkPoint, DEFAULT_BUDGET};
pub use code::CodeRegion;
pub use entry::CompiledTb;

use crate::ir::Block;
use crate::mem::DirectAccessors;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{
    types, AbiParam, AtomicRmwOp, Function, InstBuilder, Signature, UserFuncName,
};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// Default size of one code region (more are mapped as regions fill up).
pub const DEFAULT_REGION_SIZE: usize = 16 << 20;
/// Default bound on the code of one generation (the code cache size).
pub const DEFAULT_CACHE_LIMIT: usize = 256 << 20;

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
    /// The code cache is full: call `Jit::flush` (and drop every `CompiledTb`), then retry.
    #[error("jit code cache full")]
    CacheFull,
}

/// Sizes of the code cache.
#[derive(Clone, Copy, Debug)]
pub struct JitOptions {
    /// Bytes per code region.
    pub region_size: usize,
    /// Bytes of code per generation before `compile` reports `CacheFull`.
    pub cache_limit: usize,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions { region_size: DEFAULT_REGION_SIZE, cache_limit: DEFAULT_CACHE_LIMIT }
    }
}

/// Guest loads and stores compiled code did through the slow path (a shim) because the
/// page map did not show them safe: faults, writes to pages holding code, accesses
/// crossing into a page that does not allow them.
static SLOW_ACCESSES: AtomicU64 = AtomicU64::new(0);

/// The number of slow-path guest accesses compiled code made so far (process-wide).
pub fn slow_accesses() -> u64 {
    SLOW_ACCESSES.load(Ordering::Relaxed)
}

/// A block compiler and the code memory it fills.
pub struct Jit {
    /// The optimising configuration (hot regions, `compile_for`).
    isa: OwnedTargetIsa,
    /// The quick configuration for first compiles (`compile_baseline`): no e-graph
    /// optimisation, single-pass register allocation; about half the compile time.
    baseline: OwnedTargetIsa,
    cg: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    gen: Arc<CodeGen>,
    region: Arc<CodeRegion>,
    opts: JitOptions,
    compiled: u32,
}

impl Jit {
    /// A compiler for the host CPU with default sizes.
    pub fn new() -> Result<Jit, JitError> {
        Jit::with_options(JitOptions::default())
    }

    /// A compiler whose code regions are `region_size` bytes (cache limit unchanged).
    pub fn with_region_size(region_size: usize) -> Result<Jit, JitError> {
        Jit::with_options(JitOptions { region_size, ..JitOptions::default() })
    }

    /// A compiler with the given sizes.
    pub fn with_options(opts: JitOptions) -> Result<Jit, JitError> {
        let isa = Jit::make_isa("speed", "backtracking")?;
        let baseline = Jit::make_isa("none", "single_pass")?;
        let mut jit = Jit {
            isa,
            baseline,
            cg: cranelift_codegen::Context::new(),
            fctx: FunctionBuilderContext::new(),
            gen: Arc::new(CodeGen::new()),
            region: Arc::new(CodeRegion::new(opts.region_size.min(4096))?),
            opts,
            compiled: 0,
        };
        jit.flush()?;
        Ok(jit)
    }

    fn make_isa(opt_level: &str, regalloc: &str) -> Result<OwnedTargetIsa, JitError> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| JitError::Isa(format!("setting {k}={v}: {e}")))
        };
        set(&mut flags, "opt_level", opt_level)?;
        set(&mut flags, "regalloc_algorithm", regalloc)?;
        // The IR verifier is cheap enough for debug and test builds only.
        set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
        // Shims never unwind through compiled code, so no unwind tables are needed.
        set(&mut flags, "unwind_info", "false")?;
        // Cranelift's x64 tail calls (`return_call_indirect`, used for chaining) need them.
        set(&mut flags, "preserve_frame_pointers", "true")?;
        cranelift_native::builder()
            .map_err(|e| JitError::Isa(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| JitError::Isa(e.to_string()))
    }

    /// Start a new code generation (an empty code cache). Blocks compiled before keep
    /// working, but are never linked to new ones; their memory is freed once the last of
    /// them (and every vCPU table listing them) is dropped.
    pub fn flush(&mut self) -> Result<(), JitError> {
        let gen = Arc::new(CodeGen::new());
        let region = Arc::new(CodeRegion::new(self.opts.region_size)?);
        gen.add_region(region.clone());
        self.gen = gen;
        self.region = region;
        let tramp = self.compile_trampoline()?;
        self.gen.set_trampoline(tramp);
        let load = self.compile_preserve_all(rt::RtFn::Load)?;
        let store = self.compile_preserve_all(rt::RtFn::Store)?;
        self.gen.set_preserve_all(load, store);
        Ok(())
    }

    /// The current code generation.
    pub fn generation(&self) -> &Arc<CodeGen> {
        &self.gen
    }

    /// Compile one block; loads and stores go through `GuestMemory`.
    pub fn compile(&mut self, b: &Arc<Block>) -> Result<CompiledTb, JitError> {
        self.compile_for(b, None)
    }

    /// Compile one block. With `direct`, loads and stores call those accessors first
    /// (user-mode fast path); the block may then only run on a memory whose
    /// `direct_accessors()` is `Some`.
    pub fn compile_for(
        &mut self,
        b: &Arc<Block>,
        direct: Option<DirectAccessors>,
    ) -> Result<CompiledTb, JitError> {
        self.compile_region_with(&[b], &[], direct)
    }

    /// Compile one block quickly (the tier-up's first compile): the same semantics as
    /// `compile_for`, with less optimisation. A block that turns out to loop is compiled
    /// again, optimised, as a hot region.
    pub fn compile_baseline(
        &mut self,
        b: &Arc<Block>,
        direct: Option<DirectAccessors>,
    ) -> Result<CompiledTb, JitError> {
        self.compile_with(&[b], &[], direct, true)
    }

    /// Compile a hot region: the blocks become one function entered at `blocks[0]`; direct
    /// exits between them are jumps inside it, so guest registers stay in host registers
    /// around the loop, and an indirect jump or return whose target is one of them jumps
    /// there too (its target is compared with every block's pc, in order). The result must
    /// be killed when any of the blocks is invalidated.
    pub fn compile_region(
        &mut self,
        blocks: &[&Arc<Block>],
        direct: Option<DirectAccessors>,
    ) -> Result<CompiledTb, JitError> {
        let pcs: Vec<u64> =
            if blocks.len() > 1 { blocks.iter().map(|b| b.pc).collect() } else { Vec::new() };
        let indirect = vec![pcs; blocks.len()];
        self.compile_region_with(blocks, &indirect, direct)
    }

    /// `compile_region` where `indirect[k]` names the region pcs block k's indirect
    /// terminator tests for, most likely first (a profile's hot targets); any other
    /// target leaves the function as usual.
    pub fn compile_region_with(
        &mut self,
        blocks: &[&Arc<Block>],
        indirect: &[Vec<u64>],
        direct: Option<DirectAccessors>,
    ) -> Result<CompiledTb, JitError> {
        self.compile_with(blocks, indirect, direct, false)
    }

    fn compile_with(
        &mut self,
        blocks: &[&Arc<Block>],
        indirect: &[Vec<u64>],
        direct: Option<DirectAccessors>,
        quick: bool,
    ) -> Result<CompiledTb, JitError> {
        let Some(first) = blocks.first() else {
            return Err(JitError::Unsupported { pc: 0, what: "empty region" });
        };
        let pc = first.pc;
        let data = self.build(blocks, indirect, direct, quick)?;
        let isa = if quick { &*self.baseline } else { &*self.isa };
        let code = self
            .cg
            .compile(isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Codegen { pc, msg: format!("{:?}", e.inner) })?;
        if !code.buffer.relocs().is_empty() {
            return Err(JitError::Codegen { pc, msg: "unexpected relocation".into() });
        }
        let bytes = code.code_buffer().to_vec();
        let entry = self.place(&bytes, pc)?;
        let hot = data.hot.as_deref().map(std::ptr::NonNull::from);
        self.gen.adopt(data.slots, data.sites, data.blocks, data.hot);
        Ok(CompiledTb::new(entry, self.gen.clone(), bytes.len(), pc, direct.is_some(), hot))
    }

    /// Copy code into the current generation, growing it by a region when needed.
    fn place(&mut self, bytes: &[u8], pc: u64) -> Result<std::ptr::NonNull<u8>, JitError> {
        let align = (self.isa.function_alignment().preferred as usize).max(16);
        if let Some(p) = self.region.alloc_and_write(bytes, align) {
            self.gen.note_code(bytes.len());
            return Ok(p);
        }
        if self.gen.code_bytes() + self.opts.region_size > self.opts.cache_limit {
            return Err(JitError::CacheFull);
        }
        let fresh = Arc::new(CodeRegion::new(self.opts.region_size)?);
        let p =
            fresh.alloc_and_write(bytes, align).ok_or(JitError::TooBig { pc, len: bytes.len() })?;
        self.gen.add_region(fresh.clone());
        self.gen.note_code(bytes.len());
        self.region = fresh;
        Ok(p)
    }

    /// Compile a one-block helper function with signature `sig` whose body `body` builds
    /// from the function's parameters (it must end with a return), and place it in the
    /// current generation. `what` names it in errors.
    fn compile_stub(
        &mut self,
        what: &str,
        sig: Signature,
        body: impl FnOnce(&mut FunctionBuilder<'_>, &[cranelift_codegen::ir::Value]),
    ) -> Result<usize, JitError> {
        self.cg.clear();
        self.cg.func = Function::with_name_signature(UserFuncName::user(1, 0), sig);
        {
            let mut fb = FunctionBuilder::new(&mut self.cg.func, &mut self.fctx);
            let blk = fb.create_block();
            fb.append_block_params_for_function_params(blk);
            fb.switch_to_block(blk);
            fb.seal_block(blk);
            let p = fb.block_params(blk).to_vec();
            body(&mut fb, &p);
            fb.finalize(self.isa.frontend_config());
        }
        let code = self
            .cg
            .compile(&*self.isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Codegen { pc: 0, msg: format!("{what}: {:?}", e.inner) })?;
        let bytes = code.code_buffer().to_vec();
        Ok(self.place(&bytes, 0)?.as_ptr() as usize)
    }

    /// The SystemV entry `fn(ctx, cpu, entry) -> u64` that calls a `tail` block function.
    fn compile_trampoline(&mut self) -> Result<usize, JitError> {
        let mut sig = Signature::new(CallConv::SystemV);
        for _ in 0..3 {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig.returns.push(AbiParam::new(types::I64));
        self.compile_stub("trampoline", sig, |fb, p| {
            let tail = fb.import_signature(lower::tb_signature());
            let flags = cranelift_codegen::ir::MemFlagsData::trusted();
            let budget = fb.ins().load(types::I64, flags, p[0], rt::CTX_BUDGET);
            let call = fb.ins().call_indirect(tail, p[2], &[p[0], p[1], budget]);
            let r = fb.inst_results(call)[0];
            fb.ins().return_(&[r]);
        })
    }

    /// A `preserve_all` function `fn(ctx, args...)` that calls the shim `f` and leaves its
    /// value and status in `JitCtx::ret_value` / `ret_status`. The cold path of an inline
    /// guest access calls it: to the register allocator the call clobbers nothing, so the
    /// hot path keeps guest registers in host registers instead of spilling them around
    /// every load and store (the wrapper saves what the SystemV shim may clobber).
    fn compile_preserve_all(&mut self, f: rt::RtFn) -> Result<usize, JitError> {
        let mut sig = Signature::new(CallConv::PreserveAll);
        for _ in 0..=f.nargs() {
            sig.params.push(AbiParam::new(types::I64));
        }
        self.compile_stub(&format!("{} wrapper", f.name()), sig, |fb, p| {
            let flags = cranelift_codegen::ir::MemFlagsData::trusted();
            // Count the call (for `--stats`): the slow path should be rare.
            let counter = fb.ins().iconst(types::I64, &SLOW_ACCESSES as *const AtomicU64 as i64);
            let one = fb.ins().iconst(types::I64, 1);
            fb.ins().atomic_rmw(types::I64, flags, AtomicRmwOp::Add, counter, one);
            let shim = fb.import_signature(f.signature(CallConv::SystemV));
            let addr = fb.ins().iconst(types::I64, f.addr() as i64);
            let call = fb.ins().call_indirect(shim, addr, p);
            let (v, st) = (fb.inst_results(call)[0], fb.inst_results(call)[1]);
            fb.ins().store(flags, v, p[0], rt::CTX_RET_VALUE);
            fb.ins().store(flags, st, p[0], rt::CTX_RET_STATUS);
            fb.ins().return_(&[]);
        })
    }

    /// The Cranelift IR of the last function compiled, as optimised (for traces).
    pub fn last_clif(&self) -> String {
        self.cg.func.display().to_string()
    }

    /// The Cranelift IR for `b` before optimisation (for dumps and failing tests).
    pub fn clif(&mut self, b: &Arc<Block>) -> Result<String, JitError> {
        self.build(&[b], &[], None, false)?;
        Ok(self.cg.func.display().to_string())
    }

    /// Lower `blocks` (a region entered at the first) into `self.cg.func`.
    fn build(
        &mut self,
        blocks: &[&Arc<Block>],
        indirect: &[Vec<u64>],
        direct: Option<DirectAccessors>,
        tier_up: bool,
    ) -> Result<lower::ExitData, JitError> {
        for b in blocks {
            if b.fixups.iter().flat_map(|f| f.1.iter()).any(|op| !arith::is_pure(op)) {
                // The interpreter runs fix-ups ignoring any stop; only pure ops are lowered.
                return Err(JitError::Unsupported { pc: b.pc, what: "fix-up op that can stop" });
            }
        }
        self.cg.clear();
        let name = UserFuncName::user(0, self.compiled);
        self.cg.func = Function::with_name_signature(name, lower::tb_signature());
        self.compiled = self.compiled.wrapping_add(1);
        let frontend = self.isa.frontend_config();
        let preserve_all = self.gen.preserve_all();
        Ok(lower::build(
            &mut self.cg.func,
            &mut self.fctx,
            blocks,
            indirect,
            lower::How { direct, preserve_all, frontend, tier_up },
        ))
    }
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit").field("gen", &self.gen).field("compiled", &self.compiled).finish()
    }
}
