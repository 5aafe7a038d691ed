//! CMOVcc and SETcc.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::Width;
use crate::ir::Op;

lifts! {
    Cmovo => lift_cmov, Cmovno => lift_cmov, Cmovb => lift_cmov, Cmovae => lift_cmov,
    Cmove => lift_cmov, Cmovne => lift_cmov, Cmovbe => lift_cmov, Cmova => lift_cmov,
    Cmovs => lift_cmov, Cmovns => lift_cmov, Cmovp => lift_cmov, Cmovnp => lift_cmov,
    Cmovl => lift_cmov, Cmovge => lift_cmov, Cmovle => lift_cmov, Cmovg => lift_cmov,
    Seto => lift_set, Setno => lift_set, Setb => lift_set, Setae => lift_set,
    Sete => lift_set, Setne => lift_set, Setbe => lift_set, Seta => lift_set,
    Sets => lift_set, Setns => lift_set, Setp => lift_set, Setnp => lift_set,
    Setl => lift_set, Setge => lift_set, Setle => lift_set, Setg => lift_set,
}

type R = Result<(), Unsupported>;

fn lift_cmov(cx: &mut LiftCx<'_>) -> R {
    // The source is read (and may fault) even when the condition is false; a 32-bit
    // destination is zero-extended either way.
    let c = cx.cond(cx.i.condition_code());
    let src = cx.read(1)?;
    let dst = cx.read(0)?;
    let v = cx.select(c, src, dst);
    if cx.width(0) == Width::W32 {
        let t = cx.un(crate::ir::UnOp::Zext, Width::W32, v);
        return cx.write(0, t);
    }
    cx.write(0, v)
}

fn lift_set(cx: &mut LiftCx<'_>) -> R {
    let c = cx.cond(cx.i.condition_code());
    let _ = Op::Const { dst: c, imm: 0 };
    cx.write(0, c)
}
