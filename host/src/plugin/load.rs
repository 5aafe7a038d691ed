//! Opening plugin libraries: Rust plugins through abi_stable (its layout check refuses a
//! library built against an incompatible plugin-api), C plugins through libloading and the
//! header's entry symbol. Then the ABI version check, which both paths share.
//!
//! Safety contract: a library is opened once per path and never unloaded (abi_stable
//! leaks it; libloading's handle is leaked here), so the `&'static PluginVTable` and every
//! function pointer taken from it stay valid for the life of the process. A C plugin's
//! table is trusted to match `blockscope.h` for the ABI major it claims; the major and
//! minor are read first (they are the first two fields at every version) and everything
//! else is used only if they match. Plugins' function pointers are converted to the IR's
//! callback type here (same signature, layout-identical first argument).
#![allow(unsafe_code, reason = "dlopen and symbol lookup (module docs: safety contract)")]

use super::PluginError;
use abi_stable::library::{lib_header_from_path, LibraryError};
use blockscope_plugin_api::abi::{CallbackFn, PluginVTable, ABI_MAJOR, ABI_MINOR, C_ENTRY_SYMBOL};
use blockscope_plugin_api::PluginRootRef;
use std::path::Path;

/// How a plugin was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Rust, through abi_stable.
    Rust,
    /// C, through the header's entry symbol.
    C,
}

fn version_check(vt_major: u32, vt_minor: u32, path: &Path) -> Result<(), PluginError> {
    if vt_major != ABI_MAJOR || vt_minor > ABI_MINOR {
        return Err(PluginError::AbiMismatch {
            path: path.to_path_buf(),
            found: format!("{vt_major}.{vt_minor}"),
            expected: format!("{ABI_MAJOR}.{ABI_MINOR}"),
        });
    }
    Ok(())
}

/// Open the library at `path` and return its table.
pub fn open(path: &Path) -> Result<(&'static PluginVTable, Kind), PluginError> {
    if !path.exists() {
        return Err(PluginError::NotFound { what: path.display().to_string(), searched: vec![] });
    }
    match lib_header_from_path(path) {
        Ok(header) => {
            let root = header.init_root_module::<PluginRootRef>().map_err(|e| {
                PluginError::Incompatible { path: path.to_path_buf(), reason: short_reason(&e) }
            })?;
            version_check(root.abi_major(), root.abi_minor(), path)?;
            let vt = root.vtable();
            version_check(vt.abi_major, vt.abi_minor, path)?;
            Ok((vt, Kind::Rust))
        }
        Err(LibraryError::GetSymbolError { .. }) => open_c(path),
        Err(LibraryError::OpenError { err, .. }) => {
            Err(PluginError::Open { path: path.to_path_buf(), reason: err.to_string() })
        }
        Err(e) => {
            Err(PluginError::Incompatible { path: path.to_path_buf(), reason: short_reason(&e) })
        }
    }
}

/// One line out of an abi_stable error (its layout reports span many lines).
fn short_reason(e: &LibraryError) -> String {
    match e {
        LibraryError::AbiInstability(_) => {
            "its plugin-api types have a different layout (built against another version)"
                .to_string()
        }
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => {
            format!("built against plugin-api {actual_version}, this blockscope uses {expected_version}")
        }
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

/// The C path: `const bs_plugin_vtable *blockscope_plugin_entry(void)`.
fn open_c(path: &Path) -> Result<(&'static PluginVTable, Kind), PluginError> {
    // SAFETY: loading runs the library's initialisers, as for any plugin the user named;
    // the library was already opened successfully by abi_stable above.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| PluginError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    type Entry = extern "C" fn() -> *const PluginVTable;
    // SAFETY: the symbol is declared in blockscope.h with exactly this signature.
    let entry = unsafe { lib.get::<Entry>(C_ENTRY_SYMBOL.as_bytes()) }
        .map_err(|_| PluginError::NotAPlugin { path: path.to_path_buf() })?;
    let ptr = entry();
    if ptr.is_null() {
        return Err(PluginError::Incompatible {
            path: path.to_path_buf(),
            reason: format!("{C_ENTRY_SYMBOL} returned NULL"),
        });
    }
    // SAFETY: the first two fields of the table are the ABI major and minor at every
    // version (contract); read them alone before trusting the rest.
    let (major, minor) = unsafe {
        let p = ptr.cast::<u32>();
        (p.read(), p.add(1).read())
    };
    version_check(major, minor, path)?;
    // SAFETY: same major: the table has the layout of `PluginVTable` (the header is checked
    // against it by a test), and the library is never unloaded.
    Ok((unsafe { &*ptr }, Kind::C))
}

/// The plugin callback as the IR's callback type.
pub fn callback_for_ir(f: CallbackFn) -> crate::ir::PluginFn {
    const _: () = {
        use std::mem::{align_of, size_of};
        assert!(
            size_of::<crate::ir::PluginSite>() == size_of::<blockscope_plugin_api::abi::CallSite>()
        );
        assert!(
            align_of::<crate::ir::PluginSite>()
                == align_of::<blockscope_plugin_api::abi::CallSite>()
        );
    };
    // SAFETY: the two function types differ only in the pointee of the first argument,
    // `PluginSite` and `CallSite`, which are `#[repr(C)]` structs of three u64 fields in the
    // same order (sizes asserted above).
    unsafe { std::mem::transmute::<CallbackFn, crate::ir::PluginFn>(f) }
}
