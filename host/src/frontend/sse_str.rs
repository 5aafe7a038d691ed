//! SSE4.2 string and text instructions: PCMPESTRI PCMPESTRM PCMPISTRI PCMPISTRM (and the
//! REX.W forms PCMPESTRI64/PCMPESTRM64), and CRC32.
//!
//! The packed string compares follow Intel SDM vol. 2, section 4.1 ("Imm8 control byte
//! operation for PCMPESTRI / PCMPESTRM / PCMPISTRI / PCMPISTRM"): imm8[1:0] element format
//! (unsigned/signed bytes/words), imm8[3:2] aggregation (equal any, ranges, equal each,
//! equal ordered) with the invalid-element overrides of table 4-7, imm8[5:4] polarity,
//! imm8[6] output selection. One helper (`pcmpstr`, reads state: the first operand's XMM
//! register and, for the explicit-length forms, rAX/rDX) returns IntRes2, the index and the
//! flags packed in one value; the lifter writes ECX or XMM0 and the flags. The memory
//! operand has no alignment requirement. CRC32 is a pure helper computing CRC-32C.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::simd;
use super::xmm::V128;
use crate::cpu::{rflags, slot, Fault, Width};
use crate::ir::{BinOp, HelperCx, HelperDesc, UnOp};
use iced_x86::{Mnemonic, Register};

lifts! {
    Pcmpestri => lift_pcmpstr, Pcmpestri64 => lift_pcmpstr,
    Pcmpestrm => lift_pcmpstr, Pcmpestrm64 => lift_pcmpstr,
    Pcmpistri => lift_pcmpstr, Pcmpistrm => lift_pcmpstr,
    Crc32 => lift_crc32,
}

type R = Result<(), Unsupported>;

/// The outcome of a packed string compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrCmp {
    /// IntRes2: one bit per element (8 or 16 bits).
    pub mask: u32,
    /// The index ECX receives (PCMPxSTRI).
    pub index: u32,
    /// CF ZF SF OF (AF and PF clear), as RFLAGS bits.
    pub flags: u64,
}

/// Compare `a` (the first operand, XMM register) with `b` (second operand) holding `la` and
/// `lb` valid elements (already clamped to the element count) under control `imm`.
pub fn pcmpstr(a: u128, la: u32, b: u128, lb: u32, imm: u8) -> StrCmp {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let n: u32 = if words { 8 } else { 16 };
    let bits = if words { 16 } else { 8 };
    let elems = |x: u128| -> [i64; 16] {
        let mut e = [0i64; 16];
        for (i, v) in e.iter_mut().enumerate().take(n as usize) {
            let raw = (x >> (i as u32 * bits)) as u64 & simd::mask(bits);
            *v = if signed { simd::sx(raw, bits) } else { raw as i64 };
        }
        e
    };
    let (ea, eb) = (elems(a), elems(b));
    let elem = |x: &[i64; 16], i: u32| x[i as usize];
    let agg = (imm >> 2) & 3;
    // BoolRes[j][i] compares b[j] with a[i]; invalid elements force a fixed value.
    let over = |j: u32, i: u32, raw: bool| -> bool {
        match (i < la, j < lb) {
            (true, true) => raw,
            (false, false) => agg >= 2,
            (false, true) => agg == 3,
            (true, false) => false,
        }
    };
    let mut res1: u32 = 0;
    for j in 0..n {
        let bit = match agg {
            // Equal any.
            0 => (0..n).any(|i| over(j, i, elem(&eb, j) == elem(&ea, i))),
            // Ranges: a[i] <= b[j] <= a[i + 1] for even i.
            1 => (0..n).step_by(2).any(|i| {
                over(j, i, elem(&ea, i) <= elem(&eb, j))
                    && over(j, i + 1, elem(&eb, j) <= elem(&ea, i + 1))
            }),
            // Equal each.
            2 => over(j, j, elem(&eb, j) == elem(&ea, j)),
            // Equal ordered: the needle a starts at b[j].
            _ => (0..n - j).all(|i| over(j + i, i, elem(&eb, j + i) == elem(&ea, i))),
        };
        res1 |= (bit as u32) << j;
    }
    let all = (1u32 << n) - 1;
    let valid_b = (1u32 << lb) - 1;
    let mask = match (imm >> 4) & 3 {
        1 => !res1 & all,
        3 => (res1 ^ valid_b) & all,
        _ => res1,
    };
    let index = if mask == 0 {
        n
    } else if imm & 0x40 != 0 {
        31 - mask.leading_zeros()
    } else {
        mask.trailing_zeros()
    };
    let mut flags = 0;
    if mask != 0 {
        flags |= rflags::CF;
    }
    if lb < n {
        flags |= rflags::ZF;
    }
    if la < n {
        flags |= rflags::SF;
    }
    if mask & 1 != 0 {
        flags |= rflags::OF;
    }
    StrCmp { mask, index, flags }
}

/// The number of leading non-zero elements of `x` (implicit length).
fn implicit_len(x: u128, words: bool) -> u32 {
    let (n, bits) = if words { (8, 16) } else { (16, 8) };
    (0..n).find(|&i| (x >> (i * bits)) as u64 & simd::mask(bits) == 0).unwrap_or(n)
}

