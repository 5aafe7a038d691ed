//! User mode: Linux x86-64 programs on the host kernel, like `qemu-x86_64`.
//!
//! `run` resolves the program (PATH lookup as a shell does; `#!` scripts through their
//! interpreter, as the kernel does), loads it (`elf`: static, static-PIE, PIE and dynamic
//! through the host's `ld.so`), builds the initial stack (`stack`), and runs the initial
//! guest thread on the calling host thread (`process`). Syscalls are emulated or passed
//! through (`syscall`), host signals become guest signals (`signal`), and guest threads
//! are host threads sharing one `Engine` and one `DirectShared` (`syscall::proc`). Raw
//! host calls live in `sys`, the one module here allowed `unsafe`.
//!
//! Exit status. blockscope exits with the guest's exit status. When the guest dies of a
//! signal N (a fault it does not handle, `abort()`, a `kill` it does not catch),
//! blockscope restores the default action for N and kills itself with N, so its parent
//! sees the same wait status as for the native program (a shell prints 128+N: 139 for
//! SIGSEGV, 134 for SIGABRT, 132 for SIGILL). If the guest dies of SIGILL at an
//! instruction blockscope does not implement, one line
//! `blockscope: unimplemented instruction at 0x...: <disassembly>` is printed first. When
//! the program cannot be started (missing, unreadable, not an ELF, not x86-64, cannot be
//! mapped), `run` returns a `LoadError` and the CLI prints one line and exits with 2.

pub mod elf;
pub mod process;
pub mod signal;
pub mod stack;
pub mod sys;
pub mod syscall;

use crate::config::{Config, Tier};
use crate::exec::Engine;
use crate::mem::{page_ceil, set_foreign_fault_hook, Direct, DirectShared, Prot};
use elf::LoadError;
use process::{thread_exit, Brk, Process, Thread};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize};
use std::sync::{Arc, Mutex};

/// What to run.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The program as given (looked up in PATH if it has no `/`).
    pub prog: OsString,
    /// Arguments after the program.
    pub args: Vec<OsString>,
    /// `argv[0]` for the guest (default: `prog` as given).
    pub argv0: Option<OsString>,
}

/// Find `prog` as a shell would: a name with a `/` is a path; otherwise the first
/// executable regular file of that name in `$PATH`.
pub fn resolve_program(prog: &OsStr) -> Result<PathBuf, LoadError> {
    if prog.is_empty() {
        return Err(LoadError::NotFound);
    }
    if prog.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(prog));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut denied = false;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let cand = dir.join(prog);
        match std::fs::metadata(&cand) {
            Ok(m) if m.is_file() => {
                if executable(&cand) {
                    return Ok(cand);
                }
                denied = true;
            }
            _ => {}
        }
    }
    Err(if denied { LoadError::PermissionDenied } else { LoadError::NotFound })
}

fn executable(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
    sys::syscall6(libc::SYS_access, [c.as_ptr() as u64, libc::X_OK as u64, 0, 0, 0, 0]) == 0
}

