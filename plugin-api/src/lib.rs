//! The stable plugin ABI of blockscope (work in progress: see issue "plugin ABI").
#![deny(missing_docs)]

/// ABI major version: a plugin built against another major is refused.
pub const ABI_MAJOR: u32 = 0;
/// ABI minor version: grows when fields are appended.
pub const ABI_MINOR: u32 = 1;
