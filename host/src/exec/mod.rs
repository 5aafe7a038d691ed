//! The exec loop.
