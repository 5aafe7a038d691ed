//! Bit instructions: BT BTS BTR BTC (with LOCK forms), BSF BSR, POPCNT LZCNT TZCNT,
//! BSWAP, and the BMI1/BMI2 group ANDN BEXTR BLSI BLSMSK BLSR BZHI PDEP PEXT.
//!
//! BT*: with an immediate or a register operand the bit number is taken modulo the
//! operand width. With a memory operand and a register bit offset, the offset is a signed
//! `width`-bit number that also selects the addressed unit: the access goes to
//! `ea + (offset >> log2(width)) * bytes` (arithmetic shift), so it can reach far outside
//! the addressed operand. CF = the selected bit, ZF is unchanged, OF SF AF PF are
//! undefined (we clear them). A 32-bit address size with a register offset into memory is
//! not supported (#UD).
//!
//! BSF/BSR leave the destination unchanged when the source is 0 (what Intel and AMD
//! CPUs do) and set ZF = (source == 0). POPCNT clears every flag but ZF = (source == 0);
//! LZCNT/TZCNT set CF = (source == 0) and ZF = (result == 0).
//!
//! PDEP/PEXT are loops over the mask bits and go through a helper; the rest is a handful
//! of IR ops. The AMD TBM form of BEXTR (immediate control) is not lifted (#UD, as on
//! CPUs without TBM).

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::flags::FlagOp;
use super::operand::gpr_ref;
use crate::cpu::{slot, Fault, Width};
use crate::ir::{AtomicOp, BinOp, Cond, HelperCx, HelperDesc, Op, Slot, UnOp};
use iced_x86::{ConditionCode, OpKind, RflagsBits};

lifts! {
    Bt => lift_bt, Bts => lift_bts, Btr => lift_btr, Btc => lift_btc,
    Bsf => lift_bsf, Bsr => lift_bsr,
    Popcnt => lift_popcnt, Lzcnt => lift_lzcnt, Tzcnt => lift_tzcnt,
    Bswap => lift_bswap,
    Andn => lift_andn, Bextr => lift_bextr, Blsi => lift_blsi, Blsmsk => lift_blsmsk,
    Blsr => lift_blsr, Bzhi => lift_bzhi, Pdep => lift_pdep, Pext => lift_pext,
}

type R = Result<(), Unsupported>;

/// What a bit-test instruction does to the selected bit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    Test,
    Set,
    Reset,
    Complement,
}

/// Where the bit number comes from.
#[derive(Clone, Copy)]
enum BitNum {
    /// An immediate, already reduced modulo the width.
    Imm(u64),
    /// A slot holding the number modulo the width.
    Reg(Slot),
}

/// `1 << bit` as a slot.
fn bit_mask(cx: &mut LiftCx<'_>, n: BitNum) -> Slot {
    match n {
        BitNum::Imm(k) => cx.konst(1 << k),
        BitNum::Reg(s) => {
            let one = cx.konst(1);
            cx.bin(BinOp::Shl, Width::W64, one, s)
        }
    }
}

/// The selected bit of `v` as 0/1.
fn select_bit(cx: &mut LiftCx<'_>, w: Width, v: Slot, n: BitNum) -> Slot {
    let t = match n {
        BitNum::Imm(k) => cx.bin_imm(BinOp::Shr, w, v, k),
        BitNum::Reg(s) => cx.bin(BinOp::Shr, w, v, s),
    };
    cx.bin_imm(BinOp::And, Width::W64, t, 1)
}

/// The new value of the unit `v` after `op` on bit `n` (not for `Test`).
fn modify(cx: &mut LiftCx<'_>, w: Width, op: BitOp, v: Slot, n: BitNum) -> Op {
    match (op, n) {
        (BitOp::Set, BitNum::Imm(k)) => {
            Op::BinImm { op: BinOp::Or, w, dst: Slot(0), a: v, imm: 1 << k }
        }
        (BitOp::Reset, BitNum::Imm(k)) => {
            Op::BinImm { op: BinOp::And, w, dst: Slot(0), a: v, imm: !(1u64 << k) }
        }
        (_, BitNum::Imm(k)) => Op::BinImm { op: BinOp::Xor, w, dst: Slot(0), a: v, imm: 1 << k },
        (_, BitNum::Reg(_)) => {
            let m = bit_mask(cx, n);
            match op {
                BitOp::Set => Op::Bin { op: BinOp::Or, w, dst: Slot(0), a: v, b: m },
                BitOp::Reset => {
                    let nm = cx.un(UnOp::Not, Width::W64, m);
                    Op::Bin { op: BinOp::And, w, dst: Slot(0), a: v, b: nm }
                }
                _ => Op::Bin { op: BinOp::Xor, w, dst: Slot(0), a: v, b: m },
            }
        }
    }
}

