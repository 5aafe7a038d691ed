//! Integer ALU: ADD ADC SUB SBB AND OR XOR CMP TEST INC DEC NEG NOT, with LOCK forms.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::flags::FlagOp;
use crate::cpu::Width;
use crate::ir::{AtomicOp, BinOp, Cond, Op, Slot};

lifts! {
    Add => lift_add, Adc => lift_adc, Sub => lift_sub, Sbb => lift_sbb,
    And => lift_and, Or => lift_or, Xor => lift_xor, Cmp => lift_cmp, Test => lift_test,
    Inc => lift_inc, Dec => lift_dec, Neg => lift_neg, Not => lift_not,
}

type R = Result<(), Unsupported>;

/// The guest slot operand 0 writes, if it is a register.
fn dest_slot(cx: &LiftCx<'_>) -> Option<Slot> {
    if cx.i.op0_kind() != iced_x86::OpKind::Register {
        return None;
    }
    super::operand::gpr_ref(cx.i.op0_register()).map(|g| Slot(crate::cpu::slot::gpr(g.n)))
}

/// Copy `a` to a temporary if it is the destination register and flags are needed (the
/// flags want the operand's value from before the write).
fn keep_old(cx: &mut LiftCx<'_>, a: Slot) -> Slot {
    if a.is_guest() && cx.flags_needed() && dest_slot(cx) == Some(a) {
        let t = cx.temp();
        cx.emit(Op::Mov { dst: t, src: a });
        t
    } else {
        a
    }
}

/// ADD/SUB/AND/OR/XOR (not LOCKed): `dst = dst op src`, flags from `fop`.
fn arith(cx: &mut LiftCx<'_>, op: BinOp, fop: FlagOp) -> R {
    if cx.locked() {
        return locked_arith(cx, op, fop);
    }
    let w = cx.width(0);
    let a = cx.read(0)?;
    // `xor r, r` / `sub r, r`: a zero idiom.
    if matches!(op, BinOp::Xor | BinOp::Sub)
        && !cx.is_mem(0)
        && cx.i.op1_kind() == iced_x86::OpKind::Register
        && cx.i.op0_register() == cx.i.op1_register()
    {
        let z = cx.konst(0);
        cx.write(0, z)?;
        cx.set_flags(FlagOp::Logic, w, z, z, z, z);
        return Ok(());
    }
    let a_old = if fop == FlagOp::Logic { a } else { keep_old(cx, a) };
    match cx.imm(1) {
        Some(imm) => {
            let imm = imm & w.mask();
            let res = cx.write_op(0, Op::BinImm { op, w, dst: Slot(0), a, imm })?;
            cx.set_flags_imm(fop, w, res, a_old, imm, Slot(0));
        }
        None => {
            let b = cx.read(1)?;
            let b_old = if fop == FlagOp::Logic { b } else { keep_old(cx, b) };
            let res = cx.write_op(0, Op::Bin { op, w, dst: Slot(0), a, b })?;
            cx.set_flags(fop, w, res, a_old, b_old, Slot(0));
        }
    }
    Ok(())
}

fn locked_arith(cx: &mut LiftCx<'_>, op: BinOp, fop: FlagOp) -> R {
    if !cx.is_mem(0) {
        return Err(Unsupported);
    }
    let w = cx.width(0);
    let b = cx.read(1)?;
    let addr = cx.addr()?;
    let (aop, operand) = match op {
        BinOp::Add => (AtomicOp::Add, b),
        BinOp::Sub => (AtomicOp::Add, cx.un(crate::ir::UnOp::Neg, w, b)),
        BinOp::And => (AtomicOp::And, b),
        BinOp::Or => (AtomicOp::Or, b),
        BinOp::Xor => (AtomicOp::Xor, b),
        _ => return Err(Unsupported),
    };
    let old = cx.temp();
    cx.emit(Op::AtomicRmw { op: aop, w, dst: old, addr, val: operand });
    let res = cx.bin(op, w, old, b);
    cx.set_flags(fop, w, res, old, b, Slot(0));
    Ok(())
}

fn lift_add(cx: &mut LiftCx<'_>) -> R {
    arith(cx, BinOp::Add, FlagOp::Add)
}
fn lift_sub(cx: &mut LiftCx<'_>) -> R {
    arith(cx, BinOp::Sub, FlagOp::Sub)
}
fn lift_and(cx: &mut LiftCx<'_>) -> R {
    arith(cx, BinOp::And, FlagOp::Logic)
}
fn lift_or(cx: &mut LiftCx<'_>) -> R {
    arith(cx, BinOp::Or, FlagOp::Logic)
}
fn lift_xor(cx: &mut LiftCx<'_>) -> R {
    arith(cx, BinOp::Xor, FlagOp::Logic)
}

