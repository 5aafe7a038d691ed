//! The emulator side of a case: run the same snippet bytes, at the same address, on the
//! same scratch pages, through `blockscope::exec::run_snippet` in a given tier.
//!
//! Guest addresses are host addresses in user mode (`mem::Direct`), so the emulated
//! instruction is fetched from the runner's test page and touches the runner's scratch
//! pages and marker. Each run registers those pages in a fresh `DirectShared` (the test
//! page read+exec only: the harness rewrites it natively between cases, which a
//! write-watched code page would not allow) and starts from a fresh `CpuState`.

use crate::native::{Layout, NativeRunner, PAGE};
use crate::state::{FaultKind, Outcome, Regs, FLAGS_IN, SCRATCH_LEN};
use blockscope::config::{Config, Tier};
use blockscope::cpu::{rflags, slot, CpuState, Fault};
use blockscope::exec::{run_snippet_with, SnippetExit};
use std::sync::atomic::{AtomicBool, Ordering};

/// Run snippets with REP string instructions expanded (`Config::expand_rep`), as when a
/// plugin asks for it. Process-wide: the instruction groups run one at a time.
pub static EXPAND_REP: AtomicBool = AtomicBool::new(false);
use blockscope::frontend::eval_flags;
use blockscope::mem::{Direct, DirectShared, Prot};

/// Map an emulator fault to the harness's fault kinds.
pub fn fault_kind(f: Fault) -> FaultKind {
    match f {
        Fault::DivideError => FaultKind::DivideError,
        Fault::InvalidOpcode => FaultKind::InvalidOpcode,
        Fault::GeneralProtection(_) => FaultKind::GeneralProtection,
        Fault::PageFault { addr, .. } => FaultKind::PageFault(addr),
        Fault::AlignmentCheck => FaultKind::AlignmentCheck,
        Fault::SimdFp => FaultKind::SimdFp,
        Fault::Breakpoint => FaultKind::Breakpoint,
        Fault::StackFault(_) => FaultKind::Other("#SS"),
        Fault::Debug => FaultKind::Other("#DB"),
        Fault::Overflow => FaultKind::Other("#OF"),
        Fault::DeviceNotAvailable => FaultKind::Other("#NM"),
        Fault::X87 => FaultKind::Other("#MF"),
        Fault::SoftInt(_) => FaultKind::Other("INT n"),
    }
}

/// Put `regs` into a fresh user-mode `CpuState` at `rip`.
pub fn cpu_from_regs(regs: &Regs, rip: u64) -> Box<CpuState> {
    let mut cpu = CpuState::new_user();
    for (n, v) in regs.gpr.iter().enumerate() {
        cpu.set_gpr(n, *v);
    }
    for (n, v) in regs.xmm.iter().enumerate() {
        cpu.set_xmm(n, *v);
    }
    cpu.set_slot(slot::MXCSR, u64::from(regs.mxcsr));
    let fl = regs.rflags & FLAGS_IN;
    cpu.set_slot(slot::CC_OP, 0);
    cpu.set_slot(slot::CC_RES, fl & rflags::ARITH);
    let other = cpu.slot(slot::RFLAGS) & !(rflags::ARITH | rflags::DF);
    cpu.set_slot(slot::RFLAGS, other | (fl & rflags::DF));
    cpu.set_rip(rip);
    cpu
}

/// Read the harness register state back from a `CpuState` (flags materialised).
pub fn regs_from_cpu(cpu: &CpuState) -> Regs {
    let mut r = Regs::default();
    for n in 0..16 {
        r.gpr[n] = cpu.gpr(n);
        r.xmm[n] = cpu.xmm(n);
    }
    let arith = eval_flags(
        cpu.slot(slot::CC_OP),
        cpu.slot(slot::CC_RES),
        cpu.slot(slot::CC_A),
        cpu.slot(slot::CC_B),
        cpu.slot(slot::CC_C),
    );
    r.rflags = (cpu.slot(slot::RFLAGS) & !rflags::ARITH) | arith;
    r.mxcsr = cpu.mxcsr();
    r
}

/// Run the snippet in `runner`'s test page from `entry` until `stop` in the emulator.
pub fn run_emulated(
    runner: &mut NativeRunner,
    entry: u64,
    stop: u64,
    regs: &Regs,
    mem: &[u8],
    tier: Tier,
) -> Outcome {
    let l: Layout = runner.layout();
    runner.set_scratch(mem);
    runner.clear_marker();
    let shared = DirectShared::new();
    shared.map(l.test_page, PAGE, Prot(Prot::READ | Prot::EXEC));
    shared.map(l.ctl_page, PAGE, Prot(Prot::READ | Prot::WRITE));
    shared.map(l.scratch, SCRATCH_LEN as u64, Prot(Prot::READ | Prot::WRITE));
    let mut direct = Direct::new(shared);
    let mut cpu = cpu_from_regs(regs, entry);
    let config =
        Config { tier, expand_rep: EXPAND_REP.load(Ordering::Relaxed), ..Config::default() };
    match run_snippet_with(&mut cpu, &mut direct, stop, config) {
        SnippetExit::Reached => Outcome::Done {
            regs: Box::new(regs_from_cpu(&cpu)),
            mem: runner.scratch(),
            marker: runner.marker(),
        },
        SnippetExit::Fault { fault, .. } => Outcome::Fault(fault_kind(fault)),
        SnippetExit::Syscall => Outcome::Fault(FaultKind::Syscall),
    }
}
