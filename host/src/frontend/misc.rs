//! Data movement and small things: MOV MOVZX MOVSX MOVSXD LEA, NOP forms, CBW/CWDE/CDQE,
//! CWD/CDQ/CQO, CLC STC CMC CLD STD, LAHF SAHF.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use crate::cpu::{rflags, slot, Width};
use crate::ir::{BinOp, Op, Slot, UnOp};
use iced_x86::OpKind;

lifts! {
    Mov => lift_mov, Movzx => lift_movzx, Movsx => lift_movsx, Movsxd => lift_movsx,
    Lea => lift_lea, Nop => lift_nop, Endbr64 => lift_nop, Endbr32 => lift_nop,
    Pause => lift_nop, Prefetchnta => lift_nop, Prefetcht0 => lift_nop,
    Prefetcht1 => lift_nop, Prefetcht2 => lift_nop, Prefetchw => lift_nop,
    Lfence => lift_nop, Sfence => lift_nop, Mfence => lift_nop,
    Cbw => lift_cbw, Cwde => lift_cbw, Cdqe => lift_cbw,
    Cwd => lift_cwd, Cdq => lift_cwd, Cqo => lift_cwd,
    Clc => lift_clc, Stc => lift_stc, Cmc => lift_cmc, Cld => lift_cld, Std => lift_std,
    Lahf => lift_lahf, Sahf => lift_sahf,
}

type R = Result<(), Unsupported>;

fn lift_nop(_cx: &mut LiftCx<'_>) -> R {
    Ok(())
}

fn lift_mov(cx: &mut LiftCx<'_>) -> R {
    // Only general-purpose forms here; segment and control registers are `system`.
    for n in 0..2 {
        if cx.i.op_kind(n) == OpKind::Register && !cx.i.op_register(n).is_gpr() {
            return Err(Unsupported);
        }
    }
    if let Some(imm) = cx.imm(1) {
        if cx.i.op_kind(0) == OpKind::Register {
            let w = cx.width(0);
            let v = if w == Width::W32 { imm & 0xffff_ffff } else { imm };
            let g = super::operand::gpr_ref(cx.i.op0_register()).ok_or(Unsupported)?;
            if !g.high8 && (w == Width::W64 || w == Width::W32) {
                cx.set_slot_op(slot::gpr(g.n), Op::Const { dst: Slot(0), imm: v });
                return Ok(());
            }
        }
    }
    let v = cx.read(1)?;
    cx.write(0, v)
}

fn lift_movzx(cx: &mut LiftCx<'_>) -> R {
    let sw = cx.width(1);
    let v = cx.read(1)?;
    cx.write_op(0, Op::Un { op: UnOp::Zext, w: sw, dst: Slot(0), a: v })?;
    Ok(())
}

fn lift_movsx(cx: &mut LiftCx<'_>) -> R {
    let sw = cx.width(1);
    let dw = cx.width(0);
    let v = cx.read(1)?;
    if sw == dw {
        // MOVSXD r32, r/m32 (no REX.W) is a plain move.
        return cx.write(0, v);
    }
    let t = cx.un(UnOp::Sext, sw, v);
    cx.write(0, t)
}

fn lift_lea(cx: &mut LiftCx<'_>) -> R {
    // LEA ignores segment bases; the address size can be 32 bits, the operand size 16/32/64.
    if matches!(cx.i.memory_segment(), iced_x86::Register::FS | iced_x86::Register::GS) {
        return Err(Unsupported);
    }
    let a = cx.addr()?;
    let w = cx.width(0);
    if w == Width::W32 && a.is_guest() {
        cx.write_op(0, Op::Un { op: UnOp::Zext, w, dst: Slot(0), a })?;
        return Ok(());
    }
    cx.write(0, a)
}

