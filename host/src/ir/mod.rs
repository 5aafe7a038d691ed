//! blockscope's IR: a small, straight-line, three-address code over 64-bit *slots*.
//!
//! A translation block (`Block`) is a list of `Op`s followed by one terminator (`Term`).
//! Operands are `Slot`s: numbers below `cpu::GUEST_SLOTS` name guest state words
//! (`%rax`, `%cc_op`, `%xmm3.lo`, ...); higher numbers are block-local temporaries. Every
//! value is a `u64`; an op with a `Width` reads the low bits of its inputs and writes its
//! result zero-extended to 64 bits. There are no loops inside a block: control flow is
//! conditional *side exits* (`ExitIf`, `FaultIf`) and the terminator, so every block
//! terminates and both backends stay simple. Anything loop-shaped (REP string ops, x87
//! transcendentals, CPUID) is a helper call (`Op::Helper`).
//!
//! The interpreter (`backend::interp`) defines the semantics; the JIT must match it.
//! Lifters must order each guest instruction so that every op that can fault (loads,
//! stores, helpers, `FaultIf`) comes before the instruction's writes to guest slots: a
//! fault then leaves guest state exactly as it was before the instruction.
#![deny(missing_docs)]

mod block;
mod helper;
mod op;
mod plugin_call;
mod print;
mod verify;

pub use block::{Block, InsnMeta, Term};
pub use helper::{HelperCx, HelperDesc, HelperFn};
pub use op::{AtomicOp, BinOp, Cond, Op, Slot, UnOp, Width};
pub use plugin_call::{PluginCall, PluginFn, PluginSite};
pub use verify::{verify, VerifyError};
