//! What the IR needs to call a plugin callback (`Op::CallPlugin`). The plugin module
//! builds one `PluginCall` per distinct call site and keeps it for the life of the
//! process, so ops can hold a `&'static` to it. The layout of `PluginSite` is the plugin
//! ABI's `CallSite`, field for field.

/// The record a plugin callback receives as its first argument.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PluginSite {
    /// The plugin instance word.
    pub instance: u64,
    /// The function-data word.
    pub fdata: u64,
    /// The user word.
    pub udata: u64,
}

/// A plugin callback: `(site, vcpu index, four argument values)`. It reads and writes no
/// guest state and cannot fault.
pub type PluginFn = extern "C" fn(site: &PluginSite, vcpu: u32, a0: u64, a1: u64, a2: u64, a3: u64);

/// One plugin call site.
#[derive(Debug)]
pub struct PluginCall {
    /// The plugin's name (IR printer, error messages).
    pub plugin: &'static str,
    /// The callback.
    pub func: PluginFn,
    /// Its first argument.
    pub site: PluginSite,
}
