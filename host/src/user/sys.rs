//! Raw host system calls, host signal handling and process control for user mode.
//!
//! Safety contract. This is the only user-mode module with `unsafe`. It owns:
//! - `syscall6` and `safe_syscall`: raw `SYSCALL` instructions. Guest pointers are passed
//!   to the host kernel unchanged (guest address == host address); the kernel validates
//!   them and answers `-EFAULT`, so no Rust reference is ever made from a guest pointer.
//! - `safe_syscall` closes the race between "no signal pending" and entering a blocking
//!   syscall (QEMU's safe-syscall idea): the check and the `SYSCALL` instruction sit
//!   between two labels, and the host signal handler moves an interrupted pc inside that
//!   window to a path returning `-ERESTART_BEFORE`. The syscall is then restarted after
//!   the guest's handler, exactly as if the signal had arrived just before it.
//! - The host signal handler (`on_signal`) and per-thread signal queues. The handler only
//!   touches atomics: it copies the host `siginfo` into the current thread's queue (found
//!   through a const-initialised thread-local raw pointer, set and cleared by
//!   `ThreadSignalsGuard` with all signals blocked), sets the pending bit and raises the
//!   vCPU's `interrupt` flag. Helper threads (the JIT compile thread) block every signal
//!   when they start (`block_signals_in_helper_thread`, registered with
//!   `exec::set_helper_thread_init`). Should a signal still land on a thread that is not
//!   a guest thread, that thread returns from the handler with every signal blocked and
//!   the signal is sent to the process again (`rt_sigqueueinfo` with the original
//!   siginfo when the kernel allows it, else `kill`), so a guest thread gets it. (The
//!   SIGSEGV/SIGBUS hook, which has no context, uses a process queue instead and raises
//!   every registered vCPU's flag.)
//! - Host dispositions and masks: the host signal mask mirrors the guest's (minus the
//!   synchronous signals, which must never be blocked on the host), and the host
//!   disposition mirrors the guest's action (see `user::signal`).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

/// Internal result of `safe_syscall` when a signal arrived before the syscall was entered
/// (the kernel's ERESTARTSYS value; the host kernel never returns it to user space).
pub const ERESTART_BEFORE: i64 = -512;

/// Signals that are never blocked on the host: they are raised synchronously by faults in
/// the emulator's own memory accessors (SEGV, BUS) or would indicate a host bug.
pub const SYNC_SIGNALS: u64 = bit(libc::SIGSEGV)
    | bit(libc::SIGBUS)
    | bit(libc::SIGILL)
    | bit(libc::SIGFPE)
    | bit(libc::SIGTRAP);

/// The mask bit of signal `sig` (1..=64).
pub const fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl bs_safe_syscall",
    "bs_safe_syscall:",
    // rdi = *const u8 interrupt flag, rsi = syscall number, rdx = *const [u64; 6] args
    "    mov r11, rdi",
    "    mov rax, rsi",
    "    mov rcx, rdx",
    "    mov rdi, qword ptr [rcx]",
    "    mov rsi, qword ptr [rcx + 8]",
    "    mov rdx, qword ptr [rcx + 16]",
    "    mov r10, qword ptr [rcx + 24]",
    "    mov r8, qword ptr [rcx + 32]",
    "    mov r9, qword ptr [rcx + 40]",
    ".globl bs_safe_syscall_start",
    "bs_safe_syscall_start:",
    "    cmp byte ptr [r11], 0",
    "    jne bs_safe_syscall_intr",
    "    syscall",
    ".globl bs_safe_syscall_end",
    "bs_safe_syscall_end:",
    "    ret",
    ".globl bs_safe_syscall_intr",
    "bs_safe_syscall_intr:",
    "    mov rax, -512",
    "    ret",
    ".p2align 4",
    ".globl bs_sig_restorer",
    "bs_sig_restorer:",
    "    mov eax, 15",
    "    syscall",
    "    ud2",
);

extern "sysv64" {
    fn bs_safe_syscall(flag: *const AtomicBool, nr: u64, args: *const [u64; 6]) -> i64;
    static bs_safe_syscall_start: u8;
    static bs_safe_syscall_end: u8;
    static bs_safe_syscall_intr: u8;
    fn bs_sig_restorer();
}

