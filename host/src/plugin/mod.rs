//! Plugins: loading, ABI checks, the hook registry, injection of plugin IR and callback
//! dispatch. Plugins see only `blockscope-plugin-api` types; this module turns their
//! plain-data ops into IR (`inject`) and their view of a block into ABI structs (`view`).
//!
//! How the engine drives it (one `Plugins` per run, shared by every vCPU thread):
//! - start-up: `Plugins::load(specs, ...)` loads, checks and installs every `--plugin` in
//!   order; any error is one line (`PluginError`, exit status [`EXIT_LOAD_ERROR`]) before
//!   the guest starts.
//! - user mode, after mapping an ELF file: `on_module_load`.
//! - each vCPU/guest thread, before it runs: `vcpu_init(&mut cpu)` (sets
//!   `cpu.vcpu_index` and `cpu.plugin_mem`); when it exits: `vcpu_exit(&cpu)`.
//! - translation, after lifting and before the block is verified and cached:
//!   `on_translate(&mut block, &decoded, &code)`.
//! - syscalls: `on_syscall` before, `on_syscall_ret` after.
//! - guest exit (exit_group, fatal signal, end of run): `on_exit()` once; it flushes every
//!   plugin that did not fail and returns an error naming a plugin that failed while
//!   running (exit status [`EXIT_PLUGIN_FAILED`]).
//!
//! A plugin fails when it panics (caught in its glue), reports a fatal error, or injects
//! ops the verifier rejects. It is then disabled (its hooks and, for blocks translated
//! afterwards, its injections are skipped), the failure is printed with its name at once,
//! and the other plugins keep running and still flush at exit.

mod inject;
mod load;
pub mod memtrace;
mod modules;
mod registry;
mod scoreboard;
mod spec;
mod view;

pub use spec::{list_shipped, parse_spec, resolve, split_search_path, PluginSpec, SHIPPED};
pub use view::ViewData;

use crate::cpu::CpuState;
use crate::ir::Block;
use abi_stable::std_types::{RSlice, RStr};
use blockscope_plugin_api::abi::KeyValue;
use registry::{Entry, Run};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// Exit status for a plugin that cannot be loaded, is not a plugin, has another ABI
/// version, gets an unknown argument or fails to install.
pub const EXIT_LOAD_ERROR: i32 = 2;
/// Exit status when a plugin failed while the guest ran (after the others flushed).
pub const EXIT_PLUGIN_FAILED: i32 = 3;

/// Why plugins could not be set up, or failed.
#[derive(Debug, Error)]
pub enum PluginError {
    /// No such file, or no library for that name.
    #[error("plugin `{what}` not found{}", searched_text(.searched))]
    NotFound {
        /// The name or path given.
        what: String,
        /// Directories searched for a bare name.
        searched: Vec<PathBuf>,
    },
    /// The dynamic loader refused the file.
    #[error("cannot load plugin {}: {reason}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A library without either entry point.
    #[error("{} is not a blockscope plugin (it exports neither an abi_stable root module nor `blockscope_plugin_entry`)", .path.display())]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// Another ABI version.
    #[error("plugin {} was built for plugin ABI {found}, this blockscope supports ABI {expected}", .path.display())]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's version.
        found: String,
        /// The host's version.
        expected: String,
    },
    /// abi_stable refused it (layout or version of the plugin-api crate).
    #[error("plugin {} is incompatible: {reason}", .path.display())]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A `--plugin` value that does not parse.
    #[error("bad --plugin value `{spec}`: {reason}")]
    BadSpec {
        /// The value.
        spec: String,
        /// Why.
        reason: String,
    },
    /// An argument the plugin does not declare.
    #[error("plugin `{plugin}`: unknown argument `{key}` (it accepts: {accepted})")]
    UnknownArg {
        /// Plugin name.
        plugin: String,
        /// The key.
        key: String,
        /// The keys it accepts.
        accepted: String,
    },
    /// `install` returned an error or panicked.
    #[error("plugin `{plugin}` failed to install: {reason}")]
    Install {
        /// Plugin name.
        plugin: String,
        /// Its message.
        reason: String,
    },
    /// A plugin failed while the guest ran.
    #[error("plugin `{plugin}` failed: {reason}")]
    Failed {
        /// Plugin name.
        plugin: String,
        /// What happened.
        reason: String,
    },
}

fn searched_text(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return String::new();
    }
    let d: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(" (looked in {})", d.join(", "))
}

impl PluginError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            PluginError::Failed { .. } => EXIT_PLUGIN_FAILED,
            _ => EXIT_LOAD_ERROR,
        }
    }
}

