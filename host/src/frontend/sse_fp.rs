//! SSE/SSE2/SSE3/SSE4.1 floating point: arithmetic (ADD SUB MUL DIV MIN MAX SQRT RCP RSQRT,
//! PS/PD/SS/SD), CMPxx with every predicate, (U)COMISS/SD, ADDSUB, HADD, HSUB, DPPS/DPPD,
//! ROUNDxx; bitwise AND/ANDN/OR/XOR PS/PD; data movement SHUFPS/PD, UNPCKL/H PS/PD,
//! MOVSS/MOVSD, MOVH/L PS/PD, MOVHLPS, MOVLHPS, MOVMSKPS/PD, MOVDDUP, MOVSHDUP, MOVSLDUP,
//! BLENDPS/PD, BLENDVPS/PD, INSERTPS, EXTRACTPS.
//!
//! Exactness strategy (a deliberate design decision): every instruction that computes
//! with floating-point values goes through one helper that executes the very same
//! instruction on the host with the guest's MXCSR loaded (`hostfp`), so rounding modes,
//! DAZ/FTZ, NaN propagation, exception flags and the RCP/RSQRT approximations are
//! bit-identical to the CPU. Bit-level operations (logic, moves, shuffles, blends) are
//! plain IR on the xmm slot halves: they cannot raise SIMD exceptions.
//!
//! Operands: a memory source is loaded into temporaries before the helper runs (so a page
//! fault or the #GP(0) of a misaligned 16-byte operand comes before any write), and a
//! register source is passed as its two guest slots. The helper reads the destination
//! register and MXCSR from the state and writes them back.
//!
//! Unmasked exceptions (some MXCSR mask bit clear): the host always runs with every
//! exception masked, and `sse_exec` derives what the CPU would do from the flags that run
//! raised: an unmasked pre-computation exception (IE, DE, ZE, from any lane) wins and sets
//! only the pre-computation flags; otherwise an unmasked post-computation exception (OE,
//! UE, PE; an unmasked UE is detected on tininess alone, found with a second run under
//! FTZ) sets all flags raised. Either way MXCSR is updated, the destination is not
//! written, and #XM is raised (#UD if CR4.OSXMMEXCPT is clear), as in SDM vol. 1 §11.5.
//! The instructions that can overflow or underflow are resolved lane by lane (each lane
//! one scalar host run), because a lane with an unmasked OE/UE reports PE for its result
//! rounded with an unbounded exponent (`hostfp::inexact_unbounded`), not for the masked
//! response; DPPS/DPPD are resolved stage by stage (products, then sums), as the CPU stops
//! at the first stage with an unmasked exception.
//! System-mode checks of CR0.EM/TS and CR4.OSFXSR (#UD, #NM) are not made here.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::hostfp::{self, SseFrame, SseOp};
use crate::cpu::{slot, CpuState, Fault, Width};
use crate::ir::{BinOp, HelperCx, HelperDesc, Op, Slot, UnOp};
use iced_x86::{Code, Mnemonic, OpKind};

lifts! {
    Addps => lift_arith, Addpd => lift_arith, Addss => lift_arith, Addsd => lift_arith,
    Subps => lift_arith, Subpd => lift_arith, Subss => lift_arith, Subsd => lift_arith,
    Mulps => lift_arith, Mulpd => lift_arith, Mulss => lift_arith, Mulsd => lift_arith,
    Divps => lift_arith, Divpd => lift_arith, Divss => lift_arith, Divsd => lift_arith,
    Minps => lift_arith, Minpd => lift_arith, Minss => lift_arith, Minsd => lift_arith,
    Maxps => lift_arith, Maxpd => lift_arith, Maxss => lift_arith, Maxsd => lift_arith,
    Sqrtps => lift_arith, Sqrtpd => lift_arith, Sqrtss => lift_arith, Sqrtsd => lift_arith,
    Rcpps => lift_arith, Rcpss => lift_arith, Rsqrtps => lift_arith, Rsqrtss => lift_arith,
    Addsubps => lift_arith, Addsubpd => lift_arith, Haddps => lift_arith,
    Haddpd => lift_arith, Hsubps => lift_arith, Hsubpd => lift_arith,
    Cmpps => lift_arith, Cmppd => lift_arith, Cmpss => lift_arith, Cmpsd => lift_cmpsd,
    Roundps => lift_arith, Roundpd => lift_arith, Roundss => lift_arith, Roundsd => lift_arith,
    Dpps => lift_arith, Dppd => lift_arith,
    Comiss => lift_comi, Comisd => lift_comi, Ucomiss => lift_comi, Ucomisd => lift_comi,
    Andps => lift_logic, Andpd => lift_logic, Andnps => lift_logic, Andnpd => lift_logic,
    Orps => lift_logic, Orpd => lift_logic, Xorps => lift_logic, Xorpd => lift_logic,
    Shufps => lift_shufps, Shufpd => lift_shufpd,
    Unpcklps => lift_unpck, Unpckhps => lift_unpck, Unpcklpd => lift_unpck,
    Unpckhpd => lift_unpck,
    Movss => lift_movss, Movsd => lift_movsd,
    Movhps => lift_movhl, Movhpd => lift_movhl, Movlps => lift_movhl, Movlpd => lift_movhl,
    Movhlps => lift_movhlps, Movlhps => lift_movlhps,
    Movmskps => lift_movmskps, Movmskpd => lift_movmskpd,
    Movddup => lift_movddup, Movshdup => lift_movsxdup, Movsldup => lift_movsxdup,
    Blendps => lift_blendps, Blendpd => lift_blendpd,
    Blendvps => lift_blendv, Blendvpd => lift_blendv,
    Insertps => lift_insertps, Extractps => lift_extractps,
}