/// BT/BTS/BTR/BTC.
fn bit_test(cx: &mut LiftCx<'_>, op: BitOp) -> R {
    let w = cx.width(0);
    let bits = w.bits() as u64;
    let need = cx.flags_needed();
    // ZF is preserved: fetch it (fused with the pending flag op when possible) first.
    let zf =
        if need && cx.flags_live(RflagsBits::ZF) { Some(cx.cond(ConditionCode::e)) } else { None };
    let locked = cx.locked();
    if locked && (op == BitOp::Test || !cx.is_mem(0)) {
        return Err(Unsupported);
    }
    let (num, unit_addr) = match cx.imm(1) {
        Some(k) => (BitNum::Imm(k & (bits - 1)), None),
        None => {
            let off = cx.read(1)?;
            let n = BitNum::Reg(cx.bin_imm(BinOp::And, Width::W64, off, bits - 1));
            if cx.is_mem(0) {
                let i = cx.i;
                if i.memory_base().size() == 4 || i.memory_index().size() == 4 {
                    return Err(Unsupported);
                }
                // ea + (sext(offset) >> log2(bits)) * bytes
                let s = cx.un(UnOp::Sext, w, off);
                let units = cx.bin_imm(BinOp::Sar, Width::W64, s, bits.trailing_zeros() as u64);
                let delta =
                    cx.bin_imm(BinOp::Shl, Width::W64, units, w.bytes().trailing_zeros() as u64);
                let ea = cx.addr()?;
                (n, Some(cx.bin(BinOp::Add, Width::W64, ea, delta)))
            } else {
                (n, None)
            }
        }
    };
    let addr = match unit_addr {
        Some(a) => Some(a),
        None if cx.is_mem(0) => Some(cx.addr()?),
        None => None,
    };
    let cf = if locked {
        let addr = addr.ok_or(Unsupported)?;
        let m = bit_mask(cx, num);
        let (aop, val) = match op {
            BitOp::Set => (AtomicOp::Or, m),
            BitOp::Reset => (AtomicOp::And, cx.un(UnOp::Not, Width::W64, m)),
            _ => (AtomicOp::Xor, m),
        };
        let old = cx.temp();
        cx.emit(Op::AtomicRmw { op: aop, w, dst: old, addr, val });
        select_bit(cx, w, old, num)
    } else {
        let v = match addr {
            Some(a) => cx.load(w, a),
            None => cx.read(0)?,
        };
        let cf = select_bit(cx, w, v, num);
        if op != BitOp::Test {
            let new = modify(cx, w, op, v, num);
            match addr {
                Some(a) => {
                    let t = cx.temp();
                    let mut new = new;
                    super::cx::set_dst(&mut new, t);
                    cx.emit(new);
                    cx.store(w, a, t);
                }
                None => {
                    cx.write_op(0, new)?;
                }
            }
        }
        cf
    };
    if need {
        let bits = match zf {
            Some(z) => {
                let zs = cx.bin_imm(BinOp::Shl, Width::W64, z, 6);
                cx.bin(BinOp::Or, Width::W64, zs, cf)
            }
            None => cf,
        };
        cx.set_flags_raw(bits);
    }
    Ok(())
}

fn lift_bt(cx: &mut LiftCx<'_>) -> R {
    bit_test(cx, BitOp::Test)
}
fn lift_bts(cx: &mut LiftCx<'_>) -> R {
    bit_test(cx, BitOp::Set)
}
fn lift_btr(cx: &mut LiftCx<'_>) -> R {
    bit_test(cx, BitOp::Reset)
}
fn lift_btc(cx: &mut LiftCx<'_>) -> R {
    bit_test(cx, BitOp::Complement)
}

