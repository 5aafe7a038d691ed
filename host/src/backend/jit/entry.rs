//! `CompiledTb`: a compiled block and the only way to run it.
//!
//! Safety contract. A `CompiledTb` is created only by `Jit::compile`, from code whose
//! signature is `EntryFn` and which was written into `region` before the pointer was
//! made. The `Arc<CodeRegion>` keeps the code mapped for as long as the `CompiledTb` (or a
//! clone of the Arc) lives, so `run` can never jump into freed memory. Raw entry pointers
//! never leave this module.
#![allow(unsafe_code)] // the call into generated code; see the contract

use super::code::CodeRegion;
use super::exits::{self, Decoded, FaultSite};
use super::rt::JitCtx;
use crate::backend::BlockExit;
use crate::cpu::CpuState;
use crate::mem::GuestMemory;
use std::ptr::NonNull;
use std::sync::Arc;

/// The signature of every compiled block.
type EntryFn = unsafe extern "C" fn(*mut JitCtx<'_>, *mut CpuState) -> u64;

/// A compiled translation block.
pub struct CompiledTb {
    entry: NonNull<u8>,
    region: Arc<CodeRegion>,
    sites: Box<[FaultSite]>,
    code_len: usize,
    pc: u64,
}

// SAFETY: the code behind `entry` is immutable once published and is run through `&self`
// with per-call state only (the context lives on the caller's stack); the region is
// Send + Sync.
unsafe impl Send for CompiledTb {}
// SAFETY: as above: nothing reachable from `&CompiledTb` is mutated.
unsafe impl Sync for CompiledTb {}

impl CompiledTb {
    /// Wrap freshly written code. `entry` must point into `region` at a function with the
    /// `EntryFn` signature built by `lower::build` for a block at `pc`.
    pub(super) fn new(
        entry: NonNull<u8>,
        region: Arc<CodeRegion>,
        sites: Vec<FaultSite>,
        code_len: usize,
        pc: u64,
    ) -> CompiledTb {
        debug_assert!(region.contains(entry.as_ptr()));
        CompiledTb { entry, region, sites: sites.into_boxed_slice(), code_len, pc }
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

    /// The host code bytes (for disassembly dumps).
    pub fn code(&self) -> &[u8] {
        // SAFETY: the function's `code_len` bytes were written before `new` and are kept
        // mapped (readable) by `self.region`; they are never written again.
        unsafe { std::slice::from_raw_parts(self.entry.as_ptr(), self.code_len) }
    }

    /// The region holding the code.
    pub fn region(&self) -> &Arc<CodeRegion> {
        &self.region
    }

    /// Run the block. Guest state and memory end exactly as `interp::run_block` leaves
    /// them, and `%rip` holds the pc the exit names.
    pub fn run(&self, cpu: &mut CpuState, mem: &mut dyn GuestMemory) -> BlockExit {
        let cpu_ptr: *mut CpuState = cpu;
        let mut ctx = JitCtx { cpu: cpu_ptr, mem, fault: None, panic: None };
        // SAFETY: `entry` points at a function with the `EntryFn` signature (contract).
        let f = unsafe { std::mem::transmute::<*mut u8, EntryFn>(self.entry.as_ptr()) };
        // SAFETY: the code is mapped while `self.region` lives. It reads and writes the
        // guest slots of `*cpu_ptr`, which is exclusively borrowed for this call, and hands
        // `&mut ctx` back only to the `rt` shims, which respect the `rt` contract.
        let code = unsafe { f(&mut ctx, cpu_ptr) };
        if let Some(p) = ctx.panic.take() {
            std::panic::resume_unwind(p);
        }
        let (fault, rip) = (ctx.fault, cpu.rip());
        match exits::decode(code, rip, &self.sites, fault) {
            Decoded::Exit(e) => e,
            // A PANIC exit always has a parked payload (taken above); an unknown code is a
            // lowering bug, reported the same way.
            Decoded::Panic => {
                panic!("compiled block at {:#x} returned bad exit {code:#x}", self.pc)
            }
        }
    }
}

impl std::fmt::Debug for CompiledTb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTb")
            .field("pc", &format_args!("{:#x}", self.pc))
            .field("host", &self.entry)
            .field("len", &self.code_len)
            .finish()
    }
}