type R = Result<(), Unsupported>;

const LO32: u64 = 0xffff_ffff;
const HI32: u64 = 0xffff_ffff_0000_0000;

// ---------------------------------------------------------------------------------------
// Operand plumbing shared with `sse_cvt`.

/// The xmm number of register operand `n`.
pub(super) fn xreg(cx: &LiftCx<'_>, n: u32) -> Result<u8, Unsupported> {
    if cx.i.op_kind(n) != OpKind::Register {
        return Err(Unsupported);
    }
    super::operand::xmm_num(cx.i.op_register(n)).ok_or(Unsupported)
}

/// The slots of xmm `x`: (lo, hi).
pub(super) fn xslots(x: u8) -> (Slot, Slot) {
    (Slot(slot::xmm_lo(x)), Slot(slot::xmm_hi(x)))
}

/// Raise #GP(0) unless the memory operand's address is 16-byte aligned.
pub(super) fn check_align16(cx: &mut LiftCx<'_>) -> Result<Slot, Unsupported> {
    let a = cx.addr()?;
    let m = cx.bin_imm(BinOp::And, Width::W64, a, 15);
    cx.fault_if(m, Fault::GeneralProtection(0));
    Ok(a)
}

/// Source operand `n` (xmm register or memory) as (lo, hi) slots. A memory operand of
/// 4 or 8 bytes is loaded zero-extended into `lo` (`hi` is 0); a 16-byte one must be
/// aligned (#GP(0)).
pub(super) fn xsrc(cx: &mut LiftCx<'_>, n: u32) -> Result<(Slot, Slot), Unsupported> {
    match cx.i.op_kind(n) {
        OpKind::Register => Ok(xslots(xreg(cx, n)?)),
        OpKind::Memory => {
            let size = cx.i.memory_size().size();
            match size {
                4 | 8 => {
                    let a = cx.addr()?;
                    let w = if size == 4 { Width::W32 } else { Width::W64 };
                    let lo = cx.load(w, a);
                    let hi = cx.konst(0);
                    Ok((lo, hi))
                }
                16 => {
                    let a = check_align16(cx)?;
                    let lo = cx.load(Width::W64, a);
                    let a8 = cx.bin_imm(BinOp::Add, Width::W64, a, 8);
                    let hi = cx.load(Width::W64, a8);
                    Ok((lo, hi))
                }
                _ => Err(Unsupported),
            }
        }
        _ => Err(Unsupported),
    }
}

/// Write xmm `x` halves (`None` keeps a half). Safe when a new half is the other old
/// half of the same register.
pub(super) fn set_xmm(cx: &mut LiftCx<'_>, x: u8, lo: Option<Slot>, hi: Option<Slot>) {
    let (dlo, dhi) = xslots(x);
    let mut hi = hi;
    if lo.is_some() && hi == Some(dlo) {
        let t = cx.temp();
        cx.emit(Op::Mov { dst: t, src: dlo });
        hi = Some(t);
    }
    if let Some(v) = lo {
        cx.set_slot(dlo.0, v);
    }
    if let Some(v) = hi {
        cx.set_slot(dhi.0, v);
    }
}

// ---------------------------------------------------------------------------------------
// The host-executing helper.

/// MXCSR exception flag bits.
const UE: u32 = 1 << 4;
const PRE: u32 = 0x07; // IE DE ZE
const POST: u32 = 0x38; // OE UE PE
const FTZ: u32 = 1 << 15;
/// CR4.OSXMMEXCPT.
const CR4_OSXMMEXCPT: u64 = 1 << 10;

/// Run `op` on the host for the guest: MXCSR in from the state, flags out to the state,
/// unmasked exceptions resolved as the module header says.
pub(super) fn sse_exec(
    cpu: &mut CpuState,
    op: SseOp,
    imm: u8,
    mut f: SseFrame,
) -> Result<SseFrame, Fault> {
    let mx = cpu.mxcsr() & 0xffff;
    let unmasked = !(mx >> 7) & 0x3f;
    f.mxcsr = mx;
    if unmasked == 0 {
        let out = hostfp::sse_run(op, imm, f);
        cpu.set_slot(slot::MXCSR, (out.mxcsr & 0xffff) as u64);
        return Ok(out);
    }
    f.mxcsr = mx & !0x3f;
    let out = hostfp::sse_run(op, imm, f);
    let raised = out.mxcsr & 0x3f;
    let pre = raised & PRE;
    let fault_bits = if let Some(r) = staged_fault(op, imm, &f, unmasked) {
        r
    } else if pre & unmasked != 0 {
        Some(pre)
    } else {
        let mut post = raised & POST;
        if unmasked & UE != 0 && post & UE == 0 && mx & FTZ == 0 {
            let mut g = f;
            g.mxcsr |= FTZ;
            if hostfp::sse_run(op, imm, g).mxcsr & UE != 0 {
                post |= UE;
            }
        }
        (post & unmasked != 0).then_some(pre | post)
    };
    match fault_bits {
        Some(bits) => {
            cpu.set_slot(slot::MXCSR, (mx | bits) as u64);
            Err(if cpu.cr4 & CR4_OSXMMEXCPT != 0 { Fault::SimdFp } else { Fault::InvalidOpcode })
        }
        None => {
            cpu.set_slot(slot::MXCSR, (mx | raised) as u64);
            Ok(out)
        }
    }
}

