//! `CompiledTb`: a compiled block, the only way to run it, and its chain links.
//!
//! Safety contract. A `CompiledTb` is created only by `Jit::compile`, from code with the
//! `lower::tb_signature` signature that was written into a region of `gen` before the
//! pointer was made, and whose exit slots and fault sites were handed to `gen`. Holding
//! `gen` keeps all of it mapped and allocated, and every block reachable by chaining from
//! this one belongs to `gen` too (links and indirect-table entries never cross
//! generations, and `run_chained` drops a table of another generation), so a run can never
//! reach freed memory. Compiled code is entered only through `gen`'s trampoline, a SystemV
//! function `fn(ctx, cpu, entry) -> u64` that calls `entry` with the `tail` convention.
//! Raw entry pointers never leave this module except as values stored into exit slots
//! and indirect tables of the same generation.
#![allow(unsafe_code)] // the call into generated code, slot reads and writes; see the contract

use super::chain::{ChainState, CodeGen, ExitSlot, HotCell, Incoming, LinkPoint, EMPTY_TABLE};
use super::exits::{self, kind, Decoded};
use super::rt::JitCtx;
use crate::backend::BlockExit;
use crate::cpu::CpuState;
use crate::mem::GuestMemory;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The trampoline's signature.
type Trampoline = unsafe extern "C" fn(*mut JitCtx<'_>, *mut CpuState, *const u8) -> u64;

/// What a run of compiled code left in its context besides the exit.
struct RunEnd {
    /// Chain budget left.
    budget: u64,
    /// The budget ran out on a loop edge inside one function.
    spent_in_loop: bool,
    /// Guest pc of the block whose indirect exit returned to the run loop (0: none).
    ind_src: u64,
    /// The exit was a quickly compiled block's tier-up (`kind::HOT`).
    hot: bool,
}

/// A compiled translation block.
pub struct CompiledTb {
    entry: NonNull<u8>,
    gen: Arc<CodeGen>,
    code_len: usize,
    pc: u64,
    direct: bool,
    incoming: Mutex<Incoming>,
    /// The tier-up cell of a quickly compiled block (in `gen`, which keeps it alive).
    hot: Option<NonNull<HotCell>>,
}

// SAFETY: the code behind `entry` is immutable once published and is run through `&self`
// with per-call state only (the context lives on the caller's stack); the mutable parts
// (`incoming`, exit slots, the tier-up cell) are a mutex and atomics.
unsafe impl Send for CompiledTb {}
// SAFETY: as above.
unsafe impl Sync for CompiledTb {}

impl CompiledTb {
    /// Wrap freshly written code (see the contract). `direct` says the code calls the
    /// `mem::direct` accessors itself.
    pub(super) fn new(
        entry: NonNull<u8>,
        gen: Arc<CodeGen>,
        code_len: usize,
        pc: u64,
        direct: bool,
        hot: Option<NonNull<HotCell>>,
    ) -> CompiledTb {
        CompiledTb { entry, gen, code_len, pc, direct, incoming: Mutex::default(), hot }
    }

    /// Make this quickly compiled block's code tail-call `to` (its optimised version, of
    /// the same generation) on entry from now on. Refused (false) for a block without a
    /// tier-up cell, another generation, or another pc.
    pub fn forward_to(&self, to: &CompiledTb) -> bool {
        let Some(cell) = self.hot else { return false };
        if to.pc != self.pc || !Arc::ptr_eq(&to.gen, &self.gen) {
            return false;
        }
        // Under `to`'s lock: a `kill` of `to` either comes first (refused here) or after
        // (and whoever kills it clears the forward, `TbJit::drop_region`).
        let inc = to.incoming.lock().unwrap_or_else(|e| e.into_inner());
        if inc.dead {
            return false;
        }
        // SAFETY: the cell lives in `self.gen`'s arena (`CodeGen::adopt`), alive while
        // `self` is.
        let cell = unsafe { cell.as_ref() };
        cell.forward.store(to.entry.as_ptr() as usize, Ordering::Release);
        true
    }

    /// Stop forwarding (the optimised code was dropped: a block of its region died).
    pub fn clear_forward(&self) {
        if let Some(cell) = self.hot {
            // SAFETY: as in `forward_to`.
            unsafe { cell.as_ref() }.forward.store(0, Ordering::Release);
        }
    }

    /// Guest pc of the block.
    pub fn pc(&self) -> u64 {
        self.pc
    }

    /// Size of the host code in bytes.
    pub fn code_len(&self) -> usize {
        self.code_len
    }

    /// Host address of the code (for dumps and perf maps).
    pub fn host_addr(&self) -> usize {
        self.entry.as_ptr() as usize
    }

    /// The code generation the block belongs to.
    pub fn generation(&self) -> &Arc<CodeGen> {
        &self.gen
    }

    /// The host code bytes (for disassembly dumps).
    pub fn code(&self) -> &[u8] {
        // SAFETY: the function's `code_len` bytes were written before `new` and are kept
        // mapped (readable) by `self.gen`; they are never written again.
        unsafe { std::slice::from_raw_parts(self.entry.as_ptr(), self.code_len) }
    }

    /// Run the block alone: no chaining (linked exits return as if unlinked). Guest state
    /// and memory end exactly as `interp::run_block` leaves them.
    pub fn run(&self, cpu: &mut CpuState, mem: &mut dyn GuestMemory) -> BlockExit {
        // No budget: the first chained transfer declines.
        self.enter(cpu, mem, EMPTY_TABLE.as_ptr().cast(), 0).0
    }

    /// Run the block and whatever it chains to, until an exit that needs the dispatcher.
    /// Returns the exit and, when it left through an unlinked direct exit, the point to
    /// link once its target is compiled (`CompiledTb::link_from`).
    pub fn run_chained(
        &self,
        cpu: &mut CpuState,
        mem: &mut dyn GuestMemory,
        chain: &mut ChainState,
    ) -> (BlockExit, Option<LinkPoint>) {
        if !chain.table_gen_is(&self.gen) {
            chain.clear();
        }
        let (exit, last, end) = self.enter(cpu, mem, chain.table_ptr().cast(), chain.budget);
        chain.spent = end.budget == 0 && chain.budget != 0;
        chain.spent_in_loop = chain.spent && end.spent_in_loop;
        chain.indirect_from = end.ind_src;
        chain.hot = end.hot;
        let link = last.and_then(|slot| {
            // SAFETY: `last_exit` names an exit slot of the generation every reachable
            // block belongs to (contract), which `self.gen` keeps alive.
            let s = unsafe { &*slot };
            let unlinked = s.target.load(Ordering::Relaxed) == 0;
            unlinked.then(|| LinkPoint { slot: slot as usize, pc: s.pc, gen: self.gen.clone() })
        });
        (exit, link)
    }

    fn enter(
        &self,
        cpu: &mut CpuState,
        mem: &mut dyn GuestMemory,
        table: *const super::chain::IndEntry,
        budget: u64,
    ) -> (BlockExit, Option<*const ExitSlot>, RunEnd) {
        assert!(
            !self.direct || mem.direct_accessors().is_some(),
            "block compiled for direct memory run on another memory model"
        );
        let cpu_ptr: *mut CpuState = cpu;
        let mut ctx = JitCtx {
            cpu: cpu_ptr,
            budget,
            ind_table: table,
            last_exit: std::ptr::null(),
            fault_site: std::ptr::null(),
            mem,
            fault: None,
            panic: None,
            ret_value: 0,
            ret_status: 0,
            spent_in_loop: 0,
            ind_src: 0,
            resume: std::ptr::null(),
        };
        let tramp = self.gen.trampoline();
        debug_assert_ne!(tramp, 0, "generation without a trampoline");
        // SAFETY: the trampoline of `gen` has the `Trampoline` signature (contract).
        let f = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
        // SAFETY: the code is mapped while `self.gen` lives. It reads and writes the guest
        // slots of `*cpu_ptr`, exclusively borrowed for this call, reads `table` (a live
        // table of this generation or the empty one) and hands `&mut ctx` only to the `rt`
        // shims, which respect the `rt` contract.
        let code = unsafe { f(&mut ctx, cpu_ptr, self.entry.as_ptr()) };
        if let Some(p) = ctx.panic.take() {
            std::panic::resume_unwind(p);
        }
        let site = (code == kind::FAULT && !ctx.fault_site.is_null()).then(|| {
            // SAFETY: a fault exit stores the address of one of its generation's sites.
            unsafe { *ctx.fault_site }
        });
        let last = (code == kind::JUMP && !ctx.last_exit.is_null()).then_some(ctx.last_exit);
        let (exit, hot) = match exits::decode(code, cpu.rip(), site, ctx.fault) {
            Decoded::Exit(e) => (e, false),
            Decoded::Hot(e) => (e, true),
            Decoded::Resume { op } => {
                // SAFETY: a resume exit stores the address of a block its generation keeps
                // alive (`ExitData::blocks`), and `self.gen` keeps the generation alive.
                let block = unsafe { &*ctx.resume };
                super::SLOW_ACCESSES.fetch_add(1, Ordering::Relaxed);
                let e = crate::backend::interp::run_block_from(block, op, cpu, mem);
                let end =
                    RunEnd { budget: ctx.budget, spent_in_loop: false, ind_src: 0, hot: false };
                return (e, None, end);
            }
            // A PANIC exit always has a parked payload (taken above); an unknown code is a
            // lowering bug, reported the same way.
            Decoded::Panic => {
                panic!("compiled block at {:#x} returned bad exit {code:#x}", self.pc)
            }
        };
        let end = RunEnd {
            budget: ctx.budget,
            spent_in_loop: ctx.spent_in_loop != 0,
            ind_src: ctx.ind_src,
            hot,
        };
        (exit, last, end)
    }

    /// Make the exit `lp` jump straight here. Refused (false) when `lp` targets another
    /// pc or generation, or this block is dead.
    pub fn link_from(&self, lp: &LinkPoint) -> bool {
        if lp.pc != self.pc || !Arc::ptr_eq(&lp.gen, &self.gen) {
            return false;
        }
        let mut inc = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        if inc.dead {
            return false;
        }
        // SAFETY: the slot lives in `lp.gen`'s arena, which `lp` keeps alive.
        let slot = unsafe { &*(lp.slot as *const ExitSlot) };
        slot.target.store(self.entry.as_ptr() as usize, Ordering::Release);
        inc.from.push(lp.slot);
        true
    }

    /// Let indirect jumps to this block's pc from `chain`'s vCPU come straight here.
    pub fn remember_in(&self, chain: &mut ChainState) {
        if !self.incoming.lock().unwrap_or_else(|e| e.into_inner()).dead {
            chain.remember(self.pc, self.entry.as_ptr() as usize, &self.gen);
        }
    }

    /// The block was invalidated: unlink every exit that jumps here and refuse new links.
    /// Threads already inside it finish normally (its memory lives with its generation).
    pub fn kill(&self) {
        let mut inc = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        inc.dead = true;
        for s in inc.from.drain(..) {
            // SAFETY: linked slots belong to `self.gen` (`link_from` checks), alive while
            // `self` is.
            let slot = unsafe { &*(s as *const ExitSlot) };
            slot.target.store(0, Ordering::Release);
        }
    }

    /// Unlink every exit that jumps here, without refusing new links: they return to the
    /// dispatcher once and are linked again to whatever code it runs for this pc then
    /// (a hot region that replaced this block).
    pub fn unlink_incoming(&self) {
        let mut inc = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        for s in inc.from.drain(..) {
            // SAFETY: linked slots belong to `self.gen` (`link_from` checks), alive while
            // `self` is.
            let slot = unsafe { &*(s as *const ExitSlot) };
            slot.target.store(0, Ordering::Release);
        }
    }

    /// Whether `kill` was called.
    pub fn is_dead(&self) -> bool {
        self.incoming.lock().unwrap_or_else(|e| e.into_inner()).dead
    }
}

impl std::fmt::Debug for CompiledTb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTb")
            .field("pc", &format_args!("{:#x}", self.pc))
            .field("host", &self.entry)
            .field("len", &self.code_len)
            .field("gen", &self.gen.id())
            .finish()
    }
}
