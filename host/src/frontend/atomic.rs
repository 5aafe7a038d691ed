//! Exchange and compare-exchange: XCHG XADD CMPXCHG CMPXCHG8B CMPXCHG16B.
//!
//! Memory forms are always one atomic IR op (`AtomicRmw`/`AtomicCas`), with or without a
//! LOCK prefix: XCHG with memory is implicitly locked, and for XADD/CMPXCHG the atomic
//! form is indistinguishable from the plain one for a single thread (a read-only page
//! faults as a write either way, as the CPU's write-back does). CMPXCHG16B goes through a
//! helper over `GuestMemory::atomic_cas128`, which raises #GP(0) for an operand that is not
//! 16-byte aligned. Register forms are plain moves; LOCK on a register form is an invalid
//! encoding that the decoder already rejects (#UD).
//!
//! CMPXCHG (SDM vol. 2A): `TEMP = DEST; if ACC == TEMP { ZF = 1; DEST = SRC } else { ZF = 0;
//! ACC = TEMP; DEST = TEMP }`, flags as `CMP ACC, TEMP`. Hardware (checked natively by the
//! tests) writes a register destination only on success and the accumulator only on
//! failure: a 32-bit destination is zero-extended on success and keeps its upper half on
//! failure; a 32-bit accumulator is zero-extended on failure and untouched on success.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::flags::FlagOp;
use crate::cpu::{rflags, slot, Fault, Width};
use crate::ir::{AtomicOp, BinOp, Cond, HelperCx, HelperDesc, Op, Slot, UnOp};
use iced_x86::{OpKind, Register};

lifts! {
    Xchg => lift_xchg, Xadd => lift_xadd, Cmpxchg => lift_cmpxchg,
    Cmpxchg8b => lift_cmpxchg8b, Cmpxchg16b => lift_cmpxchg16b,
}

type R = Result<(), Unsupported>;

/// Copy a guest slot into a temporary so later writes cannot change the value.
fn pin(cx: &mut LiftCx<'_>, s: Slot) -> Slot {
    if !s.is_guest() {
        return s;
    }
    let t = cx.temp();
    cx.emit(Op::Mov { dst: t, src: s });
    t
}

fn is_gpr(cx: &LiftCx<'_>, n: u32) -> bool {
    cx.i.op_kind(n) == OpKind::Register && cx.i.op_register(n).is_gpr()
}

fn lift_xchg(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    match (cx.i.op0_kind(), cx.i.op1_kind()) {
        (OpKind::Register, OpKind::Register) => {
            if !is_gpr(cx, 0) || !is_gpr(cx, 1) {
                return Err(Unsupported);
            }
            let a = cx.read(0)?;
            let a = pin(cx, a);
            let b = cx.read(1)?;
            cx.write(0, b)?;
            cx.write(1, a)
        }
        (OpKind::Memory, OpKind::Register) | (OpKind::Register, OpKind::Memory) => {
            let r = if cx.is_mem(0) { 1 } else { 0 };
            if !is_gpr(cx, r) {
                return Err(Unsupported);
            }
            let v = cx.read(r)?;
            let addr = cx.addr()?;
            let old = cx.temp();
            cx.emit(Op::AtomicRmw { op: AtomicOp::Xchg, w, dst: old, addr, val: v });
            cx.write(r, old)
        }
        _ => Err(Unsupported),
    }
}

fn lift_xadd(cx: &mut LiftCx<'_>) -> R {
    // TEMP = SRC + DEST; SRC = DEST; DEST = TEMP. Flags as ADD.
    let w = cx.width(0);
    if !is_gpr(cx, 1) {
        return Err(Unsupported);
    }
    let src = cx.read(1)?;
    if cx.is_mem(0) {
        let addr = cx.addr()?;
        let old = cx.temp();
        cx.emit(Op::AtomicRmw { op: AtomicOp::Add, w, dst: old, addr, val: src });
        let sum = cx.bin(BinOp::Add, w, old, src);
        cx.set_flags(FlagOp::Add, w, sum, old, src, Slot(0));
        return cx.write(1, old);
    }
    if !is_gpr(cx, 0) {
        return Err(Unsupported);
    }
    let dst = cx.read(0)?;
    let dst = pin(cx, dst);
    let sum = cx.bin(BinOp::Add, w, dst, src);
    cx.set_flags(FlagOp::Add, w, sum, dst, src, Slot(0));
    cx.write(1, dst)?;
    cx.write(0, sum)
}

/// The accumulator register of width `w`.
fn acc(w: Width) -> Register {
    match w {
        Width::W8 => Register::AL,
        Width::W16 => Register::AX,
        Width::W32 => Register::EAX,
        Width::W64 => Register::RAX,
    }
}

/// Write the accumulator on CMPXCHG failure only: `eq ? RAX : old` with the width's
/// register-write rule (a 32-bit write zero-extends, so select on the full register).
fn write_acc_on_failure(cx: &mut LiftCx<'_>, w: Width, eq: Slot, old: Slot) -> R {
    let rax = Slot(slot::RAX);
    match w {
        Width::W32 => {
            let z = cx.un(UnOp::Zext, Width::W32, old);
            let v = cx.select(eq, rax, z);
            cx.set_slot(slot::RAX, v);
            Ok(())
        }
        _ => {
            let v = cx.select(eq, rax, old);
            cx.write_reg(acc(w), v)
        }
    }
}

