//! Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR SHLD SHRD, and the BMI2 forms
//! SARX SHLX SHRX RORX (no flags).
//!
//! Counts are masked to 5 bits (6 for 64-bit operands); RCL/RCR then take the masked
//! count modulo 9 (8-bit) or 17 (16-bit). A count of 0 leaves every flag unchanged. With an
//! immediate count that is decided at lift time (no flag state is emitted); with CL the
//! pending flags are committed and the new lazy state is merged into the cc slots with one
//! select per slot on `count == 0`. Because a CL-count shift may keep the flags, the
//! translator's flag liveness must not let it kill them (`may_keep_flags`). A 32-bit
//! register destination is written (zero-extended) even when the count is 0, as hardware
//! does.
//!
//! Flags: SHL/SAL and SHLD use the lazy kind `Shl`, SHR `Shr`, SAR `Sar`, SHRD `Shrd`
//! (CF = last bit shifted out; OF is defined for a count of 1 only). Rotates write only CF
//! and OF and keep SF ZF AF PF, so their new bits are merged into the current flag value.
//! SHLD/SHRD on 16-bit operands with a count above 16 have an undefined result and flags;
//! we shift the 32-bit value dst:src (SHLD) or src:dst (SHRD) by the count.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::flags::FlagOp;
use crate::cpu::{rflags, slot, Width};
use crate::ir::{BinOp, Cond, Op, Slot, UnOp};
use iced_x86::{Instruction, Mnemonic, OpKind, RflagsBits};

lifts! {
    Shl => lift_shl, Sal => lift_shl, Shr => lift_shr, Sar => lift_sar,
    Rol => lift_rol, Ror => lift_ror, Rcl => lift_rcl, Rcr => lift_rcr,
    Shld => lift_shld, Shrd => lift_shrd,
    Shlx => lift_shlx, Shrx => lift_shrx, Sarx => lift_sarx, Rorx => lift_rorx,
}

type R = Result<(), Unsupported>;

/// Whether `i` may leave the flags it writes unchanged at run time (a shift or rotate by
/// CL, whose count may be 0). Flag liveness must treat such an instruction as not killing
/// any flag.
pub(super) fn may_keep_flags(i: &Instruction) -> bool {
    use Mnemonic as M;
    let n = match i.mnemonic() {
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => 1,
        M::Shld | M::Shrd => 2,
        _ => return false,
    };
    i.op_kind(n) == OpKind::Register
}

/// A masked shift count.
#[derive(Clone, Copy)]
enum Count {
    /// Known at lift time.
    Imm(u64),
    /// In a slot (CL & mask).
    Reg(Slot),
}

fn count_mask(w: Width) -> u64 {
    if w == Width::W64 {
        63
    } else {
        31
    }
}

/// The count operand `n`, masked for an operation of width `w`.
fn count(cx: &mut LiftCx<'_>, n: u32, w: Width) -> Result<Count, Unsupported> {
    let mask = count_mask(w);
    if let Some(imm) = cx.imm(n) {
        return Ok(Count::Imm(imm & mask));
    }
    let c = cx.read(n)?;
    Ok(Count::Reg(cx.bin_imm(BinOp::And, Width::W64, c, mask)))
}

/// A shift by 0: the value stays, but a 32-bit register destination is still
/// zero-extended to 64 bits.
fn touch(cx: &mut LiftCx<'_>, a: Slot) -> R {
    if !cx.is_mem(0) && cx.width(0) == Width::W32 {
        cx.write_op(0, Op::Un { op: UnOp::Zext, w: Width::W32, dst: Slot(0), a })?;
    }
    Ok(())
}

/// `a` itself, or a copy of it when it is a guest slot about to be overwritten and the
/// flags still need its old value.
fn keep(cx: &mut LiftCx<'_>, a: Slot) -> Slot {
    if a.is_guest() && cx.flags_needed() {
        let t = cx.temp();
        cx.emit(Op::Mov { dst: t, src: a });
        t
    } else {
        a
    }
}

/// Lazy flags `fop` for a count `n` in a slot: when `n == 0` the flags stay as they are.
/// The current flags are committed, then each cc slot becomes `n == 0 ? old : new`.
fn set_flags_unless_zero(cx: &mut LiftCx<'_>, n: Slot, fop: FlagOp, w: Width, res: Slot, a: Slot) {
    if !cx.flags_needed() {
        return;
    }
    cx.commit_flags();
    let zero = cx.cmp_imm(Cond::Eq, Width::W64, n, 0);
    let code = cx.konst(fop as u64 | (w as u64) << 8);
    for (s, v) in [(slot::CC_OP, code), (slot::CC_RES, res), (slot::CC_A, a), (slot::CC_B, n)] {
        let t = cx.select(zero, Slot(s), v);
        cx.set_slot(s, t);
    }
}