/// A raw host syscall with up to six arguments; returns the kernel's value (`-errno` on
/// error).
pub fn syscall6(nr: i64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: a raw SYSCALL. Pointer arguments are guest addresses, which the host kernel
    // validates (they are never dereferenced by Rust); callers in user mode never pass
    // syscalls that would corrupt the emulator's own state (those are emulated).
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw syscall that is interrupted (returns `ERESTART_BEFORE` without entering the
/// kernel) if `interrupt` is set or becomes set by a host signal before the `SYSCALL`
/// instruction; a signal during the syscall gives the kernel's `-EINTR`.
pub fn safe_syscall(interrupt: &AtomicBool, nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: as in `syscall6`; the asm reads the flag byte and the six argument words
    // from valid references and follows the sysv64 ABI (clobbers only caller-saved regs).
    unsafe { bs_safe_syscall(interrupt, nr as u64, &a) }
}

/// Convert a libc-style `-1`/errno result into a raw negative errno.
fn errno_result(r: i64) -> i64 {
    if r == -1 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL) as i64)
    } else {
        r
    }
}

// ---- memory -------------------------------------------------------------------------

/// Host `mmap`; `Ok(address)` or `Err(errno)`.
pub fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> Result<u64, i32> {
    let r = syscall6(libc::SYS_mmap, [addr, len, prot as u64, flags as u64, fd as u64, off]);
    if (-4095..0).contains(&r) {
        Err(-r as i32)
    } else {
        Ok(r as u64)
    }
}

/// Host `munmap`.
pub fn munmap(addr: u64, len: u64) -> i64 {
    syscall6(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])
}

/// Host `mprotect`.
pub fn mprotect(addr: u64, len: u64, prot: i32) -> i64 {
    syscall6(libc::SYS_mprotect, [addr, len, prot as u64, 0, 0, 0])
}

/// Whether any page of `[addr, addr+len)` is mapped in the host process (`mincore`
/// fails with ENOMEM on unmapped pages). Checks page by page.
pub fn any_host_mapped(addr: u64, len: u64) -> bool {
    let mut vec = [0u8; 1];
    let mut p = addr & !4095;
    while p < addr + len {
        let r = syscall6(libc::SYS_mincore, [p, 4096, vec.as_mut_ptr() as u64, 0, 0, 0]);
        if r != -(libc::ENOMEM as i64) {
            return true;
        }
        p += 4096;
    }
    false
}

/// Fill `buf` with random bytes (for AT_RANDOM).
pub fn getrandom(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let r = syscall6(
            libc::SYS_getrandom,
            [buf[done..].as_mut_ptr() as u64, (buf.len() - done) as u64, 0, 0, 0, 0],
        );
        if r > 0 {
            done += r as usize;
        } else if r != -(libc::EINTR as i64) {
            // No entropy source: fall back to something that still varies per run.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            for (i, b) in buf[done..].iter_mut().enumerate() {
                *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
            }
            return;
        }
    }
}

// ---- process and threads ------------------------------------------------------------

/// The host thread id.
pub fn gettid() -> i32 {
    syscall6(libc::SYS_gettid, [0; 6]) as i32
}

/// The host process id.
pub fn getpid() -> i32 {
    syscall6(libc::SYS_getpid, [0; 6]) as i32
}

/// End the whole process now with `code` (no destructors, no atexit handlers).
pub fn exit_group(code: i32) -> ! {
    syscall6(libc::SYS_exit_group, [code as u64, 0, 0, 0, 0, 0]);
    // SAFETY: `_exit` never returns; exit_group above cannot fail, this is a fallback.
    unsafe { libc::_exit(code) }
}

/// End only the calling host thread (the process lives on while other threads run).
pub fn exit_thread(code: i32) -> ! {
    loop {
        syscall6(libc::SYS_exit, [code as u64, 0, 0, 0, 0, 0]);
    }
}

/// `fork()` through the host libc (runs its atfork handlers so malloc stays usable in
/// the child). Returns the child pid in the parent, 0 in the child, or `-errno`.
pub fn fork() -> i64 {
    // SAFETY: fork in a possibly multi-threaded process: the child continues on this
    // thread only. The user-mode runtime holds none of its own locks across this call.
    errno_result(unsafe { libc::fork() } as i64)
}

/// A raw `clone` without CLONE_VM (a fork with a non-SIGCHLD exit signal, or extra
/// flags); returns like `fork`.
pub fn clone_process(flags: u64) -> i64 {
    syscall6(libc::SYS_clone, [flags, 0, 0, 0, 0, 0])
}

