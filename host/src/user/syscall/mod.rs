//! Guest syscalls: pass through to the host kernel by default, emulate what must be.
//!
//! Guest addresses are host addresses, so most syscalls go to the host unchanged through
//! `sys::safe_syscall` (interruptible by a signal without a race). Emulated, grouped by
//! file: `mm` (mmap, munmap, mprotect, mremap, madvise, brk: keep `DirectShared` and the
//! TB cache in step), `proc` (clone/fork/vfork/exit/exit_group/execve/arch_prctl/
//! set_tid_address/rseq), `signal` (actions, masks, sigaltstack, sigreturn, sigsuspend and
//! the syscalls taking a temporary mask), `fs` (`/proc/self/exe`). After a syscall, `%rcx`
//! and `%r11` hold the return address and RFLAGS, as the kernel's SYSRET leaves them.

pub mod fs;
pub mod mm;
pub mod names;
pub mod proc;
pub mod signal;

use crate::cpu::Width;
use crate::frontend::full_rflags;
use crate::mem::GuestMemory;
use crate::user::process::Thread;
use crate::user::signal::{restart_kind, Restart, RestartKind};
use crate::user::sys::{self, ERESTART_BEFORE};
use std::sync::atomic::Ordering;

/// What a syscall left for the run loop to do.
pub enum Sc {
    /// Return this value in `%rax`.
    Ret(i64),
    /// Registers were set by the syscall (rt_sigreturn): leave them.
    Regs,
    /// The thread exits with this code.
    Exit(i32),
}

const EINTR: i64 = -(libc::EINTR as i64);
const EFAULT: i64 = -(libc::EFAULT as i64);

/// `Exit::Syscall`: run the guest's syscall. Returns `Some(code)` when the thread exits.
pub fn handle(t: &mut Thread) -> Option<i32> {
    if t.vcpu.interrupt.load(Ordering::Acquire) {
        // A signal arrived before the syscall: deliver it first, then run the syscall.
        let rip = t.vcpu.cpu.rip();
        t.vcpu.cpu.set_rip(rip - 2);
        return None;
    }
    t.sig.restart = None;
    let cpu = &t.vcpu.cpu;
    let nr = cpu.gpr(0);
    let args = [cpu.gpr(7), cpu.gpr(6), cpu.gpr(2), cpu.gpr(10), cpu.gpr(8), cpu.gpr(9)];
    let no_return = matches!(
        nr as i64,
        libc::SYS_exit | libc::SYS_exit_group | libc::SYS_execve | libc::SYS_execveat
    );
    if no_return && t.proc.config.strace {
        log(t, nr, &args, None);
    }
    t.proc.engine.plugins.on_syscall(&t.vcpu.cpu, nr, &args);
    let r = dispatch(t, nr, &args);
    if let Sc::Ret(v) = r {
        t.proc.engine.plugins.on_syscall_ret(&t.vcpu.cpu, nr, v as u64);
    }
    match r {
        Sc::Ret(v) => {
            let v = if v == ERESTART_BEFORE || v == EINTR {
                let kind = if v == ERESTART_BEFORE {
                    RestartKind::Always
                } else {
                    restart_kind(nr, &args)
                };
                t.sig.restart = Some(Restart { nr, kind });
                EINTR
            } else {
                v
            };
            if t.proc.config.strace {
                log(t, nr, &args, Some(v));
            }
            let cpu = &mut *t.vcpu.cpu;
            cpu.set_gpr(0, v as u64);
            let rip = cpu.rip();
            cpu.set_gpr(1, rip);
            let fl = full_rflags(cpu);
            cpu.set_gpr(11, fl);
        }
        Sc::Regs => {
            if t.proc.config.strace {
                log(t, nr, &args, None);
            }
        }
        Sc::Exit(code) => return Some(code),
    }
    None
}

fn log(t: &Thread, nr: u64, a: &[u64; 6], r: Option<i64>) {
    let (name, n) = names::info(nr).unwrap_or(("syscall", 6));
    let mut s = if name == "syscall" { format!("syscall_{nr}(") } else { format!("{name}(") };
    for (i, v) in a.iter().take(n as usize).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if *v < 4096 || (*v as i64) < 0 && (*v as i64) > -4096 {
            s.push_str(&format!("{}", *v as i64));
        } else {
            s.push_str(&format!("{v:#x}"));
        }
    }
    s.push(')');
    match r {
        None => s.push_str(" = ?"),
        Some(v) if (-4095..0).contains(&v) => {
            let e = std::io::Error::from_raw_os_error(-v as i32);
            s.push_str(&format!(" = -1 ({e})"));
        }
        Some(v) if v > 0xffff => s.push_str(&format!(" = {v:#x}")),
        Some(v) => s.push_str(&format!(" = {v}")),
    }
    t.proc.strace_line(&s);
}