const OE: u32 = 1 << 3;
const PE: u32 = 1 << 5;
const DAZ: u32 = 1 << 6;

/// One scalar computation (a scalar `SseOp` on the low lanes of `a` and `b`).
#[derive(Clone, Copy)]
struct Lane {
    op: SseOp,
    a: u64,
    b: u64,
}

/// Run one lane with `mx` (flags clear): its flags, with PE as an unmasked OE/UE reports
/// it and UE on tininess when UE is unmasked, and its result.
fn lane_run(l: Lane, mx: u32, unmasked: u32) -> (u32, u64) {
    let mut f = SseFrame::default();
    f.dst = [l.a, 0];
    f.src = [l.b, 0];
    f.mxcsr = mx;
    let out = hostfp::sse_run(l.op, 0, f);
    let mut flags = out.mxcsr & 0x3f;
    if unmasked & UE != 0 && flags & UE == 0 && mx & FTZ == 0 {
        let mut g = f;
        g.mxcsr |= FTZ;
        flags |= hostfp::sse_run(l.op, 0, g).mxcsr & UE;
    }
    if flags & (OE | UE) & unmasked != 0 {
        flags &= !PE;
        if lane_inexact_unbounded(l, mx & DAZ != 0) {
            flags |= PE;
        }
    }
    (flags, out.dst[0])
}

fn lane_inexact_unbounded(l: Lane, daz: bool) -> bool {
    use hostfp::WideOp as W;
    use SseOp as S;
    let f32v = |v: u64| {
        let x = f32::from_bits(v as u32);
        if daz && x.is_subnormal() {
            0.0f64.copysign(x as f64)
        } else {
            x as f64
        }
    };
    let f64v = |v: u64| {
        let x = f64::from_bits(v);
        if daz && x.is_subnormal() {
            0.0f64.copysign(x)
        } else {
            x
        }
    };
    let (op, single) = match l.op {
        S::Addss => (W::Add, true),
        S::Subss => (W::Sub, true),
        S::Mulss => (W::Mul, true),
        S::Divss => (W::Div, true),
        S::Addsd => (W::Add, false),
        S::Subsd => (W::Sub, false),
        S::Mulsd => (W::Mul, false),
        S::Divsd => (W::Div, false),
        // CVTSD2SS: the double itself, to a 24-bit significand.
        S::Cvtsd2ss => return hostfp::inexact_unbounded(W::Mul, f64v(l.b), 1.0, 24),
        _ => return false,
    };
    if single {
        hostfp::inexact_unbounded(op, f32v(l.a), f32v(l.b), 24)
    } else {
        hostfp::inexact_unbounded(op, f64v(l.a), f64v(l.b), 53)
    }
}

/// Run one stage of lanes: `Err(flags)` if it raises an unmasked exception (with the
/// flags of earlier stages in `acc`), else the lane results.
fn stage(lanes: &[Lane], mx: u32, unmasked: u32, acc: &mut u32) -> Result<Vec<u64>, u32> {
    let (mut pre, mut post) = (0, 0);
    let mut res = Vec::with_capacity(lanes.len());
    for l in lanes {
        let (f, r) = lane_run(*l, mx, unmasked);
        pre |= f & PRE;
        post |= f & POST;
        res.push(r);
    }
    if pre & unmasked != 0 {
        return Err(*acc | pre);
    }
    if post & unmasked != 0 {
        return Err(*acc | pre | post);
    }
    *acc |= pre | post;
    Ok(res)
}

