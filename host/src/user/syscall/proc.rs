//! Process and thread syscalls: clone/fork/vfork, execve, arch_prctl.
//!
//! - `clone` with CLONE_VM|CLONE_THREAD starts a host thread running a new vCPU on the
//!   same `Engine` and `DirectShared`; CLONE_SETTLS, CLONE_PARENT_SETTID,
//!   CLONE_CHILD_SETTID and CLONE_CHILD_CLEARTID are done here (the tid word is cleared
//!   and futex-woken when the thread exits). Guest tids are the host tids.
//! - `clone` without CLONE_VM, `fork` and `vfork` are a host `fork`; CLONE_VM|CLONE_VFORK
//!   (posix_spawn) is a fork whose parent waits until the child execs or exits, which
//!   is all a vfork child may rely on.
//! - `execve` of an x86-64 ELF or a `#!` script re-executes blockscope
//!   (`/proc/self/exe run [same options] --argv0 ARGV0 -- PATH ARGS`), so the new program
//!   stays under emulation; anything else goes to the host kernel.

use super::{read_cstr, read_u64, write_u64};
use crate::cpu::Width;
use crate::mem::GuestMemory;
use crate::user::process::{thread_exit, Thread};
use crate::user::signal::AltStack;
use crate::user::sys;
use std::ffi::CString;
use std::sync::atomic::Ordering;

const EINVAL: i64 = -(libc::EINVAL as i64);
const CSIGNAL: u64 = 0xff;

/// `arch_prctl(code, addr)`: FS/GS bases live in the guest CPU state, never the host's.
pub fn arch_prctl(t: &mut Thread, code: u64, addr: u64) -> i64 {
    const SET_GS: u64 = 0x1001;
    const SET_FS: u64 = 0x1002;
    const GET_FS: u64 = 0x1003;
    const GET_GS: u64 = 0x1004;
    const GET_CPUID: u64 = 0x1011;
    let canonical = addr < 0x0000_8000_0000_0000;
    match code {
        SET_FS | SET_GS if !canonical => -(libc::EPERM as i64),
        SET_FS => {
            t.vcpu.cpu.set_fs_base(addr);
            0
        }
        SET_GS => {
            t.vcpu.cpu.set_gs_base(addr);
            0
        }
        GET_FS => {
            let v = t.vcpu.cpu.fs_base();
            super::flat(write_u64(t, addr, v).map(|_| 0))
        }
        GET_GS => {
            let v = t.vcpu.cpu.gs_base();
            super::flat(write_u64(t, addr, v).map(|_| 0))
        }
        GET_CPUID => 1,
        _ => EINVAL,
    }
}

