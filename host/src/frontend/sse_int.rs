//! SSE integer SIMD (SSE2, SSSE3, SSE4.1): arithmetic, compares, logic, shifts, packs,
//! unpacks, shuffles, blends, inserts and extracts, sign/zero extension, PTEST,
//! PHMINPOSUW, MPSADBW.
//!
//! An XMM register is two guest slots (lo, hi). Logic ops, 64-bit lane add/subtract and
//! shifts, the 64-bit unpacks, byte shifts (PSLLDQ PSRLDQ PALIGNR), PBLENDW, inserts,
//! extracts and PTEST are plain IR on the halves. The other instructions call *pure*
//! helpers (no state access, cannot fault) that compute one 64-bit half of the result from
//! at most four 64-bit inputs, in portable Rust (`simd.rs`); the lifter calls one per
//! output half, so memory operands are loaded (and alignment-checked) before anything is
//! written. Legacy SSE m128 operands must be 16-byte aligned (#GP(0)); the narrower
//! memory operands (PMOVSX/ZX, PINSR*, PEXTR*) need not be. Legacy MMX forms (mm
//! registers) are not lifted (#UD).

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::simd::{self, Horiz};
use super::xmm::{pure_call, V128};
use crate::cpu::{rflags, slot, Width};
use crate::ir::{BinOp, Cond, HelperDesc, Op, Slot, UnOp};
use iced_x86::Mnemonic;

lifts! {
    // Wrapping add/subtract and equality: SWAR IR on the halves.
    Paddb => lift_swar, Paddw => lift_swar, Paddd => lift_swar,
    Psubb => lift_swar, Psubw => lift_swar, Psubd => lift_swar,
    Pcmpeqb => lift_swar, Pcmpeqw => lift_swar, Pcmpeqd => lift_swar, Pcmpeqq => lift_swar,
    // Other lane-wise binary operations (one pure helper per half).
    Paddsb => lift_lane2, Paddsw => lift_lane2, Paddusb => lift_lane2, Paddusw => lift_lane2,
    Psubsb => lift_lane2, Psubsw => lift_lane2, Psubusb => lift_lane2, Psubusw => lift_lane2,
    Pmullw => lift_lane2, Pmulhw => lift_lane2, Pmulhuw => lift_lane2, Pmulhrsw => lift_lane2,
    Pmulld => lift_lane2, Pmuludq => lift_lane2, Pmuldq => lift_lane2,
    Pmaddwd => lift_lane2, Pmaddubsw => lift_lane2, Pavgb => lift_lane2, Pavgw => lift_lane2,
    Pminub => lift_lane2, Pminuw => lift_lane2, Pminud => lift_lane2,
    Pminsb => lift_lane2, Pminsw => lift_lane2, Pminsd => lift_lane2,
    Pmaxub => lift_lane2, Pmaxuw => lift_lane2, Pmaxud => lift_lane2,
    Pmaxsb => lift_lane2, Pmaxsw => lift_lane2, Pmaxsd => lift_lane2,
    Pcmpgtb => lift_lane2, Pcmpgtw => lift_lane2, Pcmpgtd => lift_lane2, Pcmpgtq => lift_lane2,
    Psadbw => lift_lane2, Psignb => lift_lane2, Psignw => lift_lane2, Psignd => lift_lane2,
    Pabsb => lift_lane1, Pabsw => lift_lane1, Pabsd => lift_lane1,
    // Plain IR on the halves.
    Paddq => lift_ir2, Psubq => lift_ir2, Pand => lift_ir2, Por => lift_ir2, Pxor => lift_ir2,
    Pandn => lift_pandn,
    Psllw => lift_shift, Pslld => lift_shift, Psrlw => lift_shift, Psrld => lift_shift,
    Psraw => lift_shift, Psrad => lift_shift, Psllq => lift_shift_q, Psrlq => lift_shift_q,
    Pslldq => lift_byte_shift, Psrldq => lift_byte_shift, Palignr => lift_palignr,
    // Packs, horizontal ops: lo from the destination, hi from the source.
    Packsswb => lift_pair, Packssdw => lift_pair, Packuswb => lift_pair,
    Packusdw => lift_pair, Phaddw => lift_pair, Phaddd => lift_pair, Phaddsw => lift_pair,
    Phsubw => lift_pair, Phsubd => lift_pair, Phsubsw => lift_pair,
    Punpcklbw => lift_unpack, Punpcklwd => lift_unpack, Punpckldq => lift_unpack,
    Punpckhbw => lift_unpack, Punpckhwd => lift_unpack, Punpckhdq => lift_unpack,
    Punpcklqdq => lift_unpack_q, Punpckhqdq => lift_unpack_q,
    Pshufd => lift_pshufd, Pshuflw => lift_pshufw, Pshufhw => lift_pshufw,
    Pshufb => lift_pshufb, Pblendw => lift_pblendw, Pblendvb => lift_pblendvb,
    Pinsrb => lift_pinsr, Pinsrw => lift_pinsr, Pinsrd => lift_pinsr, Pinsrq => lift_pinsr,
    Pextrb => lift_pextr, Pextrw => lift_pextr, Pextrd => lift_pextr, Pextrq => lift_pextr,
    Pmovsxbw => lift_pmovx, Pmovsxbd => lift_pmovx, Pmovsxbq => lift_pmovx,
    Pmovsxwd => lift_pmovx, Pmovsxwq => lift_pmovx, Pmovsxdq => lift_pmovx,
    Pmovzxbw => lift_pmovx, Pmovzxbd => lift_pmovx, Pmovzxbq => lift_pmovx,
    Pmovzxwd => lift_pmovx, Pmovzxwq => lift_pmovx, Pmovzxdq => lift_pmovx,
    Ptest => lift_ptest, Phminposuw => lift_phminposuw, Mpsadbw => lift_mpsadbw,
}