/// For the instructions that can overflow or underflow: the MXCSR flags of the #XM they
/// raise (`Some(Some(bits))`), or `Some(None)` if none; `None` for other instructions.
fn staged_fault(op: SseOp, imm: u8, f: &SseFrame, unmasked: u32) -> Option<Option<u32>> {
    use SseOp as S;
    let (d, s, mx) = (f.dst, f.src, f.mxcsr);
    let dw = |v: [u64; 2], j: usize| (v[j / 2] >> (32 * (j % 2))) & LO32;
    let l = |op, a, b| Lane { op, a, b };
    let lanes: Vec<Lane> = match op {
        S::Addps | S::Subps | S::Mulps | S::Divps => {
            let sop = match op {
                S::Addps => S::Addss,
                S::Subps => S::Subss,
                S::Mulps => S::Mulss,
                _ => S::Divss,
            };
            (0..4).map(|j| l(sop, dw(d, j), dw(s, j))).collect()
        }
        S::Addpd | S::Subpd | S::Mulpd | S::Divpd => {
            let sop = match op {
                S::Addpd => S::Addsd,
                S::Subpd => S::Subsd,
                S::Mulpd => S::Mulsd,
                _ => S::Divsd,
            };
            (0..2).map(|j| l(sop, d[j], s[j])).collect()
        }
        S::Addss | S::Subss | S::Mulss | S::Divss | S::Addsd | S::Subsd | S::Mulsd | S::Divsd => {
            vec![l(op, d[0], s[0])]
        }
        S::Cvtsd2ss => vec![l(op, d[0], s[0])],
        S::Cvtpd2ps => vec![l(S::Cvtsd2ss, 0, s[0]), l(S::Cvtsd2ss, 0, s[1])],
        S::Addsubps => (0..4)
            .map(|j| l(if j % 2 == 0 { S::Subss } else { S::Addss }, dw(d, j), dw(s, j)))
            .collect(),
        S::Addsubpd => vec![l(S::Subsd, d[0], s[0]), l(S::Addsd, d[1], s[1])],
        S::Haddps | S::Hsubps => {
            let sop = if op == S::Haddps { S::Addss } else { S::Subss };
            vec![
                l(sop, dw(d, 0), dw(d, 1)),
                l(sop, dw(d, 2), dw(d, 3)),
                l(sop, dw(s, 0), dw(s, 1)),
                l(sop, dw(s, 2), dw(s, 3)),
            ]
        }
        S::Haddpd | S::Hsubpd => {
            let sop = if op == S::Haddpd { S::Addsd } else { S::Subsd };
            vec![l(sop, d[0], d[1]), l(sop, s[0], s[1])]
        }
        S::Dpps => {
            let mut acc = 0;
            let sel: Vec<usize> = (0..4).filter(|j| imm >> (4 + j) & 1 != 0).collect();
            let prods: Vec<Lane> = sel.iter().map(|&j| l(S::Mulss, dw(d, j), dw(s, j))).collect();
            let r = (|| {
                let p = stage(&prods, mx, unmasked, &mut acc)?;
                let mut t = [0u64; 4];
                for (k, &j) in sel.iter().enumerate() {
                    t[j] = p[k] & LO32;
                }
                let sums = [l(S::Addss, t[0], t[1]), l(S::Addss, t[2], t[3])];
                let u = stage(&sums, mx, unmasked, &mut acc)?;
                stage(&[l(S::Addss, u[0] & LO32, u[1] & LO32)], mx, unmasked, &mut acc)?;
                Ok::<(), u32>(())
            })();
            return Some(r.err());
        }
        S::Dppd => {
            let mut acc = 0;
            let sel: Vec<usize> = (0..2).filter(|j| imm >> (4 + j) & 1 != 0).collect();
            let prods: Vec<Lane> = sel.iter().map(|&j| l(S::Mulsd, d[j], s[j])).collect();
            let r = (|| {
                let p = stage(&prods, mx, unmasked, &mut acc)?;
                let mut t = [0u64; 2];
                for (k, &j) in sel.iter().enumerate() {
                    t[j] = p[k];
                }
                stage(&[l(S::Addsd, t[0], t[1])], mx, unmasked, &mut acc)?;
                Ok::<(), u32>(())
            })();
            return Some(r.err());
        }
        _ => return None,
    };
    let mut acc = 0;
    Some(stage(&lanes, mx, unmasked, &mut acc).err())
}

/// What the helper does with the result.
const OUT_XMM: u64 = 0; // write the destination xmm register
const OUT_FLAGS: u64 = 1; // return the arithmetic flags
const OUT_GPR: u64 = 2; // return rax

/// Pack a helper's first argument: op, immediate, destination xmm, output kind.
pub(super) fn sse_code(op: SseOp, imm: u8, dst: u8, out: u64) -> u64 {
    op as u64 | (imm as u64) << 16 | (dst as u64 & 15) << 24 | out << 28
}

/// args: [sse_code, src lo, src hi, rax in]
fn helper_sse(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let op = SseOp::from_u16(a[0] as u16).ok_or(Fault::InvalidOpcode)?;
    let imm = (a[0] >> 16) as u8;
    let d = ((a[0] >> 24) & 15) as u8;
    let out_kind = (a[0] >> 28) & 3;
    let (dlo, dhi) = (slot::xmm_lo(d), slot::xmm_hi(d));
    let mut f = SseFrame::default();
    f.dst = [cx.cpu.slot(dlo), cx.cpu.slot(dhi)];
    f.src = [a[1], a[2]];
    f.gpr = a[3];
    let mut out = sse_exec(cx.cpu, op, imm, f)?;
    match out_kind {
        OUT_FLAGS => Ok(out.flags()),
        OUT_GPR => Ok(out.gpr),
        _ => {
            // DPPS/DPPD: the host broadcast the sum to every lane; keep the chosen ones.
            if op == SseOp::Dpps {
                for (j, half) in out.dst.iter_mut().enumerate() {
                    let lo = imm >> (2 * j) & 1 != 0;
                    let hi = imm >> (2 * j + 1) & 1 != 0;
                    *half &= if lo { LO32 } else { 0 } | if hi { HI32 } else { 0 };
                }
            } else if op == SseOp::Dppd {
                for (j, half) in out.dst.iter_mut().enumerate() {
                    if imm >> j & 1 == 0 {
                        *half = 0;
                    }
                }
            }
            cx.cpu.set_slot(dlo, out.dst[0]);
            cx.cpu.set_slot(dhi, out.dst[1]);
            Ok(0)
        }
    }
}