/// Replace the process image. Returns only on failure, with `-errno`.
pub fn execve(path: &CString, argv: &[CString], envp: &[CString]) -> i64 {
    let mut av: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    av.push(std::ptr::null());
    let mut ev: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    ev.push(std::ptr::null());
    syscall6(
        libc::SYS_execve,
        [path.as_ptr() as u64, av.as_ptr() as u64, ev.as_ptr() as u64, 0, 0, 0],
    )
}

/// `pipe2(O_CLOEXEC)`; `(read, write)` or `-errno`.
pub fn pipe_cloexec() -> Result<(i32, i32), i64> {
    let mut fds = [0i32; 2];
    let r =
        syscall6(libc::SYS_pipe2, [fds.as_mut_ptr() as u64, libc::O_CLOEXEC as u64, 0, 0, 0, 0]);
    if r < 0 {
        Err(r)
    } else {
        Ok((fds[0], fds[1]))
    }
}

/// Close a host fd.
pub fn close(fd: i32) {
    syscall6(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
}

/// Read from a host fd into a host buffer (retrying on EINTR).
pub fn read(fd: i32, buf: &mut [u8]) -> i64 {
    loop {
        let r = syscall6(
            libc::SYS_read,
            [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0],
        );
        if r != -(libc::EINTR as i64) {
            return r;
        }
    }
}

/// The fd blockscope's own messages go to: a private copy of the stderr it started
/// with (`open_log_fd`), so a guest that closes or redirects its fd 2 (GNU tools close
/// stderr at exit) does not silence `--stats`, `--strace` or error lines.
static LOG_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(2);

/// Lowest fd tried for the private log fd: above what programs normally use.
const LOG_FD_MIN: u64 = 1000;

/// Make the private copy of stderr (close-on-exec; a re-exec under blockscope makes its
/// own). Without room for it (a low fd limit) messages go to fd 2 as before.
pub fn open_log_fd() {
    let r = syscall6(libc::SYS_fcntl, [2, libc::F_DUPFD_CLOEXEC as u64, LOG_FD_MIN, 0, 0, 0]);
    if r >= 0 {
        LOG_FD.store(r as i32, Ordering::Relaxed);
    }
}

/// The private log fd, if one was made (the guest may not close or replace it).
pub fn log_fd() -> Option<i32> {
    let fd = LOG_FD.load(Ordering::Relaxed);
    (fd != 2).then_some(fd)
}

/// Write a line to blockscope's stderr with one `write` (usable anywhere, no allocation
/// beyond `s`).
pub fn write_stderr(s: &str) {
    let b = s.as_bytes();
    let fd = LOG_FD.load(Ordering::Relaxed) as u64;
    let mut off = 0;
    while off < b.len() {
        let r = syscall6(
            libc::SYS_write,
            [fd, b[off..].as_ptr() as u64, (b.len() - off) as u64, 0, 0, 0],
        );
        if r <= 0 {
            if r == -(libc::EINTR as i64) {
                continue;
            }
            return;
        }
        off += r as usize;
    }
}

// ---- signals ------------------------------------------------------------------------

/// `siginfo_t` as 16 words.
pub type SigInfo = [u64; 16];

/// Pending host-received signals with their siginfo, written by the host handler.
pub struct SigQueue {
    pending: AtomicU64,
    info: [[AtomicU64; 16]; 64],
}

impl SigQueue {
    /// An empty queue.
    pub const fn new() -> SigQueue {
        SigQueue {
            pending: AtomicU64::new(0),
            info: [const { [const { AtomicU64::new(0) }; 16] }; 64],
        }
    }
    /// Pending signal bits.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }
    /// Record `sig` with `info` (async-signal-safe).
    pub fn push(&self, sig: i32, info: &SigInfo) {
        if !(1..=64).contains(&sig) {
            return;
        }
        for (d, s) in self.info[sig as usize - 1].iter().zip(info) {
            d.store(*s, Ordering::Relaxed);
        }
        self.pending.fetch_or(bit(sig), Ordering::Release);
    }
    /// Take the lowest pending signal in `allowed`, with its siginfo. Host signals are
    /// blocked meanwhile so the handler cannot overwrite the record being read.
    pub fn take(&self, allowed: u64) -> Option<(i32, SigInfo)> {
        if self.pending() & allowed == 0 {
            return None;
        }
        let old = block_all_signals();
        let p = self.pending() & allowed;
        let r = if p == 0 {
            None
        } else {
            let sig = p.trailing_zeros() as i32 + 1;
            self.pending.fetch_and(!bit(sig), Ordering::AcqRel);
            let mut info = [0u64; 16];
            for (d, s) in info.iter_mut().zip(&self.info[sig as usize - 1]) {
                *d = s.load(Ordering::Relaxed);
            }
            Some((sig, info))
        };
        set_thread_mask_raw(old);
        r
    }
}

impl Default for SigQueue {
    fn default() -> Self {
        SigQueue::new()
    }
}

/// One guest thread's host-side signal state.
pub struct ThreadSignals {
    /// Signals the host delivered to this thread.
    pub queue: SigQueue,
    /// The vCPU's interrupt flag.
    pub interrupt: Arc<AtomicBool>,
}

/// Signals received on threads that are not guest threads.
pub static PROCESS_QUEUE: SigQueue = SigQueue::new();

const MAX_KICK: usize = 1024;
static KICK: [AtomicPtr<AtomicBool>; MAX_KICK] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_KICK];

