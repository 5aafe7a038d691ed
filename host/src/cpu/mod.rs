//! The guest CPU's architectural state and its faults.
//!
//! `CpuState` is plain `#[repr(C)]` data shared by every tier: the IR interpreter addresses
//! its first words as *slots*, the JIT addresses them by `offset_of!`, and helpers, the
//! user-mode runtime and the system machine read and write fields by name. Nothing in this
//! module depends on any other part of the host.

pub mod cpuid;
mod fault;
mod state;
mod width;

pub use fault::{pf, Fault};
pub use state::*;
pub use width::Width;