fn lift_cbw(cx: &mut LiftCx<'_>) -> R {
    // CBW: AX = sext(AL); CWDE: EAX = sext(AX); CDQE: RAX = sext(EAX).
    let (from, to) = match cx.i.mnemonic() {
        iced_x86::Mnemonic::Cbw => (Width::W8, iced_x86::Register::AX),
        iced_x86::Mnemonic::Cwde => (Width::W16, iced_x86::Register::EAX),
        _ => (Width::W32, iced_x86::Register::RAX),
    };
    let t = cx.un(UnOp::Sext, from, Slot(slot::RAX));
    cx.write_reg(to, t)
}

fn lift_cwd(cx: &mut LiftCx<'_>) -> R {
    // CWD: DX = sign of AX; CDQ: EDX = sign of EAX; CQO: RDX = sign of RAX.
    let (w, dst) = match cx.i.mnemonic() {
        iced_x86::Mnemonic::Cwd => (Width::W16, iced_x86::Register::DX),
        iced_x86::Mnemonic::Cdq => (Width::W32, iced_x86::Register::EDX),
        _ => (Width::W64, iced_x86::Register::RDX),
    };
    let s = cx.un(UnOp::Sext, w, Slot(slot::RAX));
    let t = cx.bin_imm(BinOp::Sar, Width::W64, s, 63);
    cx.write_reg(dst, t)
}

fn set_cf(cx: &mut LiftCx<'_>, how: u8) -> R {
    // 0 = clear, 1 = set, 2 = complement.
    let f = cx.arith_flags();
    let t = match how {
        0 => cx.bin_imm(BinOp::And, Width::W64, f, !rflags::CF),
        1 => cx.bin_imm(BinOp::Or, Width::W64, f, rflags::CF),
        _ => cx.bin_imm(BinOp::Xor, Width::W64, f, rflags::CF),
    };
    cx.set_flags_raw(t);
    Ok(())
}
fn lift_clc(cx: &mut LiftCx<'_>) -> R {
    set_cf(cx, 0)
}
fn lift_stc(cx: &mut LiftCx<'_>) -> R {
    set_cf(cx, 1)
}
fn lift_cmc(cx: &mut LiftCx<'_>) -> R {
    set_cf(cx, 2)
}

fn set_df(cx: &mut LiftCx<'_>, on: bool) -> R {
    let op = if on {
        Op::BinImm {
            op: BinOp::Or,
            w: Width::W64,
            dst: Slot(0),
            a: Slot(slot::RFLAGS),
            imm: rflags::DF,
        }
    } else {
        Op::BinImm {
            op: BinOp::And,
            w: Width::W64,
            dst: Slot(0),
            a: Slot(slot::RFLAGS),
            imm: !rflags::DF,
        }
    };
    cx.set_slot_op(slot::RFLAGS, op);
    Ok(())
}
fn lift_cld(cx: &mut LiftCx<'_>) -> R {
    set_df(cx, false)
}
fn lift_std(cx: &mut LiftCx<'_>) -> R {
    set_df(cx, true)
}

fn lift_lahf(cx: &mut LiftCx<'_>) -> R {
    // AH = SF:ZF:0:AF:0:PF:1:CF
    let f = cx.arith_flags();
    let low = cx.bin_imm(BinOp::And, Width::W64, f, 0xd5);
    let v = cx.bin_imm(BinOp::Or, Width::W64, low, 2);
    cx.write_reg(iced_x86::Register::AH, v)
}

fn lift_sahf(cx: &mut LiftCx<'_>) -> R {
    // SF ZF AF PF CF from AH; OF kept.
    let f = cx.arith_flags();
    let of = cx.bin_imm(BinOp::And, Width::W64, f, rflags::OF);
    let ah = cx.read_reg(iced_x86::Register::AH)?;
    let bits = cx.bin_imm(BinOp::And, Width::W64, ah, 0xd5);
    let v = cx.bin(BinOp::Or, Width::W64, of, bits);
    cx.set_flags_raw(v);
    Ok(())
}