/// Set the raw flags `cf | zf << 6 | sf << 7` (each 0/1 or absent = 0).
fn raw_flags(cx: &mut LiftCx<'_>, cf: Option<Slot>, zf: Option<Slot>, sf: Option<Slot>) {
    let mut acc: Option<Slot> = cf;
    for (f, sh) in [(zf, 6), (sf, 7)] {
        if let Some(f) = f {
            let t = cx.bin_imm(BinOp::Shl, Width::W64, f, sh);
            acc = Some(match acc {
                Some(a) => cx.bin(BinOp::Or, Width::W64, a, t),
                None => t,
            });
        }
    }
    let v = match acc {
        Some(v) => v,
        None => cx.konst(0),
    };
    cx.set_flags_raw(v);
}

/// BSF/BSR: the index of the lowest/highest set bit; destination unchanged for 0.
fn bit_scan(cx: &mut LiftCx<'_>, reverse: bool) -> R {
    let w = cx.width(0);
    if cx.i.op0_kind() != OpKind::Register {
        return Err(Unsupported);
    }
    let g = gpr_ref(cx.i.op0_register()).ok_or(Unsupported)?;
    let src = cx.read(1)?;
    let zero = cx.cmp_imm(Cond::Eq, w, src, 0);
    let idx = if reverse {
        let c = cx.un(UnOp::Clz, w, src);
        cx.bin_imm(BinOp::Xor, Width::W64, c, w.bits() as u64 - 1)
    } else {
        cx.un(UnOp::Ctz, w, src)
    };
    match w {
        // The whole register stays as it is for a zero source (no zero extension).
        Width::W32 | Width::W64 => {
            let full = Slot(slot::gpr(g.n));
            let v = cx.select(zero, full, idx);
            cx.set_gpr(g.n, v);
        }
        _ => {
            let old = cx.read(0)?;
            let v = cx.select(zero, old, idx);
            cx.write(0, v)?;
        }
    }
    if cx.flags_needed() {
        raw_flags(cx, None, Some(zero), None);
    }
    Ok(())
}

fn lift_bsf(cx: &mut LiftCx<'_>) -> R {
    bit_scan(cx, false)
}
fn lift_bsr(cx: &mut LiftCx<'_>) -> R {
    bit_scan(cx, true)
}

fn lift_popcnt(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let src = cx.read(1)?;
    let zero = if cx.flags_needed() { Some(cx.cmp_imm(Cond::Eq, w, src, 0)) } else { None };
    cx.write_op(0, Op::Un { op: UnOp::Popcnt, w, dst: Slot(0), a: src })?;
    if let Some(z) = zero {
        raw_flags(cx, None, Some(z), None);
    }
    Ok(())
}

/// LZCNT/TZCNT: the count (width for 0); CF = (source == 0), ZF = (result == 0).
fn count_zeros(cx: &mut LiftCx<'_>, op: UnOp) -> R {
    let w = cx.width(0);
    let src = cx.read(1)?;
    let cf = if cx.flags_needed() { Some(cx.cmp_imm(Cond::Eq, w, src, 0)) } else { None };
    let r = cx.write_op(0, Op::Un { op, w, dst: Slot(0), a: src })?;
    if cf.is_some() {
        let zf = cx.cmp_imm(Cond::Eq, w, r, 0);
        raw_flags(cx, cf, Some(zf), None);
    }
    Ok(())
}

fn lift_lzcnt(cx: &mut LiftCx<'_>) -> R {
    count_zeros(cx, UnOp::Clz)
}
fn lift_tzcnt(cx: &mut LiftCx<'_>) -> R {
    count_zeros(cx, UnOp::Ctz)
}

/// BSWAP r32/r64. The 16-bit form is undefined in the SDM; CPUs clear the register's
/// low 16 bits, which is what we do.
fn lift_bswap(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    if w == Width::W16 {
        let z = cx.konst(0);
        return cx.write(0, z);
    }
    let a = cx.read(0)?;
    cx.write_op(0, Op::Un { op: UnOp::Bswap, w, dst: Slot(0), a })?;
    Ok(())
}

