//! Portable lane arithmetic behind the SSE integer helpers.
//!
//! Every function works on 64-bit halves of XMM registers with lanes of 8, 16, 32 or 64
//! bits (lane 0 in the low bits), in plain Rust: nothing here needs a host SIMD extension.
//! Functions that need more than one half of an operand take the halves explicitly.
//! Semantics follow the Intel SDM vol. 2 pseudo-code of each instruction.

/// All-ones mask of a `bits`-wide lane.
#[inline]
pub const fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// Sign-extend the low `bits` bits of `v`.
#[inline]
pub const fn sx(v: u64, bits: u32) -> i64 {
    let s = 64 - bits;
    ((v << s) as i64) >> s
}

/// Lane `i` of width `bits` of `x`.
#[inline]
pub const fn lane(x: u64, i: u32, bits: u32) -> u64 {
    (x >> (i * bits)) & mask(bits)
}

/// Apply `f` to each pair of lanes; `f`'s result is truncated to the lane.
#[inline]
pub fn map2(bits: u32, a: u64, b: u64, f: impl Fn(u64, u64) -> u64) -> u64 {
    let m = mask(bits);
    let mut r = 0;
    let mut sh = 0;
    while sh < 64 {
        r |= (f((a >> sh) & m, (b >> sh) & m) & m) << sh;
        sh += bits;
    }
    r
}

/// Apply `f` to each lane.
#[inline]
pub fn map1(bits: u32, a: u64, f: impl Fn(u64) -> u64) -> u64 {
    map2(bits, a, 0, |x, _| f(x))
}

/// Signed saturation of `v` to a `bits`-wide lane (result masked to the lane).
#[inline]
pub fn sat_s(v: i64, bits: u32) -> u64 {
    let max = (1i64 << (bits - 1)) - 1;
    (v.clamp(-max - 1, max) as u64) & mask(bits)
}

/// Unsigned saturation of `v` to a `bits`-wide lane (`bits` < 64).
#[inline]
pub fn sat_u(v: i64, bits: u32) -> u64 {
    v.clamp(0, mask(bits) as i64) as u64
}

/// PADDS*: signed saturating add.
pub fn adds(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| sat_s(sx(x, bits) + sx(y, bits), bits))
}
/// PADDUS*: unsigned saturating add.
pub fn addus(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| sat_u((x + y) as i64, bits))
}
/// PSUBS*: signed saturating subtract.
pub fn subs(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| sat_s(sx(x, bits) - sx(y, bits), bits))
}
/// PSUBUS*: unsigned saturating subtract.
pub fn subus(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| sat_u(x as i64 - y as i64, bits))
}
/// PMULLW / PMULLD: low half of the product.
pub fn mullo(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| x.wrapping_mul(y))
}
/// PMULHW: high 16 bits of the signed product.
pub fn mulhs16(a: u64, b: u64) -> u64 {
    map2(16, a, b, |x, y| ((sx(x, 16) * sx(y, 16)) >> 16) as u64)
}
/// PMULHUW: high 16 bits of the unsigned product.
pub fn mulhu16(a: u64, b: u64) -> u64 {
    map2(16, a, b, |x, y| (x * y) >> 16)
}
/// PMULHRSW: signed product, rounded and scaled by 2^-15.
pub fn mulhrs16(a: u64, b: u64) -> u64 {
    map2(16, a, b, |x, y| ((((sx(x, 16) * sx(y, 16)) >> 14) + 1) >> 1) as u64)
}
/// PMULUDQ: unsigned 32x32 → 64 of the low dwords.
pub fn muludq(a: u64, b: u64) -> u64 {
    (a & 0xffff_ffff) * (b & 0xffff_ffff)
}
/// PMULDQ: signed 32x32 → 64 of the low dwords.
pub fn muldq(a: u64, b: u64) -> u64 {
    (sx(a, 32) * sx(b, 32)) as u64
}
/// PMADDWD: signed word products, adjacent pairs summed into dwords (wrapping).
pub fn maddwd(a: u64, b: u64) -> u64 {
    map2(32, a, b, |x, y| {
        let p0 = sx(x, 16) * sx(y, 16);
        let p1 = sx(x >> 16, 16) * sx(y >> 16, 16);
        (p0 + p1) as u64
    })
}
/// PMADDUBSW: unsigned bytes of `a` times signed bytes of `b`, adjacent pairs summed
/// into words with signed saturation.
pub fn maddubsw(a: u64, b: u64) -> u64 {
    map2(16, a, b, |x, y| {
        let p0 = (x & 0xff) as i64 * sx(y, 8);
        let p1 = ((x >> 8) & 0xff) as i64 * sx(y >> 8, 8);
        sat_s(p0 + p1, 16)
    })
}
/// PAVGB / PAVGW: unsigned rounded average.
pub fn avg(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| (x + y + 1) >> 1)
}
/// PMINU*: unsigned minimum.
pub fn minu(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| x.min(y))
}
/// PMAXU*: unsigned maximum.
pub fn maxu(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| x.max(y))
}
/// PMINS*: signed minimum.
pub fn mins(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| if sx(x, bits) <= sx(y, bits) { x } else { y })
}
/// PMAXS*: signed maximum.
pub fn maxs(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| if sx(x, bits) >= sx(y, bits) { x } else { y })
}
/// PCMPGT*: all ones where `a > b` (signed).
pub fn cmpgt(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| if sx(x, bits) > sx(y, bits) { u64::MAX } else { 0 })
}
/// PSADBW on one half: sum of absolute byte differences in the low word.
pub fn sadbw(a: u64, b: u64) -> u64 {
    (0..8).map(|i| lane(a, i, 8).abs_diff(lane(b, i, 8))).sum()
}
/// PABS*: absolute value (the most negative value stays as is).
pub fn abs(bits: u32, a: u64) -> u64 {
    map1(bits, a, |x| sx(x, bits).unsigned_abs())
}
/// PSIGN*: negate, zero or keep each lane of `a` by the sign of `b`.
pub fn sign(bits: u32, a: u64, b: u64) -> u64 {
    map2(bits, a, b, |x, y| match sx(y, bits) {
        s if s < 0 => x.wrapping_neg(),
        0 => 0,
        _ => x,
    })
}
/// PSLL*: logical left shift by `count` (zero when `count` >= the lane width).
pub fn shl(bits: u32, a: u64, count: u64) -> u64 {
    if count >= bits as u64 {
        return 0;
    }
    map1(bits, a, |x| x << count)
}
/// PSRL*: logical right shift.
pub fn shr(bits: u32, a: u64, count: u64) -> u64 {
    if count >= bits as u64 {
        return 0;
    }
    map1(bits, a, |x| x >> count)
}
/// PSRA*: arithmetic right shift (sign fill when `count` >= the lane width).
pub fn sar(bits: u32, a: u64, count: u64) -> u64 {
    let c = count.min(bits as u64 - 1);
    map1(bits, a, |x| (sx(x, bits) >> c) as u64)
}

