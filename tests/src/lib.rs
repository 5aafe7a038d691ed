//! Test support for blockscope integration tests.
