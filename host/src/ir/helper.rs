//! Host helpers called from IR (`Op::Helper`): complex instructions (CPUID, DIV 128/64,
//! REP string ops, x87, SSE shuffles, FXSAVE) live next to their lifter as a
//! `static HelperDesc`. The interpreter calls `func` directly; the JIT calls it through
//! one generic runtime shim, so no backend imports frontend code.

use crate::cpu::{CpuState, Fault};
use crate::mem::GuestMemory;

/// What a helper sees: the CPU state (guest slots already written back by the JIT) and
/// guest memory.
pub struct HelperCx<'a> {
    /// The vCPU's state.
    pub cpu: &'a mut CpuState,
    /// Guest memory.
    pub mem: &'a mut dyn GuestMemory,
}

/// A helper's entry point: up to four argument values in, one value out, or a fault.
pub type HelperFn = fn(&mut HelperCx<'_>, [u64; 4]) -> Result<u64, Fault>;

/// A helper and the facts the backends need about it.
#[derive(Debug)]
pub struct HelperDesc {
    /// Name used by the IR printer.
    pub name: &'static str,
    /// The function.
    pub func: HelperFn,
    /// Reads guest slots directly from `CpuState` (the JIT must write dirty slots back first).
    /// Never `%rip`: compiled code stores it only on the way back to the run loop, so inside
    /// a chained block or a loop it is stale (an instruction's own address is a constant in
    /// the IR, passed as an argument where a helper needs it).
    pub reads_state: bool,
    /// Writes guest slots directly (the JIT must reload cached slots afterwards).
    pub writes_state: bool,
    /// May return a fault.
    pub may_fault: bool,
}
