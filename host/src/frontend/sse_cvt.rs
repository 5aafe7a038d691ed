//! SSE/SSE2 conversions (CVTSI2SS/SD, CVT(T)SS2SI, CVT(T)SD2SI, CVTSS2SD, CVTSD2SS,
//! CVTDQ2PS/PD, CVT(T)PS2DQ, CVT(T)PD2DQ, CVTPS2PD, CVTPD2PS) and LDMXCSR/STMXCSR.
//!
//! Exactness strategy: as in `sse_fp`, every conversion executes the same instruction on
//! the host with the guest's MXCSR (`hostfp`), so rounding, the integer indefinite value,
//! DAZ and the exception flags are exactly the CPU's; unmasked exceptions raise #XM
//! through `sse_fp::sse_exec`. The MMX forms (CVTPI2PS & co.) are not lifted here.
//! MXCSR_MASK is 0xffff (DAZ supported): LDMXCSR of a value with any of bits 16..32 set
//! raises #GP(0).

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::hostfp::SseOp;
use super::sse_fp::{emit_arith, emit_to_gpr, sse_code, xreg, xsrc, SSE_ARITH};
use crate::cpu::{slot, Fault, Width};
use crate::ir::{BinOp, Slot};
use iced_x86::{Mnemonic, OpKind};

lifts! {
    Cvtsi2ss => lift_from_gpr, Cvtsi2sd => lift_from_gpr,
    Cvtss2si => lift_to_gpr, Cvttss2si => lift_to_gpr,
    Cvtsd2si => lift_to_gpr, Cvttsd2si => lift_to_gpr,
    Cvtss2sd => lift_xmm, Cvtsd2ss => lift_xmm, Cvtdq2ps => lift_xmm, Cvtdq2pd => lift_xmm,
    Cvtps2dq => lift_xmm, Cvttps2dq => lift_xmm, Cvtpd2dq => lift_xmm, Cvttpd2dq => lift_xmm,
    Cvtps2pd => lift_xmm, Cvtpd2ps => lift_xmm,
    Ldmxcsr => lift_ldmxcsr, Stmxcsr => lift_stmxcsr,
}

type R = Result<(), Unsupported>;

/// MXCSR bits that may be set (MXCSR_MASK).
pub(super) const MXCSR_MASK: u64 = 0xffff;

fn lift_from_gpr(cx: &mut LiftCx<'_>) -> R {
    let d = xreg(cx, 0)?;
    let w = cx.width(1);
    let op = match (cx.i.mnemonic(), w) {
        (Mnemonic::Cvtsi2ss, Width::W32) => SseOp::Cvtsi2ss32,
        (Mnemonic::Cvtsi2ss, Width::W64) => SseOp::Cvtsi2ss64,
        (Mnemonic::Cvtsi2sd, Width::W32) => SseOp::Cvtsi2sd32,
        (Mnemonic::Cvtsi2sd, Width::W64) => SseOp::Cvtsi2sd64,
        _ => return Err(Unsupported),
    };
    let v = cx.read(1)?;
    let k = cx.konst(sse_code(op, 0, d, 0));
    cx.helper_void(&SSE_ARITH, &[k, v, v, v]);
    Ok(())
}

fn lift_to_gpr(cx: &mut LiftCx<'_>) -> R {
    if cx.i.op0_kind() != OpKind::Register {
        return Err(Unsupported);
    }
    let w = cx.width(0);
    let op = match (cx.i.mnemonic(), w) {
        (Mnemonic::Cvtss2si, Width::W32) => SseOp::Cvtss2si32,
        (Mnemonic::Cvtss2si, Width::W64) => SseOp::Cvtss2si64,
        (Mnemonic::Cvttss2si, Width::W32) => SseOp::Cvttss2si32,
        (Mnemonic::Cvttss2si, Width::W64) => SseOp::Cvttss2si64,
        (Mnemonic::Cvtsd2si, Width::W32) => SseOp::Cvtsd2si32,
        (Mnemonic::Cvtsd2si, Width::W64) => SseOp::Cvtsd2si64,
        (Mnemonic::Cvttsd2si, Width::W32) => SseOp::Cvttsd2si32,
        (Mnemonic::Cvttsd2si, Width::W64) => SseOp::Cvttsd2si64,
        _ => return Err(Unsupported),
    };
    let src = xsrc(cx, 1)?;
    let v = emit_to_gpr(cx, op, src);
    cx.write(0, v)
}

fn lift_xmm(cx: &mut LiftCx<'_>) -> R {
    use Mnemonic as M;
    let op = match cx.i.mnemonic() {
        M::Cvtss2sd => SseOp::Cvtss2sd,
        M::Cvtsd2ss => SseOp::Cvtsd2ss,
        M::Cvtdq2ps => SseOp::Cvtdq2ps,
        M::Cvtdq2pd => SseOp::Cvtdq2pd,
        M::Cvtps2dq => SseOp::Cvtps2dq,
        M::Cvttps2dq => SseOp::Cvttps2dq,
        M::Cvtpd2dq => SseOp::Cvtpd2dq,
        M::Cvttpd2dq => SseOp::Cvttpd2dq,
        M::Cvtps2pd => SseOp::Cvtps2pd,
        M::Cvtpd2ps => SseOp::Cvtpd2ps,
        _ => return Err(Unsupported),
    };
    // The MMX-register forms share no mnemonic with these; still insist on xmm operands.
    let d = xreg(cx, 0)?;
    let src = xsrc(cx, 1)?;
    emit_arith(cx, op, 0, d, src);
    Ok(())
}

fn lift_ldmxcsr(cx: &mut LiftCx<'_>) -> R {
    let a = cx.addr()?;
    let v = cx.load(Width::W32, a);
    let bad = cx.bin_imm(BinOp::And, Width::W64, v, !MXCSR_MASK);
    cx.fault_if(bad, Fault::GeneralProtection(0));
    cx.set_slot(slot::MXCSR, v);
    Ok(())
}

fn lift_stmxcsr(cx: &mut LiftCx<'_>) -> R {
    let a = cx.addr()?;
    cx.store(Width::W32, a, Slot(slot::MXCSR));
    Ok(())
}
