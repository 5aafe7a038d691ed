//! The `extern "C"` glue between the raw ABI and the safe [`Plugin`] trait, instantiated
//! per plugin type by `declare_plugin!`. Plugins themselves stay free of `unsafe`: the
//! two unsafe steps (turning the instance word back into a reference, and the function
//! word back into a callback) live here.
//!
//! Safety contract: the host passes back, unchanged, the instance word `install` stored
//! and the `fdata` word `Emit::call` built. Both come only from this module (a leaked
//! `Box<Instance<P>>`, a `Callback<P>` cast to an integer), and a trampoline or hook is
//! only ever registered for the same `P` that made them.
//!
//! Every entry catches panics: a panicking plugin is reported to the host with
//! `LEVEL_FATAL` (the host prints its name and disables it) and never unwinds into the host.
#![allow(unsafe_code, reason = "the plugin-side FFI boundary lives here (see module docs)")]

use crate::abi::*;
use crate::safe::{Args, Call, Callback, Host, Injector, Plugin, TbView};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::std_types::{RSlice, RStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// One installed plugin value.
pub struct Instance<P> {
    plugin: P,
    host: Host,
    poisoned: AtomicBool,
}

thread_local! {
    /// Depth of plugin calls under `catch_unwind` on this thread.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Run `f` with panics caught, and silence the default panic message for them: the host
/// reports the panic in one line with the plugin's name instead. Panics elsewhere (e.g. a
/// thread the plugin spawned) still print as usual.
fn catch<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) == 0 {
                prev(info)
            }
        }));
    });
    GUARDED.with(|g| g.set(g.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    r
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

impl<P: Plugin> Instance<P> {
    /// Run `f` unless the plugin already failed; a panic poisons the plugin.
    fn guard<R>(&self, what: &str, f: impl FnOnce() -> R) -> Option<R> {
        if self.poisoned.load(Ordering::Relaxed) {
            return None;
        }
        match catch(f) {
            Ok(r) => Some(r),
            Err(e) => {
                self.poisoned.store(true, Ordering::Relaxed);
                self.host.fatal(&format!("panicked in {what}: {}", panic_text(&*e)));
                None
            }
        }
    }
}

fn instance<P: Plugin>(word: u64) -> &'static Instance<P> {
    // SAFETY: `word` is the address of the `Box<Instance<P>>` leaked by `install::<P>`
    // (see the module's safety contract); it is never freed.
    unsafe { &*(word as usize as *const Instance<P>) }
}

/// The callback entry for plugin type `P`.
pub extern "C" fn trampoline<P: Plugin>(
    site: &CallSite,
    vcpu: u32,
    a0: u64,
    a1: u64,
    a2: u64,
    a3: u64,
) {
    let inst = instance::<P>(site.instance);
    // SAFETY: `fdata` was made from a `Callback<P>` by `Emit::call` (safety contract);
    // function pointers and usize have the same size.
    let f: Callback<P> = unsafe { std::mem::transmute::<usize, Callback<P>>(site.fdata as usize) };
    let call = Call { vcpu, udata: site.udata, args: [a0, a1, a2, a3] };
    inst.guard("a callback", || f(&inst.plugin, &call));
}

extern "C" fn install<P: Plugin>(
    api: &'static HostApi,
    args: RSlice<'_, KeyValue<'_>>,
    out: &mut u64,
) -> bool {
    let host = Host::new(api);
    let args = Args::from_raw(args);
    match catch(|| P::install(host, &args)) {
        Ok(Ok(plugin)) => {
            let inst = Box::new(Instance { plugin, host, poisoned: AtomicBool::new(false) });
            *out = Box::into_raw(inst) as usize as u64;
            true
        }
        Ok(Err(msg)) => {
            host.error(&msg);
            false
        }
        Err(e) => {
            host.error(&format!("panicked during install: {}", panic_text(&*e)));
            false
        }
    }
}

extern "C" fn vcpu_init<P: Plugin>(word: u64, vcpu: u32) {
    let i = instance::<P>(word);
    i.guard("vcpu_init", || i.plugin.vcpu_init(vcpu));
}

extern "C" fn vcpu_exit<P: Plugin>(word: u64, vcpu: u32) {
    let i = instance::<P>(word);
    i.guard("vcpu_exit", || i.plugin.vcpu_exit(vcpu));
}

extern "C" fn translate<P: Plugin>(word: u64, tb: &TbRaw<'_>) {
    let i = instance::<P>(word);
    i.guard("translate", || {
        let view = TbView::new(tb, i.host);
        let mut inj = Injector::<P>::new(tb);
        i.plugin.translate(&view, &mut inj);
        if !inj.ops().is_empty() {
            (i.host.api.inject)(i.host.api.plugin, RSlice::from_slice(inj.ops()));
        }
    });
}

extern "C" fn syscall<P: Plugin>(word: u64, vcpu: u32, nr: u64, args: &[u64; 6]) {
    let i = instance::<P>(word);
    i.guard("syscall", || i.plugin.syscall(vcpu, nr, args));
}

extern "C" fn syscall_ret<P: Plugin>(word: u64, vcpu: u32, nr: u64, ret: u64) {
    let i = instance::<P>(word);
    i.guard("syscall_ret", || i.plugin.syscall_ret(vcpu, nr, ret));
}

extern "C" fn exit<P: Plugin>(word: u64) {
    let i = instance::<P>(word);
    i.guard("exit", || i.plugin.exit());
}

/// The table for plugin type `P`, claiming ABI `major`.
pub fn vtable<P: Plugin>(major: u32) -> PluginVTable {
    PluginVTable {
        abi_major: major,
        abi_minor: ABI_MINOR,
        name: RStr::from_str(P::NAME),
        description: RStr::from_str(P::DESCRIPTION),
        args: RSlice::from_slice(P::ARGS),
        install: install::<P>,
        vcpu_init: Some(vcpu_init::<P>),
        vcpu_exit: Some(vcpu_exit::<P>),
        translate: Some(translate::<P>),
        syscall: Some(syscall::<P>),
        syscall_ret: Some(syscall_ret::<P>),
        exit: Some(exit::<P>),
    }
}

/// The root module for plugin type `P` (called once, when the library is loaded).
pub fn root<P: Plugin>(major: u32) -> PluginRootRef {
    let vt: &'static PluginVTable = Box::leak(Box::new(vtable::<P>(major)));
    PluginRoot { abi_major: major, abi_minor: ABI_MINOR, vtable: vt }.leak_into_prefix()
}
