//! The per-vCPU run loop.

use super::cache::{Engine, Tb};
use super::tier::{run_tb, VcpuJit};
use crate::backend::BlockExit;
use crate::config::{Config, Tier};
use crate::cpu::{CpuState, Fault};
use crate::mem::GuestMemory;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why `Vcpu::run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SYSCALL: `%rip` is the next instruction; the environment handles it.
    Syscall,
    /// A fault at `pc`; guest state is as before the instruction.
    Fault {
        /// The fault.
        fault: Fault,
        /// Faulting instruction.
        pc: u64,
        /// The instruction after it.
        next: u64,
    },
    /// HLT.
    Halt,
    /// `interrupt` was raised (e.g. a signal is pending).
    Interrupted,
}

/// log2 of the jump cache's entries. Python's start-up runs ~38k distinct blocks: 4096
/// entries missed on 9% of block runs, 16384 on 3.5%.
const JC_BITS: u32 = 14;
const JC_SIZE: usize = 1 << JC_BITS;

/// The jump cache slot of `pc` (Fibonacci hashing: the top bits of the product).
#[inline]
fn jc_index(pc: u64) -> usize {
    (pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - JC_BITS)) as usize
}

/// One jump cache entry. The pc sits next to the TB pointer: checking it in the TB would
/// put a second dependent cache miss (the TB, then its block) on every block run.
#[derive(Clone, Default)]
struct JcEntry {
    pc: u64,
    tb: Option<Arc<Tb>>,
}

/// One virtual CPU: state, memory handle, engine, jump cache.
pub struct Vcpu<M: GuestMemory> {
    /// Guest CPU state.
    pub cpu: Box<CpuState>,
    /// Guest memory.
    pub mem: M,
    /// The shared engine.
    pub engine: Arc<Engine>,
    /// Raised (from any thread or a signal handler) to make `run` return `Interrupted`.
    pub interrupt: Arc<AtomicBool>,
    jc: Vec<JcEntry>,
    jc_gen: u64,
    /// Chaining state of the JIT tier (`tier.rs`).
    jit: VcpuJit,
}

impl<M: GuestMemory> Vcpu<M> {
    /// A vCPU over `cpu` and `mem`.
    pub fn new(engine: Arc<Engine>, mut cpu: Box<CpuState>, mem: M) -> Vcpu<M> {
        engine.plugins.vcpu_init(&mut cpu);
        let jc_gen = engine.generation();
        Vcpu {
            cpu,
            mem,
            engine,
            interrupt: Arc::new(AtomicBool::new(false)),
            jc: vec![JcEntry::default(); JC_SIZE],
            jc_gen,
            jit: VcpuJit::default(),
        }
    }

    /// Drop the private jump cache (after invalidation elsewhere, or a flush).
    pub fn flush_jump_cache(&mut self) {
        self.jc.iter_mut().for_each(|e| *e = JcEntry::default());
        self.jit.clear();
    }

    /// Run from `%rip` until the environment must act.
    pub fn run(&mut self) -> Exit {
        self.run_inner(u64::MAX)
    }

    fn run_inner(&mut self, stop: u64) -> Exit {
        loop {
            if self.interrupt.load(Ordering::Relaxed) {
                return Exit::Interrupted;
            }
            let pc = self.cpu.rip();
            if pc == stop {
                return Exit::Halt;
            }
            let gen = self.engine.generation();
            if gen != self.jc_gen {
                self.flush_jump_cache();
                self.jc_gen = gen;
            }
            let idx = jc_index(pc);
            let e = &mut self.jc[idx];
            if e.pc != pc || e.tb.is_none() {
                match self.engine.lookup(pc, &mut self.mem, stop) {
                    Ok(tb) => *e = JcEntry { pc, tb: Some(tb) },
                    Err(fault) => return Exit::Fault { fault, pc, next: pc },
                }
            }
            let Some(tb) = self.jc[idx].tb.as_ref() else { unreachable!() };
            // Interpreted or compiled (and chained) per the tier: see tier.rs.
            let exit = run_tb(&self.engine, tb, &mut self.jit, &mut self.cpu, &mut self.mem);
            if self.mem.code_written() {
                let pages = self.mem.take_code_writes();
                self.engine.invalidate_pages(&pages);
            }
            match exit {
                BlockExit::Jump(_) | BlockExit::Indirect { .. } | BlockExit::CodeWritten => {}
                BlockExit::Syscall => return Exit::Syscall,
                BlockExit::Halt => return Exit::Halt,
                BlockExit::Fault { fault, next } => {
                    return Exit::Fault { fault, pc: self.cpu.rip(), next };
                }
            }
        }
    }
}

/// How `run_snippet` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnippetExit {
    /// `%rip` reached the stop address.
    Reached,
    /// A fault at `pc`.
    Fault {
        /// The fault.
        fault: Fault,
        /// Faulting instruction.
        pc: u64,
    },
    /// A SYSCALL was executed (`%rip` after it).
    Syscall,
}

/// Run guest code from `cpu.rip()` until `%rip == stop_pc` (blocks never extend past
/// `stop_pc`), a fault, or a syscall. For tests: a fresh engine each call.
pub fn run_snippet<M: GuestMemory>(
    cpu: &mut CpuState,
    mem: &mut M,
    stop_pc: u64,
    tier: Tier,
) -> SnippetExit {
    run_snippet_with(cpu, mem, stop_pc, Config { tier, ..Config::default() })
}

/// `run_snippet` with a whole engine configuration.
pub fn run_snippet_with<M: GuestMemory>(
    cpu: &mut CpuState,
    mem: &mut M,
    stop_pc: u64,
    config: Config,
) -> SnippetExit {
    let engine = Engine::new(config);
    run_snippet_on(&engine, cpu, mem, stop_pc)
}

/// `run_snippet` on a caller-owned engine: its TB cache and compiled code are reused
/// across calls (tests that run one snippet on many inputs compile it once). The caller
/// must not change the code between calls without invalidating it.
pub fn run_snippet_on<M: GuestMemory>(
    engine: &Arc<Engine>,
    cpu: &mut CpuState,
    mem: &mut M,
    stop_pc: u64,
) -> SnippetExit {
    let mut v = Vcpu::new(engine.clone(), Box::new(cpu.clone()), &mut *mem);
    let r = v.run_inner(stop_pc);
    *cpu = (*v.cpu).clone();
    match r {
        Exit::Halt if cpu.rip() == stop_pc => SnippetExit::Reached,
        Exit::Halt => SnippetExit::Fault { fault: Fault::GeneralProtection(0), pc: cpu.rip() },
        Exit::Syscall => SnippetExit::Syscall,
        Exit::Fault { fault, pc, .. } => SnippetExit::Fault { fault, pc },
        Exit::Interrupted => SnippetExit::Reached,
    }
}
