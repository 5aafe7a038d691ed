//! The hook registry and the host side of `HostApi`.
//!
//! Every loaded plugin gets a process-wide id (an index into `ENTRIES`); the `extern "C"`
//! functions of `HostApi` receive it and find the plugin and its run here. Plugins of one
//! run (one `Plugins`) share a `Run`: scoreboards, modules, failures. Registration takes
//! locks; nothing on the per-instruction path does (callbacks and scoreboard ops go
//! straight from compiled/interpreted IR to the plugin).
//!
//! During `translate` the thread-local `TRANSLATING` holds the block's view and collects
//! the ops the current plugin injects; `inject` and `insn_disas` are only valid then.

use super::modules::ModuleMap;
use super::scoreboard::Scoreboards;
use super::view::{self, ViewData};
use abi_stable::std_types::{RSlice, RSliceMut, RStr};
use blockscope_plugin_api::abi::*;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// State shared by the plugins of one run.
#[derive(Default)]
pub struct Run {
    /// Scoreboards and vCPU memory.
    pub scoreboards: Scoreboards,
    /// Mapped modules.
    pub modules: RwLock<ModuleMap>,
    /// `(plugin, message)` of every plugin that failed while running.
    pub failures: Mutex<Vec<(String, String)>>,
    /// Some plugin asked for REP string instructions expanded (`expand_rep_strings`).
    pub expand_rep: AtomicBool,
}

/// One loaded plugin.
pub struct Entry {
    /// Global id.
    pub id: u32,
    /// Its name (from its table).
    pub name: &'static str,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its table.
    pub vt: &'static PluginVTable,
    /// The instance word `install` returned.
    pub instance: AtomicU64,
    /// Whether `install` completed.
    pub installed: AtomicBool,
    /// Whether it failed (panic, rejected injection, fatal message); then no hook runs.
    pub failed: AtomicBool,
    /// The run it belongs to.
    pub run: Arc<Run>,
    /// The last error message it reported (the reason for an install failure).
    pub last_error: Mutex<Option<String>>,
}

impl Entry {
    /// Whether hooks should run.
    pub fn live(&self) -> bool {
        self.installed.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire)
    }
    /// Instance word.
    pub fn instance(&self) -> u64 {
        self.instance.load(Ordering::Acquire)
    }
    /// Mark the plugin failed and report it once.
    pub fn fail(&self, msg: &str) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            eprintln!("blockscope: plugin `{}` failed: {msg}", self.name);
            let mut f = self.run.failures.lock().unwrap_or_else(|e| e.into_inner());
            f.push((self.name.to_string(), msg.to_string()));
        }
    }
}

static ENTRIES: RwLock<Vec<Arc<Entry>>> = RwLock::new(Vec::new());

/// Register a plugin; returns its entry and the host table to give it.
pub fn register(
    name: &'static str,
    path: PathBuf,
    vt: &'static PluginVTable,
    run: Arc<Run>,
) -> (Arc<Entry>, &'static HostApi) {
    let mut all = ENTRIES.write().unwrap_or_else(|e| e.into_inner());
    let id = all.len() as u32;
    let e = Arc::new(Entry {
        id,
        name,
        path,
        vt,
        instance: AtomicU64::new(0),
        installed: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        run,
        last_error: Mutex::new(None),
    });
    all.push(e.clone());
    let api = Box::leak(Box::new(HostApi {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        plugin: id,
        scoreboard_new,
        scoreboard_read,
        scoreboard_read_all,
        vcpu_count,
        message,
        inject,
        insn_disas,
        symbolize,
        module,
        expand_rep_strings,
        rep_strings_expanded,
    }));
    (e, api)
}

fn entry(id: u32) -> Option<Arc<Entry>> {
    ENTRIES.read().unwrap_or_else(|e| e.into_inner()).get(id as usize).cloned()
}

fn text(s: RStr<'_>) -> String {
    String::from_utf8_lossy(s.as_rslice().as_slice()).into_owned()
}

/// Intern a string for the life of the process.
fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

extern "C" fn scoreboard_new(plugin: u32, entry_bytes: u32, entries: u32) -> i64 {
    let Some(e) = entry(plugin) else { return -1 };
    match e.run.scoreboards.create(plugin, entry_bytes, entries) {
        Ok(id) => id as i64,
        Err(msg) => {
            *e.last_error.lock().unwrap_or_else(|x| x.into_inner()) = Some(msg);
            -1
        }
    }
}

extern "C" fn scoreboard_read(plugin: u32, sb: u32, vcpu: u32, idx: u32) -> u64 {
    let Some(e) = entry(plugin) else { return 0 };
    match e.run.scoreboards.get(sb).filter(|d| d.owner == plugin) {
        Some(d) => e.run.scoreboards.read(&d, vcpu, idx),
        None => 0,
    }
}

