//! blockscope: an x86-64 emulator built for instrumentation.
//!
//! Guest code is decoded with iced-x86, cut into translation blocks, lifted to a small IR
//! (`ir`), handed to plugins that inject their own IR (`plugin`), then run by the IR
//! interpreter (`backend::interp`) or compiled by Cranelift (`backend::jit`). The exec loop
//! (`exec`) caches, chains and invalidates blocks. `user` runs Linux programs on the host
//! kernel; `system` (later) runs a small PC. Modules are listed in data-flow order; a
//! module may use the ones above it only (see `tests/layering.rs` and DESIGN.md).
#![deny(unsafe_code)]

pub mod backend;
pub mod config;
pub mod cpu;
pub mod exec;
pub mod frontend;
pub mod ir;
pub mod mem;
pub mod plugin;
pub mod system;
pub mod user;