/// An explicit length: the absolute value of the signed register, saturated.
fn explicit_len(v: u64, wide: bool, words: bool) -> u32 {
    let n: u64 = if words { 8 } else { 16 };
    let abs =
        if wide { (v as i64).unsigned_abs() } else { (v as u32 as i32).unsigned_abs() as u64 };
    abs.min(n) as u32
}

/// `ctl` bits: 0..8 imm8, 8..12 first operand's XMM register, 12 explicit lengths, 13 REX.W.
const CTL_EXPLICIT: u64 = 1 << 12;
const CTL_WIDE: u64 = 1 << 13;

static PCMPSTR: HelperDesc = HelperDesc {
    name: "pcmpstr",
    func: helper_pcmpstr,
    reads_state: true,
    writes_state: false,
    may_fault: false,
};

/// args: ctl, second operand lo, hi. Returns IntRes2 | index << 16 | flags << 32.
fn helper_pcmpstr(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let ctl = a[0];
    let imm = (ctl & 0xff) as u8;
    let words = imm & 1 != 0;
    let x = cx.cpu.xmm(((ctl >> 8) & 15) as usize);
    let y = a[1] as u128 | (a[2] as u128) << 64;
    let (la, lb) = if ctl & CTL_EXPLICIT != 0 {
        let wide = ctl & CTL_WIDE != 0;
        let rax = cx.cpu.gpr(slot::RAX as usize);
        let rdx = cx.cpu.gpr(slot::RDX as usize);
        (explicit_len(rax, wide, words), explicit_len(rdx, wide, words))
    } else {
        (implicit_len(x, words), implicit_len(y, words))
    };
    let r = pcmpstr(x, la, y, lb, imm);
    Ok(r.mask as u64 | (r.index as u64) << 16 | r.flags << 32)
}

static EXPAND: HelperDesc = HelperDesc {
    name: "pcmpstrm.expand",
    func: helper_expand,
    reads_state: false,
    writes_state: false,
    may_fault: false,
};

/// args: IntRes2, half | words << 1. Each mask bit becomes an all-ones byte or word.
fn helper_expand(_: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let (half, words) = (a[1] & 1, a[1] & 2 != 0);
    let (bits, n) = if words { (16u32, 4u32) } else { (8, 8) };
    let m = a[0] >> (half as u32 * n);
    Ok((0..n).filter(|i| m >> i & 1 != 0).fold(0, |r, i| r | simd::mask(bits) << (i * bits)))
}

fn lift_pcmpstr(cx: &mut LiftCx<'_>) -> R {
    let m = cx.i.mnemonic();
    let a = cx.xmm_op(0)?;
    let b = cx.read_v128(1, false)?;
    let imm = cx.imm(2).ok_or(Unsupported)? & 0xff;
    let mut ctl = imm | (a as u64) << 8;
    if matches!(
        m,
        Mnemonic::Pcmpestri | Mnemonic::Pcmpestrm | Mnemonic::Pcmpestri64 | Mnemonic::Pcmpestrm64
    ) {
        ctl |= CTL_EXPLICIT;
    }
    if matches!(m, Mnemonic::Pcmpestri64 | Mnemonic::Pcmpestrm64) {
        ctl |= CTL_WIDE;
    }
    let c = cx.konst(ctl);
    let r = cx.helper(&PCMPSTR, &[c, b.lo, b.hi]);
    if matches!(m, Mnemonic::Pcmpestri | Mnemonic::Pcmpestri64 | Mnemonic::Pcmpistri) {
        let sh = cx.bin_imm(BinOp::Shr, Width::W64, r, 16);
        let idx = cx.bin_imm(BinOp::And, Width::W64, sh, 0xff);
        cx.write_reg(Register::ECX, idx)?;
    } else if imm & 0x40 == 0 {
        let lo = cx.bin_imm(BinOp::And, Width::W64, r, 0xffff);
        cx.write_xmm_lo_zero_hi(0, lo);
    } else {
        let words = (imm & 1) << 1;
        let c0 = cx.konst(words);
        let c1 = cx.konst(words | 1);
        let lo = cx.helper(&EXPAND, &[r, c0]);
        let hi = cx.helper(&EXPAND, &[r, c1]);
        cx.write_xmm(0, V128 { lo, hi });
    }
    if cx.flags_needed() {
        let f = cx.bin_imm(BinOp::Shr, Width::W64, r, 32);
        cx.set_flags_raw(f);
    }
    Ok(())
}

static CRC32: HelperDesc = HelperDesc {
    name: "crc32c",
    func: helper_crc32,
    reads_state: false,
    writes_state: false,
    may_fault: false,
};

/// args: crc, data, byte count.
fn helper_crc32(_: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    Ok(simd::crc32c(a[0] as u32, a[1], a[2] as u32) as u64)
}

fn lift_crc32(cx: &mut LiftCx<'_>) -> R {
    let crc = cx.read(0)?;
    let data = cx.read(1)?;
    let n = cx.konst(cx.width(1).bytes() as u64);
    let crc32 = cx.un(UnOp::Zext, Width::W32, crc);
    let r = cx.helper(&CRC32, &[crc32, data, n]);
    let g = super::operand::gpr_ref(cx.i.op0_register()).ok_or(Unsupported)?;
    cx.set_gpr(g.n, r);
    Ok(())
}