/// PUNPCKL* / PUNPCKH* for one output half: interleave the lanes of the low (`high` =
/// false) or high 32 bits of `a` and `b`, `a` first.
pub fn unpack(bits: u32, a: u64, b: u64, high: bool) -> u64 {
    let (x, y) = if high { (a >> 32, b >> 32) } else { (a, b) };
    let mut r = 0;
    for i in 0..32 / bits {
        r |= lane(x, i, bits) << (2 * i * bits);
        r |= lane(y, i, bits) << ((2 * i + 1) * bits);
    }
    r
}

/// PACKSS* / PACKUS* for one output half: narrow the `from`-bit signed lanes of `x`
/// (low result lanes) then `y` to half width, with signed or unsigned saturation.
pub fn pack(from: u32, unsigned: bool, x: u64, y: u64) -> u64 {
    let to = from / 2;
    let n = 64 / from;
    let mut r = 0;
    for (k, v) in [x, y].into_iter().enumerate() {
        for i in 0..n {
            let s = sx(lane(v, i, from), from);
            let t = if unsigned { sat_u(s, to) } else { sat_s(s, to) };
            r |= t << ((k as u32 * n + i) * to);
        }
    }
    r
}

/// Horizontal operation of PHADD*/PHSUB*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Horiz {
    /// Wrapping add.
    Add,
    /// Signed saturating add (16-bit lanes).
    AddSat,
    /// Wrapping subtract (even minus odd).
    Sub,
    /// Signed saturating subtract.
    SubSat,
}

/// PHADD* / PHSUB* for one output half: adjacent lane pairs of `x` give the low result
/// lanes, those of `y` the high ones.
pub fn horiz(bits: u32, op: Horiz, x: u64, y: u64) -> u64 {
    let n = 64 / bits / 2;
    let mut r = 0;
    for (k, v) in [x, y].into_iter().enumerate() {
        for i in 0..n {
            let (p, q) = (lane(v, 2 * i, bits), lane(v, 2 * i + 1, bits));
            let t = match op {
                Horiz::Add => p.wrapping_add(q) & mask(bits),
                Horiz::Sub => p.wrapping_sub(q) & mask(bits),
                Horiz::AddSat => sat_s(sx(p, bits) + sx(q, bits), bits),
                Horiz::SubSat => sat_s(sx(p, bits) - sx(q, bits), bits),
            };
            r |= t << ((k as u32 * n + i) * bits);
        }
    }
    r
}

/// PSHUFD for one output half: two 2-bit dword selectors in `sel` pick from the four
/// dwords of `lo:hi`.
pub fn pshufd(lo: u64, hi: u64, sel: u64) -> u64 {
    let d = [lo & 0xffff_ffff, lo >> 32, hi & 0xffff_ffff, hi >> 32];
    d[(sel & 3) as usize] | d[((sel >> 2) & 3) as usize] << 32
}

