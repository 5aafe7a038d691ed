//! Test support for blockscope integration tests: the native runner, the emulator adapter,
//! the instruction-case generator, state comparison and the golden-file parser.

pub mod native;
pub mod state;