/// Resolve `#!` scripts (up to 4 levels, like the kernel): returns the file to load and
/// the final argv.
fn resolve_script(
    mut path: PathBuf,
    mut argv: Vec<Vec<u8>>,
) -> Result<(PathBuf, Vec<Vec<u8>>), LoadError> {
    for _ in 0..5 {
        let meta = std::fs::metadata(&path).map_err(LoadError::from_io)?;
        if meta.is_dir() {
            return Err(LoadError::IsDirectory);
        }
        if !executable(&path) {
            return Err(LoadError::PermissionDenied);
        }
        let file = std::fs::File::open(&path).map_err(LoadError::from_io)?;
        let mut head = [0u8; 256];
        let n =
            std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).map_err(LoadError::from_io)?;
        if !head[..n].starts_with(b"#!") {
            return Ok((path, argv));
        }
        let line_end = head[..n].iter().position(|&b| b == b'\n').unwrap_or(n);
        let line = &head[2..line_end];
        let line: Vec<u8> =
            line.iter().copied().skip_while(|b| *b == b' ' || *b == b'\t').collect();
        let split = line.iter().position(|b| *b == b' ' || *b == b'\t').unwrap_or(line.len());
        let interp = line[..split].to_vec();
        let arg: Vec<u8> = line[split..]
            .iter()
            .copied()
            .skip_while(|b| *b == b' ' || *b == b'\t')
            .collect::<Vec<u8>>();
        let arg: Vec<u8> = {
            let mut a = arg;
            while matches!(a.last(), Some(b' ' | b'\t' | b'\r')) {
                a.pop();
            }
            a
        };
        if interp.is_empty() {
            return Err(LoadError::Unsupported("empty #! interpreter line".into()));
        }
        let mut new = vec![interp.clone()];
        if !arg.is_empty() {
            new.push(arg);
        }
        new.push(path.as_os_str().as_bytes().to_vec());
        new.extend(argv.into_iter().skip(1));
        argv = new;
        path = PathBuf::from(OsString::from_vec(interp));
    }
    Err(LoadError::Unsupported("too many levels of #! interpreters".into()))
}

/// The command-line options that reproduce `config` (for re-executing blockscope when
/// the guest execs another program).
pub fn reexec_args(config: &Config) -> Vec<String> {
    let mut v = vec!["run".to_string()];
    let tier = match config.tier {
        Tier::Interp => "interp",
        Tier::Jit => "jit",
        Tier::Auto => "auto",
    };
    v.push(format!("--tier={tier}"));
    for p in &config.plugins {
        v.push(format!("--plugin={p}"));
    }
    if config.trace_translate {
        v.push("--trace-translate".into());
    }
    if config.strace {
        v.push("--strace".into());
    }
    if config.stats {
        v.push("--stats".into());
    }
    if config.perf_map {
        v.push("--perf-map".into());
    }
    // Tuning knobs, when not the default (the new image must run as this one did).
    let d = Config::default();
    if config.hot_threshold != d.hot_threshold {
        v.push(format!("--hot-threshold={}", config.hot_threshold));
    }
    if config.max_block_insns != d.max_block_insns {
        v.push(format!("--max-block-insns={}", config.max_block_insns));
    }
    if config.jit_cache_size != d.jit_cache_size {
        v.push(format!("--jit-cache-mib={}", config.jit_cache_size >> 20));
    }
    if config.jit_chain_budget != d.jit_chain_budget {
        v.push(format!("--jit-chain-budget={}", config.jit_chain_budget));
    }
    v
}

fn environment() -> Vec<Vec<u8>> {
    // The environment exactly as this process received it (entries without '=' too).
    match std::fs::read("/proc/self/environ") {
        Ok(b) => b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| s.to_vec()).collect(),
        Err(_) => std::env::vars_os()
            .map(|(k, v)| {
                let mut e = k.into_vec();
                e.push(b'=');
                e.extend(v.into_vec());
                e
            })
            .collect(),
    }
}

fn stack_size() -> u64 {
    let mut r = [0u64; 2];
    let ok = sys::syscall6(
        libc::SYS_prlimit64,
        [0, libc::RLIMIT_STACK as u64, 0, r.as_mut_ptr() as u64, 0, 0],
    ) == 0;
    let cur = if ok { r[0] } else { 8 << 20 };
    cur.clamp(1 << 20, 256 << 20)
}

/// Load and run a program; returns only if it cannot be started.
pub fn run(config: Config, launch: &Launch) -> Result<std::convert::Infallible, LoadError> {
    run_with_plugins(config, launch, Arc::new(crate::plugin::Plugins::none()))
}

