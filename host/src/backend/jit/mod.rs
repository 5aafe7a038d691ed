//! The Cranelift JIT tier (see the JIT issue). Until it lands, every tier runs the
//! interpreter.