type R = Result<(), Unsupported>;

/// Declare pure helpers (no state access, no faults) over up to four u64 arguments.
macro_rules! pure_helpers {
    ($($id:ident($name:literal) = |$a:pat_param, $b:pat_param, $c:pat_param, $d:pat_param| $e:expr;)*) => {$(
        static $id: HelperDesc = HelperDesc {
            name: $name,
            func: {
                fn f(
                    _: &mut crate::ir::HelperCx<'_>,
                    x: [u64; 4],
                ) -> Result<u64, crate::cpu::Fault> {
                    let [$a, $b, $c, $d] = x;
                    Ok($e)
                }
                f
            },
            reads_state: false,
            writes_state: false,
            may_fault: false,
        };
    )*};
}

/// Declare pure two-operand lane helpers and the mnemonic → helper map `$map`.
macro_rules! lane_table {
    ($map:ident: $($m:ident => $id:ident($name:literal) = |$a:ident, $b:ident| $e:expr;)*) => {
        pure_helpers! { $($id($name) = |$a, $b, _, _| $e;)* }
        fn $map(m: Mnemonic) -> Option<&'static HelperDesc> {
            match m {
                $(Mnemonic::$m => Some(&$id),)*
                _ => None,
            }
        }
    };
}

lane_table! { lane2_helper:
    Paddsb => PADDSB("paddsb") = |a, b| simd::adds(8, a, b);
    Paddsw => PADDSW("paddsw") = |a, b| simd::adds(16, a, b);
    Paddusb => PADDUSB("paddusb") = |a, b| simd::addus(8, a, b);
    Paddusw => PADDUSW("paddusw") = |a, b| simd::addus(16, a, b);
    Psubsb => PSUBSB("psubsb") = |a, b| simd::subs(8, a, b);
    Psubsw => PSUBSW("psubsw") = |a, b| simd::subs(16, a, b);
    Psubusb => PSUBUSB("psubusb") = |a, b| simd::subus(8, a, b);
    Psubusw => PSUBUSW("psubusw") = |a, b| simd::subus(16, a, b);
    Pmullw => PMULLW("pmullw") = |a, b| simd::mullo(16, a, b);
    Pmulhw => PMULHW("pmulhw") = |a, b| simd::mulhs16(a, b);
    Pmulhuw => PMULHUW("pmulhuw") = |a, b| simd::mulhu16(a, b);
    Pmulhrsw => PMULHRSW("pmulhrsw") = |a, b| simd::mulhrs16(a, b);
    Pmulld => PMULLD("pmulld") = |a, b| simd::mullo(32, a, b);
    Pmuludq => PMULUDQ("pmuludq") = |a, b| simd::muludq(a, b);
    Pmuldq => PMULDQ("pmuldq") = |a, b| simd::muldq(a, b);
    Pmaddwd => PMADDWD("pmaddwd") = |a, b| simd::maddwd(a, b);
    Pmaddubsw => PMADDUBSW("pmaddubsw") = |a, b| simd::maddubsw(a, b);
    Pavgb => PAVGB("pavgb") = |a, b| simd::avg(8, a, b);
    Pavgw => PAVGW("pavgw") = |a, b| simd::avg(16, a, b);
    Pminub => PMINUB("pminub") = |a, b| simd::minu(8, a, b);
    Pminuw => PMINUW("pminuw") = |a, b| simd::minu(16, a, b);
    Pminud => PMINUD("pminud") = |a, b| simd::minu(32, a, b);
    Pminsb => PMINSB("pminsb") = |a, b| simd::mins(8, a, b);
    Pminsw => PMINSW("pminsw") = |a, b| simd::mins(16, a, b);
    Pminsd => PMINSD("pminsd") = |a, b| simd::mins(32, a, b);
    Pmaxub => PMAXUB("pmaxub") = |a, b| simd::maxu(8, a, b);
    Pmaxuw => PMAXUW("pmaxuw") = |a, b| simd::maxu(16, a, b);
    Pmaxud => PMAXUD("pmaxud") = |a, b| simd::maxu(32, a, b);
    Pmaxsb => PMAXSB("pmaxsb") = |a, b| simd::maxs(8, a, b);
    Pmaxsw => PMAXSW("pmaxsw") = |a, b| simd::maxs(16, a, b);
    Pmaxsd => PMAXSD("pmaxsd") = |a, b| simd::maxs(32, a, b);
    Pcmpgtb => PCMPGTB("pcmpgtb") = |a, b| simd::cmpgt(8, a, b);
    Pcmpgtw => PCMPGTW("pcmpgtw") = |a, b| simd::cmpgt(16, a, b);
    Pcmpgtd => PCMPGTD("pcmpgtd") = |a, b| simd::cmpgt(32, a, b);
    Pcmpgtq => PCMPGTQ("pcmpgtq") = |a, b| simd::cmpgt(64, a, b);
    Psadbw => PSADBW("psadbw") = |a, b| simd::sadbw(a, b);
    Psignb => PSIGNB("psignb") = |a, b| simd::sign(8, a, b);
    Psignw => PSIGNW("psignw") = |a, b| simd::sign(16, a, b);
    Psignd => PSIGND("psignd") = |a, b| simd::sign(32, a, b);
    // Unary (the first argument is the source half).
    Pabsb => PABSB("pabsb") = |a, _b| simd::abs(8, a);
    Pabsw => PABSW("pabsw") = |a, _b| simd::abs(16, a);
    Pabsd => PABSD("pabsd") = |a, _b| simd::abs(32, a);
    // Shifts by a count (second argument).
    Psllw => PSLLW("psllw") = |a, c| simd::shl(16, a, c);
    Pslld => PSLLD("pslld") = |a, c| simd::shl(32, a, c);
    Psrlw => PSRLW("psrlw") = |a, c| simd::shr(16, a, c);
    Psrld => PSRLD("psrld") = |a, c| simd::shr(32, a, c);
    Psraw => PSRAW("psraw") = |a, c| simd::sar(16, a, c);
    Psrad => PSRAD("psrad") = |a, c| simd::sar(32, a, c);
    // Pairs: (x, y) → one half from the lanes of x then y.
    Packsswb => PACKSSWB("packsswb") = |x, y| simd::pack(16, false, x, y);
    Packssdw => PACKSSDW("packssdw") = |x, y| simd::pack(32, false, x, y);
    Packuswb => PACKUSWB("packuswb") = |x, y| simd::pack(16, true, x, y);
    Packusdw => PACKUSDW("packusdw") = |x, y| simd::pack(32, true, x, y);
    Phaddw => PHADDW("phaddw") = |x, y| simd::horiz(16, Horiz::Add, x, y);
    Phaddd => PHADDD("phaddd") = |x, y| simd::horiz(32, Horiz::Add, x, y);
    Phaddsw => PHADDSW("phaddsw") = |x, y| simd::horiz(16, Horiz::AddSat, x, y);
    Phsubw => PHSUBW("phsubw") = |x, y| simd::horiz(16, Horiz::Sub, x, y);
    Phsubd => PHSUBD("phsubd") = |x, y| simd::horiz(32, Horiz::Sub, x, y);
    Phsubsw => PHSUBSW("phsubsw") = |x, y| simd::horiz(16, Horiz::SubSat, x, y);
    // Shuffles within a half: (half, imm8).
    Pshuflw => PSHUFW("pshufw") = |x, imm| simd::pshufw(x, imm);
    Phminposuw => PHMINPOSUW("phminposuw") = |lo, hi| simd::phminposuw(lo, hi);
}

