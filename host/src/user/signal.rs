//! Guest signals: actions, masks, alternate stacks, frames and delivery.
//!
//! How host signals reach the guest. The host signal mask of each guest thread mirrors the
//! guest's mask (except SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP, which must stay
//! deliverable for the emulator's own fault handling), so the host kernel picks the
//! receiving thread and keeps blocked signals pending exactly as it would for the guest;
//! `sigtimedwait`, `signalfd` and `sigpending` then work by passing them through. The host
//! disposition mirrors the guest action: a guest handler, or a default action that
//! terminates, is caught by `sys::on_signal` (which queues the signal and raises the
//! vCPU's interrupt flag); SIG_IGN and the other default actions (ignore, stop, continue)
//! are left to the host kernel, so e.g. libc::SIGCHLD never interrupts a syscall.
//!
//! Delivery happens between blocks (`Exit::Interrupted`) or right before a syscall (which
//! is then rewound and re-run after the handler, as if the signal came just before it). A
//! syscall that the host interrupted (`-EINTR`, or `sys::ERESTART_BEFORE` when the signal
//! came before the kernel was entered) is restarted after the handler when the kernel
//! would restart it: always if it had not started, with SA_RESTART for the restartable
//! ones (`restart_kind`), and when no handler ran.
//!
//! Synchronous faults (`Exit::Fault`) become the signal Linux sends for the exception:
//! #PF → SIGSEGV (SEGV_MAPERR / SEGV_ACCERR from the error code's present bit, si_addr =
//! the address; `mem::PF_BUS` → SIGBUS/BUS_ADRERR), #GP and INT n → SIGSEGV/SI_KERNEL,
//! #UD → SIGILL/ILL_ILLOPN, #DE → SIGFPE/FPE_INTDIV, INT3 → SIGTRAP, #MF/#XM → SIGFPE with
//! the code of the first unmasked exception, #AC and #SS → SIGBUS. A fault whose signal is
//! blocked or ignored kills the process, as the kernel's `force_sig` does.
//!
//! The frame is the kernel's x86-64 `rt_sigframe`: return address (the guest's
//! `sa_restorer`), `ucontext` (flags, link, `uc_stack`, `sigcontext` with the general
//! registers, RFLAGS from the lazy flags, error code, trap number, old mask, CR2 and a
//! pointer to a 512-byte FXSAVE-format area, then the old mask) and `siginfo`. `%rsp` is
//! 16-byte aligned minus 8 at handler entry, as after a call.

use crate::cpu::{rflags, CpuState, Fault, X87State};
use crate::frontend::{full_rflags, set_full_rflags};
use crate::mem::{GuestMemory, PF_BUS};
use crate::user::process::Thread;
use crate::user::sys::{self, bit, HostAction, SigInfo};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// `SIG_DFL`.
pub const SIG_DFL: u64 = 0;
/// `SIG_IGN`.
pub const SIG_IGN: u64 = 1;
/// `SA_RESTORER`.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// `SA_ONSTACK`.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// `SA_RESTART`.
pub const SA_RESTART: u64 = 0x1000_0000;
/// `SA_NODEFER`.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// `SA_RESETHAND`.
pub const SA_RESETHAND: u64 = 0x8000_0000;
/// `SS_ONSTACK`.
pub const SS_ONSTACK: i32 = 1;
/// `SS_DISABLE`.
pub const SS_DISABLE: i32 = 2;
/// `SS_AUTODISARM`.
pub const SS_AUTODISARM: i32 = 1 << 31;

/// Signals that can be neither caught nor blocked.
pub const UNBLOCKABLE: u64 = bit(libc::SIGKILL) | bit(libc::SIGSTOP);

/// A guest `struct kernel_sigaction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Handler address, SIG_DFL or SIG_IGN.
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// Return trampoline.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// What a signal does by default (signal(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Terminate.
    Term,
    /// Terminate and dump core.
    Core,
    /// Ignore.
    Ign,
    /// Stop.
    Stop,
    /// Continue.
    Cont,
}

/// The default action of `sig`.
pub fn default_action(sig: i32) -> DefaultAction {
    use DefaultAction::*;
    match sig {
        libc::SIGQUIT
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGSEGV
        | libc::SIGXCPU
        | libc::SIGXFSZ
        | libc::SIGSYS => Core,
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH => Ign,
        libc::SIGCONT => Cont,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Stop,
        _ => Term,
    }
}