/// SSE arithmetic executed on the host: writes an xmm register and MXCSR.
pub(super) static SSE_ARITH: HelperDesc = HelperDesc {
    name: "sse_arith",
    func: helper_sse,
    reads_state: true,
    writes_state: true,
    may_fault: true,
};

/// (U)COMISS/SD: returns the flags, writes MXCSR.
static SSE_COMI: HelperDesc = HelperDesc {
    name: "sse_comi",
    func: helper_sse,
    reads_state: true,
    writes_state: true,
    may_fault: true,
};

/// Conversions to a general register: returns the integer, writes MXCSR.
pub(super) static SSE_TO_GPR: HelperDesc = HelperDesc {
    name: "sse_to_gpr",
    func: helper_sse,
    reads_state: true,
    writes_state: true,
    may_fault: true,
};

/// Call the arithmetic helper: `xmm[d] = op(xmm[d], src)`.
pub(super) fn emit_arith(cx: &mut LiftCx<'_>, op: SseOp, imm: u8, d: u8, src: (Slot, Slot)) {
    let k = cx.konst(sse_code(op, imm, d, OUT_XMM));
    cx.helper_void(&SSE_ARITH, &[k, src.0, src.1]);
}

/// Emit a helper returning rax (conversions to integers).
pub(super) fn emit_to_gpr(cx: &mut LiftCx<'_>, op: SseOp, src: (Slot, Slot)) -> Slot {
    let k = cx.konst(sse_code(op, 0, 0, OUT_GPR));
    cx.helper(&SSE_TO_GPR, &[k, src.0, src.1])
}

fn arith_op(m: Mnemonic) -> Option<SseOp> {
    use Mnemonic as M;
    Some(match m {
        M::Addps => SseOp::Addps,
        M::Addpd => SseOp::Addpd,
        M::Addss => SseOp::Addss,
        M::Addsd => SseOp::Addsd,
        M::Subps => SseOp::Subps,
        M::Subpd => SseOp::Subpd,
        M::Subss => SseOp::Subss,
        M::Subsd => SseOp::Subsd,
        M::Mulps => SseOp::Mulps,
        M::Mulpd => SseOp::Mulpd,
        M::Mulss => SseOp::Mulss,
        M::Mulsd => SseOp::Mulsd,
        M::Divps => SseOp::Divps,
        M::Divpd => SseOp::Divpd,
        M::Divss => SseOp::Divss,
        M::Divsd => SseOp::Divsd,
        M::Minps => SseOp::Minps,
        M::Minpd => SseOp::Minpd,
        M::Minss => SseOp::Minss,
        M::Minsd => SseOp::Minsd,
        M::Maxps => SseOp::Maxps,
        M::Maxpd => SseOp::Maxpd,
        M::Maxss => SseOp::Maxss,
        M::Maxsd => SseOp::Maxsd,
        M::Sqrtps => SseOp::Sqrtps,
        M::Sqrtpd => SseOp::Sqrtpd,
        M::Sqrtss => SseOp::Sqrtss,
        M::Sqrtsd => SseOp::Sqrtsd,
        M::Rcpps => SseOp::Rcpps,
        M::Rcpss => SseOp::Rcpss,
        M::Rsqrtps => SseOp::Rsqrtps,
        M::Rsqrtss => SseOp::Rsqrtss,
        M::Addsubps => SseOp::Addsubps,
        M::Addsubpd => SseOp::Addsubpd,
        M::Haddps => SseOp::Haddps,
        M::Haddpd => SseOp::Haddpd,
        M::Hsubps => SseOp::Hsubps,
        M::Hsubpd => SseOp::Hsubpd,
        M::Cmpps => SseOp::Cmpps,
        M::Cmppd => SseOp::Cmppd,
        M::Cmpss => SseOp::Cmpss,
        M::Cmpsd => SseOp::Cmpsd,
        M::Roundps => SseOp::Roundps,
        M::Roundpd => SseOp::Roundpd,
        M::Roundss => SseOp::Roundss,
        M::Roundsd => SseOp::Roundsd,
        M::Dpps => SseOp::Dpps,
        M::Dppd => SseOp::Dppd,
        _ => return None,
    })
}

fn imm8(cx: &LiftCx<'_>, n: u32) -> u8 {
    cx.imm(n).unwrap_or(0) as u8
}

fn lift_arith(cx: &mut LiftCx<'_>) -> R {
    let op = arith_op(cx.i.mnemonic()).ok_or(Unsupported)?;
    let d = xreg(cx, 0)?;
    let imm = if cx.i.op_count() > 2 { imm8(cx, 2) } else { 0 };
    let src = xsrc(cx, 1)?;
    emit_arith(cx, op, imm, d, src);
    Ok(())
}