/// ANDN dst, a, b: `!a & b`; SF ZF from the result, CF = OF = 0.
fn lift_andn(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let a = cx.read(1)?;
    let b = cx.read(2)?;
    let na = cx.un(UnOp::Not, w, a);
    let r = cx.write_op(0, Op::Bin { op: BinOp::And, w, dst: Slot(0), a: na, b })?;
    cx.set_flags(FlagOp::Logic, w, r, r, r, r);
    Ok(())
}

/// BEXTR dst, src, ctl: `len = ctl[15:8]` bits of `src` from bit `ctl[7:0]`.
fn lift_bextr(cx: &mut LiftCx<'_>) -> R {
    if cx.i.op_kind(2) != OpKind::Register {
        return Err(Unsupported);
    }
    let w = cx.width(0);
    let bits = w.bits() as u64;
    let src = cx.read(1)?;
    let ctl = cx.read(2)?;
    let start = cx.bin_imm(BinOp::And, Width::W64, ctl, 0xff);
    let l8 = cx.bin_imm(BinOp::Shr, Width::W64, ctl, 8);
    let len = cx.bin_imm(BinOp::And, Width::W64, l8, 0xff);
    // IR shift counts wrap at 64: handle start >= width and len >= 64 with selects.
    let sh = cx.bin(BinOp::Shr, w, src, start);
    let zero = cx.konst(0);
    let past = cx.cmp_imm(Cond::Ugt, Width::W64, start, bits - 1);
    let sh = cx.select(past, zero, sh);
    let one = cx.konst(1);
    let p = cx.bin(BinOp::Shl, Width::W64, one, len);
    let m = cx.bin_imm(BinOp::Sub, Width::W64, p, 1);
    let all = cx.konst(u64::MAX);
    let full = cx.cmp_imm(Cond::Ugt, Width::W64, len, 63);
    let m = cx.select(full, all, m);
    let r = cx.write_op(0, Op::Bin { op: BinOp::And, w, dst: Slot(0), a: sh, b: m })?;
    cx.set_flags(FlagOp::Logic, w, r, r, r, r);
    Ok(())
}

/// ZF and SF of the `w`-bit value `r`, plus the given CF, as raw flags.
fn flags_zs(cx: &mut LiftCx<'_>, w: Width, r: Slot, cf: Slot, with_zf: bool) {
    let zf = if with_zf { Some(cx.cmp_imm(Cond::Eq, w, r, 0)) } else { None };
    let sf = cx.bin_imm(BinOp::Shr, w, r, w.bits() as u64 - 1);
    raw_flags(cx, Some(cf), zf, Some(sf));
}

/// BLSI/BLSMSK/BLSR dst, src.
fn bls(cx: &mut LiftCx<'_>, kind: u8) -> R {
    let w = cx.width(0);
    let src = cx.read(1)?;
    let need = cx.flags_needed();
    let cf = if !need {
        Slot(0)
    } else if kind == 0 {
        cx.cmp_imm(Cond::Ne, w, src, 0)
    } else {
        cx.cmp_imm(Cond::Eq, w, src, 0)
    };
    let op = match kind {
        // BLSI: src & -src; CF = (src != 0).
        0 => {
            let n = cx.un(UnOp::Neg, w, src);
            Op::Bin { op: BinOp::And, w, dst: Slot(0), a: src, b: n }
        }
        // BLSMSK: src ^ (src - 1); CF = (src == 0), ZF = 0.
        1 => {
            let m = cx.bin_imm(BinOp::Sub, w, src, 1);
            Op::Bin { op: BinOp::Xor, w, dst: Slot(0), a: src, b: m }
        }
        // BLSR: src & (src - 1); CF = (src == 0).
        _ => {
            let m = cx.bin_imm(BinOp::Sub, w, src, 1);
            Op::Bin { op: BinOp::And, w, dst: Slot(0), a: src, b: m }
        }
    };
    let r = cx.write_op(0, op)?;
    if need {
        flags_zs(cx, w, r, cf, kind != 1);
    }
    Ok(())
}

fn lift_blsi(cx: &mut LiftCx<'_>) -> R {
    bls(cx, 0)
}
fn lift_blsmsk(cx: &mut LiftCx<'_>) -> R {
    bls(cx, 1)
}
fn lift_blsr(cx: &mut LiftCx<'_>) -> R {
    bls(cx, 2)
}

