//! Translation blocks.

use super::op::{Op, Slot};
use crate::cpu::Fault;

/// Per-guest-instruction metadata, in block order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsnMeta {
    /// Guest address.
    pub pc: u64,
    /// Length in bytes.
    pub len: u8,
    /// Index of the first op belonging to this instruction (ops before it belong to the
    /// previous instruction, or to the block prologue for the first one).
    pub first_op: u32,
}

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    /// Continue at a known pc (fall-through or direct jump/call).
    Jump(u64),
    /// Conditional direct branch.
    Branch {
        /// Condition slot (non-zero: taken).
        c: Slot,
        /// Target when taken.
        taken: u64,
        /// Target when not taken.
        not_taken: u64,
    },
    /// Indirect jump, call or return; the target is in a slot.
    Indirect {
        /// Slot holding the target pc.
        target: Slot,
        /// Whether the branch is a return (for return-prediction caches and profilers).
        is_ret: bool,
    },
    /// SYSCALL: `%rip` is set to `next` and control goes to the environment.
    Syscall {
        /// Address of the instruction after SYSCALL.
        next: u64,
    },
    /// HLT (system mode) or a pause point; execution resumes at `next`.
    Halt {
        /// Resume address.
        next: u64,
    },
    /// The instruction at `pc` raises `fault` (undecodable or unimplemented instruction,
    /// INT3, UD2, ...). `next` is the address after it (for traps that resume after).
    Fault {
        /// The fault.
        fault: Fault,
        /// Address of the faulting instruction.
        pc: u64,
        /// Address after it.
        next: u64,
    },
}

/// A lifted translation block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Guest address of the first instruction.
    pub pc: u64,
    /// Guest address just past the first contiguous run of instructions: past the last
    /// one, unless the block goes on at the target of a direct `jmp` (the frontend then
    /// lists its later runs among the code it depends on; instruction pcs need not rise).
    pub end: u64,
    /// The ops.
    pub ops: Vec<Op>,
    /// One entry per guest instruction.
    pub insns: Vec<InsnMeta>,
    /// The terminator.
    pub term: Term,
    /// Number of temporaries used (slots `GUEST_SLOTS..GUEST_SLOTS + temps`).
    pub temps: u16,
    /// Fault fix-ups: `(insn index, ops)`, sorted by instruction. When instruction `k`
    /// faults (or the block is left before it after a code write), its fix-up ops run
    /// first: they commit lazy state (flags) that was still pending in temporaries at the
    /// start of instruction `k`. Fix-up ops never fault and write only guest slots.
    pub fixups: Vec<(u32, Vec<Op>)>,
}

impl Block {
    /// The fix-up ops for instruction `insn`, if any.
    pub fn fixups_for(&self, insn: usize) -> Option<&[Op]> {
        self.fixups
            .binary_search_by_key(&(insn as u32), |f| f.0)
            .ok()
            .map(|i| self.fixups[i].1.as_slice())
    }
    /// Index of the guest instruction that op `op_index` belongs to.
    pub fn insn_of_op(&self, op_index: usize) -> usize {
        let i = self.insns.partition_point(|m| m.first_op as usize <= op_index);
        i.saturating_sub(1)
    }
}