pure_helpers! {
    PUNPCK8("punpck.b") = |a, b, high, _| simd::unpack(8, a, b, high != 0);
    PUNPCK16("punpck.w") = |a, b, high, _| simd::unpack(16, a, b, high != 0);
    PUNPCK32("punpck.d") = |a, b, high, _| simd::unpack(32, a, b, high != 0);
    PSHUFD("pshufd") = |lo, hi, sel, _| simd::pshufd(lo, hi, sel);
    PSHUFB("pshufb") = |lo, hi, ctl, _| simd::pshufb(lo, hi, ctl);
    PBLENDVB("pblendvb") = |d, s, m, _| simd::blendvb(d, s, m);
    MPSADBW("mpsadbw") = |dlo, dhi, s, ctl| simd::mpsadbw(dlo, dhi, s, ctl);
    PMOVSXBW("pmovsxbw") = |s, k, _, _| simd::movx(8, 16, true, s, k as u32);
    PMOVSXBD("pmovsxbd") = |s, k, _, _| simd::movx(8, 32, true, s, k as u32);
    PMOVSXBQ("pmovsxbq") = |s, k, _, _| simd::movx(8, 64, true, s, k as u32);
    PMOVSXWD("pmovsxwd") = |s, k, _, _| simd::movx(16, 32, true, s, k as u32);
    PMOVSXWQ("pmovsxwq") = |s, k, _, _| simd::movx(16, 64, true, s, k as u32);
    PMOVSXDQ("pmovsxdq") = |s, k, _, _| simd::movx(32, 64, true, s, k as u32);
    PMOVZXBW("pmovzxbw") = |s, k, _, _| simd::movx(8, 16, false, s, k as u32);
    PMOVZXBD("pmovzxbd") = |s, k, _, _| simd::movx(8, 32, false, s, k as u32);
    PMOVZXBQ("pmovzxbq") = |s, k, _, _| simd::movx(8, 64, false, s, k as u32);
    PMOVZXWD("pmovzxwd") = |s, k, _, _| simd::movx(16, 32, false, s, k as u32);
    PMOVZXWQ("pmovzxwq") = |s, k, _, _| simd::movx(16, 64, false, s, k as u32);
    PMOVZXDQ("pmovzxdq") = |s, k, _, _| simd::movx(32, 64, false, s, k as u32);
}