/// The process-wide signal actions.
pub struct Actions(Mutex<[Action; 65]>);

impl Actions {
    /// Actions as inherited over exec: ignored stays ignored, everything else default.
    pub fn inherit() -> Actions {
        let mut a = [Action::default(); 65];
        for (sig, act) in a.iter_mut().enumerate().skip(1) {
            if sys::ignored_at_exec(sig as i32) {
                act.handler = SIG_IGN;
            }
        }
        Actions(Mutex::new(a))
    }
    /// The action of `sig`.
    pub fn get(&self, sig: i32) -> Action {
        self.0.lock().unwrap_or_else(|e| e.into_inner())[sig as usize]
    }
    /// Replace the action of `sig`, returning the old one, and mirror it on the host.
    pub fn set(&self, sig: i32, act: Action) -> Action {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let old = g[sig as usize];
        g[sig as usize] = act;
        sys::set_host_action(sig, host_action(sig, &act));
        old
    }
    /// Apply every action to the host (at startup).
    pub fn apply_all(&self) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (sig, act) in g.iter().enumerate().skip(1) {
            sys::set_host_action(sig as i32, host_action(sig as i32, act));
        }
    }
}

fn host_action(sig: i32, act: &Action) -> HostAction {
    match act.handler {
        SIG_IGN => HostAction::Ignore,
        SIG_DFL => match default_action(sig) {
            DefaultAction::Term | DefaultAction::Core => HostAction::Catch,
            _ => HostAction::Default,
        },
        _ => HostAction::Catch,
    }
}

/// A guest alternate signal stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AltStack {
    /// Base.
    pub sp: u64,
    /// Size (0 = disabled).
    pub size: u64,
    /// SS_AUTODISARM given.
    pub autodisarm: bool,
}

impl AltStack {
    /// Whether `sp` lies on this stack.
    pub fn on(&self, sp: u64) -> bool {
        self.size != 0 && sp > self.sp && sp - self.sp <= self.size
    }
    /// `ss_flags` as `sigaltstack` reports them for a thread at `sp`.
    pub fn flags(&self, sp: u64) -> i32 {
        if self.size == 0 {
            SS_DISABLE
        } else if self.on(sp) {
            SS_ONSTACK
        } else {
            0
        }
    }
}

/// How a syscall interrupted by a signal is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartKind {
    /// Always (it never reached the kernel).
    Always,
    /// If the handler has SA_RESTART, or no handler ran (ERESTARTSYS).
    Sys,
    /// Only if no handler ran (ERESTARTNOHAND, ERESTART_RESTARTBLOCK).
    NoHandler,
    /// Never: `-EINTR` stands.
    Never,
}

/// An interrupted syscall waiting for the delivery decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restart {
    /// Syscall number.
    pub nr: u64,
    /// Kind.
    pub kind: RestartKind,
}

/// Per-thread guest signal state.
#[derive(Clone, Debug, Default)]
pub struct ThreadSig {
    /// The guest's blocked mask.
    pub blocked: u64,
    /// The mask to restore after a temporary one (sigsuspend, ppoll, pselect6).
    pub saved_mask: Option<u64>,
    /// Alternate stack.
    pub alt: AltStack,
    /// A syscall interrupted by a signal.
    pub restart: Option<Restart>,
}

/// Restart policy of an interrupted syscall, as the kernel decides it.
pub fn restart_kind(nr: u64, args: &[u64; 6]) -> RestartKind {
    match nr as i64 {
        libc::SYS_read
        | libc::SYS_write
        | libc::SYS_readv
        | libc::SYS_writev
        | libc::SYS_pread64
        | libc::SYS_pwrite64
        | libc::SYS_preadv
        | libc::SYS_pwritev
        | libc::SYS_preadv2
        | libc::SYS_pwritev2
        | libc::SYS_open
        | libc::SYS_openat
        | libc::SYS_creat
        | libc::SYS_wait4
        | libc::SYS_waitid
        | libc::SYS_accept
        | libc::SYS_accept4
        | libc::SYS_recvfrom
        | libc::SYS_sendto
        | libc::SYS_recvmsg
        | libc::SYS_sendmsg
        | libc::SYS_recvmmsg
        | libc::SYS_sendmmsg
        | libc::SYS_connect
        | libc::SYS_flock
        | libc::SYS_fcntl
        | libc::SYS_ioctl
        | libc::SYS_splice
        | libc::SYS_tee
        | libc::SYS_sendfile
        | libc::SYS_msgrcv
        | libc::SYS_msgsnd
        | libc::SYS_getrandom
        | libc::SYS_fsync
        | libc::SYS_fdatasync
        | libc::SYS_copy_file_range
        | libc::SYS_openat2 => RestartKind::Sys,
        libc::SYS_futex => {
            // libc::FUTEX_WAIT with a timeout restarts through restart_block (no handler only);
            // without one it is ERESTARTSYS.
            let op = args[1] as i32 & 0x7f;
            if (op == libc::FUTEX_WAIT || op == libc::FUTEX_WAIT_BITSET) && args[3] == 0 {
                RestartKind::Sys
            } else {
                RestartKind::NoHandler
            }
        }
        libc::SYS_nanosleep
        | libc::SYS_clock_nanosleep
        | libc::SYS_poll
        | libc::SYS_pause
        | libc::SYS_rt_sigsuspend => RestartKind::NoHandler,
        _ => RestartKind::Never,
    }
}