/// Raw flags `new` (from a rotate); with a count slot `n`, kept as `old` when `n == 0`.
fn set_raw_unless_zero(cx: &mut LiftCx<'_>, n: Option<Slot>, old: Slot, new: Slot) {
    let v = match n {
        Some(n) => {
            let zero = cx.cmp_imm(Cond::Eq, Width::W64, n, 0);
            cx.select(zero, old, new)
        }
        None => new,
    };
    cx.set_flags_raw(v);
}

/// `old` with CF and OF replaced by the 0/1 values `cf` and `of`.
fn merge_cf_of(cx: &mut LiftCx<'_>, old: Slot, cf: Slot, of: Slot) -> Slot {
    let keep = cx.bin_imm(BinOp::And, Width::W64, old, !(rflags::CF | rflags::OF));
    let t = cx.bin(BinOp::Or, Width::W64, keep, cf);
    let o = cx.bin_imm(BinOp::Shl, Width::W64, of, 11);
    cx.bin(BinOp::Or, Width::W64, t, o)
}

/// Bit `k` of the `w`-bit value `v`, as 0/1.
fn bit(cx: &mut LiftCx<'_>, w: Width, v: Slot, k: u32) -> Slot {
    let t = cx.bin_imm(BinOp::Shr, w, v, k as u64);
    if k == w.bits() - 1 {
        t
    } else {
        cx.bin_imm(BinOp::And, Width::W64, t, 1)
    }
}

fn shift(cx: &mut LiftCx<'_>, op: BinOp, fop: FlagOp) -> R {
    let w = cx.width(0);
    let cnt = count(cx, 1, w)?;
    let a = cx.read(0)?;
    match cnt {
        Count::Imm(0) => touch(cx, a),
        Count::Imm(n) => {
            let a0 = keep(cx, a);
            let res = cx.write_op(0, Op::BinImm { op, w, dst: Slot(0), a, imm: n })?;
            cx.set_flags_imm(fop, w, res, a0, n, Slot(0));
            Ok(())
        }
        Count::Reg(n) => {
            let a0 = keep(cx, a);
            let res = cx.write_op(0, Op::Bin { op, w, dst: Slot(0), a, b: n })?;
            set_flags_unless_zero(cx, n, fop, w, res, a0);
            Ok(())
        }
    }
}

fn lift_shl(cx: &mut LiftCx<'_>) -> R {
    shift(cx, BinOp::Shl, FlagOp::Shl)
}
fn lift_shr(cx: &mut LiftCx<'_>) -> R {
    shift(cx, BinOp::Shr, FlagOp::Shr)
}
fn lift_sar(cx: &mut LiftCx<'_>) -> R {
    shift(cx, BinOp::Sar, FlagOp::Sar)
}

/// ROL/ROR: rotate within the width; CF = the bit rotated last into the other end,
/// OF = (count 1) the sign change.
fn rotate(cx: &mut LiftCx<'_>, left: bool) -> R {
    let w = cx.width(0);
    let op = if left { BinOp::Rol } else { BinOp::Ror };
    let cnt = count(cx, 1, w)?;
    let a = cx.read(0)?;
    let (res, n) = match cnt {
        Count::Imm(0) => return touch(cx, a),
        Count::Imm(k) => (cx.write_op(0, Op::BinImm { op, w, dst: Slot(0), a, imm: k })?, None),
        Count::Reg(n) => (cx.write_op(0, Op::Bin { op, w, dst: Slot(0), a, b: n })?, Some(n)),
    };
    if !cx.flags_needed() {
        return Ok(());
    }
    let old = cx.arith_flags();
    let msb = bit(cx, w, res, w.bits() - 1);
    let (cf, of) = if left {
        let cf = cx.bin_imm(BinOp::And, Width::W64, res, 1);
        (cf, cx.bin(BinOp::Xor, Width::W64, msb, cf))
    } else {
        let b2 = bit(cx, w, res, w.bits() - 2);
        (msb, cx.bin(BinOp::Xor, Width::W64, msb, b2))
    };
    let new = merge_cf_of(cx, old, cf, of);
    set_raw_unless_zero(cx, n, old, new);
    Ok(())
}

fn lift_rol(cx: &mut LiftCx<'_>) -> R {
    rotate(cx, true)
}
fn lift_ror(cx: &mut LiftCx<'_>) -> R {
    rotate(cx, false)
}

