//! x86-64 → IR, with iced-x86 as the decoder.
//!
//! `translate` cuts a block at `pc`: it fetches bytes, decodes up to `max_insns`
//! instructions (stopping after the first control transfer, SYSCALL, or before an
//! instruction no family lifts), computes flag liveness backwards over the block with
//! iced's `rflags_read`/`rflags_modified`, then runs each instruction's lifter on a
//! `LiftCx`. Lifters live one family per file and declare their rows with `lifts!`;
//! `dispatch` concatenates the rows into a table indexed by `iced_x86::Mnemonic`.
//! Operand plumbing (registers incl. high-byte and 32-bit zero-extension, memory with
//! segment bases and RIP-relative addressing, immediates) is `operand.rs`; all flag
//! semantics are `flags.rs`.

mod cx;
mod dispatch;
mod flags;
mod operand;
mod simd;
mod translate;
mod xmm;

// Instruction families.
mod alu;
mod atomic;
mod bit;
mod branch;
mod cmov_set;
mod fxsave;
mod misc;
mod muldiv;
mod shift;
mod sse;
mod sse_cvt;
mod sse_fp;
mod sse_int;
mod sse_mov;
mod sse_str;
mod stack;
mod string;
mod system;
mod x87;

// Host floating-point execution (the only inline asm in the frontend).
mod hostfp;

pub use cx::{LiftCx, Unsupported};
pub use dispatch::{is_lifted, lifted_codes, lifted_mnemonics, LiftFn};
pub use flags::{
    arith_flags, eval_cond, eval_flags, full_rflags, set_full_rflags, FlagOp, FLAGS_COND, FLAGS_GET,
};
pub use fxsave::{fxrstor_image, fxsave_image};
pub use operand::{gpr_ref, xmm_num, GprRef};
pub use translate::{lift_probe, runs, translate, translate_with, LiftOpts, Translated};