fn dispatch(t: &mut Thread, nr: u64, a: &[u64; 6]) -> Sc {
    let r = match nr as i64 {
        libc::SYS_brk => mm::brk(t, a[0]),
        libc::SYS_mmap => mm::mmap(t, a),
        libc::SYS_munmap => mm::munmap(t, a[0], a[1]),
        libc::SYS_mprotect => mm::mprotect(t, a[0], a[1], a[2]),
        libc::SYS_pkey_mprotect if a[3] as i32 == -1 => mm::mprotect(t, a[0], a[1], a[2]),
        libc::SYS_mremap => mm::mremap(t, a),
        libc::SYS_madvise => mm::madvise(t, a),
        libc::SYS_shmat => mm::shmat(t, a),
        libc::SYS_shmdt => mm::shmdt(t, a[0]),
        libc::SYS_arch_prctl => proc::arch_prctl(t, a[0], a[1]),
        libc::SYS_set_tid_address => {
            t.clear_tid = a[0];
            t.tid as i64
        }
        libc::SYS_exit => return Sc::Exit(a[0] as i32),
        libc::SYS_exit_group => t.proc.exit(a[0] as i32),
        libc::SYS_clone => proc::clone(t, a[0], a[1], a[2], a[3], a[4]),
        libc::SYS_fork => proc::clone(t, libc::SIGCHLD as u64, 0, 0, 0, 0),
        libc::SYS_vfork => {
            proc::clone(t, (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64, 0, 0, 0, 0)
        }
        libc::SYS_execve => proc::execve(t, libc::AT_FDCWD, a[0], a[1], a[2], 0),
        libc::SYS_execveat => proc::execve(t, a[0] as i32, a[1], a[2], a[3], a[4] as i32),
        // No clone3 (glibc falls back to clone), no rseq, no LDT, no 32-bit TLS areas.
        libc::SYS_clone3
        | libc::SYS_rseq
        | libc::SYS_modify_ldt
        | libc::SYS_set_thread_area
        | libc::SYS_get_thread_area => -(libc::ENOSYS as i64),
        libc::SYS_readlink => fs::readlink(t, libc::AT_FDCWD, a[0], a[1], a[2]),
        libc::SYS_readlinkat => fs::readlink(t, a[0] as i32, a[1], a[2], a[3]),
        libc::SYS_open => fs::open(t, libc::AT_FDCWD, a[0], a[1], a[2], nr),
        libc::SYS_openat => fs::open(t, a[0] as i32, a[1], a[2], a[3], nr),
        libc::SYS_rt_sigaction => signal::rt_sigaction(t, a),
        libc::SYS_rt_sigprocmask => signal::rt_sigprocmask(t, a),
        libc::SYS_rt_sigreturn => {
            crate::user::signal::sigreturn(t);
            return Sc::Regs;
        }
        libc::SYS_sigaltstack => signal::sigaltstack(t, a[0], a[1]),
        libc::SYS_rt_sigsuspend => signal::rt_sigsuspend(t, a[0], a[1]),
        libc::SYS_rt_sigpending => signal::rt_sigpending(t, a[0], a[1]),
        libc::SYS_rt_sigtimedwait => signal::rt_sigtimedwait(t, a),
        libc::SYS_ppoll => signal::with_temp_mask(t, nr, a, a[3], a[4]),
        libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => {
            signal::with_temp_mask(t, nr, a, a[4], a[5])
        }
        libc::SYS_pselect6 => signal::pselect6(t, a),
        libc::SYS_close
        | libc::SYS_dup
        | libc::SYS_dup2
        | libc::SYS_dup3
        | libc::SYS_fcntl
        | libc::SYS_close_range => fs::fd_guard(t, nr, a),
        _ => passthrough(t, nr, a),
    };
    Sc::Ret(r)
}

/// Run a syscall on the host as the guest gave it. A `-EFAULT` caused by a guest buffer
/// on a page we write-protect because it holds translated code is retried once after
/// invalidating that code.
pub fn passthrough(t: &mut Thread, nr: u64, a: &[u64; 6]) -> i64 {
    let r = sys::safe_syscall(&t.vcpu.interrupt, nr as i64, *a);
    if r == EFAULT && release_code_pages(t, a) {
        return sys::safe_syscall(&t.vcpu.interrupt, nr as i64, *a);
    }
    r
}

fn release_code_pages(t: &mut Thread, a: &[u64; 6]) -> bool {
    let shared = t.proc.shared.clone();
    let mut any = false;
    for (i, &v) in a.iter().enumerate() {
        if !shared.prot_of(v).is_some_and(|p| p.has(crate::mem::Prot::WRITE)) {
            continue;
        }
        let len = a.get(i + 1).copied().filter(|l| *l < 1 << 30).unwrap_or(4096).max(1);
        let pages = shared.code_pages(v, v.saturating_add(len));
        for p in &pages {
            shared.forget_code(*p);
        }
        if !pages.is_empty() {
            t.proc.engine.invalidate_pages(&pages);
            any = true;
        }
    }
    any
}

/// Read a NUL-terminated guest string of at most `max` bytes.
pub fn read_cstr(t: &mut Thread, addr: u64, max: usize) -> Result<Vec<u8>, i64> {
    let mut v = Vec::new();
    loop {
        if v.len() >= max {
            return Err(-(libc::ENAMETOOLONG as i64));
        }
        let b = t.mem().load(addr + v.len() as u64, Width::W8).map_err(|_| EFAULT)? as u8;
        if b == 0 {
            return Ok(v);
        }
        v.push(b);
    }
}

/// Read a guest u64.
pub fn read_u64(t: &mut Thread, addr: u64) -> Result<u64, i64> {
    t.mem().load(addr, Width::W64).map_err(|_| EFAULT)
}

/// Write a guest u64.
pub fn write_u64(t: &mut Thread, addr: u64, v: u64) -> Result<(), i64> {
    t.mem().store(addr, Width::W64, v).map_err(|_| EFAULT)
}

/// Write guest bytes.
pub fn write_bytes(t: &mut Thread, addr: u64, b: &[u8]) -> Result<(), i64> {
    t.mem().write_bytes(addr, b).map_err(|_| EFAULT)
}

/// Read guest bytes.
pub fn read_bytes(t: &mut Thread, addr: u64, b: &mut [u8]) -> Result<(), i64> {
    t.mem().read_bytes(addr, b).map_err(|_| EFAULT)
}

/// Collapse a `Result<i64, i64>` whose error is a negative errno.
pub fn flat(r: Result<i64, i64>) -> i64 {
    r.unwrap_or_else(|e| e)
}