/// RCL/RCR: rotate the (width+1)-bit value CF:dst by the count modulo width+1 (for 8
/// and 16 bits; 32/64-bit counts are below the width after masking). A masked count that
/// is non-zero but 0 modulo 9/17 leaves the value and CF as they are but still writes OF
/// from the (unchanged) result, as the host CPUs do (iced reports such an immediate form
/// as writing no flag; OF is architecturally undefined for counts other than 1).
fn rotate_carry(cx: &mut LiftCx<'_>, left: bool) -> R {
    let w = cx.width(0);
    let bits = w.bits() as u64;
    let modulo = match w {
        Width::W8 => Some(9),
        Width::W16 => Some(17),
        _ => None,
    };
    let cnt = count(cx, 1, w)?;
    let a = cx.read(0)?;
    // `n`: the effective count in 0..=bits. `masked`: the masked count when it is only
    // known at run time (the flags stay unchanged when it is 0).
    let (n, masked, idle) = match cnt {
        Count::Imm(0) => return touch(cx, a),
        Count::Imm(k) => {
            let k = modulo.map_or(k, |m| k % m);
            (cx.konst(k), None, k == 0)
        }
        Count::Reg(c) => match modulo {
            Some(m) => (cx.bin_imm(BinOp::URem, Width::W64, c, m), Some(c), false),
            None => (c, Some(c), false),
        },
    };
    let need_flags = if idle { cx.flags_live(RflagsBits::OF) } else { cx.flags_needed() };
    let (old, cf) = if need_flags {
        let old = cx.arith_flags();
        (old, cx.bin_imm(BinOp::And, Width::W64, old, 1))
    } else {
        (Slot(0), cx.carry())
    };
    let (res, cf_out) = if idle {
        (a, cf)
    } else {
        let nm1 = cx.bin_imm(BinOp::Sub, Width::W64, n, 1);
        let kb = cx.konst(bits);
        let bn = cx.bin(BinOp::Sub, Width::W64, kb, n);
        let (r, cf_new) = if left {
            // (a << n) | (cf << (n-1)) | (a >> (bits+1-n)); CF = bit bits-n of a.
            let t1 = cx.bin(BinOp::Shl, w, a, n);
            let t2 = cx.bin(BinOp::Shl, w, cf, nm1);
            let hi = cx.bin(BinOp::Shr, w, a, bn);
            let t3 = cx.bin_imm(BinOp::Shr, w, hi, 1);
            let t = cx.bin(BinOp::Or, Width::W64, t1, t2);
            let r = cx.bin(BinOp::Or, Width::W64, t, t3);
            (r, cx.bin_imm(BinOp::And, Width::W64, hi, 1))
        } else {
            // (a >> n) | (cf << (bits-n)) | (a << (bits+1-n)); CF = bit n-1 of a.
            let t1 = cx.bin(BinOp::Shr, w, a, n);
            let t2 = cx.bin(BinOp::Shl, w, cf, bn);
            let a1 = cx.bin_imm(BinOp::Shl, w, a, 1);
            let t3 = cx.bin(BinOp::Shl, w, a1, bn);
            let t = cx.bin(BinOp::Or, Width::W64, t1, t2);
            let r = cx.bin(BinOp::Or, Width::W64, t, t3);
            let lo = cx.bin(BinOp::Shr, w, a, nm1);
            (r, cx.bin_imm(BinOp::And, Width::W64, lo, 1))
        };
        let out = if masked.is_some() {
            // A run-time count may be 0 (mod 9/17): then value and CF stay.
            let zero = cx.cmp_imm(Cond::Eq, Width::W64, n, 0);
            (cx.select(zero, a, r), cx.select(zero, cf, cf_new))
        } else {
            (r, cf_new)
        };
        cx.write(0, out.0)?;
        out
    };
    if !need_flags {
        return Ok(());
    }
    let msb = bit(cx, w, res, w.bits() - 1);
    let of = if left {
        cx.bin(BinOp::Xor, Width::W64, msb, cf_out)
    } else {
        let b2 = bit(cx, w, res, w.bits() - 2);
        cx.bin(BinOp::Xor, Width::W64, msb, b2)
    };
    let new = merge_cf_of(cx, old, cf_out, of);
    if idle {
        // iced says this form writes no flag, so `set_flags_raw` would skip it.
        cx.set_rflags(new, 0);
    } else {
        set_raw_unless_zero(cx, masked, old, new);
    }
    Ok(())
}

