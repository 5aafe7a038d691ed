//! Test support for blockscope integration tests: the native runner (`native`), the
//! emulator adapter (`emu`), the instruction-case generator (`gen`, `inputs`), one-case
//! execution across the host and both tiers (`case`), state comparison (`compare`) and the
//! golden-file parser (`golden`).

pub mod case;
pub mod compare;
pub mod driver;
pub mod emu;
pub mod gen;
pub mod golden;
pub mod inputs;
pub mod native;
pub mod rng;
pub mod state;
