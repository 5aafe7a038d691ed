//! SSE data movement: MOVD MOVQ, MOVDQA MOVDQU MOVAPS MOVUPS MOVAPD MOVUPD LDDQU,
//! the non-temporal MOVNTDQ MOVNTDQA MOVNTPS MOVNTPD MOVNTI (plain moves here), PMOVMSKB
//! and MASKMOVDQU.
//!
//! Moves are IR on the two 64-bit halves of an XMM register (see `xmm.rs`); the aligned
//! forms raise #GP(0) on a misaligned m128. PMOVMSKB gathers the byte sign bits with a
//! multiply (the bits of `((x & 0x80..80) >> 7) * 0x0102040810204080` at 56..64 are the
//! eight sign bits in order: every partial product lands on its own bit, so no carries).
//! MASKMOVDQU is a helper storing the selected bytes one by one. Legacy MMX forms
//! (mm registers) are not lifted (#UD).

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::simd;
use super::xmm::V128;
use crate::cpu::{slot, Fault, Width};
use crate::ir::{BinOp, HelperCx, HelperDesc, Op, Slot, UnOp};
use iced_x86::{Code, OpKind, Register};

lifts! {
    Movd => lift_movd, Movq => lift_movq,
    Movdqa => lift_mov_aligned, Movaps => lift_mov_aligned, Movapd => lift_mov_aligned,
    Movntdqa => lift_mov_aligned, Movntdq => lift_mov_aligned, Movntps => lift_mov_aligned,
    Movntpd => lift_mov_aligned,
    Movdqu => lift_mov_unaligned, Movups => lift_mov_unaligned, Movupd => lift_mov_unaligned,
    Lddqu => lift_mov_unaligned,
    Movnti => lift_movnti, Pmovmskb => lift_pmovmskb, Maskmovdqu => lift_maskmovdqu,
}

type R = Result<(), Unsupported>;

fn mov128(cx: &mut LiftCx<'_>, align: bool) -> R {
    if cx.has_mmx_operand() {
        return Err(Unsupported);
    }
    if cx.is_mem(0) {
        let v = cx.read_v128(1, false)?;
        return cx.store_v128(v, align);
    }
    let d = cx.xmm_op(0)?;
    let v = cx.read_v128(1, align)?;
    cx.write_xmm(d, v);
    Ok(())
}

fn lift_mov_aligned(cx: &mut LiftCx<'_>) -> R {
    mov128(cx, true)
}

fn lift_mov_unaligned(cx: &mut LiftCx<'_>) -> R {
    mov128(cx, false)
}

fn lift_movd(cx: &mut LiftCx<'_>) -> R {
    match cx.i.code() {
        Code::Movd_xmm_rm32 => {
            let d = cx.xmm_op(0)?;
            let v = cx.read(1)?;
            cx.set_slot_op(
                slot::xmm_lo(d),
                Op::Un { op: UnOp::Zext, w: Width::W32, dst: Slot(0), a: v },
            );
            cx.set_slot_op(slot::xmm_hi(d), Op::Const { dst: Slot(0), imm: 0 });
            Ok(())
        }
        Code::Movd_rm32_xmm => {
            let s = cx.xmm_op(1)?;
            cx.write(0, Slot(slot::xmm_lo(s)))
        }
        _ => Err(Unsupported),
    }
}

fn lift_movq(cx: &mut LiftCx<'_>) -> R {
    match cx.i.code() {
        Code::Movq_xmm_rm64 => {
            let d = cx.xmm_op(0)?;
            let v = cx.read(1)?;
            cx.write_xmm_lo_zero_hi(d, v);
            Ok(())
        }
        Code::Movq_xmm_xmmm64 => {
            let d = cx.xmm_op(0)?;
            let v = cx.read_xmm_low(1, Width::W64)?;
            cx.write_xmm_lo_zero_hi(d, v);
            Ok(())
        }
        Code::Movq_rm64_xmm => {
            let s = cx.xmm_op(1)?;
            cx.write(0, Slot(slot::xmm_lo(s)))
        }
        Code::Movq_xmmm64_xmm => {
            let s = Slot(slot::xmm_lo(cx.xmm_op(1)?));
            if cx.is_mem(0) {
                let a = cx.addr()?;
                cx.store(Width::W64, a, s);
            } else {
                let d = cx.xmm_op(0)?;
                cx.write_xmm_lo_zero_hi(d, s);
            }
            Ok(())
        }
        _ => Err(Unsupported),
    }
}

fn lift_movnti(cx: &mut LiftCx<'_>) -> R {
    let v = cx.read(1)?;
    cx.write(0, v)
}

/// The sign bits of the eight bytes of `x` as an 8-bit value.
fn byte_signs(cx: &mut LiftCx<'_>, x: Slot) -> Slot {
    let a = cx.bin_imm(BinOp::And, Width::W64, x, 0x8080_8080_8080_8080);
    let b = cx.bin_imm(BinOp::Shr, Width::W64, a, 7);
    let c = cx.bin_imm(BinOp::Mul, Width::W64, b, 0x0102_0408_1020_4080);
    cx.bin_imm(BinOp::Shr, Width::W64, c, 56)
}

/// The 16-bit byte-sign mask of a 128-bit value.
pub(super) fn byte_mask(cx: &mut LiftCx<'_>, v: V128) -> Slot {
    let lo = byte_signs(cx, v.lo);
    let hi = byte_signs(cx, v.hi);
    let h8 = cx.bin_imm(BinOp::Shl, Width::W64, hi, 8);
    cx.bin(BinOp::Or, Width::W64, lo, h8)
}

fn lift_pmovmskb(cx: &mut LiftCx<'_>) -> R {
    if cx.has_mmx_operand() {
        return Err(Unsupported);
    }
    let s = cx.xmm_op(1)?;
    let m = byte_mask(cx, V128::reg(s));
    cx.write(0, m)
}

static MASKMOV: HelperDesc = HelperDesc {
    name: "maskmovdqu",
    func: helper_maskmov,
    reads_state: false,
    writes_state: false,
    may_fault: true,
};

/// args: address, data lo, data hi, 16-bit byte mask.
fn helper_maskmov(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    for i in 0..16u64 {
        if a[3] >> i & 1 != 0 {
            let half = if i < 8 { a[1] } else { a[2] };
            let b = simd::lane(half, (i % 8) as u32, 8);
            cx.mem.store(a[0].wrapping_add(i), Width::W8, b)?;
        }
    }
    Ok(0)
}

fn lift_maskmovdqu(cx: &mut LiftCx<'_>) -> R {
    let addr32 = match cx.i.op0_kind() {
        OpKind::MemorySegRDI => false,
        OpKind::MemorySegEDI => true,
        _ => return Err(Unsupported),
    };
    let data = cx.xmm_op(1)?;
    let sel = cx.xmm_op(2)?;
    let rdi = Slot(slot::RDI);
    let mut a = if addr32 { cx.un(UnOp::Zext, Width::W32, rdi) } else { rdi };
    match cx.i.memory_segment() {
        Register::FS => a = cx.bin(BinOp::Add, Width::W64, a, Slot(slot::FS_BASE)),
        Register::GS => a = cx.bin(BinOp::Add, Width::W64, a, Slot(slot::GS_BASE)),
        _ => {}
    }
    let m = byte_mask(cx, V128::reg(sel));
    let d = V128::reg(data);
    cx.helper_void(&MASKMOV, &[a, d.lo, d.hi, m]);
    Ok(())
}
