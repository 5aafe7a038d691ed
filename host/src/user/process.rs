//! The guest process (shared by its threads) and one guest thread's run loop.

use crate::config::Config;
use crate::cpu::CpuState;
use crate::exec::{Engine, Exit, Vcpu};
use crate::mem::{Direct, DirectShared, GuestMemory};
use crate::user::signal::{self, Actions, ThreadSig};
use crate::user::sys::{self, SigQueue, ThreadSignals, ThreadSignalsGuard};
use crate::user::syscall;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The program break.
#[derive(Clone, Copy, Debug, Default)]
pub struct Brk {
    /// Initial break (page after the program's highest segment).
    pub start: u64,
    /// Current break.
    pub cur: u64,
}

/// State shared by every thread of the guest process.
pub struct Process {
    /// The engine (TB cache).
    pub engine: Arc<Engine>,
    /// Guest address-space description.
    pub shared: Arc<DirectShared>,
    /// Configuration (also re-used when the guest execs another program).
    pub config: Config,
    /// Canonical path of the running program (`/proc/self/exe`).
    pub exe: PathBuf,
    /// Signal actions.
    pub actions: Actions,
    /// The program break.
    pub brk: Mutex<Brk>,
    /// Guest threads alive.
    pub live_threads: AtomicUsize,
    /// Host tid of the process's initial thread (its exit must not end the process).
    pub main_tid: AtomicI32,
}

impl Process {
    /// End the process with `code` (exit_group).
    pub fn exit(&self, code: i32) -> ! {
        // Plugins flush; one that failed while running makes the exit status its own.
        let code = self.engine.plugins.on_exit().map_or_else(|e| e.exit_status(), |()| code);
        self.print_stats();
        if self.config.strace {
            self.strace_line(&format!("+++ exited with {} +++", code & 0xff));
        }
        sys::exit_group(code)
    }

    /// End the process by signal `sig`, as the kernel's default action does.
    pub fn die(&self, sig: i32) -> ! {
        let _ = self.engine.plugins.on_exit();
        self.print_stats();
        if self.config.strace {
            self.strace_line(&format!("+++ killed by {} +++", signal::sig_name(sig)));
        }
        sys::die_with_signal(sig)
    }

    /// `--stats`: the engine's counters on stderr.
    fn print_stats(&self) {
        if self.config.stats {
            sys::write_stderr(&format!("==blockscope== stats\n{}", self.engine.stats()));
        }
    }

    /// Print one strace-style line to stderr, prefixed with the thread id.
    pub fn strace_line(&self, s: &str) {
        sys::write_stderr(&format!("[{}] {s}\n", sys::gettid()));
    }

    /// The "unimplemented instruction" line for a #UD at `pc`, if no lifter handled the
    /// instruction there.
    pub fn unimplemented_line(&self, pc: u64) -> Option<String> {
        use iced_x86::Formatter;
        let tb = self.engine.get(pc)?;
        if tb.unimplemented != Some(pc) {
            return None;
        }
        let i = tb.insns.first()?;
        let mut s = String::new();
        iced_x86::IntelFormatter::new().format(i, &mut s);
        Some(format!("blockscope: unimplemented instruction at {pc:#x}: {s}\n"))
    }

    /// In a forked child: this thread is the only one.
    pub fn after_fork_child(&self, keep: &ThreadSignalsGuard) {
        self.engine.plugins.forget_after_fork();
        self.live_threads.store(1, Ordering::SeqCst);
        self.main_tid.store(sys::gettid(), Ordering::SeqCst);
        sys::forget_other_threads(keep);
    }
}

/// One guest thread.
pub struct Thread {
    /// Its vCPU.
    pub vcpu: Vcpu<Direct>,
    /// The process.
    pub proc: Arc<Process>,
    /// Host-side signal queue registration.
    pub signals: ThreadSignalsGuard,
    /// Guest signal state.
    pub sig: ThreadSig,
    /// CLONE_CHILD_CLEARTID / set_tid_address address.
    pub clear_tid: u64,
    /// Host (= guest) thread id.
    pub tid: i32,
}

impl Thread {
    /// A guest thread on the calling host thread.
    pub fn new(proc: Arc<Process>, cpu: Box<CpuState>, blocked: u64) -> Thread {
        let mem = Direct::new(proc.shared.clone());
        let vcpu = Vcpu::new(proc.engine.clone(), cpu, mem);
        let ts =
            Arc::new(ThreadSignals { queue: SigQueue::new(), interrupt: vcpu.interrupt.clone() });
        let signals = ThreadSignalsGuard::register(ts);
        let mut t = Thread {
            vcpu,
            proc,
            signals,
            sig: ThreadSig::default(),
            clear_tid: 0,
            tid: sys::gettid(),
        };
        signal::set_blocked(&mut t, blocked);
        t
    }

    /// Run guest code until this thread exits; returns its exit code.
    pub fn run(&mut self) -> i32 {
        loop {
            match self.vcpu.run() {
                Exit::Syscall => {
                    if let Some(code) = syscall::handle(self) {
                        return code;
                    }
                }
                Exit::Fault { fault, pc, next } => signal::on_fault(self, fault, pc, next),
                Exit::Halt => {
                    let pc = self.vcpu.cpu.rip();
                    signal::on_fault(self, crate::cpu::Fault::GeneralProtection(0), pc, pc)
                }
                Exit::Interrupted => signal::deliver(self),
            }
        }
    }

    /// The thread's guest memory.
    pub fn mem(&mut self) -> &mut Direct {
        &mut self.vcpu.mem
    }
}

/// A guest thread ended with `code`: clear and wake its tid word, and end the process if
/// it was the last thread. Returns on a non-initial thread (whose host thread then ends).
pub fn thread_exit(mut t: Thread, code: i32) {
    if t.clear_tid != 0 {
        let a = t.clear_tid;
        if t.mem().store(a, crate::cpu::Width::W32, 0).is_ok() {
            sys::syscall6(libc::SYS_futex, [a, libc::FUTEX_WAKE as u64, 1, 0, 0, 0]);
        }
    }
    let proc = t.proc.clone();
    proc.engine.plugins.vcpu_exit(&t.vcpu.cpu);
    let left = proc.live_threads.fetch_sub(1, Ordering::SeqCst) - 1;
    if left == 0 {
        proc.exit(code);
    }
    let main = t.tid == proc.main_tid.load(Ordering::SeqCst);
    drop(t);
    if main {
        sys::exit_thread(code);
    }
}