thread_local! {
    static CURRENT: Cell<*const ThreadSignals> = const { Cell::new(std::ptr::null()) };
}

/// Registers a thread's `ThreadSignals` with the host handler while alive.
pub struct ThreadSignalsGuard {
    ts: Arc<ThreadSignals>,
    kick_slot: Option<usize>,
}

impl ThreadSignalsGuard {
    /// Make `ts` the calling thread's signal state.
    pub fn register(ts: Arc<ThreadSignals>) -> ThreadSignalsGuard {
        let old = block_all_signals();
        CURRENT.with(|c| c.set(Arc::as_ptr(&ts)));
        let flag = Arc::as_ptr(&ts.interrupt) as *mut AtomicBool;
        let kick_slot = KICK.iter().position(|k| {
            k.compare_exchange(std::ptr::null_mut(), flag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        set_thread_mask_raw(old);
        ThreadSignalsGuard { ts, kick_slot }
    }
    /// The registered state.
    pub fn signals(&self) -> &Arc<ThreadSignals> {
        &self.ts
    }
}

impl Drop for ThreadSignalsGuard {
    fn drop(&mut self) {
        let old = block_all_signals();
        CURRENT.with(|c| c.set(std::ptr::null()));
        if let Some(i) = self.kick_slot {
            KICK[i].store(std::ptr::null_mut(), Ordering::Release);
        }
        set_thread_mask_raw(old);
    }
}

/// After `fork`, only the calling thread exists: forget the others' kick slots.
pub fn forget_other_threads(keep: &ThreadSignalsGuard) {
    for (i, k) in KICK.iter().enumerate() {
        if Some(i) != keep.kick_slot {
            k.store(std::ptr::null_mut(), Ordering::Release);
        }
    }
}

fn record_signal(sig: i32, info: *const libc::siginfo_t) {
    let mut words = [0u64; 16];
    if !info.is_null() {
        // SAFETY: the kernel passes a valid 128-byte siginfo to an SA_SIGINFO handler.
        words = unsafe { std::ptr::read_unaligned(info as *const SigInfo) };
    }
    let ts = CURRENT.try_with(|c| c.get()).unwrap_or(std::ptr::null());
    if ts.is_null() {
        PROCESS_QUEUE.push(sig, &words);
        for k in &KICK {
            let p = k.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: registered flags stay alive while registered (the guard owns
                // an Arc and unregisters before dropping it).
                unsafe { (*p).store(true, Ordering::Release) };
            }
        }
    } else {
        // SAFETY: CURRENT points to the ThreadSignals owned by this thread's guard, which
        // clears CURRENT (with signals blocked) before releasing it.
        let ts = unsafe { &*ts };
        ts.queue.push(sig, &words);
        ts.interrupt.store(true, Ordering::Release);
    }
}

extern "C" fn on_signal(sig: i32, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let errno = std::io::Error::last_os_error().raw_os_error();
    let guest_thread = !CURRENT.try_with(|c| c.get()).unwrap_or(std::ptr::null()).is_null();
    if !guest_thread {
        // Not a guest thread (e.g. a JIT compile thread): it must not take guest signals.
        // Return with every signal blocked on this thread and queue the signal to the
        // process again, so the kernel gives it to a guest thread (or keeps it pending
        // for one in sigwait).
        // SAFETY: valid ucontext and siginfo from the kernel; the mask word is the first
        // 8 bytes of uc_sigmask, which the kernel restores on return.
        unsafe {
            let uc = &mut *(uctx as *mut libc::ucontext_t);
            *(&mut uc.uc_sigmask as *mut libc::sigset_t as *mut u64) = !SYNC_SIGNALS;
        }
        // The original siginfo can be re-queued only if it is a queued one (si_code < 0,
        // not SI_TKILL); otherwise resend as kill() from this process.
        let code = if info.is_null() {
            0
        } else {
            // SAFETY: valid siginfo from the kernel.
            unsafe { (*info).si_code }
        };
        let r = if code < 0 && code != -6 {
            syscall6(libc::SYS_rt_sigqueueinfo, [getpid() as u64, sig as u64, info as u64, 0, 0, 0])
        } else {
            -1
        };
        if r < 0 {
            syscall6(libc::SYS_kill, [getpid() as u64, sig as u64, 0, 0, 0, 0]);
        }
        if let Some(e) = errno {
            // SAFETY: errno is thread-local; restore what the interrupted code saw.
            unsafe { *libc::__errno_location() = e };
        }
        return;
    }
    record_signal(sig, info);
    // SAFETY: the kernel passes a valid ucontext; only the saved rip is read and written.
    unsafe {
        let uc = &mut *(uctx as *mut libc::ucontext_t);
        let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
        let start = &raw const bs_safe_syscall_start as u64;
        let end = &raw const bs_safe_syscall_end as u64;
        if (start..end).contains(&rip) {
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] = &raw const bs_safe_syscall_intr as i64;
        }
        if let Some(e) = errno {
            *libc::__errno_location() = e;
        }
    }
}

/// The foreign-fault hook given to `mem`: SIGSEGV/SIGBUS sent by `kill`/`tgkill`.
pub fn on_foreign_fault(sig: i32, info: *const libc::siginfo_t) {
    record_signal(sig, info);
}

/// What the host does with a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// The kernel's default action.
    Default,
    /// Ignored by the kernel.
    Ignore,
    /// Caught by `on_signal`.
    Catch,
}

const SA_RESTORER: u64 = 0x0400_0000;

#[repr(C)]
struct KSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Set the host disposition of `sig`. SIGSEGV and SIGBUS keep the memory fault handler
/// (which forwards signals sent by software through `on_foreign_fault`); SIGKILL and
/// SIGSTOP cannot be changed.
pub fn set_host_action(sig: i32, action: HostAction) {
    if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGSEGV | libc::SIGBUS) {
        return;
    }
    if let Some(a) = LAST_HOST_ACTION.get(sig as usize) {
        a.store(action as u8 + 1, Ordering::Relaxed);
    }
    let handler = match action {
        HostAction::Default => libc::SIG_DFL,
        HostAction::Ignore => libc::SIG_IGN,
        HostAction::Catch => on_signal as *const () as usize,
    };
    let sa = KSigaction {
        handler,
        flags: libc::SA_SIGINFO as u64 | SA_RESTORER,
        restorer: bs_sig_restorer as *const () as usize,
        mask: !0,
    };
    syscall6(libc::SYS_rt_sigaction, [sig as u64, &sa as *const _ as u64, 0, 8, 0, 0]);
}