/// `clone(flags, stack, parent_tid, child_tid, tls)` and its fork/vfork forms.
pub fn clone(t: &mut Thread, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> i64 {
    let f = flags as i32;
    let vm = f & libc::CLONE_VM != 0;
    if vm && f & libc::CLONE_THREAD != 0 {
        if f & libc::CLONE_SIGHAND == 0 {
            return EINVAL;
        }
        return spawn_thread(t, flags, stack, ptid, ctid, tls);
    }
    if vm && f & libc::CLONE_VFORK == 0 {
        // A separate process sharing our memory cannot be emulated with host processes.
        return EINVAL;
    }
    fork(t, flags, stack, ptid, ctid, tls)
}

fn fork(t: &mut Thread, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> i64 {
    let f = flags as i32;
    let vfork = f & libc::CLONE_VFORK != 0;
    let exit_sig = flags & CSIGNAL;
    // Flags that only make sense here (emulated) or for threads; what is left goes to the
    // host clone (namespaces, CLONE_PARENT, ...).
    let emulated = (libc::CLONE_VM
        | libc::CLONE_VFORK
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_SETTID
        | libc::CLONE_CHILD_CLEARTID
        | libc::CLONE_SIGHAND
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SYSVSEM
        | libc::CLONE_PIDFD) as u64
        | CSIGNAL;
    let host_flags = flags & !emulated;
    let pipe = if vfork { sys::pipe_cloexec().ok() } else { None };
    // The child must not inherit an engine or address-space lock held by another thread
    // (a compile in progress, a lookup on another guest thread).
    let (engine, shared) = (t.proc.engine.clone(), t.proc.shared.clone());
    let pid = engine.quiesced(|| {
        shared.quiesced(|| {
            if exit_sig == libc::SIGCHLD as u64 && host_flags == 0 {
                sys::fork()
            } else {
                sys::clone_process(host_flags | exit_sig)
            }
        })
    });
    if pid < 0 {
        if let Some((r, w)) = pipe {
            sys::close(r);
            sys::close(w);
        }
        return pid;
    }
    if pid == 0 {
        if let Some((r, _w)) = pipe {
            sys::close(r);
            // The write end closes when the child execs (O_CLOEXEC) or exits.
        }
        t.proc.after_fork_child(&t.signals);
        crate::exec::restart_compiler_after_fork(&t.proc.engine);
        sys::reassert_thread_signals();
        t.tid = sys::gettid();
        if stack != 0 {
            t.vcpu.cpu.set_gpr(4, stack);
        }
        if f & libc::CLONE_SETTLS != 0 {
            t.vcpu.cpu.set_fs_base(tls);
        }
        if f & libc::CLONE_CHILD_SETTID != 0 {
            let tid = t.tid as u64;
            let _ = t.mem().store(ctid, Width::W32, tid);
        }
        if f & libc::CLONE_CHILD_CLEARTID != 0 {
            t.clear_tid = ctid;
        }
        return 0;
    }
    if f & libc::CLONE_PARENT_SETTID != 0 {
        let _ = t.mem().store(ptid, Width::W32, pid as u64);
    }
    if let Some((r, w)) = pipe {
        sys::close(w);
        let mut b = [0u8; 1];
        while sys::read(r, &mut b) > 0 {}
        sys::close(r);
    }
    pid
}

fn spawn_thread(t: &mut Thread, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> i64 {
    let f = flags as i32;
    let mut cpu = t.vcpu.cpu.clone();
    cpu.set_gpr(0, 0);
    let rip = cpu.rip();
    cpu.set_gpr(1, rip);
    let fl = crate::frontend::full_rflags(&cpu);
    cpu.set_gpr(11, fl);
    if stack != 0 {
        cpu.set_gpr(4, stack);
    }
    if f & libc::CLONE_SETTLS != 0 {
        cpu.set_fs_base(tls);
    }
    let proc = t.proc.clone();
    let blocked = t.sig.blocked;
    let (tx, rx) = std::sync::mpsc::channel::<i32>();
    proc.live_threads.fetch_add(1, Ordering::SeqCst);
    let p2 = proc.clone();
    let spawned = std::thread::Builder::new().stack_size(16 << 20).spawn(move || {
        let mut child = Thread::new(p2, cpu, blocked);
        child.sig.alt = AltStack::default();
        let tid = child.tid;
        if f & libc::CLONE_CHILD_SETTID != 0 {
            let _ = child.mem().store(ctid, Width::W32, tid as u64);
        }
        if f & libc::CLONE_PARENT_SETTID != 0 {
            let _ = child.mem().store(ptid, Width::W32, tid as u64);
        }
        if f & libc::CLONE_CHILD_CLEARTID != 0 {
            child.clear_tid = ctid;
        }
        let _ = tx.send(tid);
        let code = child.run();
        thread_exit(child, code);
    });
    if spawned.is_err() {
        proc.live_threads.fetch_sub(1, Ordering::SeqCst);
        return -(libc::EAGAIN as i64);
    }
    sys::reassert_thread_signals();
    match rx.recv() {
        Ok(tid) => tid as i64,
        Err(_) => -(libc::EAGAIN as i64),
    }
}

fn read_str_array(t: &mut Thread, mut p: u64) -> Result<Vec<Vec<u8>>, i64> {
    let mut v = Vec::new();
    if p == 0 {
        return Ok(v);
    }
    loop {
        let s = read_u64(t, p)?;
        if s == 0 {
            return Ok(v);
        }
        v.push(read_cstr(t, s, 128 * 1024)?);
        if v.len() > 1 << 20 {
            return Err(-(libc::E2BIG as i64));
        }
        p += 8;
    }
}

fn cstring(b: Vec<u8>) -> CString {
    CString::new(b).unwrap_or_default()
}

/// What `execve` should do with a file.
enum ExecKind {
    /// Run under blockscope.
    Emulate,
    /// Leave to the host kernel.
    Host,
}

fn exec_kind(path: &[u8]) -> Result<ExecKind, i64> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let c = cstring(path.to_vec());
    let acc = sys::syscall6(libc::SYS_access, [c.as_ptr() as u64, libc::X_OK as u64, 0, 0, 0, 0]);
    if acc < 0 {
        return Err(acc);
    }
    let file =
        std::fs::File::open(p).map_err(|e| -(e.raw_os_error().unwrap_or(libc::EACCES) as i64))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(-(libc::EACCES as i64));
    }
    let mut head = [0u8; 64];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
    if head[..n].starts_with(b"#!") || crate::user::elf::check_ident(&head[..n]).is_ok() {
        Ok(ExecKind::Emulate)
    } else {
        Ok(ExecKind::Host)
    }
}

/// `execve` / `execveat`.
pub fn execve(t: &mut Thread, dirfd: i32, path: u64, argv: u64, envp: u64, flags: i32) -> i64 {
    let path = match read_cstr(t, path, 4096) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let argv = match read_str_array(t, argv) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let envp = match read_str_array(t, envp) {
        Ok(v) => v,
        Err(e) => return e,
    };
    // Resolve execveat's directory-relative forms to a path.
    let mut path = if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        format!("/proc/self/fd/{dirfd}").into_bytes()
    } else if path.first() != Some(&b'/') && dirfd != libc::AT_FDCWD {
        let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
        p.extend_from_slice(&path);
        p
    } else {
        path
    };
    if super::fs::is_self_exe(&path) {
        use std::os::unix::ffi::OsStrExt;
        path = t.proc.exe.as_os_str().as_bytes().to_vec();
    }
    match exec_kind(&path) {
        Err(e) => return e,
        Ok(ExecKind::Host) => {
            let c = cstring(path);
            let av: Vec<CString> = argv.into_iter().map(cstring).collect();
            let ev: Vec<CString> = envp.into_iter().map(cstring).collect();
            return sys::execve(&c, &av, &ev);
        }
        Ok(ExecKind::Emulate) => {}
    }
    if !path.contains(&b'/') {
        let mut p = b"./".to_vec();
        p.extend_from_slice(&path);
        path = p;
    }
    let mut av: Vec<CString> = vec![cstring(b"blockscope".to_vec())];
    av.extend(
        crate::user::reexec_args(&t.proc.config).into_iter().map(|s| cstring(s.into_bytes())),
    );
    let argv0 = argv.first().cloned().unwrap_or_else(|| path.clone());
    let mut a0 = b"--argv0=".to_vec();
    a0.extend_from_slice(&argv0);
    av.push(cstring(a0));
    av.push(cstring(b"--".to_vec()));
    av.push(cstring(path));
    av.extend(argv.into_iter().skip(1).map(cstring));
    let ev: Vec<CString> = envp.into_iter().map(cstring).collect();
    if t.proc.config.strace {
        t.proc.strace_line("--- execve: re-executing blockscope for the new program ---");
    }
    sys::execve(&cstring(b"/proc/self/exe".to_vec()), &av, &ev)
}