/// The plugins of one run.
pub struct Plugins {
    entries: Vec<Arc<Entry>>,
    run: Arc<Run>,
    exited: AtomicBool,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins::none()
    }
}

fn rstr_text(s: RStr<'_>) -> String {
    String::from_utf8_lossy(s.as_rslice().as_slice()).into_owned()
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Plugins {
        Plugins {
            entries: Vec::new(),
            run: Arc::new(Run::default()),
            exited: AtomicBool::new(false),
        }
    }

    /// Load and install the given plugins in order. Names are looked up next to the
    /// executable (`exe_dir`) and in `search` (`BLOCKSCOPE_PLUGIN_PATH`).
    pub fn load(
        specs: &[PluginSpec],
        exe_dir: Option<&Path>,
        search: &[PathBuf],
    ) -> Result<Plugins, PluginError> {
        let mut p = Plugins::none();
        for s in specs {
            let path = resolve(&s.name_or_path, exe_dir, search)?;
            p.add(&path, &s.args)?;
        }
        p.run.scoreboards.freeze();
        Ok(p)
    }

    /// Load the library at `path` and install it with `args` (appended after the plugins
    /// already loaded; only before the first vCPU starts).
    pub fn add(&mut self, path: &Path, args: &[(String, String)]) -> Result<(), PluginError> {
        let (vt, _kind) = load::open(path)?;
        let name = registry::intern_name(vt.name);
        let accepted: Vec<String> = vt.args.as_slice().iter().map(|a| rstr_text(a.name)).collect();
        for (k, _) in args {
            if !accepted.iter().any(|a| a == k) {
                return Err(PluginError::UnknownArg {
                    plugin: name.to_string(),
                    key: k.clone(),
                    accepted: if accepted.is_empty() {
                        "no arguments".into()
                    } else {
                        accepted.join(", ")
                    },
                });
            }
        }
        let (entry, api) = registry::register(name, path.to_path_buf(), vt, self.run.clone());
        let kv: Vec<KeyValue<'_>> = args
            .iter()
            .map(|(k, v)| KeyValue { key: RStr::from_str(k), value: RStr::from_str(v) })
            .collect();
        let mut instance = 0u64;
        if !(vt.install)(api, RSlice::from_slice(&kv), &mut instance) {
            entry.failed.store(true, Ordering::Release);
            let reason = entry.last_error.lock().unwrap_or_else(|e| e.into_inner()).take();
            return Err(PluginError::Install {
                plugin: name.to_string(),
                reason: reason.unwrap_or_else(|| "install returned an error".into()),
            });
        }
        entry.instance.store(instance, Ordering::Release);
        entry.installed.store(true, Ordering::Release);
        self.entries.push(entry);
        Ok(())
    }

    /// Whether a plugin asked for REP string instructions expanded, one element per run
    /// (`frontend::LiftOpts::rep_each`).
    pub fn rep_strings_expanded(&self) -> bool {
        self.run.expand_rep.load(Ordering::Acquire)
    }

    /// Whether no plugin is loaded (the engine may then skip building views).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names of the loaded plugins, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }

    /// `(name, library path)` of the loaded plugins, in order.
    pub fn loaded(&self) -> Vec<(&'static str, &Path)> {
        self.entries.iter().map(|e| (e.name, e.path.as_path())).collect()
    }

    fn live(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.iter().filter(|e| e.live())
    }

    /// A module (ELF file) was mapped: `[start, end)`, load bias, entry point.
    pub fn on_module_load(&self, path: &str, start: u64, end: u64, bias: u64, entry: u64) {
        let m = modules::Module::new(path, start, end, bias, entry);
        self.run.modules.write().unwrap_or_else(|e| e.into_inner()).add(m);
    }

    /// An ELF file was loaded with load bias `bias` (user mode: the program and its
    /// interpreter). Reads its segments to record the module.
    pub fn on_elf_loaded(&self, path: &str, bias: u64) {
        if self.entries.is_empty() {
            return;
        }
        if let Some(x) = modules::elf_extent(path) {
            self.on_module_load(path, x.start + bias, x.end + bias, bias, x.entry + bias);
        }
    }

    /// A file was mapped executable at `addr` from file offset `offset` (user mode: the
    /// dynamic loader mapping a shared library). Records the module if the file is an ELF
    /// with a load segment at that offset.
    pub fn on_file_mmap(&self, path: &str, addr: u64, offset: u64) {
        if self.entries.is_empty() {
            return;
        }
        let Some(x) = modules::elf_extent(path) else { return };
        let Some(&(_, vaddr)) = x.segments.iter().find(|s| s.0 == offset & !0xfff) else {
            return;
        };
        let bias = addr.wrapping_sub(vaddr);
        let (start, end) = (x.start.wrapping_add(bias), x.end.wrapping_add(bias));
        let known = {
            let mods = self.run.modules.read().unwrap_or_else(|e| e.into_inner());
            mods.find(start).is_some_and(|m| m.path == path && m.start == start)
        };
        if !known {
            self.on_module_load(path, start, end, bias, x.entry.wrapping_add(bias));
        }
    }

    /// In a forked child: its copy of the plugins must not write outputs at exit (the
    /// parent does; the child would overwrite them).
    pub fn forget_after_fork(&self) {
        self.exited.store(true, Ordering::Release);
    }

    /// A vCPU (guest thread) starts: give it an index and its plugin memory, then tell the
    /// plugins. Call before it runs any block.
    pub fn vcpu_init(&self, cpu: &mut CpuState) {
        let (index, mem) = self.run.scoreboards.new_vcpu();
        cpu.vcpu_index = index;
        cpu.plugin_mem = mem;
        cpu.plugin_mem_base = if mem.is_empty() { 0 } else { mem.as_ptr() as u64 };
        for e in self.live() {
            if let Some(f) = e.vt.vcpu_init {
                f(e.instance(), index);
            }
        }
    }

    /// A vCPU (guest thread) exits.
    pub fn vcpu_exit(&self, cpu: &CpuState) {
        for e in self.live() {
            if let Some(f) = e.vt.vcpu_exit {
                f(e.instance(), cpu.vcpu_index);
            }
        }
    }

    /// A block was lifted: show it to every plugin and splice in what they inject.
    /// `decoded` holds the decoder's instructions in block order (or nothing), `code` the
    /// instructions' bytes one after another (`view::build`).
    pub fn on_translate(&self, block: &mut Block, decoded: &[iced_x86::Instruction], code: &[u8]) {
        if self.entries.is_empty() {
            return;
        }
        let view = Rc::new(view::build(block, decoded, code));
        let raw = view.raw();
        let mut plan = inject::Plan::new(block.temps);
        for e in self.live() {
            let Some(f) = e.vt.translate else { continue };
            let ((), ops) = registry::translating(e.id, &view, || f(e.instance(), &raw));
            if ops.is_empty() || !e.live() {
                continue;
            }
            let who = inject::Injecting {
                id: e.id,
                name: e.name,
                instance: e.instance(),
                scoreboards: &self.run.scoreboards,
            };
            if let Err(msg) = plan.add(&who, &view, block, &ops) {
                e.fail(&format!("rejected injection into the block at {:#x}: {msg}", block.pc));
            }
        }
        if !plan.is_empty() {
            plan.apply(block, &view);
            if let Err(err) = crate::ir::verify(block) {
                // Injected IR is checked op by op above; a failure here is a host bug.
                panic!(
                    "plugin injection produced an invalid block at {:#x}: {err}\n{block}",
                    block.pc
                );
            }
        }
    }

    /// A system call `nr` with `args` is about to run on `cpu`.
    pub fn on_syscall(&self, cpu: &CpuState, nr: u64, args: &[u64; 6]) {
        for e in self.live() {
            if let Some(f) = e.vt.syscall {
                f(e.instance(), cpu.vcpu_index, nr, args);
            }
        }
    }

    /// System call `nr` returned `ret` on `cpu`.
    pub fn on_syscall_ret(&self, cpu: &CpuState, nr: u64, ret: u64) {
        for e in self.live() {
            if let Some(f) = e.vt.syscall_ret {
                f(e.instance(), cpu.vcpu_index, nr, ret);
            }
        }
    }

    /// The guest exits: flush every plugin that has not failed (once). Returns the first
    /// failure of the run, if any plugin failed.
    pub fn on_exit(&self) -> Result<(), PluginError> {
        if !self.exited.swap(true, Ordering::AcqRel) {
            for e in self.live() {
                if let Some(f) = e.vt.exit {
                    f(e.instance());
                }
            }
        }
        self.failure().map_or(Ok(()), Err)
    }

    /// The first failure of a plugin in this run, if any.
    pub fn failure(&self) -> Option<PluginError> {
        let f = self.run.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.first().map(|(plugin, reason)| PluginError::Failed {
            plugin: plugin.clone(),
            reason: reason.clone(),
        })
    }
}

// The run's plugins are shared by every vCPU thread.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Plugins>();
};
