//! System instructions: SYSCALL, HLT, UD2, INT3, INT n (more with system mode).

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::Fault;
use crate::ir::Term;

lifts! { Syscall => lift_syscall, Ud2 => lift_ud2, Int3 => lift_int3, Int => lift_int, Hlt => lift_hlt }

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