extern "C" fn scoreboard_read_all(
    plugin: u32,
    sb: u32,
    vcpu: u32,
    mut out: RSliceMut<'_, u64>,
) -> u32 {
    let Some(e) = entry(plugin) else { return 0 };
    match e.run.scoreboards.get(sb).filter(|d| d.owner == plugin) {
        Some(d) => e.run.scoreboards.read_all(&d, vcpu, out.as_mut_slice()),
        None => 0,
    }
}

extern "C" fn vcpu_count(plugin: u32) -> u32 {
    entry(plugin).map_or(0, |e| e.run.scoreboards.vcpu_count())
}

extern "C" fn expand_rep_strings(plugin: u32) -> bool {
    let Some(e) = entry(plugin) else { return false };
    if e.installed.load(Ordering::Acquire) {
        return false;
    }
    e.run.expand_rep.store(true, Ordering::Release);
    true
}

extern "C" fn rep_strings_expanded(plugin: u32) -> bool {
    entry(plugin).is_some_and(|e| e.run.expand_rep.load(Ordering::Acquire))
}

extern "C" fn message(plugin: u32, level: u32, msg: RStr<'_>) {
    let Some(e) = entry(plugin) else { return };
    let msg = text(msg);
    match level {
        LEVEL_INFO => eprintln!("blockscope: plugin `{}`: {msg}", e.name),
        LEVEL_WARN => eprintln!("blockscope: plugin `{}`: warning: {msg}", e.name),
        LEVEL_ERROR if !e.installed.load(Ordering::Acquire) => {
            *e.last_error.lock().unwrap_or_else(|x| x.into_inner()) = Some(msg);
        }
        LEVEL_ERROR => eprintln!("blockscope: plugin `{}`: error: {msg}", e.name),
        _ if !e.installed.load(Ordering::Acquire) => {
            *e.last_error.lock().unwrap_or_else(|x| x.into_inner()) = Some(msg);
        }
        _ => e.fail(&msg),
    }
}

/// The block being translated on this thread, and what the current plugin injected.
struct Translating {
    plugin: u32,
    view: Rc<ViewData>,
    ops: Vec<PluginOp>,
}

thread_local! {
    static TRANSLATING: RefCell<Option<Translating>> = const { RefCell::new(None) };
}

/// Run `f` with `plugin` marked as translating `view` on this thread; returns what `f`
/// returned and the ops the plugin injected.
pub fn translating<R>(
    plugin: u32,
    view: &Rc<ViewData>,
    f: impl FnOnce() -> R,
) -> (R, Vec<PluginOp>) {
    TRANSLATING.with(|t| {
        *t.borrow_mut() = Some(Translating { plugin, view: view.clone(), ops: Vec::new() })
    });
    let r = f();
    let ops = TRANSLATING.with(|t| t.borrow_mut().take()).map_or_else(Vec::new, |t| t.ops);
    (r, ops)
}

extern "C" fn inject(plugin: u32, ops: RSlice<'_, PluginOp>) {
    let ok = TRANSLATING.with(|t| match t.borrow_mut().as_mut() {
        Some(cur) if cur.plugin == plugin => {
            cur.ops.extend_from_slice(ops.as_slice());
            true
        }
        _ => false,
    });
    if !ok {
        if let Some(e) = entry(plugin) {
            e.fail("injected ops outside of its translate hook");
        }
    }
}

extern "C" fn insn_disas(plugin: u32, insn: u32, mut out: RSliceMut<'_, u8>) -> u32 {
    let s = TRANSLATING.with(|t| match t.borrow().as_ref() {
        Some(cur) if cur.plugin == plugin => view::disas(&cur.view, insn as usize),
        _ => None,
    });
    let s = s.unwrap_or_default();
    let out = out.as_mut_slice();
    let n = s.len().min(out.len());
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    s.len() as u32
}

extern "C" fn symbolize(plugin: u32, pc: u64, out: &mut SymbolRaw) -> bool {
    let Some(e) = entry(plugin) else { return false };
    let mods = e.run.modules.read().unwrap_or_else(|x| x.into_inner());
    let Some(m) = mods.find(pc) else { return false };
    out.module = RStr::from_str(m.path);
    out.module_base = m.start;
    out.module_bias = m.bias;
    match m.symbol_at(pc) {
        Some(s) => {
            out.symbol = RStr::from_str(s.name);
            out.symbol_addr = s.addr;
            out.symbol_size = s.size;
        }
        None => {
            out.symbol = RStr::from_str("");
            out.symbol_addr = 0;
            out.symbol_size = 0;
        }
    }
    true
}

extern "C" fn module(plugin: u32, index: u32, out: &mut ModuleRaw) -> bool {
    let Some(e) = entry(plugin) else { return false };
    let mods = e.run.modules.read().unwrap_or_else(|x| x.into_inner());
    let Some(m) = mods.get(index as usize) else { return false };
    *out = ModuleRaw {
        path: RStr::from_str(m.path),
        start: m.start,
        end: m.end,
        bias: m.bias,
        entry: m.entry,
    };
    true
}

/// Intern a plugin name.
pub fn intern_name(s: RStr<'_>) -> &'static str {
    leak_str(&text(s))
}