/// Refuse the legacy MMX forms; return the destination XMM register.
fn dst_xmm(cx: &LiftCx<'_>) -> Result<u8, Unsupported> {
    if cx.has_mmx_operand() {
        return Err(Unsupported);
    }
    cx.xmm_op(0)
}

/// The 8-bit immediate of operand `n`.
fn imm8(cx: &LiftCx<'_>, n: u32) -> Result<u64, Unsupported> {
    cx.imm(n).map(|v| v & 0xff).ok_or(Unsupported)
}

fn lift_lane2(cx: &mut LiftCx<'_>) -> R {
    let h = lane2_helper(cx.i.mnemonic()).ok_or(Unsupported)?;
    let d = dst_xmm(cx)?;
    let s = cx.read_v128(1, true)?;
    cx.per_half(d, s, |_, a, b| pure_call(h, &[a, b]));
    Ok(())
}

fn lift_lane1(cx: &mut LiftCx<'_>) -> R {
    let h = lane2_helper(cx.i.mnemonic()).ok_or(Unsupported)?;
    let d = dst_xmm(cx)?;
    let s = cx.read_v128(1, true)?;
    cx.per_half(d, s, |_, _, b| pure_call(h, &[b]));
    Ok(())
}

/// The sign bit of every `bits`-wide lane of a 64-bit half.
const fn lane_high_bits(bits: u32) -> u64 {
    let mut m = 0;
    let mut i = 0;
    while i < 64 {
        m |= 1 << (i + bits - 1);
        i += bits;
    }
    m
}

/// An op computing `dst = a op b`.
fn bin_op(op: BinOp, a: Slot, b: Slot) -> Op {
    Op::Bin { op, w: Width::W64, dst: Slot(0), a, b }
}