/// ADC/SBB: `dst = dst ± src ± CF`. LOCK forms retry through compare-and-exchange.
fn carry_arith(cx: &mut LiftCx<'_>, sub: bool) -> R {
    let w = cx.width(0);
    let cin = cx.carry();
    let a = cx.read(0)?;
    let b = cx.read(1)?;
    let op = if sub { BinOp::Sub } else { BinOp::Add };
    let t = cx.bin(op, w, a, b);
    let r = cx.bin(op, w, t, cin);
    if cx.locked() {
        cas_commit(cx, w, a, r)?;
    } else {
        let a = keep_old(cx, a);
        let b = keep_old(cx, b);
        cx.write(0, r)?;
        let fop = if sub { FlagOp::Sbb } else { FlagOp::Adc };
        cx.set_flags(fop, w, r, a, b, cin);
        return Ok(());
    }
    let fop = if sub { FlagOp::Sbb } else { FlagOp::Adc };
    cx.set_flags(fop, w, r, a, b, cin);
    Ok(())
}

/// Finish a LOCKed read-modify-write that cannot be one atomic op: compare-and-exchange
/// the memory operand from `old` to `new`; if another CPU changed it meanwhile, leave the
/// block and execute this instruction again.
pub(super) fn cas_commit(cx: &mut LiftCx<'_>, w: Width, old: Slot, new: Slot) -> R {
    let addr = cx.addr()?;
    let seen = cx.temp();
    cx.emit(Op::AtomicCas { w, dst: seen, addr, expected: old, new });
    let lost = cx.cmp(Cond::Ne, w, seen, old);
    cx.commit_flags();
    cx.emit(Op::ExitIf { c: lost, target: cx.pc });
    Ok(())
}

fn lift_adc(cx: &mut LiftCx<'_>) -> R {
    carry_arith(cx, false)
}
fn lift_sbb(cx: &mut LiftCx<'_>) -> R {
    carry_arith(cx, true)
}

fn lift_cmp(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let a = cx.read(0)?;
    match cx.imm(1) {
        Some(imm) => cx.set_flags_cmp_imm(w, a, imm & w.mask()),
        None => {
            let b = cx.read(1)?;
            cx.set_flags_cmp(w, a, b)
        }
    }
    Ok(())
}

fn lift_test(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let a = cx.read(0)?;
    let same_reg = cx.i.op1_kind() == iced_x86::OpKind::Register
        && cx.i.op0_kind() == iced_x86::OpKind::Register
        && cx.i.op0_register() == cx.i.op1_register();
    let res = if same_reg {
        a
    } else {
        match cx.imm(1) {
            Some(imm) => cx.bin_imm(BinOp::And, w, a, imm & w.mask()),
            None => {
                let b = cx.read(1)?;
                cx.bin(BinOp::And, w, a, b)
            }
        }
    };
    // `res` may be a guest slot (`test r, r`); flags keep it valid (copy on overwrite).
    cx.set_flags(FlagOp::Logic, w, res, res, res, res);
    Ok(())
}

fn incdec(cx: &mut LiftCx<'_>, dec: bool) -> R {
    let w = cx.width(0);
    let fop = if dec { FlagOp::Dec } else { FlagOp::Inc };
    let needs_cf = cx.flags_needed() && cx.flags_live(iced_x86::RflagsBits::CF);
    let cf = if needs_cf { cx.carry() } else { Slot(0) };
    if cx.locked() {
        if !cx.is_mem(0) {
            return Err(Unsupported);
        }
        let addr = cx.addr()?;
        let one = cx.konst(if dec { w.mask() } else { 1 });
        let old = cx.temp();
        cx.emit(Op::AtomicRmw { op: AtomicOp::Add, w, dst: old, addr, val: one });
        let res = cx.bin_imm(BinOp::Add, w, old, if dec { w.mask() } else { 1 });
        cx.set_flags(fop, w, res, res, res, cf);
        return Ok(());
    }
    let a = cx.read(0)?;
    let res = cx.write_op(
        0,
        Op::BinImm { op: if dec { BinOp::Sub } else { BinOp::Add }, w, dst: Slot(0), a, imm: 1 },
    )?;
    cx.set_flags(fop, w, res, res, res, cf);
    Ok(())
}

fn lift_inc(cx: &mut LiftCx<'_>) -> R {
    incdec(cx, false)
}
fn lift_dec(cx: &mut LiftCx<'_>) -> R {
    incdec(cx, true)
}

fn lift_neg(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let a = cx.read(0)?;
    let r = cx.un(crate::ir::UnOp::Neg, w, a);
    if cx.locked() {
        cas_commit(cx, w, a, r)?;
    } else {
        let a2 = keep_old(cx, a);
        cx.write(0, r)?;
        cx.set_flags(FlagOp::Neg, w, r, a2, a2, Slot(0));
        return Ok(());
    }
    cx.set_flags(FlagOp::Neg, w, r, a, a, Slot(0));
    Ok(())
}

fn lift_not(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let a = cx.read(0)?;
    let r = cx.un(crate::ir::UnOp::Not, w, a);
    if cx.locked() {
        return cas_commit(cx, w, a, r);
    }
    cx.write(0, r)
}
