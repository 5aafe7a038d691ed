//! Code generation backends: the IR interpreter (tier 0 and the reference semantics) and
//! the Cranelift JIT. Both return a `BlockExit` that the exec loop acts on.

pub mod interp;
pub mod jit;

use crate::cpu::Fault;

/// How execution of one block (or chain of compiled blocks) ended. `%rip` in the CPU
/// state is already set to the pc given here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockExit {
    /// Continue at a direct target (chainable).
    Jump(u64),
    /// Continue at a computed target.
    Indirect {
        /// The target.
        pc: u64,
        /// Whether it was a return.
        is_ret: bool,
    },
    /// SYSCALL executed; `%rip` is the next instruction.
    Syscall,
    /// HLT; `%rip` is the next instruction.
    Halt,
    /// A fault; `%rip` is the faulting instruction and guest state is as before it.
    Fault {
        /// The fault.
        fault: Fault,
        /// Address of the instruction after the faulting one (for traps such as INT3).
        next: u64,
    },
    /// A store hit a page holding translated code; `%rip` is the next instruction, which
    /// must be looked up again after invalidation.
    CodeWritten,
}
