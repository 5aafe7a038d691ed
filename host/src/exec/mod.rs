//! The exec loop: TB lookup, translate-on-miss, run, invalidation, exits.
//!
//! `Engine` is shared by every vCPU (guest thread): configuration and the TB cache, keyed
//! by guest pc (user mode: one address space, CPL 3, 64-bit code). Each page that holds
//! translated code lists its TBs, so a code write, `munmap` or `mprotect` invalidates
//! exactly the TBs on the affected pages; invalidation bumps a generation counter that
//! makes every vCPU drop its private jump cache before its next lookup. `Vcpu` owns a
//! guest CPU state, a memory handle and a direct-mapped pc → TB jump cache, and runs
//! blocks until something the environment must handle: a syscall, a fault, HLT, or an
//! interrupt request (a pending signal). Tier-up to the JIT, chaining of compiled blocks
//! and hot regions live in `tier.rs`.

mod cache;
mod run;
mod tier;

pub use cache::{Engine, Tb};
pub use run::{run_snippet, run_snippet_on, run_snippet_with, Exit, SnippetExit, Vcpu};
pub use tier::{restart_compiler_after_fork, set_helper_thread_init, EngineJit, TbJit};
