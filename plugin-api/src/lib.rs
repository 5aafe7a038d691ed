//! The stable plugin ABI of blockscope.
//!
//! A plugin is a shared library. Rust plugins implement [`Plugin`] and export it with
//! [`declare_plugin!`]; the host loads them through abi_stable, whose layout check refuses
//! a library built against an incompatible version of this crate. C plugins include
//! `include/blockscope.h` and export `blockscope_plugin_entry`, returning the same
//! [`PluginVTable`]. In both cases the host then checks [`ABI_MAJOR`]/[`ABI_MINOR`].
//!
//! Shape (after QEMU's plugin API): plugins observe and never change guest state; views
//! and injectors are valid only during the hook that received them; per-instruction and
//! per-access work is injected at translation time (inline scoreboard ops, which the JIT
//! turns into a few host instructions, or calls to `extern "C"` callbacks), never looked
//! up at run time.
//!
//! Modules: [`abi`] (raw `#[repr(C)]` types), [`safe`] (the Rust API), `glue` (the
//! `extern "C"` functions `declare_plugin!` instantiates; the only `unsafe` code).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod abi;
/// The abi_stable version this ABI is built with (its `RStr`, `RSlice`, ...).
pub use abi_stable;
#[doc(hidden)]
pub mod glue;
pub mod safe;
pub mod shm;
pub mod trace;

pub use abi::{
    ArgSpec, PluginRoot, PluginRootRef, PluginVTable, ABI_MAJOR, ABI_MINOR, C_ENTRY_SYMBOL,
};
pub use safe::{
    Args, BinOp, Branch, Call, Callback, CmpOp, Emit, Host, Injector, InsnView, Module, Plugin,
    Reg, Scoreboard, Symbol, TbView, Value,
};

/// Export a [`Plugin`] type as this library's plugin:
///
/// ```ignore
/// struct Count { /* ... */ }
/// impl blockscope_plugin_api::Plugin for Count { /* ... */ }
/// blockscope_plugin_api::declare_plugin!(Count);
/// ```
///
/// The crate must be a `cdylib` and depend on `abi_stable` (the export attribute refers
/// to it by name). The expansion contains no `unsafe` for the plugin crate to allow.
#[macro_export]
macro_rules! declare_plugin {
    ($ty:ty) => {
        $crate::declare_plugin!(@abi_major $crate::ABI_MAJOR, $ty);
    };
    // Test hook: claim another ABI major (used by the loading-error tests).
    (@abi_major $major:expr, $ty:ty) => {
        /// The abi_stable root module of this plugin.
        #[::abi_stable::export_root_module]
        pub fn blockscope_plugin_root() -> $crate::PluginRootRef {
            $crate::glue::root::<$ty>($major)
        }
    };
}