/// BZHI dst, src, idx: clear the bits of `src` from `idx[7:0]` up; CF = (idx[7:0] >=
/// width), in which case `src` is kept whole.
fn lift_bzhi(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let bits = w.bits() as u64;
    let src = cx.read(1)?;
    let idx = cx.read(2)?;
    let n = cx.bin_imm(BinOp::And, Width::W64, idx, 0xff);
    let big = cx.cmp_imm(Cond::Ugt, Width::W64, n, bits - 1);
    let one = cx.konst(1);
    let p = cx.bin(BinOp::Shl, Width::W64, one, n);
    let m = cx.bin_imm(BinOp::Sub, Width::W64, p, 1);
    let cut = cx.bin(BinOp::And, w, src, m);
    let r = cx.select(big, src, cut);
    let r = cx.write_op(0, Op::Un { op: UnOp::Zext, w, dst: Slot(0), a: r })?;
    if cx.flags_needed() {
        flags_zs(cx, w, r, big, true);
    }
    Ok(())
}

/// PDEP: deposit the low bits of `src` at the set bits of `mask`, lowest first.
fn pdep(mut src: u64, mut mask: u64) -> u64 {
    let mut r = 0;
    while mask != 0 {
        if src & 1 != 0 {
            r |= mask & mask.wrapping_neg();
        }
        src >>= 1;
        mask &= mask - 1;
    }
    r
}

/// PEXT: gather the bits of `src` at the set bits of `mask` into the low bits.
fn pext(src: u64, mut mask: u64) -> u64 {
    let (mut r, mut k) = (0, 0);
    while mask != 0 {
        if src & mask & mask.wrapping_neg() != 0 {
            r |= 1 << k;
        }
        k += 1;
        mask &= mask - 1;
    }
    r
}

fn helper_pdep(_cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    Ok(pdep(a[0], a[1]))
}
fn helper_pext(_cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    Ok(pext(a[0], a[1]))
}

static PDEP: HelperDesc = HelperDesc {
    name: "pdep",
    func: helper_pdep,
    reads_state: false,
    writes_state: false,
    may_fault: false,
};
static PEXT: HelperDesc = HelperDesc {
    name: "pext",
    func: helper_pext,
    reads_state: false,
    writes_state: false,
    may_fault: false,
};

/// PDEP/PEXT dst, src, mask (no flags).
fn deposit_extract(cx: &mut LiftCx<'_>, h: &'static HelperDesc) -> R {
    let w = cx.width(0);
    let src = cx.read(1)?;
    let mask = cx.read(2)?;
    // The helper works on 64 bits: narrow both inputs to the operand width first.
    let (src, mask) = if w == Width::W64 {
        (src, mask)
    } else {
        (cx.un(UnOp::Zext, w, src), cx.un(UnOp::Zext, w, mask))
    };
    let r = cx.helper(h, &[src, mask]);
    cx.write(0, r)
}

fn lift_pdep(cx: &mut LiftCx<'_>) -> R {
    deposit_extract(cx, &PDEP)
}
fn lift_pext(cx: &mut LiftCx<'_>) -> R {
    deposit_extract(cx, &PEXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit definitions from the SDM pseudocode.
    fn pdep_model(s: u64, m: u64) -> u64 {
        let (mut r, mut k) = (0, 0);
        for i in 0..64 {
            if m >> i & 1 != 0 {
                r |= (s >> k & 1) << i;
                k += 1;
            }
        }
        r
    }
    fn pext_model(s: u64, m: u64) -> u64 {
        let (mut r, mut k) = (0, 0);
        for i in 0..64 {
            if m >> i & 1 != 0 {
                r |= (s >> i & 1) << k;
                k += 1;
            }
        }
        r
    }

    #[test]
    fn pdep_pext_match_the_sdm_pseudocode() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let edge = [0, 1, u64::MAX, 1 << 63, 0x8000_0000_0000_0001];
        for k in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = if k < 25 { edge[k % 5] } else { x };
            let m = if k < 25 { edge[k / 5] } else { x.rotate_left(23) ^ (k as u64) << 40 };
            assert_eq!(pdep(s, m), pdep_model(s, m), "pdep {s:#x} {m:#x}");
            assert_eq!(pext(s, m), pext_model(s, m), "pext {s:#x} {m:#x}");
        }
    }
}