/// `run` with plugins (loaded by the caller): they instrument every block, see module
/// loads, syscalls and thread exits, and flush when the process exits.
pub fn run_with_plugins(
    config: Config,
    launch: &Launch,
    plugins: Arc<crate::plugin::Plugins>,
) -> Result<std::convert::Infallible, LoadError> {
    sys::open_log_fd();
    let target = resolve_program(&launch.prog)?;
    let argv0 = launch.argv0.clone().unwrap_or_else(|| launch.prog.clone());
    let mut argv: Vec<Vec<u8>> = vec![argv0.into_vec()];
    argv.extend(launch.args.iter().map(|a| a.as_bytes().to_vec()));
    let execfn = target.as_os_str().as_bytes().to_vec();
    let (exe_path, argv) = resolve_script(target, argv)?;
    let exe = std::fs::canonicalize(&exe_path).map_err(LoadError::from_io)?;

    // Signal state inherited over exec: ignored signals and the mask.
    let initial_mask = sys::host_mask();
    let actions = signal::Actions::inherit();

    let shared = DirectShared::new();
    set_foreign_fault_hook(sys::on_foreign_fault);
    crate::exec::set_helper_thread_init(sys::block_signals_in_helper_thread);
    let loaded = elf::load(&exe_path, &shared)?;
    plugins.on_elf_loaded(&exe.to_string_lossy(), loaded.main.bias);
    if let (Some(path), Some(img)) = (&loaded.main.interp, &loaded.interp) {
        plugins.on_elf_loaded(path, img.bias);
    }

    let size = stack_size();
    let base = shared
        .mmap_anon(0, size, Prot(Prot::READ | Prot::WRITE), false)
        .map_err(|e| LoadError::Map { addr: 0, err: std::io::Error::from_raw_os_error(-e) })?;
    let mut mem = Direct::new(shared.clone());
    let aux = stack::AuxInfo {
        phdr: loaded.main.phdr,
        phent: loaded.main.phent as u64,
        phnum: loaded.main.phnum as u64,
        base: loaded.interp.as_ref().map_or(0, |i| i.bias),
        entry: loaded.main.entry,
    };
    let built = stack::build(&mut mem, base + size, &argv, &environment(), &execfn, &aux)
        .map_err(|f| LoadError::Malformed(format!("cannot build the stack: {f}")))?;

    let mut cpu = crate::cpu::CpuState::new_user();
    cpu.set_gpr(4, built.sp);
    cpu.set_rip(loaded.start());

    let brk = page_ceil(loaded.main.end);
    let proc = Arc::new(Process {
        engine: Engine::with_plugins(config.clone(), plugins),
        shared,
        config,
        exe,
        actions,
        brk: Mutex::new(Brk { start: brk, cur: brk }),
        live_threads: AtomicUsize::new(1),
        main_tid: AtomicI32::new(sys::gettid()),
    });
    sys::settle_host_thread_setup();
    proc.actions.apply_all();
    if proc.config.strace {
        let interp = match &loaded.interp {
            Some(i) => format!(", interpreter at {:#x}", i.bias),
            None => String::new(),
        };
        proc.strace_line(&format!(
            "--- {} loaded at {:#x}{interp}, start {:#x}, stack {:#x}, brk {brk:#x} ---",
            exe_path.display(),
            loaded.main.bias,
            loaded.start(),
            built.sp
        ));
    }
    let mut t = Thread::new(proc, cpu, initial_mask);
    let code = t.run();
    thread_exit(t, code);
    // thread_exit does not return for the initial thread.
    sys::exit_group(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reexec_args_carry_options() {
        let c = Config {
            tier: Tier::Interp,
            strace: true,
            plugins: vec!["cov,out=x".into()],
            ..Config::default()
        };
        assert_eq!(reexec_args(&c), vec!["run", "--tier=interp", "--plugin=cov,out=x", "--strace"]);
        let c = Config { stats: true, hot_threshold: 7, jit_chain_budget: 99, ..Config::default() };
        assert_eq!(
            reexec_args(&c),
            vec!["run", "--tier=auto", "--stats", "--hot-threshold=7", "--jit-chain-budget=99"]
        );
    }

    #[test]
    fn path_lookup() {
        assert!(matches!(
            resolve_program(OsStr::new("no-such-program-xyz")),
            Err(LoadError::NotFound)
        ));
        let sh = resolve_program(OsStr::new("sh")).expect("sh in PATH");
        assert!(sh.ends_with("sh"));
    }
}