/// PSHUFLW / PSHUFHW on one half: four 2-bit word selectors in `imm`.
pub fn pshufw(x: u64, imm: u64) -> u64 {
    let mut r = 0;
    for i in 0..4 {
        r |= lane(x, ((imm >> (2 * i)) & 3) as u32, 16) << (16 * i);
    }
    r
}

/// PSHUFB for one output half: control bytes `ctl` select bytes of `lo:hi` (bit 7 zeroes).
pub fn pshufb(lo: u64, hi: u64, ctl: u64) -> u64 {
    let t = lo as u128 | (hi as u128) << 64;
    map1(8, ctl, |c| if c & 0x80 != 0 { 0 } else { (t >> ((c & 15) * 8)) as u64 & 0xff })
}

/// PBLENDVB on one half: bytes of `s` where the mask byte's top bit is set, else of `d`.
pub fn blendvb(d: u64, s: u64, m: u64) -> u64 {
    let sel = map1(8, m, |x| if x & 0x80 != 0 { 0xff } else { 0 });
    (s & sel) | (d & !sel)
}

/// PMOVSX* / PMOVZX* for one output half (`half` 0 or 1): lanes of width `from` in `src`
/// extended to width `to`.
pub fn movx(from: u32, to: u32, signed: bool, src: u64, half: u32) -> u64 {
    let n = 64 / to;
    let mut r = 0;
    for j in 0..n {
        let v = lane(src, half * n + j, from);
        let e = if signed { sx(v, from) as u64 & mask(to) } else { v };
        r |= e << (j * to);
    }
    r
}

/// PHMINPOSUW: the minimum unsigned word of `lo:hi` in bits 0..16 and its (lowest) index
/// in bits 16..19.
pub fn phminposuw(lo: u64, hi: u64) -> u64 {
    let mut best = (u64::MAX, 0);
    for i in 0..8 {
        let w = lane(if i < 4 { lo } else { hi }, i % 4, 16);
        if w < best.0 {
            best = (w, i as u64);
        }
    }
    best.0 | best.1 << 16
}

/// MPSADBW for output half `k` (bit 8 of `ctl`, imm8 in bits 0..8): sums of absolute
/// differences between the 4-byte block of the source selected by imm8[1:0] (`shalf` is
/// the source half holding it) and eight sliding 4-byte windows of `dlo:dhi` starting at
/// byte 4 * imm8[2].
pub fn mpsadbw(dlo: u64, dhi: u64, shalf: u64, ctl: u64) -> u64 {
    let imm = ctl & 0xff;
    let k = ((ctl >> 8) & 1) as u32;
    let d = dlo as u128 | (dhi as u128) << 64;
    let s = shalf >> ((imm & 1) * 32);
    let base = ((imm >> 2) & 1) as u32 * 4;
    let mut r = 0;
    for w in 0..4 {
        let i = base + 4 * k + w;
        let mut sum = 0u64;
        for j in 0..4 {
            let db = (d >> ((i + j) * 8)) as u64 & 0xff;
            sum += db.abs_diff(lane(s, j, 8));
        }
        r |= sum << (16 * w);
    }
    r
}

/// CRC32 (SSE4.2): the CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of the low
/// `bytes` bytes of `data`, continuing from `crc`, without pre- or post-inversion.
pub fn crc32c(crc: u32, data: u64, bytes: u32) -> u32 {
    let mut c = crc;
    for i in 0..bytes {
        c ^= (data >> (8 * i)) as u32 & 0xff;
        for _ in 0..8 {
            c = (c >> 1) ^ (0x82f6_3b78 & (c & 1).wrapping_neg());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_adds() {
        assert_eq!(adds(8, 0x7f80, 0x01ff), 0x7f80);
        assert_eq!(addus(8, 0xfff0, 0x0120), 0xffff);
        assert_eq!(subus(16, 0x0001_0005, 0x0002_0003), 0x0000_0002);
        assert_eq!(subs(16, 0x8000, 0x0001), 0x8000);
    }

    #[test]
    fn crc32c_known_value() {
        // CRC-32C("123456789") = 0xE3069283 with the standard inversions.
        let mut c = !0u32;
        for b in b"123456789" {
            c = crc32c(c, *b as u64, 1);
        }
        assert_eq!(!c, 0xe306_9283);
    }

    #[test]
    fn shuffles() {
        assert_eq!(
            pshufd(0x1111_1111_0000_0000, 0x3333_3333_2222_2222, 0b1011),
            0x2222_2222_3333_3333
        );
        assert_eq!(pshufw(0x4444_3333_2222_1111, 0b00_01_10_11), 0x1111_2222_3333_4444);
        assert_eq!(
            pshufb(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908, 0x80_0f_00_01),
            0x000f_0001
        );
        assert_eq!(unpack(8, 0x44_33_22_11, 0xdd_cc_bb_aa, false), 0xdd44_cc33_bb22_aa11);
        assert_eq!(pack(16, false, 0xffff_0100_0080_007f, 0), 0xff7f_7f7f);
        assert_eq!(pack(16, true, 0xffff_0100_0080_007f, 0), 0x00ff_807f);
    }
}