// ---- siginfo --------------------------------------------------------------------------

/// `si_code` values (asm-generic/siginfo.h).
#[allow(missing_docs, reason = "names are the ABI's own")]
pub mod si {
    pub const SEGV_MAPERR: i32 = 1;
    pub const SEGV_ACCERR: i32 = 2;
    pub const ILL_ILLOPN: i32 = 2;
    pub const FPE_INTDIV: i32 = 1;
    pub const FPE_FLTDIV: i32 = 3;
    pub const FPE_FLTOVF: i32 = 4;
    pub const FPE_FLTUND: i32 = 5;
    pub const FPE_FLTRES: i32 = 6;
    pub const FPE_FLTINV: i32 = 7;
    pub const BUS_ADRALN: i32 = 1;
    pub const BUS_ADRERR: i32 = 2;
    pub const TRAP_BRKPT: i32 = 1;
    pub const SI_KERNEL: i32 = 0x80;
}

/// A siginfo for a synchronous fault.
pub fn fault_info(sig: i32, code: i32, addr: u64) -> SigInfo {
    let mut i = [0u64; 16];
    i[0] = sig as u32 as u64; // si_signo, si_errno = 0
    i[1] = code as u32 as u64; // si_code
    i[2] = addr; // si_addr
    i
}

/// What `fault` turns into: signal, si_code, si_addr, trap number, error code. As in
/// the kernel, a page fault on an address the guest has mapped is SEGV_ACCERR and one on
/// an unmapped address SEGV_MAPERR (the error code's present bit is not enough: a page
/// never touched is not present in the page tables even though it is mapped).
pub fn classify(fault: Fault, pc: u64, cpu: &CpuState, mapped: bool) -> (i32, i32, u64, u64, u64) {
    use si::SI_KERNEL;
    match fault {
        Fault::PageFault { addr, code } if code & PF_BUS != 0 => {
            (libc::SIGBUS, si::BUS_ADRERR, addr, 14, (code & !PF_BUS) as u64)
        }
        Fault::PageFault { addr, code } => {
            let present = mapped || code & crate::cpu::pf::PRESENT != 0;
            let c = if present { si::SEGV_ACCERR } else { si::SEGV_MAPERR };
            (libc::SIGSEGV, c, addr, 14, code as u64)
        }
        Fault::GeneralProtection(e) => (libc::SIGSEGV, SI_KERNEL, 0, 13, e as u64),
        Fault::SoftInt(n) => (libc::SIGSEGV, SI_KERNEL, 0, 13, ((n as u64) << 3) | 2),
        Fault::InvalidOpcode => (libc::SIGILL, si::ILL_ILLOPN, pc, 6, 0),
        Fault::DivideError => (libc::SIGFPE, si::FPE_INTDIV, pc, 0, 0),
        Fault::Overflow => (libc::SIGSEGV, SI_KERNEL, 0, 4, 0),
        Fault::Breakpoint => (libc::SIGTRAP, SI_KERNEL, 0, 3, 0),
        Fault::Debug => (libc::SIGTRAP, si::TRAP_BRKPT, pc, 1, 0),
        Fault::X87 => {
            let st = cpu.x87.fsw as u32 & !(cpu.x87.fcw as u32 & 0x3f);
            (libc::SIGFPE, fpe_code(st), pc, 16, 0)
        }
        Fault::SimdFp => {
            let m = cpu.mxcsr();
            let st = m & !(m >> 7) & 0x3f;
            (libc::SIGFPE, fpe_code(st), pc, 19, 0)
        }
        Fault::AlignmentCheck => (libc::SIGBUS, si::BUS_ADRALN, pc, 17, 0),
        Fault::StackFault(e) => (libc::SIGBUS, SI_KERNEL, 0, 12, e as u64),
        Fault::DeviceNotAvailable => (libc::SIGSEGV, SI_KERNEL, 0, 7, 0),
    }
}