fn lift_rcl(cx: &mut LiftCx<'_>) -> R {
    rotate_carry(cx, true)
}
fn lift_rcr(cx: &mut LiftCx<'_>) -> R {
    rotate_carry(cx, false)
}

/// SHLD/SHRD dst, src, count.
fn double_shift(cx: &mut LiftCx<'_>, left: bool) -> R {
    let w = cx.width(0);
    let bits = w.bits() as u64;
    let cnt = count(cx, 2, w)?;
    let a = cx.read(0)?;
    let s = cx.read(1)?;
    let n = match cnt {
        Count::Imm(0) => return touch(cx, a),
        Count::Imm(k) => Count::Imm(k),
        Count::Reg(n) => Count::Reg(n),
    };
    let a0 = keep(cx, a);
    let sh = |cx: &mut LiftCx<'_>, op: BinOp, ww: Width, v: Slot| match n {
        Count::Imm(k) => cx.bin_imm(op, ww, v, k),
        Count::Reg(n) => cx.bin(op, ww, v, n),
    };
    let res = if w == Width::W16 {
        // Shift the 32-bit value dst:src (left) or src:dst (right) held in 64 bits.
        let (hi, lo) = if left { (a, s) } else { (s, a) };
        let h = cx.un(UnOp::Zext, Width::W16, hi);
        let h = cx.bin_imm(BinOp::Shl, Width::W64, h, 16);
        let l = cx.un(UnOp::Zext, Width::W16, lo);
        let v = cx.bin(BinOp::Or, Width::W64, h, l);
        if left {
            let t = sh(cx, BinOp::Shl, Width::W64, v);
            cx.bin_imm(BinOp::Shr, Width::W64, t, 16)
        } else {
            sh(cx, BinOp::Shr, Width::W64, v)
        }
    } else {
        // (a << n) | (s >> (bits-n)), or (a >> n) | (s << (bits-n)).
        let (op_a, op_s) = if left { (BinOp::Shl, BinOp::Shr) } else { (BinOp::Shr, BinOp::Shl) };
        let t1 = sh(cx, op_a, w, a);
        let t2 = match n {
            Count::Imm(k) => cx.bin_imm(op_s, w, s, bits - k),
            Count::Reg(n) => {
                let kb = cx.konst(bits);
                let bn = cx.bin(BinOp::Sub, Width::W64, kb, n);
                cx.bin(op_s, w, s, bn)
            }
        };
        let r = cx.bin(BinOp::Or, Width::W64, t1, t2);
        match n {
            // A 64-bit shift by `64 - 0` is a shift by 0 in the IR: keep `a` for count 0.
            Count::Reg(n) if w == Width::W64 => {
                let zero = cx.cmp_imm(Cond::Eq, Width::W64, n, 0);
                cx.select(zero, a, r)
            }
            _ => r,
        }
    };
    let res = cx.write_op(0, Op::Un { op: UnOp::Zext, w, dst: Slot(0), a: res })?;
    let fop = if left { FlagOp::Shl } else { FlagOp::Shrd };
    match n {
        Count::Imm(k) => cx.set_flags_imm(fop, w, res, a0, k, Slot(0)),
        Count::Reg(n) => set_flags_unless_zero(cx, n, fop, w, res, a0),
    }
    Ok(())
}

fn lift_shld(cx: &mut LiftCx<'_>) -> R {
    double_shift(cx, true)
}
fn lift_shrd(cx: &mut LiftCx<'_>) -> R {
    double_shift(cx, false)
}

/// SHLX/SHRX/SARX dst, src, count: no flags.
fn shift_x(cx: &mut LiftCx<'_>, op: BinOp) -> R {
    let w = cx.width(0);
    let a = cx.read(1)?;
    let c = cx.read(2)?;
    let n = cx.bin_imm(BinOp::And, Width::W64, c, count_mask(w));
    cx.write_op(0, Op::Bin { op, w, dst: Slot(0), a, b: n })?;
    Ok(())
}

fn lift_shlx(cx: &mut LiftCx<'_>) -> R {
    shift_x(cx, BinOp::Shl)
}
fn lift_shrx(cx: &mut LiftCx<'_>) -> R {
    shift_x(cx, BinOp::Shr)
}
fn lift_sarx(cx: &mut LiftCx<'_>) -> R {
    shift_x(cx, BinOp::Sar)
}

/// RORX dst, src, imm8: no flags.
fn lift_rorx(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let k = cx.imm(2).ok_or(Unsupported)? & count_mask(w);
    let a = cx.read(1)?;
    cx.write_op(0, Op::BinImm { op: BinOp::Ror, w, dst: Slot(0), a, imm: k })?;
    Ok(())
}
