//! System instructions: SYSCALL, HLT, UD2, INT3, INT n, CPUID, RDTSC, RDTSCP, RDPID, and
//! the architectural #UD of features the CPU model does not advertise (XGETBV, RDRAND,
//! RDSEED). More with system mode.
//!
//! CPUID answers from the fixed model in `cpu::cpuid` (never the host's). RDTSC/RDTSCP
//! read the host TSC plus `CpuState::tsc_offset`; RDTSCP and RDPID return
//! `CpuState::tsc_aux`. With CR4.TSD set, RDTSC/RDTSCP fault with #GP(0) outside CPL 0.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::{cpuid, slot, CpuState, Fault, Width};
use crate::ir::{BinOp, HelperCx, HelperDesc, Op, Slot, Term, UnOp};

lifts! {
    Syscall => lift_syscall, Ud2 => lift_ud2, Int3 => lift_int3, Int => lift_int, Hlt => lift_hlt,
    Cpuid => lift_cpuid, Rdtsc => lift_rdtsc, Rdtscp => lift_rdtscp, Rdpid => lift_rdpid,
    Xgetbv => lift_not_advertised, Rdrand => lift_not_advertised, Rdseed => lift_not_advertised,
}

type R = Result<(), Unsupported>;

fn lift_syscall(cx: &mut LiftCx<'_>) -> R {
    cx.end(Term::Syscall { next: cx.next });
    Ok(())
}

fn lift_ud2(cx: &mut LiftCx<'_>) -> R {
    cx.end(Term::Fault { fault: Fault::InvalidOpcode, pc: cx.pc, next: cx.next });
    Ok(())
}

fn lift_int3(cx: &mut LiftCx<'_>) -> R {
    cx.end(Term::Fault { fault: Fault::Breakpoint, pc: cx.pc, next: cx.next });
    Ok(())
}

fn lift_int(cx: &mut LiftCx<'_>) -> R {
    let n = cx.i.immediate8();
    cx.end(Term::Fault { fault: Fault::SoftInt(n), pc: cx.pc, next: cx.next });
    Ok(())
}

fn lift_hlt(cx: &mut LiftCx<'_>) -> R {
    // At CPL 3 HLT is privileged: #GP(0). System mode lifts it as a halt.
    cx.end(Term::Fault { fault: Fault::GeneralProtection(0), pc: cx.pc, next: cx.next });
    Ok(())
}

/// XGETBV (needs XSAVE), RDRAND, RDSEED: the CPU model does not advertise them, and a CPU
/// without the feature raises #UD. This is the architectural answer, not a missing lifter.
fn lift_not_advertised(cx: &mut LiftCx<'_>) -> R {
    cx.end(Term::Fault { fault: Fault::InvalidOpcode, pc: cx.pc, next: cx.next });
    Ok(())
}

fn lift_cpuid(cx: &mut LiftCx<'_>) -> R {
    cx.helper_void(&CPUID, &[]);
    Ok(())
}

/// `cpuid()`: EAX/ECX in, EAX/EBX/ECX/EDX out (32-bit writes, upper halves cleared).
static CPUID: HelperDesc = HelperDesc {
    name: "cpuid",
    func: helper_cpuid,
    reads_state: true,
    writes_state: true,
    may_fault: false,
};

fn helper_cpuid(cx: &mut HelperCx<'_>, _args: [u64; 4]) -> Result<u64, Fault> {
    let leaf = cx.cpu.gpr(0) as u32;
    let subleaf = cx.cpu.gpr(1) as u32;
    let [a, b, c, d] = cpuid::cpuid(leaf, subleaf);
    cx.cpu.set_gpr(0, a as u64);
    cx.cpu.set_gpr(3, b as u64);
    cx.cpu.set_gpr(1, c as u64);
    cx.cpu.set_gpr(2, d as u64);
    Ok(0)
}

/// CR4.TSD: RDTSC/RDTSCP are privileged.
const CR4_TSD: u64 = 1 << 2;

fn guest_tsc(cpu: &CpuState) -> Result<u64, Fault> {
    if cpu.cr4 & CR4_TSD != 0 && cpu.cpl != 0 {
        return Err(Fault::GeneralProtection(0));
    }
    Ok(crate::mem::host_tsc().wrapping_add(cpu.tsc_offset))
}

/// `rdtsc()`: the guest TSC.
static RDTSC: HelperDesc = HelperDesc {
    name: "rdtsc",
    func: helper_rdtsc,
    reads_state: true,
    writes_state: false,
    may_fault: true,
};

fn helper_rdtsc(cx: &mut HelperCx<'_>, _args: [u64; 4]) -> Result<u64, Fault> {
    guest_tsc(cx.cpu)
}

/// `tsc_aux()`: IA32_TSC_AUX.
static TSC_AUX: HelperDesc = HelperDesc {
    name: "tsc_aux",
    func: helper_tsc_aux,
    reads_state: true,
    writes_state: false,
    may_fault: false,
};

fn helper_tsc_aux(cx: &mut HelperCx<'_>, _args: [u64; 4]) -> Result<u64, Fault> {
    Ok(cx.cpu.tsc_aux)
}

/// EDX:EAX = `tsc` (32-bit writes).
fn write_edx_eax(cx: &mut LiftCx<'_>, tsc: Slot) {
    let hi = cx.bin_imm(BinOp::Shr, Width::W64, tsc, 32);
    cx.set_slot_op(slot::RAX, Op::Un { op: UnOp::Zext, w: Width::W32, dst: Slot(0), a: tsc });
    cx.set_slot(slot::RDX, hi);
}

fn lift_rdtsc(cx: &mut LiftCx<'_>) -> R {
    let tsc = cx.helper(&RDTSC, &[]);
    write_edx_eax(cx, tsc);
    Ok(())
}

fn lift_rdtscp(cx: &mut LiftCx<'_>) -> R {
    let tsc = cx.helper(&RDTSC, &[]);
    let aux = cx.helper(&TSC_AUX, &[]);
    write_edx_eax(cx, tsc);
    cx.set_slot_op(slot::RCX, Op::Un { op: UnOp::Zext, w: Width::W32, dst: Slot(0), a: aux });
    Ok(())
}

fn lift_rdpid(cx: &mut LiftCx<'_>) -> R {
    // 64-bit mode: RDPID r64 = IA32_TSC_AUX.
    let aux = cx.helper(&TSC_AUX, &[]);
    let aux = cx.un(UnOp::Zext, Width::W32, aux);
    cx.write(0, aux)
}