/// The host action last set per signal (`HostAction as u8 + 1`; 0 = never set).
static LAST_HOST_ACTION: [std::sync::atomic::AtomicU8; 65] =
    [const { std::sync::atomic::AtomicU8::new(0) }; 65];

/// The host C library installs its own handlers for the two signals it reserves for
/// threads (32: thread cancellation, 33: set*id broadcast) when the process creates its
/// first thread. Those signals belong to the guest here (its libc uses them the same
/// way), so after blockscope creates a thread, set them back to what the guest asked.
pub fn reassert_thread_signals() {
    for sig in [32, 33] {
        let action = match LAST_HOST_ACTION[sig].load(Ordering::Relaxed) {
            1 => HostAction::Default,
            2 => HostAction::Ignore,
            3 => HostAction::Catch,
            _ => continue,
        };
        set_host_action(sig as i32, action);
    }
}

/// Make the host C library's first-thread set-up happen now, before the guest's signal
/// actions are applied (see `reassert_thread_signals`): start and join a thread.
pub fn settle_host_thread_setup() {
    let _ =
        std::thread::Builder::new().name("blockscope-init".into()).spawn(|| {}).map(|h| h.join());
}

/// Whether SIGPIPE was ignored when the process started, captured by an ELF constructor
/// before the Rust runtime sets SIGPIPE to SIG_IGN for itself.
static SIGPIPE_IGNORED_AT_START: AtomicBool = AtomicBool::new(false);