fn fpe_code(st: u32) -> i32 {
    if st & 0x01 != 0 {
        si::FPE_FLTINV
    } else if st & 0x04 != 0 {
        si::FPE_FLTDIV
    } else if st & 0x08 != 0 {
        si::FPE_FLTOVF
    } else if st & 0x12 != 0 {
        si::FPE_FLTUND
    } else if st & 0x20 != 0 {
        si::FPE_FLTRES
    } else {
        0
    }
}

// ---- FXSAVE area --------------------------------------------------------------------------

/// The FXSAVE image of a CPU state's x87/SSE registers.
pub fn fxsave(cpu: &CpuState) -> [u8; 512] {
    let x = &cpu.x87;
    let mut b = [0u8; 512];
    let fsw = (x.fsw & !0x3800) | ((x.top as u16 & 7) << 11);
    b[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&fsw.to_le_bytes());
    b[4] = x.ftw;
    b[6..8].copy_from_slice(&x.fop.to_le_bytes());
    b[8..16].copy_from_slice(&x.fip.to_le_bytes());
    b[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    b[24..28].copy_from_slice(&cpu.mxcsr().to_le_bytes());
    b[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
    for j in 0..8 {
        let phys = (x.top as usize + j) & 7;
        b[32 + 16 * j..32 + 16 * j + 10].copy_from_slice(&x.st[phys][..10]);
    }
    for n in 0..16 {
        b[160 + 16 * n..176 + 16 * n].copy_from_slice(&cpu.xmm(n).to_le_bytes());
    }
    b
}

/// Load x87/SSE registers from an FXSAVE image.
pub fn fxrstor(cpu: &mut CpuState, b: &[u8; 512]) {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let fsw = u16_at(2);
    let top = ((fsw >> 11) & 7) as u8;
    let mut x = X87State {
        fcw: u16_at(0),
        fsw: fsw & !0x3800,
        top,
        ftw: b[4],
        fop: u16_at(6),
        fip: u64_at(8),
        fdp: u64_at(16),
        ..X87State::default()
    };
    for j in 0..8 {
        let phys = (top as usize + j) & 7;
        x.st[phys][..10].copy_from_slice(&b[32 + 16 * j..32 + 16 * j + 10]);
    }
    cpu.x87 = x;
    let mxcsr = u32::from_le_bytes([b[24], b[25], b[26], b[27]]) & 0xffff;
    cpu.set_slot(crate::cpu::slot::MXCSR, mxcsr as u64);
    for n in 0..16 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[160 + 16 * n..176 + 16 * n]);
        cpu.set_xmm(n, u128::from_le_bytes(a));
    }
}

// ---- frames -------------------------------------------------------------------------------

/// `sizeof(struct rt_sigframe)` on x86-64: return address, ucontext (304), siginfo (128).
pub const FRAME_SIZE: u64 = 8 + 304 + 128;
const UC: u64 = 8;
const UC_STACK: u64 = UC + 16;
const MCTX: u64 = UC + 40;
const UC_SIGMASK: u64 = UC + 296;
const INFO: u64 = UC + 304;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

/// sigcontext gregs order → our GPR numbers (r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp).
const GREG_ORDER: [usize; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 3, 2, 0, 1, 4];

/// Trap details stored in the sigcontext of a synchronous fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapInfo {
    /// Vector.
    pub trapno: u64,
    /// Error code.
    pub err: u64,
    /// CR2 (page-fault address).
    pub cr2: u64,
}

