//! Stack: PUSH POP LEAVE.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::{slot, Width};
use crate::ir::{BinOp, Op, Slot};
use iced_x86::OpKind;

lifts! { Push => lift_push, Pop => lift_pop, Leave => lift_leave }

type R = Result<(), Unsupported>;

fn lift_push(cx: &mut LiftCx<'_>) -> R {
    if cx.i.op0_kind() == OpKind::Register && !cx.i.op0_register().is_gpr() {
        return Err(Unsupported); // segment registers
    }
    let w = match cx.i.stack_pointer_increment() {
        -8 => Width::W64,
        -2 => Width::W16,
        _ => return Err(Unsupported),
    };
    let v = match cx.imm(0) {
        Some(imm) => cx.konst(imm),
        None => cx.read(0)?,
    };
    let sp = cx.bin_imm(BinOp::Sub, Width::W64, Slot(slot::RSP), w.bytes() as u64);
    cx.store(w, sp, v);
    cx.set_slot(slot::RSP, sp);
    Ok(())
}

fn lift_pop(cx: &mut LiftCx<'_>) -> R {
    if cx.i.op0_kind() == OpKind::Register && !cx.i.op0_register().is_gpr() {
        return Err(Unsupported);
    }
    let w = match cx.i.stack_pointer_increment() {
        8 => Width::W64,
        2 => Width::W16,
        _ => return Err(Unsupported),
    };
    let v = cx.load(w, Slot(slot::RSP));
    let is_rsp = cx.i.op0_kind() == OpKind::Register
        && cx.i.op0_register().full_register() == iced_x86::Register::RSP;
    if cx.is_mem(0) {
        // The address is computed with RSP already incremented (SDM POP).
        let sp = cx.bin_imm(BinOp::Add, Width::W64, Slot(slot::RSP), w.bytes() as u64);
        let saved = cx.temp();
        cx.emit(Op::Mov { dst: saved, src: Slot(slot::RSP) });
        let _ = saved;
        // Compute the effective address as if RSP were already updated.
        let a = cx.addr()?;
        let a =
            if uses_rsp(cx) { cx.bin_imm(BinOp::Add, Width::W64, a, w.bytes() as u64) } else { a };
        cx.store(w, a, v);
        cx.set_slot(slot::RSP, sp);
        return Ok(());
    }
    if !is_rsp {
        cx.set_slot_op(
            slot::RSP,
            Op::BinImm {
                op: BinOp::Add,
                w: Width::W64,
                dst: Slot(0),
                a: Slot(slot::RSP),
                imm: w.bytes() as u64,
            },
        );
    }
    cx.write(0, v)
}

fn uses_rsp(cx: &LiftCx<'_>) -> bool {
    cx.i.memory_base().full_register() == iced_x86::Register::RSP
        || cx.i.memory_index().full_register() == iced_x86::Register::RSP
}

fn lift_leave(cx: &mut LiftCx<'_>) -> R {
    if cx.i.stack_pointer_increment() != 8 && cx.i.code() != iced_x86::Code::Leaveq {
        return Err(Unsupported);
    }
    let v = cx.load(Width::W64, Slot(slot::RBP));
    let sp = cx.bin_imm(BinOp::Add, Width::W64, Slot(slot::RBP), 8);
    cx.set_slot(slot::RSP, sp);
    cx.set_slot(slot::RBP, v);
    Ok(())
}