extern "C" fn capture_startup_dispositions() {
    SIGPIPE_IGNORED_AT_START.store(host_ignored(libc::SIGPIPE), Ordering::SeqCst);
}

#[used]
#[link_section = ".init_array"]
static CAPTURE_STARTUP_DISPOSITIONS: extern "C" fn() = capture_startup_dispositions;

/// Whether `sig` was ignored when this process was executed (ignored dispositions
/// survive `execve`, so the guest inherits them).
pub fn ignored_at_exec(sig: i32) -> bool {
    if sig == libc::SIGPIPE {
        SIGPIPE_IGNORED_AT_START.load(Ordering::SeqCst)
    } else {
        host_ignored(sig)
    }
}

/// The current host disposition of `sig`: whether it is ignored.
pub fn host_ignored(sig: i32) -> bool {
    let mut old = KSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    let r = syscall6(libc::SYS_rt_sigaction, [sig as u64, 0, &mut old as *mut _ as u64, 8, 0, 0]);
    r == 0 && old.handler == libc::SIG_IGN
}

fn set_thread_mask_raw(mask: u64) -> u64 {
    let mut old = 0u64;
    syscall6(
        libc::SYS_rt_sigprocmask,
        [
            libc::SIG_SETMASK as u64,
            &mask as *const u64 as u64,
            &mut old as *mut u64 as u64,
            8,
            0,
            0,
        ],
    );
    old
}

/// For helper threads that are not guest threads (the JIT compile thread): block every
/// signal for good, so guest signals go to guest threads.
pub fn block_signals_in_helper_thread() {
    block_all_signals();
    // The thread exists: the host libc's set-up for it has run (in the creating thread).
    reassert_thread_signals();
}

/// Block every host signal on this thread; returns the previous mask.
pub fn block_all_signals() -> u64 {
    set_thread_mask_raw(!SYNC_SIGNALS)
}

/// Mirror the guest mask `mask` on the host thread (never blocking `SYNC_SIGNALS`).
pub fn set_host_mask(mask: u64) {
    set_thread_mask_raw(mask & !SYNC_SIGNALS);
}

/// The calling thread's host mask.
pub fn host_mask() -> u64 {
    let mut old = 0u64;
    syscall6(
        libc::SYS_rt_sigprocmask,
        [libc::SIG_BLOCK as u64, 0, &mut old as *mut u64 as u64, 8, 0, 0],
    );
    old
}

/// Die of `sig` like a process without a handler: default action, unblocked, raised at
/// this thread. Falls back to exit status 128+sig if the signal does not kill.
pub fn die_with_signal(sig: i32) -> ! {
    let sa = KSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    syscall6(libc::SYS_rt_sigaction, [sig as u64, &sa as *const _ as u64, 0, 8, 0, 0]);
    let m = bit(sig);
    syscall6(
        libc::SYS_rt_sigprocmask,
        [libc::SIG_UNBLOCK as u64, &m as *const u64 as u64, 0, 8, 0, 0],
    );
    syscall6(libc::SYS_tgkill, [getpid() as u64, gettid() as u64, sig as u64, 0, 0, 0]);
    exit_group(128 + sig)
}

/// Send `sig` to host thread `tid` of this process.
pub fn tgkill_self(tid: i32, sig: i32) -> i64 {
    syscall6(libc::SYS_tgkill, [getpid() as u64, tid as u64, sig as u64, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_syscall_runs_and_is_interruptible() {
        let flag = AtomicBool::new(false);
        assert_eq!(safe_syscall(&flag, libc::SYS_getpid, [0; 6]) as i32, getpid());
        flag.store(true, Ordering::SeqCst);
        assert_eq!(safe_syscall(&flag, libc::SYS_getpid, [0; 6]), ERESTART_BEFORE);
    }

    #[test]
    fn queue_takes_lowest_allowed() {
        let q = SigQueue::new();
        let mut info = [0u64; 16];
        info[0] = 10;
        q.push(10, &info);
        info[0] = 2;
        q.push(2, &info);
        assert_eq!(q.take(!bit(2)).map(|(s, i)| (s, i[0])), Some((10, 10)));
        assert_eq!(q.take(!0).map(|(s, i)| (s, i[0])), Some((2, 2)));
        assert_eq!(q.take(!0), None);
    }
}
