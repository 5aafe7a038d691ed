//! How compiled code leaves: the exit-code protocol between generated code and `entry`.
//!
//! A compiled block returns one `u64`, an exit kind. Before returning, the code has
//! written back every dirty guest slot and stored the exit's pc in `%rip`; a fault exit has
//! also stored the address of its `FaultSite` in `JitCtx::fault_site`, and an unlinked
//! direct exit the address of its `ExitSlot` in `JitCtx::last_exit`. The `BlockExit` is
//! rebuilt from these alone, exactly as `interp::run_block` would have returned it. (With
//! chaining, the block that returns is not necessarily the one that was entered, so
//! nothing here may depend on the entered block.)

use crate::backend::BlockExit;
use crate::cpu::Fault;

/// Exit kinds (low 8 bits of the returned code).
pub(super) mod kind {
    /// `BlockExit::Jump(%rip)`.
    pub const JUMP: u64 = 0;
    /// `BlockExit::Indirect { pc: %rip, is_ret: false }`.
    pub const INDIRECT: u64 = 1;
    /// `BlockExit::Indirect { pc: %rip, is_ret: true }`.
    pub const RET: u64 = 2;
    /// `BlockExit::Syscall`.
    pub const SYSCALL: u64 = 3;
    /// `BlockExit::Halt`.
    pub const HALT: u64 = 4;
    /// `BlockExit::CodeWritten`.
    pub const CODE_WRITTEN: u64 = 5;
    /// `BlockExit::Fault`, described by `JitCtx::fault_site`.
    pub const FAULT: u64 = 6;
    /// A shim caught a panic; `entry` re-raises it.
    pub const PANIC: u64 = 7;
    /// An access the code could not do inline: the interpreter runs the block named by
    /// `JitCtx::resume` on from op `code >> BITS` (its state is in `CpuState`, temporaries
    /// included).
    pub const RESUME: u64 = 8;
    /// `BlockExit::Jump(%rip)` from the entry of a quickly compiled block whose tier-up
    /// count ran out (`chain::HotCell`): the run loop has it compiled again, optimised.
    pub const HOT: u64 = 9;
    /// Bits of the kind in a returned code; a resume exit's op index sits above them.
    pub const BITS: u32 = 8;
}

/// One place where compiled code can leave with a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FaultSite {
    /// The fault, when known at compile time (`FaultIf`, `Term::Fault`); `None` when it
    /// comes from a shim through `JitCtx::fault`.
    pub fault: Option<Fault>,
    /// `BlockExit::Fault::next`.
    pub next: u64,
}

/// What one return from compiled code means.
pub(super) enum Decoded {
    /// A normal exit.
    Exit(BlockExit),
    /// A quickly compiled block became hot (`kind::HOT`): a jump to `%rip`.
    Hot(BlockExit),
    /// The interpreter finishes the block from op `op` (`kind::RESUME`).
    Resume {
        /// Index of the op to resume at.
        op: usize,
    },
    /// A shim panicked.
    Panic,
}

/// Rebuild the `BlockExit` from an exit code. `rip` is `%rip` after the return, `site`
/// the fault site a fault exit named and `pending` the fault a shim reported, if any.
pub(super) fn decode(
    code: u64,
    rip: u64,
    site: Option<FaultSite>,
    pending: Option<Fault>,
) -> Decoded {
    Decoded::Exit(match code & ((1 << kind::BITS) - 1) {
        kind::JUMP => BlockExit::Jump(rip),
        kind::INDIRECT => BlockExit::Indirect { pc: rip, is_ret: false },
        kind::RET => BlockExit::Indirect { pc: rip, is_ret: true },
        kind::SYSCALL => BlockExit::Syscall,
        kind::HALT => BlockExit::Halt,
        kind::CODE_WRITTEN => BlockExit::CodeWritten,
        kind::FAULT => {
            let site = site.unwrap_or(FaultSite { fault: None, next: rip });
            // A shim always parks its fault before returning FAULT; the fallback only
            // keeps a broken invariant from becoming a panic inside the exec loop.
            debug_assert!(site.fault.is_some() || pending.is_some(), "fault exit without a fault");
            let fault = site.fault.or(pending).unwrap_or(Fault::GeneralProtection(0));
            BlockExit::Fault { fault, next: site.next }
        }
        kind::RESUME => return Decoded::Resume { op: (code >> kind::BITS) as usize },
        kind::HOT => return Decoded::Hot(BlockExit::Jump(rip)),
        _ => return Decoded::Panic,
    })
}
