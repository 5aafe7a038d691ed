//! Control transfer: JMP Jcc CALL RET JRCXZ/JECXZ LOOP/LOOPE/LOOPNE.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::{slot, Width};
use crate::ir::{BinOp, Cond, Op, Slot, Term};
use iced_x86::OpKind;

lifts! {
    Jmp => lift_jmp, Call => lift_call, Ret => lift_ret,
    Jo => lift_jcc, Jno => lift_jcc, Jb => lift_jcc, Jae => lift_jcc, Je => lift_jcc,
    Jne => lift_jcc, Jbe => lift_jcc, Ja => lift_jcc, Js => lift_jcc, Jns => lift_jcc,
    Jp => lift_jcc, Jnp => lift_jcc, Jl => lift_jcc, Jge => lift_jcc, Jle => lift_jcc,
    Jg => lift_jcc,
    Jrcxz => lift_jrcxz, Jecxz => lift_jrcxz,
    Loop => lift_loop, Loope => lift_loop, Loopne => lift_loop,
}

type R = Result<(), Unsupported>;

fn is_near_branch(k: OpKind) -> bool {
    matches!(k, OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16)
}

/// The target of a JMP/CALL operand: a direct pc or a slot.
enum Target {
    Direct(u64),
    Slot(Slot),
}

fn target(cx: &mut LiftCx<'_>) -> Result<Target, Unsupported> {
    let k = cx.i.op0_kind();
    if is_near_branch(k) {
        return Ok(Target::Direct(cx.i.near_branch_target()));
    }
    if cx.width(0) != Width::W64 {
        return Err(Unsupported);
    }
    match k {
        OpKind::Register | OpKind::Memory => {
            let v = cx.read(0)?;
            Ok(Target::Slot(v))
        }
        _ => Err(Unsupported),
    }
}

fn lift_jmp(cx: &mut LiftCx<'_>) -> R {
    match target(cx)? {
        Target::Direct(pc) => cx.end(Term::Jump(pc)),
        Target::Slot(s) => {
            let s = pin(cx, s);
            cx.end(Term::Indirect { target: s, is_ret: false })
        }
    }
    Ok(())
}

/// Copy a guest slot to a temporary so a later write cannot change it.
fn pin(cx: &mut LiftCx<'_>, s: Slot) -> Slot {
    if s.is_guest() {
        let t = cx.temp();
        cx.emit(Op::Mov { dst: t, src: s });
        t
    } else {
        s
    }
}

fn lift_call(cx: &mut LiftCx<'_>) -> R {
    let t = target(cx)?;
    let t = match t {
        Target::Slot(s) => Target::Slot(pin(cx, s)),
        d => d,
    };
    let sp = cx.bin_imm(BinOp::Sub, Width::W64, Slot(slot::RSP), 8);
    let ret = cx.konst(cx.next);
    cx.store(Width::W64, sp, ret);
    cx.set_slot(slot::RSP, sp);
    match t {
        Target::Direct(pc) => cx.end(Term::Jump(pc)),
        Target::Slot(s) => cx.end(Term::Indirect { target: s, is_ret: false }),
    }
    Ok(())
}

fn lift_ret(cx: &mut LiftCx<'_>) -> R {
    if cx.i.code() != iced_x86::Code::Retnq && cx.i.code() != iced_x86::Code::Retnq_imm16 {
        return Err(Unsupported);
    }
    let target = cx.load(Width::W64, Slot(slot::RSP));
    let pop = 8 + if cx.i.op_count() > 0 { cx.i.immediate16() as u64 } else { 0 };
    cx.set_slot_op(
        slot::RSP,
        Op::BinImm { op: BinOp::Add, w: Width::W64, dst: Slot(0), a: Slot(slot::RSP), imm: pop },
    );
    cx.end(Term::Indirect { target, is_ret: true });
    Ok(())
}

fn lift_jcc(cx: &mut LiftCx<'_>) -> R {
    let c = cx.cond(cx.i.condition_code());
    cx.end(Term::Branch { c, taken: cx.i.near_branch_target(), not_taken: cx.next });
    Ok(())
}

fn lift_jrcxz(cx: &mut LiftCx<'_>) -> R {
    let w = if cx.i.mnemonic() == iced_x86::Mnemonic::Jrcxz { Width::W64 } else { Width::W32 };
    let c = cx.cmp_imm(Cond::Eq, w, Slot(slot::RCX), 0);
    cx.end(Term::Branch { c, taken: cx.i.near_branch_target(), not_taken: cx.next });
    Ok(())
}

fn lift_loop(cx: &mut LiftCx<'_>) -> R {
    // Address size gives the counter width (RCX or ECX).
    let w = if format!("{:?}", cx.i.code()).ends_with("_ECX") { Width::W32 } else { Width::W64 };
    let zf = match cx.i.mnemonic() {
        iced_x86::Mnemonic::Loope => Some(cx.cond(iced_x86::ConditionCode::e)),
        iced_x86::Mnemonic::Loopne => Some(cx.cond(iced_x86::ConditionCode::ne)),
        _ => None,
    };
    let dec = cx.bin_imm(BinOp::Sub, w, Slot(slot::RCX), 1);
    cx.set_slot(slot::RCX, dec);
    let nz = cx.cmp_imm(Cond::Ne, w, dec, 0);
    let c = match zf {
        Some(z) => cx.bin(BinOp::And, Width::W64, nz, z),
        None => nz,
    };
    cx.end(Term::Branch { c, taken: cx.i.near_branch_target(), not_taken: cx.next });
    Ok(())
}
