//! Stack: PUSH POP LEAVE, PUSHF POPF, ENTER.
//!
//! PUSHF stores RFLAGS with RF and VM cleared. POPF loads all arithmetic flags and the
//! system bits the current privilege allows (SDM POPF, 64-bit mode): TF DF NT AC ID
//! always; IF only when CPL <= IOPL; IOPL only at CPL 0; VIP VIF VM never; RF is cleared.
//! The writable mask is read at run time (`popf_mask` helper) so one lifting serves every
//! CPL. TF is stored but single-step traps are not delivered yet.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::{rflags, slot, Fault, Width};
use crate::ir::{BinOp, HelperCx, HelperDesc, Op, Slot, UnOp};
use iced_x86::OpKind;

lifts! {
    Push => lift_push, Pop => lift_pop, Leave => lift_leave,
    Pushf => lift_pushf, Pushfq => lift_pushf, Popf => lift_popf, Popfq => lift_popf,
    Enter => lift_enter,
}

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
    // `pop rsp` replaces RSP with the value; `pop sp` increments RSP first and then
    // replaces its low 16 bits, so a carry out of bit 15 is kept (SDM POP).
    if !is_rsp || w == Width::W16 {
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

/// Operand size of PUSHF/POPF from the stack-pointer change.
fn flags_width(cx: &LiftCx<'_>) -> Result<Width, Unsupported> {
    match cx.i.stack_pointer_increment().abs() {
        8 => Ok(Width::W64),
        2 => Ok(Width::W16),
        _ => Err(Unsupported),
    }
}

fn lift_pushf(cx: &mut LiftCx<'_>) -> R {
    let w = flags_width(cx)?;
    let f = cx.rflags();
    let v = cx.bin_imm(BinOp::And, Width::W64, f, !(rflags::RF | rflags::VM));
    let sp = cx.bin_imm(BinOp::Sub, Width::W64, Slot(slot::RSP), w.bytes() as u64);
    cx.store(w, sp, v);
    cx.set_slot(slot::RSP, sp);
    Ok(())
}

/// `popf_mask()`: the non-arithmetic RFLAGS bits POPF may change at the current CPL/IOPL.
static POPF_MASK: HelperDesc = HelperDesc {
    name: "popf_mask",
    func: helper_popf_mask,
    reads_state: true,
    writes_state: false,
    may_fault: false,
};

fn helper_popf_mask(cx: &mut HelperCx<'_>, _args: [u64; 4]) -> Result<u64, Fault> {
    let cpl = cx.cpu.cpl as u64;
    let iopl = (cx.cpu.slot(slot::RFLAGS) & rflags::IOPL) >> 12;
    let mut m = rflags::TF | rflags::DF | rflags::NT | rflags::AC | rflags::ID;
    if cpl <= iopl {
        m |= rflags::IF;
    }
    if cpl == 0 {
        m |= rflags::IOPL;
    }
    Ok(m)
}

fn lift_popf(cx: &mut LiftCx<'_>) -> R {
    let w = flags_width(cx)?;
    let v = cx.load(w, Slot(slot::RSP));
    let dyn_mask = cx.helper(&POPF_MASK, &[]);
    // A 16-bit POPF changes only the low 16 bits.
    let m = if w == Width::W16 {
        cx.bin_imm(BinOp::And, Width::W64, dyn_mask, 0xffff)
    } else {
        dyn_mask
    };
    let new_bits = cx.bin(BinOp::And, Width::W64, v, m);
    let arith = cx.bin_imm(BinOp::And, Width::W64, v, rflags::ARITH);
    let not_m = cx.un(UnOp::Not, Width::W64, m);
    let kept = cx.bin(BinOp::And, Width::W64, Slot(slot::RFLAGS), not_m);
    let kept = cx.bin_imm(BinOp::And, Width::W64, kept, !rflags::RF);
    let t = cx.bin(BinOp::Or, Width::W64, new_bits, kept);
    let merged = cx.bin(BinOp::Or, Width::W64, t, arith);
    cx.set_rflags(merged, !rflags::ARITH);
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
    Ok(())
}

fn lift_enter(cx: &mut LiftCx<'_>) -> R {
    // ENTER size, level in 64-bit mode (SDM ENTER), w = operand size (8, or 2 with 66h):
    // push rBP; frame = RSP; copy level-1 saved frame pointers from [RBP-w], [RBP-2w], ...;
    // push frame; rBP = frame (BP only for w = 2); RSP = frame - w*level - size.
    let w = match cx.i.code() {
        iced_x86::Code::Enterq_imm16_imm8 => Width::W64,
        iced_x86::Code::Enterw_imm16_imm8 => Width::W16,
        _ => return Err(Unsupported),
    };
    let wb = w.bytes() as u64;
    let size = cx.i.immediate16() as u64;
    let level = (cx.i.immediate8_2nd() & 31) as u64;
    let frame = cx.bin_imm(BinOp::Sub, Width::W64, Slot(slot::RSP), wb);
    cx.store(w, frame, Slot(slot::RBP));
    if level > 0 {
        for k in 1..level {
            let src = cx.bin_imm(BinOp::Sub, Width::W64, Slot(slot::RBP), wb * k);
            let v = cx.load(w, src);
            let dst = cx.bin_imm(BinOp::Sub, Width::W64, frame, wb * k);
            cx.store(w, dst, v);
        }
        let dst = cx.bin_imm(BinOp::Sub, Width::W64, frame, wb * level);
        cx.store(w, dst, frame);
    }
    let sp = cx.bin_imm(BinOp::Sub, Width::W64, frame, wb * level + size);
    if w == Width::W64 {
        cx.set_slot(slot::RBP, frame);
    } else {
        cx.write_reg(iced_x86::Register::BP, frame)?;
    }
    cx.set_slot(slot::RSP, sp);
    Ok(())
}