/// Lane-wise wrapping add, subtract or equality of one half in plain 64-bit IR (SWAR):
/// the lanes' sign bits are handled apart so no carry or borrow crosses a lane.
fn swar(cx: &mut LiftCx<'_>, m: Mnemonic, a: Slot, b: Slot) -> Op {
    use Mnemonic::*;
    let bits = match m {
        Paddb | Psubb | Pcmpeqb => 8,
        Paddw | Psubw | Pcmpeqw => 16,
        Paddd | Psubd | Pcmpeqd => 32,
        _ => 64,
    };
    let hb = lane_high_bits(bits);
    let x = cx.bin(BinOp::Xor, Width::W64, a, b);
    match m {
        Paddb | Paddw | Paddd => {
            // ((a & ~H) + (b & ~H)) ^ ((a ^ b) & H)
            let a7 = cx.bin_imm(BinOp::And, Width::W64, a, !hb);
            let b7 = cx.bin_imm(BinOp::And, Width::W64, b, !hb);
            let sum = cx.bin(BinOp::Add, Width::W64, a7, b7);
            let top = cx.bin_imm(BinOp::And, Width::W64, x, hb);
            bin_op(BinOp::Xor, sum, top)
        }
        Psubb | Psubw | Psubd => {
            // ((a | H) - (b & ~H)) ^ (~(a ^ b) & H)
            let ah = cx.bin_imm(BinOp::Or, Width::W64, a, hb);
            let b7 = cx.bin_imm(BinOp::And, Width::W64, b, !hb);
            let dif = cx.bin(BinOp::Sub, Width::W64, ah, b7);
            let xh = cx.bin_imm(BinOp::And, Width::W64, x, hb);
            let top = cx.bin_imm(BinOp::Xor, Width::W64, xh, hb);
            bin_op(BinOp::Xor, dif, top)
        }
        Pcmpeqq => {
            let ne = cx.cmp_imm(Cond::Ne, Width::W64, x, 0);
            Op::BinImm { op: BinOp::Add, w: Width::W64, dst: Slot(0), a: ne, imm: u64::MAX }
        }
        _ => {
            // A lane of x = a ^ b is zero iff its sign bit is clear in
            // ((x & ~H) + ~H) | x; spread the lane's verdict over the lane by a multiply.
            let x7 = cx.bin_imm(BinOp::And, Width::W64, x, !hb);
            let t = cx.bin_imm(BinOp::Add, Width::W64, x7, !hb);
            let nz = cx.bin(BinOp::Or, Width::W64, t, x);
            let z = cx.bin_imm(BinOp::Xor, Width::W64, nz, u64::MAX);
            let zh = cx.bin_imm(BinOp::And, Width::W64, z, hb);
            let one = cx.bin_imm(BinOp::Shr, Width::W64, zh, bits as u64 - 1);
            Op::BinImm {
                op: BinOp::Mul,
                w: Width::W64,
                dst: Slot(0),
                a: one,
                imm: simd::mask(bits),
            }
        }
    }
}

fn lift_swar(cx: &mut LiftCx<'_>) -> R {
    let m = cx.i.mnemonic();
    let d = dst_xmm(cx)?;
    if matches!(m, Mnemonic::Pcmpeqb | Mnemonic::Pcmpeqw | Mnemonic::Pcmpeqd | Mnemonic::Pcmpeqq)
        && cx.xmm_op(1) == Ok(d)
    {
        // The all-ones idiom.
        let ones = cx.konst(u64::MAX);
        cx.write_xmm(d, V128 { lo: ones, hi: ones });
        return Ok(());
    }
    let s = cx.read_v128(1, true)?;
    cx.per_half(d, s, |cx, a, b| swar(cx, m, a, b));
    Ok(())
}

fn lift_ir2(cx: &mut LiftCx<'_>) -> R {
    let op = match cx.i.mnemonic() {
        Mnemonic::Paddq => BinOp::Add,
        Mnemonic::Psubq => BinOp::Sub,
        Mnemonic::Pand => BinOp::And,
        Mnemonic::Por => BinOp::Or,
        Mnemonic::Pxor => BinOp::Xor,
        _ => return Err(Unsupported),
    };
    let d = dst_xmm(cx)?;
    if matches!(op, BinOp::Xor | BinOp::Sub) && cx.xmm_op(1) == Ok(d) {
        // The zeroing idiom.
        let z = cx.konst(0);
        cx.write_xmm(d, V128 { lo: z, hi: z });
        return Ok(());
    }
    let s = cx.read_v128(1, true)?;
    cx.per_half(d, s, |_, a, b| bin_op(op, a, b));
    Ok(())
}

fn lift_pandn(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let s = cx.read_v128(1, true)?;
    cx.per_half(d, s, |cx, a, b| {
        let n = cx.un(UnOp::Not, Width::W64, a);
        bin_op(BinOp::And, n, b)
    });
    Ok(())
}

/// The shift count of PSLL*/PSRL*/PSRA*: the immediate, or the low quadword of the
/// xmm/m128 source (aligned).
fn shift_count(cx: &mut LiftCx<'_>) -> Result<Slot, Unsupported> {
    match cx.imm(1) {
        Some(v) => Ok(cx.konst(v & 0xff)),
        None => Ok(cx.read_v128(1, true)?.lo),
    }
}