fn lift_cmpxchg(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    if !is_gpr(cx, 1) {
        return Err(Unsupported);
    }
    let src = cx.read(1)?;
    let a = pin(cx, Slot(slot::RAX));
    if cx.is_mem(0) {
        let addr = cx.addr()?;
        let old = cx.temp();
        cx.emit(Op::AtomicCas { w, dst: old, addr, expected: a, new: src });
        let eq = cx.cmp(Cond::Eq, w, a, old);
        cx.set_flags_cmp(w, a, old);
        return write_acc_on_failure(cx, w, eq, old);
    }
    if !is_gpr(cx, 0) {
        return Err(Unsupported);
    }
    let d = cx.read(0)?;
    let d = pin(cx, d);
    let eq = cx.cmp(Cond::Eq, w, a, d);
    cx.set_flags_cmp(w, a, d);
    // The destination on success only: a 32-bit register is selected whole so that a
    // failure keeps its upper half. Computed before the accumulator write (which may be
    // the same register); written after it, since with the accumulator as destination the
    // comparison always succeeds and the destination write must win.
    let dreg = cx.i.op0_register();
    let full32 = w == Width::W32;
    let new_dest = if full32 {
        let z = cx.un(UnOp::Zext, Width::W32, src);
        let full = super::operand::gpr_ref(dreg).ok_or(Unsupported)?;
        cx.select(eq, z, Slot(slot::gpr(full.n)))
    } else {
        cx.select(eq, src, d)
    };
    let new_dest = pin(cx, new_dest);
    write_acc_on_failure(cx, w, eq, d)?;
    if full32 {
        let full = super::operand::gpr_ref(dreg).ok_or(Unsupported)?;
        cx.set_gpr(full.n, new_dest);
        Ok(())
    } else {
        cx.write(0, new_dest)
    }
}

/// ZF = `eq`, the other arithmetic flags unchanged.
fn set_zf_only(cx: &mut LiftCx<'_>, eq: Slot) {
    if !cx.flags_needed() {
        return;
    }
    let f = cx.arith_flags();
    let keep = cx.bin_imm(BinOp::And, Width::W64, f, !rflags::ZF);
    let z = cx.bin_imm(BinOp::Shl, Width::W64, eq, rflags::ZF.trailing_zeros() as u64);
    let v = cx.bin(BinOp::Or, Width::W64, keep, z);
    cx.set_flags_raw(v);
}

fn lift_cmpxchg8b(cx: &mut LiftCx<'_>) -> R {
    // Compare EDX:EAX with m64; equal: m64 = ECX:EBX, ZF = 1; else EDX:EAX = m64, ZF = 0.
    if !cx.is_mem(0) {
        return Err(Unsupported);
    }
    let lo = cx.un(UnOp::Zext, Width::W32, Slot(slot::RAX));
    let hi = cx.bin_imm(BinOp::Shl, Width::W64, Slot(slot::RDX), 32);
    let expected = cx.bin(BinOp::Or, Width::W64, hi, lo);
    let nlo = cx.un(UnOp::Zext, Width::W32, Slot(slot::RBX));
    let nhi = cx.bin_imm(BinOp::Shl, Width::W64, Slot(slot::RCX), 32);
    let new = cx.bin(BinOp::Or, Width::W64, nhi, nlo);
    let addr = cx.addr()?;
    let old = cx.temp();
    cx.emit(Op::AtomicCas { w: Width::W64, dst: old, addr, expected, new });
    let eq = cx.cmp(Cond::Eq, Width::W64, old, expected);
    set_zf_only(cx, eq);
    let old_lo = cx.un(UnOp::Zext, Width::W32, old);
    let old_hi = cx.bin_imm(BinOp::Shr, Width::W64, old, 32);
    let rax = cx.select(eq, Slot(slot::RAX), old_lo);
    let rdx = cx.select(eq, Slot(slot::RDX), old_hi);
    cx.set_slot(slot::RAX, rax);
    cx.set_slot(slot::RDX, rdx);
    Ok(())
}

fn lift_cmpxchg16b(cx: &mut LiftCx<'_>) -> R {
    // Compare RDX:RAX with m128 (16-byte aligned, else #GP(0)); equal: m128 = RCX:RBX,
    // ZF = 1; else RDX:RAX = m128, ZF = 0. The helper writes RAX/RDX itself.
    if !cx.is_mem(0) {
        return Err(Unsupported);
    }
    let addr = cx.addr()?;
    let eq = cx.helper(&CMPXCHG16B, &[addr]);
    set_zf_only(cx, eq);
    Ok(())
}

/// `cmpxchg16b(addr)`: returns 1 on success; on failure loads RDX:RAX from memory.
static CMPXCHG16B: HelperDesc = HelperDesc {
    name: "cmpxchg16b",
    func: helper_cmpxchg16b,
    reads_state: true,
    writes_state: true,
    may_fault: true,
};

fn helper_cmpxchg16b(cx: &mut HelperCx<'_>, args: [u64; 4]) -> Result<u64, Fault> {
    let cpu = &*cx.cpu;
    let expected = cpu.gpr(0) as u128 | (cpu.gpr(2) as u128) << 64;
    let new = cpu.gpr(3) as u128 | (cpu.gpr(1) as u128) << 64;
    let old = cx.mem.atomic_cas128(args[0], expected, new)?;
    if old == expected {
        return Ok(1);
    }
    cx.cpu.set_gpr(0, old as u64);
    cx.cpu.set_gpr(2, (old >> 64) as u64);
    Ok(0)
}