/// Build a frame for `sig` and enter its handler. Fails if the stack is not writable.
fn setup_frame(
    t: &mut Thread,
    sig: i32,
    info: &SigInfo,
    act: &Action,
    trap: TrapInfo,
) -> Result<(), Fault> {
    let old_mask = t.sig.saved_mask.take().unwrap_or(t.sig.blocked);
    let cpu = &*t.vcpu.cpu;
    let orig_sp = cpu.gpr(4);
    let alt = t.sig.alt;
    let mut sp = orig_sp.wrapping_sub(128);
    if act.flags & SA_ONSTACK != 0 && alt.size != 0 && !alt.on(sp) {
        sp = alt.sp + alt.size;
    }
    let fp = (sp - 512) & !63;
    let frame = ((fp - FRAME_SIZE) & !15) - 8;

    let mut img = vec![0u8; FRAME_SIZE as usize];
    let put = |img: &mut Vec<u8>, off: u64, v: u64| {
        img[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(&mut img, 0, act.restorer);
    put(&mut img, UC, UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
    put(&mut img, UC_STACK, alt.sp);
    put(&mut img, UC_STACK + 8, alt.flags(orig_sp) as u32 as u64);
    put(&mut img, UC_STACK + 16, alt.size);
    for (k, g) in GREG_ORDER.iter().enumerate() {
        put(&mut img, MCTX + 8 * k as u64, cpu.gpr(*g));
    }
    put(&mut img, MCTX + 8 * 16, cpu.rip());
    put(&mut img, MCTX + 8 * 17, full_rflags(cpu));
    put(&mut img, MCTX + 8 * 18, 0x33 | (0x2b << 48));
    put(&mut img, MCTX + 8 * 19, trap.err);
    put(&mut img, MCTX + 8 * 20, trap.trapno);
    put(&mut img, MCTX + 8 * 21, old_mask);
    put(&mut img, MCTX + 8 * 22, trap.cr2);
    put(&mut img, MCTX + 8 * 23, fp);
    put(&mut img, UC_SIGMASK, old_mask);
    for (k, w) in info.iter().enumerate() {
        put(&mut img, INFO + 8 * k as u64, *w);
    }
    let fx = fxsave(cpu);
    t.vcpu.mem.write_bytes(fp, &fx)?;
    t.vcpu.mem.write_bytes(frame, &img)?;

    if alt.autodisarm && act.flags & SA_ONSTACK != 0 {
        t.sig.alt = AltStack::default();
    }
    let cpu = &mut *t.vcpu.cpu;
    cpu.set_gpr(4, frame);
    cpu.set_gpr(7, sig as u64);
    cpu.set_gpr(6, frame + INFO);
    cpu.set_gpr(2, frame + UC);
    cpu.set_gpr(0, 0);
    cpu.set_rip(act.handler);
    let fl = full_rflags(cpu) & !(rflags::DF | rflags::TF | rflags::RF);
    set_full_rflags(cpu, fl);
    // The handler starts with a fresh FPU/SSE state, as on Linux.
    cpu.x87 = X87State::default();
    cpu.set_slot(crate::cpu::slot::MXCSR, 0x1f80);
    for n in 0..16 {
        cpu.set_xmm(n, 0);
    }

    let mut blocked = t.sig.blocked | act.mask;
    if act.flags & SA_NODEFER == 0 {
        blocked |= bit(sig);
    }
    set_blocked(t, blocked);
    if act.flags & SA_RESETHAND != 0 {
        t.proc.actions.set(sig, Action::default());
    }
    Ok(())
}

/// `rt_sigreturn`: restore the state saved by `setup_frame`. On a bad frame the thread
/// gets SIGSEGV.
pub fn sigreturn(t: &mut Thread) {
    let frame = t.vcpu.cpu.gpr(4).wrapping_sub(8);
    let mut img = vec![0u8; FRAME_SIZE as usize];
    if t.vcpu.mem.read_bytes(frame, &mut img).is_err() {
        force_sigsegv(t);
        return;
    }
    let get = |off: u64| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&img[off as usize..off as usize + 8]);
        u64::from_le_bytes(a)
    };
    let fp = get(MCTX + 8 * 23);
    let mut fx = [0u8; 512];
    if fp != 0 && t.vcpu.mem.read_bytes(fp, &mut fx).is_err() {
        force_sigsegv(t);
        return;
    }
    let cpu = &mut *t.vcpu.cpu;
    for (k, g) in GREG_ORDER.iter().enumerate() {
        cpu.set_gpr(*g, get(MCTX + 8 * k as u64));
    }
    cpu.set_rip(get(MCTX + 8 * 16));
    const FIX: u64 = rflags::AC
        | rflags::OF
        | rflags::DF
        | rflags::TF
        | rflags::SF
        | rflags::ZF
        | rflags::AF
        | rflags::PF
        | rflags::CF
        | rflags::RF;
    let fl = (full_rflags(cpu) & !FIX) | (get(MCTX + 8 * 17) & FIX);
    set_full_rflags(cpu, fl);
    if fp != 0 {
        fxrstor(cpu, &fx);
    } else {
        cpu.x87 = X87State::default();
        cpu.set_slot(crate::cpu::slot::MXCSR, 0x1f80);
    }
    // Restore the alternate stack as sigaltstack would (errors ignored, like the kernel).
    let ss_sp = get(UC_STACK);
    let ss_flags = get(UC_STACK + 8) as i32;
    let ss_size = get(UC_STACK + 16);
    let sp = cpu.gpr(4);
    if !t.sig.alt.on(sp) {
        t.sig.alt = if ss_flags & SS_DISABLE != 0 {
            AltStack::default()
        } else {
            AltStack { sp: ss_sp, size: ss_size, autodisarm: ss_flags & SS_AUTODISARM != 0 }
        };
    }
    set_blocked(t, get(UC_SIGMASK));
}

/// Change the guest mask (and the host mirror); raise the interrupt flag if a queued
/// signal became deliverable.
pub fn set_blocked(t: &mut Thread, mask: u64) {
    let mask = mask & !UNBLOCKABLE;
    t.sig.blocked = mask;
    sys::set_host_mask(mask);
    if deliverable(t, mask) {
        t.vcpu.interrupt.store(true, Ordering::Release);
    }
}

/// Whether a queued signal is deliverable under `mask`.
pub fn deliverable(t: &Thread, mask: u64) -> bool {
    (t.signals.signals().queue.pending() | sys::PROCESS_QUEUE.pending()) & !mask != 0
}

/// Take a queued signal not in `mask`.
pub fn take_queued(t: &Thread, mask: u64) -> Option<(i32, SigInfo)> {
    t.signals.signals().queue.take(!mask).or_else(|| sys::PROCESS_QUEUE.take(!mask))
}

fn apply_restart(t: &mut Thread, handler: Option<&Action>) {
    let Some(r) = t.sig.restart.take() else { return };
    let again = match r.kind {
        RestartKind::Always => true,
        RestartKind::Sys => handler.is_none_or(|a| a.flags & SA_RESTART != 0),
        RestartKind::NoHandler => handler.is_none(),
        RestartKind::Never => false,
    };
    if again {
        let cpu = &mut *t.vcpu.cpu;
        cpu.set_rip(cpu.rip() - 2);
        cpu.set_gpr(0, r.nr);
    }
}

/// `Exit::Interrupted`: deliver one pending signal (more are handled on the next exits).
pub fn deliver(t: &mut Thread) {
    t.vcpu.interrupt.store(false, Ordering::Release);
    let taken = take_queued(t, t.sig.blocked);
    let Some((sig, info)) = taken else {
        apply_restart(t, None);
        if let Some(m) = t.sig.saved_mask.take() {
            set_blocked(t, m);
        }
        return;
    };
    let act = t.proc.actions.get(sig);
    let mut handled = false;
    match act.handler {
        SIG_IGN => apply_restart(t, None),
        SIG_DFL => {
            apply_restart(t, None);
            default_act(t, sig);
        }
        _ => {
            apply_restart(t, Some(&act));
            if t.proc.config.strace {
                t.proc.strace_line(&format!(
                    "--- {} {{si_code={}}} ---",
                    sig_name(sig),
                    info[1] as i32
                ));
            }
            if setup_frame(t, sig, &info, &act, TrapInfo::default()).is_err() {
                force_sigsegv(t);
            }
            handled = true;
        }
    }
    if !handled {
        if let Some(m) = t.sig.saved_mask.take() {
            set_blocked(t, m);
        }
    }
    if deliverable(t, t.sig.blocked) {
        t.vcpu.interrupt.store(true, Ordering::Release);
    }
}

fn default_act(t: &mut Thread, sig: i32) {
    match default_action(sig) {
        DefaultAction::Term | DefaultAction::Core => t.proc.die(sig),
        DefaultAction::Stop => {
            sys::tgkill_self(t.tid, libc::SIGSTOP);
        }
        DefaultAction::Ign | DefaultAction::Cont => {}
    }
}

/// The frame could not be written (or read back): SIGSEGV, fatal if it was SIGSEGV's own.
fn force_sigsegv(t: &mut Thread) {
    t.proc.die(libc::SIGSEGV);
}

/// `Exit::Fault`: turn the exception into its signal and deliver it now.
pub fn on_fault(t: &mut Thread, fault: Fault, pc: u64, next: u64) {
    let mapped = match fault {
        Fault::PageFault { addr, .. } => t.proc.shared.is_mapped(addr),
        _ => false,
    };
    let (sig, code, addr, trapno, err) = classify(fault, pc, &t.vcpu.cpu, mapped);
    if matches!(fault, Fault::Breakpoint | Fault::Debug | Fault::Overflow) {
        t.vcpu.cpu.set_rip(next);
    } else {
        t.vcpu.cpu.set_rip(pc);
    }
    let act = t.proc.actions.get(sig);
    let blocked = t.sig.blocked & bit(sig) != 0;
    if t.proc.config.strace {
        t.proc.strace_line(&format!(
            "--- {} {{si_code={code}, si_addr={addr:#x}}} at pc {pc:#x} ({fault}) ---",
            sig_name(sig)
        ));
    }
    if act.handler > SIG_IGN && !blocked {
        let info = fault_info(sig, code, addr);
        let cr2 = if let Fault::PageFault { addr, .. } = fault { addr } else { 0 };
        if setup_frame(t, sig, &info, &act, TrapInfo { trapno, err, cr2 }).is_err() {
            force_sigsegv(t);
        }
        return;
    }
    if sig == libc::SIGILL {
        if let Some(line) = t.proc.unimplemented_line(pc) {
            sys::write_stderr(&line);
        }
    }
    t.proc.die(sig);
}

/// A short name for a signal number.
pub fn sig_name(sig: i32) -> String {
    const N: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "libc::SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match sig {
        0..=31 => N[sig as usize].to_string(),
        _ => format!("SIGRT{}", sig - 32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fxsave_round_trip() {
        let mut c = CpuState::new_user();
        c.x87.top = 5;
        c.x87.fcw = 0x027f;
        c.x87.ftw = 0xe0;
        for i in 0..8 {
            c.x87.st[i][0] = i as u8 + 1;
            c.x87.st[i][9] = 0x40;
        }
        c.set_xmm(3, 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        c.set_slot(crate::cpu::slot::MXCSR, 0x1fa0);
        let img = fxsave(&c);
        // ST(0) is physical register TOP.
        assert_eq!(img[32], 6);
        assert_eq!(u16::from_le_bytes([img[2], img[3]]) >> 11, 5);
        let mut d = CpuState::new_user();
        fxrstor(&mut d, &img);
        assert_eq!(d.x87, c.x87);
        assert_eq!(d.xmm(3), c.xmm(3));
        assert_eq!(d.mxcsr(), 0x1fa0);
    }

    #[test]
    fn faults_map_to_linux_signals() {
        let c = CpuState::new_user();
        let pf = Fault::PageFault { addr: 0x10, code: 4 };
        assert_eq!(classify(pf, 1, &c, false).0, libc::SIGSEGV);
        assert_eq!(classify(pf, 1, &c, false).1, si::SEGV_MAPERR);
        let pf = Fault::PageFault { addr: 0x10, code: 7 };
        assert_eq!(classify(pf, 1, &c, false).1, si::SEGV_ACCERR);
        let bus = Fault::PageFault { addr: 0x10, code: 4 | PF_BUS };
        assert_eq!(classify(bus, 1, &c, false).0, libc::SIGBUS);
        assert_eq!(
            classify(Fault::InvalidOpcode, 9, &c, false),
            (libc::SIGILL, si::ILL_ILLOPN, 9, 6, 0)
        );
        assert_eq!(classify(Fault::DivideError, 9, &c, false).0, libc::SIGFPE);
        assert_eq!(classify(Fault::Breakpoint, 9, &c, false).0, libc::SIGTRAP);
        assert_eq!(classify(Fault::GeneralProtection(0), 9, &c, false).0, libc::SIGSEGV);
    }

    #[test]
    fn frame_size_matches_the_kernel_layout() {
        // 8 (pretcode) + ucontext 304 + siginfo 128; the sigcontext is 256 bytes.
        assert_eq!(FRAME_SIZE, 440);
        assert_eq!(UC_SIGMASK - MCTX, 256);
    }
}