fn lift_shift(cx: &mut LiftCx<'_>) -> R {
    let h = lane2_helper(cx.i.mnemonic()).ok_or(Unsupported)?;
    let d = dst_xmm(cx)?;
    let mut c = shift_count(cx)?;
    if c.is_guest() {
        // The count may be the destination's low half, written first.
        let t = cx.temp();
        cx.emit(Op::Mov { dst: t, src: c });
        c = t;
    }
    cx.per_half(d, V128 { lo: c, hi: c }, |_, a, c| pure_call(h, &[a, c]));
    Ok(())
}

fn lift_shift_q(cx: &mut LiftCx<'_>) -> R {
    let op = if cx.i.mnemonic() == Mnemonic::Psllq { BinOp::Shl } else { BinOp::Shr };
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    if let Some(n) = cx.imm(1) {
        let n = n & 0xff;
        let v = if n > 63 {
            let z = cx.konst(0);
            V128 { lo: z, hi: z }
        } else {
            let lo = cx.bin_imm(op, Width::W64, dv.lo, n);
            let hi = cx.bin_imm(op, Width::W64, dv.hi, n);
            V128 { lo, hi }
        };
        cx.write_xmm(d, v);
        return Ok(());
    }
    let c = cx.read_v128(1, true)?.lo;
    let big = cx.cmp_imm(Cond::Ugt, Width::W64, c, 63);
    let z = cx.konst(0);
    let sl = cx.bin(op, Width::W64, dv.lo, c);
    let sh = cx.bin(op, Width::W64, dv.hi, c);
    let lo = cx.select(big, z, sl);
    let hi = cx.select(big, z, sh);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

/// Bytes `off .. off + 16` of the little-endian concatenation of the quadwords `q`
/// (`None` = zero; bytes past the end are zero), as IR on 64-bit halves.
fn funnel(cx: &mut LiftCx<'_>, q: [Option<Slot>; 4], off: u64) -> V128 {
    let mut out = [Slot(0); 2];
    for (k, o) in out.iter_mut().enumerate() {
        let b = off + 8 * k as u64;
        let qi = (b / 8) as usize;
        let sh = (b % 8) * 8;
        let a = q.get(qi).copied().flatten();
        let n = q.get(qi + 1).copied().flatten();
        let v = if sh == 0 {
            a
        } else {
            let lo = a.map(|a| cx.bin_imm(BinOp::Shr, Width::W64, a, sh));
            let hi = n.map(|n| cx.bin_imm(BinOp::Shl, Width::W64, n, 64 - sh));
            match (lo, hi) {
                (Some(l), Some(h)) => Some(cx.bin(BinOp::Or, Width::W64, l, h)),
                (l, h) => l.or(h),
            }
        };
        *o = match v {
            Some(v) => v,
            None => cx.konst(0),
        };
    }
    V128 { lo: out[0], hi: out[1] }
}

fn lift_byte_shift(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let n = imm8(cx, 1)?;
    let v = if n >= 16 {
        funnel(cx, [None; 4], 0)
    } else if cx.i.mnemonic() == Mnemonic::Psrldq {
        funnel(cx, [Some(dv.lo), Some(dv.hi), None, None], n)
    } else {
        funnel(cx, [None, None, Some(dv.lo), Some(dv.hi)], 16 - n)
    };
    cx.write_xmm(d, v);
    Ok(())
}

fn lift_palignr(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let n = imm8(cx, 2)?;
    let v = funnel(cx, [Some(s.lo), Some(s.hi), Some(dv.lo), Some(dv.hi)], n);
    cx.write_xmm(d, v);
    Ok(())
}

fn lift_pair(cx: &mut LiftCx<'_>) -> R {
    let h = lane2_helper(cx.i.mnemonic()).ok_or(Unsupported)?;
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let lo = cx.helper(h, &[dv.lo, dv.hi]);
    let hi = cx.helper(h, &[s.lo, s.hi]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

fn lift_unpack(cx: &mut LiftCx<'_>) -> R {
    let (h, high): (&'static HelperDesc, bool) = match cx.i.mnemonic() {
        Mnemonic::Punpcklbw => (&PUNPCK8, false),
        Mnemonic::Punpcklwd => (&PUNPCK16, false),
        Mnemonic::Punpckldq => (&PUNPCK32, false),
        Mnemonic::Punpckhbw => (&PUNPCK8, true),
        Mnemonic::Punpckhwd => (&PUNPCK16, true),
        Mnemonic::Punpckhdq => (&PUNPCK32, true),
        _ => return Err(Unsupported),
    };
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let (a, b) = if high { (dv.hi, s.hi) } else { (dv.lo, s.lo) };
    let z = cx.konst(0);
    let one = cx.konst(1);
    let lo = cx.helper(h, &[a, b, z]);
    let hi = cx.helper(h, &[a, b, one]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

fn lift_unpack_q(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let v = if cx.i.mnemonic() == Mnemonic::Punpcklqdq {
        V128 { lo: dv.lo, hi: s.lo }
    } else {
        V128 { lo: dv.hi, hi: s.hi }
    };
    cx.write_xmm(d, v);
    Ok(())
}

fn lift_pshufd(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let s = cx.read_v128(1, true)?;
    let imm = imm8(cx, 2)?;
    let sl = cx.konst(imm & 15);
    let sh = cx.konst(imm >> 4);
    let lo = cx.helper(&PSHUFD, &[s.lo, s.hi, sl]);
    let hi = cx.helper(&PSHUFD, &[s.lo, s.hi, sh]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

fn lift_pshufw(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let s = cx.read_v128(1, true)?;
    let imm = imm8(cx, 2)?;
    let c = cx.konst(imm);
    let v = if cx.i.mnemonic() == Mnemonic::Pshuflw {
        let lo = cx.helper(&PSHUFW, &[s.lo, c]);
        V128 { lo, hi: s.hi }
    } else {
        let hi = cx.helper(&PSHUFW, &[s.hi, c]);
        V128 { lo: s.lo, hi }
    };
    cx.write_xmm(d, v);
    Ok(())
}

fn lift_pshufb(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let lo = cx.helper(&PSHUFB, &[dv.lo, dv.hi, s.lo]);
    let hi = cx.helper(&PSHUFB, &[dv.lo, dv.hi, s.hi]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

fn lift_pblendw(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let imm = imm8(cx, 2)?;
    let mut out = [Slot(0); 2];
    for (k, o) in out.iter_mut().enumerate() {
        let bits = (imm >> (4 * k)) & 15;
        let m = (0..4).filter(|i| bits >> i & 1 != 0).fold(0u64, |m, i| m | 0xffff << (16 * i));
        let (dk, sk) = if k == 0 { (dv.lo, s.lo) } else { (dv.hi, s.hi) };
        *o = match m {
            0 => dk,
            u64::MAX => sk,
            _ => {
                let a = cx.bin_imm(BinOp::And, Width::W64, dk, !m);
                let b = cx.bin_imm(BinOp::And, Width::W64, sk, m);
                cx.bin(BinOp::Or, Width::W64, a, b)
            }
        };
    }
    cx.write_xmm(d, V128 { lo: out[0], hi: out[1] });
    Ok(())
}

fn lift_pblendvb(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let m = V128::reg(0);
    let lo = cx.helper(&PBLENDVB, &[dv.lo, s.lo, m.lo]);
    let hi = cx.helper(&PBLENDVB, &[dv.hi, s.hi, m.hi]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

/// Element width (bits) of PINSR*/PEXTR*.
fn elem_bits(m: Mnemonic) -> u32 {
    match m {
        Mnemonic::Pinsrb | Mnemonic::Pextrb => 8,
        Mnemonic::Pinsrw | Mnemonic::Pextrw => 16,
        Mnemonic::Pinsrd | Mnemonic::Pextrd => 32,
        _ => 64,
    }
}

fn lift_pinsr(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let bits = elem_bits(cx.i.mnemonic());
    let idx = imm8(cx, 2)? as u32 % (128 / bits);
    let v = cx.read(1)?;
    let (half, pos) = (idx * bits / 64, idx * bits % 64);
    let hs = if half == 0 { slot::xmm_lo(d) } else { slot::xmm_hi(d) };
    if bits == 64 {
        cx.set_slot(hs, v);
        return Ok(());
    }
    let z = cx.un(UnOp::Zext, Width::from_bytes(bits as usize / 8), v);
    let t = if pos == 0 { z } else { cx.bin_imm(BinOp::Shl, Width::W64, z, pos as u64) };
    let keep = cx.bin_imm(BinOp::And, Width::W64, Slot(hs), !(simd::mask(bits) << pos));
    let r = cx.bin(BinOp::Or, Width::W64, keep, t);
    cx.set_slot(hs, r);
    Ok(())
}

fn lift_pextr(cx: &mut LiftCx<'_>) -> R {
    if cx.has_mmx_operand() {
        return Err(Unsupported);
    }
    let s = cx.xmm_op(1)?;
    let bits = elem_bits(cx.i.mnemonic());
    let idx = imm8(cx, 2)? as u32 % (128 / bits);
    let (half, pos) = (idx * bits / 64, idx * bits % 64);
    let hs = Slot(if half == 0 { slot::xmm_lo(s) } else { slot::xmm_hi(s) });
    let v = if bits == 64 {
        hs
    } else {
        let t = if pos == 0 { hs } else { cx.bin_imm(BinOp::Shr, Width::W64, hs, pos as u64) };
        cx.un(UnOp::Zext, Width::from_bytes(bits as usize / 8), t)
    };
    cx.write(0, v)
}

fn lift_pmovx(cx: &mut LiftCx<'_>) -> R {
    let (h, w): (&'static HelperDesc, Width) = match cx.i.mnemonic() {
        Mnemonic::Pmovsxbw => (&PMOVSXBW, Width::W64),
        Mnemonic::Pmovsxbd => (&PMOVSXBD, Width::W32),
        Mnemonic::Pmovsxbq => (&PMOVSXBQ, Width::W16),
        Mnemonic::Pmovsxwd => (&PMOVSXWD, Width::W64),
        Mnemonic::Pmovsxwq => (&PMOVSXWQ, Width::W32),
        Mnemonic::Pmovsxdq => (&PMOVSXDQ, Width::W64),
        Mnemonic::Pmovzxbw => (&PMOVZXBW, Width::W64),
        Mnemonic::Pmovzxbd => (&PMOVZXBD, Width::W32),
        Mnemonic::Pmovzxbq => (&PMOVZXBQ, Width::W16),
        Mnemonic::Pmovzxwd => (&PMOVZXWD, Width::W64),
        Mnemonic::Pmovzxwq => (&PMOVZXWQ, Width::W32),
        Mnemonic::Pmovzxdq => (&PMOVZXDQ, Width::W64),
        _ => return Err(Unsupported),
    };
    let d = dst_xmm(cx)?;
    let src = cx.read_xmm_low(1, w)?;
    let z = cx.konst(0);
    let one = cx.konst(1);
    let lo = cx.helper(h, &[src, z]);
    let hi = cx.helper(h, &[src, one]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}

fn lift_ptest(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    if !cx.flags_needed() {
        return Ok(());
    }
    // ZF = (d & s) == 0, CF = (!d & s) == 0; AF OF PF SF = 0.
    let a0 = cx.bin(BinOp::And, Width::W64, dv.lo, s.lo);
    let a1 = cx.bin(BinOp::And, Width::W64, dv.hi, s.hi);
    let a = cx.bin(BinOp::Or, Width::W64, a0, a1);
    let zf = cx.cmp_imm(Cond::Eq, Width::W64, a, 0);
    let n0 = cx.un(UnOp::Not, Width::W64, dv.lo);
    let n1 = cx.un(UnOp::Not, Width::W64, dv.hi);
    let b0 = cx.bin(BinOp::And, Width::W64, n0, s.lo);
    let b1 = cx.bin(BinOp::And, Width::W64, n1, s.hi);
    let b = cx.bin(BinOp::Or, Width::W64, b0, b1);
    let cf = cx.cmp_imm(Cond::Eq, Width::W64, b, 0);
    let zbit = cx.bin_imm(BinOp::Shl, Width::W64, zf, rflags::ZF.trailing_zeros() as u64);
    let bits = cx.bin(BinOp::Or, Width::W64, zbit, cf);
    cx.set_flags_raw(bits);
    Ok(())
}

fn lift_phminposuw(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let s = cx.read_v128(1, true)?;
    let lo = cx.helper(&PHMINPOSUW, &[s.lo, s.hi]);
    cx.write_xmm_lo_zero_hi(d, lo);
    Ok(())
}

fn lift_mpsadbw(cx: &mut LiftCx<'_>) -> R {
    let d = dst_xmm(cx)?;
    let dv = V128::reg(d);
    let s = cx.read_v128(1, true)?;
    let imm = imm8(cx, 2)?;
    let shalf = if imm & 2 == 0 { s.lo } else { s.hi };
    let c0 = cx.konst(imm);
    let c1 = cx.konst(imm | 0x100);
    let lo = cx.helper(&MPSADBW, &[dv.lo, dv.hi, shalf, c0]);
    let hi = cx.helper(&MPSADBW, &[dv.lo, dv.hi, shalf, c1]);
    cx.write_xmm(d, V128 { lo, hi });
    Ok(())
}