/// CMPSD: the SSE2 compare here, the string compare (same mnemonic) elsewhere.
fn lift_cmpsd(cx: &mut LiftCx<'_>) -> R {
    match cx.i.code() {
        Code::Cmpsd_xmm_xmmm64_imm8 => lift_arith(cx),
        // CMPS m32, m32 belongs to the string family.
        _ => Err(Unsupported),
    }
}

fn lift_comi(cx: &mut LiftCx<'_>) -> R {
    let op = match cx.i.mnemonic() {
        Mnemonic::Comiss => SseOp::Comiss,
        Mnemonic::Comisd => SseOp::Comisd,
        Mnemonic::Ucomiss => SseOp::Ucomiss,
        _ => SseOp::Ucomisd,
    };
    let d = xreg(cx, 0)?;
    let src = xsrc(cx, 1)?;
    let k = cx.konst(sse_code(op, 0, d, OUT_FLAGS));
    let f = cx.helper(&SSE_COMI, &[k, src.0, src.1]);
    cx.set_flags_raw(f);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Bitwise and data movement: IR on the halves.

fn lift_logic(cx: &mut LiftCx<'_>) -> R {
    use Mnemonic as M;
    let d = xreg(cx, 0)?;
    let (dlo, dhi) = xslots(d);
    let m = cx.i.mnemonic();
    if matches!(m, M::Xorps | M::Xorpd) && cx.i.op1_kind() == OpKind::Register && xreg(cx, 1)? == d
    {
        let z = cx.konst(0);
        set_xmm(cx, d, Some(z), Some(z));
        return Ok(());
    }
    let (slo, shi) = xsrc(cx, 1)?;
    let (op, not_dst) = match m {
        M::Andps | M::Andpd => (BinOp::And, false),
        M::Andnps | M::Andnpd => (BinOp::And, true),
        M::Orps | M::Orpd => (BinOp::Or, false),
        _ => (BinOp::Xor, false),
    };
    let mut halves = [(dlo, slo), (dhi, shi)].map(|(a, b)| (a, b, a));
    for h in halves.iter_mut() {
        let a = if not_dst { cx.un(UnOp::Not, Width::W64, h.0) } else { h.0 };
        h.2 = cx.bin(op, Width::W64, a, h.1);
    }
    set_xmm(cx, d, Some(halves[0].2), Some(halves[1].2));
    Ok(())
}

/// Dword `k` (0..4) of (lo, hi) placed in the low 32 bits (upper bits zero).
fn dword_low(cx: &mut LiftCx<'_>, v: (Slot, Slot), k: u8) -> Slot {
    let half = if k < 2 { v.0 } else { v.1 };
    if k & 1 == 0 {
        cx.un(UnOp::Zext, Width::W32, half)
    } else {
        cx.bin_imm(BinOp::Shr, Width::W64, half, 32)
    }
}

/// Dword `k` of (lo, hi) placed in the high 32 bits (low bits zero).
fn dword_high(cx: &mut LiftCx<'_>, v: (Slot, Slot), k: u8) -> Slot {
    let half = if k < 2 { v.0 } else { v.1 };
    if k & 1 == 0 {
        cx.bin_imm(BinOp::Shl, Width::W64, half, 32)
    } else {
        cx.bin_imm(BinOp::And, Width::W64, half, HI32)
    }
}

/// A 64-bit half made of dword `a` of `x` (low) and dword `b` of `y` (high).
fn pair(cx: &mut LiftCx<'_>, x: (Slot, Slot), a: u8, y: (Slot, Slot), b: u8) -> Slot {
    // The same half in its natural place needs no work.
    if x == y && a & 1 == 0 && b == a + 1 {
        return if a == 0 { x.0 } else { x.1 };
    }
    let l = dword_low(cx, x, a);
    let h = dword_high(cx, y, b);
    cx.bin(BinOp::Or, Width::W64, l, h)
}

fn lift_shufps(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let imm = imm8(cx, 2);
    let s = xsrc(cx, 1)?;
    let dv = xslots(d);
    let lo = pair(cx, dv, imm & 3, dv, (imm >> 2) & 3);
    let hi = pair(cx, s, (imm >> 4) & 3, s, (imm >> 6) & 3);
    set_xmm(cx, d, Some(lo), Some(hi));
    Ok(())
}

fn lift_shufpd(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let imm = imm8(cx, 2);
    let s = xsrc(cx, 1)?;
    let dv = xslots(d);
    let lo = if imm & 1 != 0 { dv.1 } else { dv.0 };
    let hi = if imm & 2 != 0 { s.1 } else { s.0 };
    set_xmm(cx, d, Some(lo), Some(hi));
    Ok(())
}

fn lift_unpck(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let s = xsrc(cx, 1)?;
    let dv = xslots(d);
    let (lo, hi) = match cx.i.mnemonic() {
        Mnemonic::Unpcklps => (pair(cx, dv, 0, s, 0), pair(cx, dv, 1, s, 1)),
        Mnemonic::Unpckhps => (pair(cx, dv, 2, s, 2), pair(cx, dv, 3, s, 3)),
        Mnemonic::Unpcklpd => (dv.0, s.0),
        _ => (dv.1, s.1),
    };
    let lo = (lo != dv.0).then_some(lo);
    set_xmm(cx, d, lo, Some(hi));
    Ok(())
}

/// MOVSS/MOVSD: register merge, load zeroing, store.
fn lift_movs(cx: &mut LiftCx<'_>, w: Width) -> R {
    if cx.is_mem(0) {
        let s = xreg(cx, 1)?;
        let a = cx.addr()?;
        cx.store(w, a, xslots(s).0);
        return Ok(());
    }
    let d = xreg(cx, 0)?;
    if cx.is_mem(1) {
        let a = cx.addr()?;
        let v = cx.load(w, a);
        let z = cx.konst(0);
        set_xmm(cx, d, Some(v), Some(z));
        return Ok(());
    }
    let s = xreg(cx, 1)?;
    let slo = xslots(s).0;
    let v = if w == Width::W64 {
        slo
    } else {
        let keep = cx.bin_imm(BinOp::And, Width::W64, xslots(d).0, HI32);
        let low = cx.un(UnOp::Zext, Width::W32, slo);
        cx.bin(BinOp::Or, Width::W64, keep, low)
    };
    set_xmm(cx, d, Some(v), None);
    Ok(())
}

fn lift_movss(cx: &mut LiftCx<'_>) -> R {
    lift_movs(cx, Width::W32)
}

/// MOVSD: the SSE2 move here, the string move (same mnemonic) elsewhere.
fn lift_movsd(cx: &mut LiftCx<'_>) -> R {
    match cx.i.code() {
        Code::Movsd_xmm_xmmm64 | Code::Movsd_xmmm64_xmm => lift_movs(cx, Width::W64),
        // MOVS m32, m32 belongs to the string family.
        _ => Err(Unsupported),
    }
}

/// MOVHPS/MOVHPD/MOVLPS/MOVLPD: a 64-bit load into, or store from, one half.
fn lift_movhl(cx: &mut LiftCx<'_>) -> R {
    let high = matches!(cx.i.mnemonic(), Mnemonic::Movhps | Mnemonic::Movhpd);
    if cx.is_mem(0) {
        let s = xslots(xreg(cx, 1)?);
        let a = cx.addr()?;
        cx.store(Width::W64, a, if high { s.1 } else { s.0 });
        return Ok(());
    }
    if !cx.is_mem(1) {
        return Err(Unsupported);
    }
    let d = xreg(cx, 0)?;
    let a = cx.addr()?;
    let v = cx.load(Width::W64, a);
    if high {
        set_xmm(cx, d, None, Some(v));
    } else {
        set_xmm(cx, d, Some(v), None);
    }
    Ok(())
}

fn lift_movhlps(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let s = xslots(xreg(cx, 1)?);
    set_xmm(cx, d, Some(s.1), None);
    Ok(())
}

fn lift_movlhps(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let s = xslots(xreg(cx, 1)?);
    set_xmm(cx, d, None, Some(s.0));
    Ok(())
}

fn lift_movmskps(cx: &mut LiftCx<'_>) -> R {
    let (lo, hi) = xslots(xreg(cx, 1)?);
    let parts = [(lo, 31, 1), (lo, 62, 2), (hi, 29, 4), (hi, 60, 8)];
    let mut acc: Option<Slot> = None;
    for (half, sh, bit) in parts {
        let t = cx.bin_imm(BinOp::Shr, Width::W64, half, sh);
        let b = cx.bin_imm(BinOp::And, Width::W64, t, bit);
        acc = Some(match acc {
            None => b,
            Some(a) => cx.bin(BinOp::Or, Width::W64, a, b),
        });
    }
    let v = acc.ok_or(Unsupported)?;
    let r = super::operand::gpr_ref(cx.i.op0_register()).ok_or(Unsupported)?;
    cx.set_gpr(r.n, v);
    Ok(())
}

fn lift_movmskpd(cx: &mut LiftCx<'_>) -> R {
    let (lo, hi) = xslots(xreg(cx, 1)?);
    let b0 = cx.bin_imm(BinOp::Shr, Width::W64, lo, 63);
    let t = cx.bin_imm(BinOp::Shr, Width::W64, hi, 62);
    let b1 = cx.bin_imm(BinOp::And, Width::W64, t, 2);
    let r = super::operand::gpr_ref(cx.i.op0_register()).ok_or(Unsupported)?;
    cx.set_slot_op(
        slot::gpr(r.n),
        Op::Bin { op: BinOp::Or, w: Width::W64, dst: Slot(0), a: b0, b: b1 },
    );
    Ok(())
}

fn lift_movddup(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let s = xsrc(cx, 1)?;
    set_xmm(cx, d, Some(s.0), Some(s.0));
    Ok(())
}

fn lift_movsxdup(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let s = xsrc(cx, 1)?;
    let odd = cx.i.mnemonic() == Mnemonic::Movshdup;
    let k = odd as u8;
    let lo = pair(cx, s, k, s, k);
    let hi = pair(cx, s, 2 + k, s, 2 + k);
    set_xmm(cx, d, Some(lo), Some(hi));
    Ok(())
}

/// `d ^ ((d ^ s) & m)`: bits of `s` where `m` is set, of `d` elsewhere.
fn blend(cx: &mut LiftCx<'_>, d: Slot, s: Slot, m: Slot) -> Slot {
    let x = cx.bin(BinOp::Xor, Width::W64, d, s);
    let y = cx.bin(BinOp::And, Width::W64, x, m);
    cx.bin(BinOp::Xor, Width::W64, d, y)
}

/// Blend with a constant mask.
fn blend_const(cx: &mut LiftCx<'_>, d: Slot, s: Slot, m: u64) -> Slot {
    match m {
        0 => d,
        u64::MAX => s,
        _ => {
            let a = cx.bin_imm(BinOp::And, Width::W64, d, !m);
            let b = cx.bin_imm(BinOp::And, Width::W64, s, m);
            cx.bin(BinOp::Or, Width::W64, a, b)
        }
    }
}

fn dword_mask(bits: u8) -> u64 {
    (if bits & 1 != 0 { LO32 } else { 0 }) | (if bits & 2 != 0 { HI32 } else { 0 })
}

fn lift_blendps(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let imm = imm8(cx, 2);
    let s = xsrc(cx, 1)?;
    let dv = xslots(d);
    let lo = blend_const(cx, dv.0, s.0, dword_mask(imm & 3));
    let hi = blend_const(cx, dv.1, s.1, dword_mask((imm >> 2) & 3));
    set_xmm(cx, d, (lo != dv.0).then_some(lo), (hi != dv.1).then_some(hi));
    Ok(())
}

fn lift_blendpd(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let imm = imm8(cx, 2);
    let s = xsrc(cx, 1)?;
    set_xmm(cx, d, (imm & 1 != 0).then_some(s.0), (imm & 2 != 0).then_some(s.1));
    Ok(())
}

fn lift_blendv(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let s = xsrc(cx, 1)?;
    let dv = xslots(d);
    let x0 = xslots(0);
    let ps = cx.i.mnemonic() == Mnemonic::Blendvps;
    let mut out = [dv.0, dv.1];
    for (j, (dh, sh, mh)) in [(dv.0, s.0, x0.0), (dv.1, s.1, x0.1)].into_iter().enumerate() {
        let m = if ps {
            let t = cx.bin_imm(BinOp::Shl, Width::W64, mh, 32);
            let l = cx.bin_imm(BinOp::Sar, Width::W64, t, 63);
            let l = cx.un(UnOp::Zext, Width::W32, l);
            let h = cx.bin_imm(BinOp::Sar, Width::W64, mh, 63);
            let h = cx.bin_imm(BinOp::And, Width::W64, h, HI32);
            cx.bin(BinOp::Or, Width::W64, l, h)
        } else {
            cx.bin_imm(BinOp::Sar, Width::W64, mh, 63)
        };
        out[j] = blend(cx, dh, sh, m);
    }
    set_xmm(cx, d, Some(out[0]), Some(out[1]));
    Ok(())
}

fn lift_insertps(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let imm = imm8(cx, 2);
    let v = if cx.is_mem(1) {
        let a = cx.addr()?;
        cx.load(Width::W32, a)
    } else {
        let s = xslots(xreg(cx, 1)?);
        dword_low(cx, s, imm >> 6)
    };
    let dv = xslots(d);
    let cd = (imm >> 4) & 3;
    let zmask = imm & 15;
    let mut out = [dv.0, dv.1];
    for (j, half) in out.iter_mut().enumerate() {
        let zero = dword_mask(zmask >> (2 * j));
        let target = cd as usize / 2 == j;
        if !target {
            if zero != 0 {
                *half = cx.bin_imm(BinOp::And, Width::W64, *half, !zero);
            }
            continue;
        }
        let even = cd & 1 == 0;
        let (keep_mask, lane_mask) = if even { (HI32, LO32) } else { (LO32, HI32) };
        let keep = keep_mask & !zero;
        let placed = if zero & lane_mask != 0 {
            cx.konst(0)
        } else if even {
            v
        } else {
            cx.bin_imm(BinOp::Shl, Width::W64, v, 32)
        };
        *half = if keep == 0 {
            placed
        } else {
            let k = cx.bin_imm(BinOp::And, Width::W64, *half, keep);
            cx.bin(BinOp::Or, Width::W64, k, placed)
        };
    }
    set_xmm(cx, d, (out[0] != dv.0).then_some(out[0]), (out[1] != dv.1).then_some(out[1]));
    Ok(())
}

fn lift_extractps(cx: &mut LiftCx<'_>) -> R {
    let s = xslots(xreg(cx, 1)?);
    let imm = imm8(cx, 2);
    let v = dword_low(cx, s, imm & 3);
    if cx.is_mem(0) {
        let a = cx.addr()?;
        cx.store(Width::W32, a, v);
        return Ok(());
    }
    let r = super::operand::gpr_ref(cx.i.op0_register()).ok_or(Unsupported)?;
    cx.set_gpr(r.n, v);
    Ok(())
}
