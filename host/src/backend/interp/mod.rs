//! The IR interpreter: tier 0 and the reference semantics of the IR.

mod eval;

pub use eval::{eval_bin, eval_un, run_block, run_block_from};
