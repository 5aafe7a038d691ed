//! Multiplication and division: MUL IMUL (one-, two- and three-operand forms) DIV IDIV,
//! the BMI2 MULX, and the ADX carries ADCX ADOX.
//!
//! MUL/IMUL set the lazy kind `Mul` with `c` = 1 when the product does not fit the
//! destination (CF = OF = c; SF ZF AF PF are undefined). Products up to 32x32 bits are one
//! 64-bit multiply of the extended inputs; 64-bit forms use `UMulHi`/`SMulHi`.
//!
//! DIV/IDIV raise #DE for a zero divisor and for a quotient that does not fit, before any
//! register is written. Dividends up to 64 bits (8/16/32-bit forms) divide in IR; the
//! 128/64-bit forms call a helper that returns the quotient (or the fault), and the
//! remainder is `low - quotient * divisor` modulo 2^64, which is exact because the true
//! remainder fits in 64 bits. Flags are undefined after a division and are left as they
//! were.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::flags::FlagOp;
use crate::cpu::{rflags, slot, Fault, Width};
use crate::ir::{BinOp, Cond, HelperCx, HelperDesc, Op, Slot, UnOp};
use iced_x86::{ConditionCode, Register};

lifts! {
    Mul => lift_mul, Imul => lift_imul, Div => lift_div, Idiv => lift_idiv,
    Mulx => lift_mulx, Adcx => lift_adcx, Adox => lift_adox,
}

type R = Result<(), Unsupported>;

const RAX: Slot = Slot(slot::RAX);
const RDX: Slot = Slot(slot::RDX);

/// Whether a fault of `i` is an expected event whose handler sees the flags: DIV/IDIV
/// (#DE). Flag liveness then keeps every flag live before `i`, so the flags at the fault
/// are exact even when a later instruction of the block overwrites them.
pub(super) fn fault_sees_flags(i: &iced_x86::Instruction) -> bool {
    matches!(i.mnemonic(), iced_x86::Mnemonic::Div | iced_x86::Mnemonic::Idiv)
}

/// The accumulator register of width `w` (AL, AX, EAX, RAX) and the high-half register
/// (AH, DX, EDX, RDX).
fn acc_regs(w: Width) -> (Register, Register) {
    match w {
        Width::W8 => (Register::AL, Register::AH),
        Width::W16 => (Register::AX, Register::DX),
        Width::W32 => (Register::EAX, Register::EDX),
        Width::W64 => (Register::RAX, Register::RDX),
    }
}

/// The next wider width (8 → 16 → 32 → 64); 64 stays 64.
fn wider(w: Width) -> Width {
    match w {
        Width::W8 => Width::W16,
        Width::W16 => Width::W32,
        _ => Width::W64,
    }
}

/// MUL/IMUL r/m: the accumulator times the operand into the accumulator pair.
fn widening_mul(cx: &mut LiftCx<'_>, signed: bool) -> R {
    let w = cx.width(0);
    let src = cx.read(0)?;
    let ext = if signed { UnOp::Sext } else { UnOp::Zext };
    let (lo_reg, hi_reg) = acc_regs(w);
    let (lo, hi, ovf) = if w == Width::W64 {
        let lo = cx.bin(BinOp::Mul, w, RAX, src);
        let hi_op = if signed { BinOp::SMulHi } else { BinOp::UMulHi };
        let hi = cx.bin(hi_op, w, RAX, src);
        let ovf = if !cx.flags_needed() {
            Slot(0)
        } else if signed {
            let s = cx.bin_imm(BinOp::Sar, w, lo, 63);
            cx.cmp(Cond::Ne, w, hi, s)
        } else {
            cx.cmp_imm(Cond::Ne, w, hi, 0)
        };
        (lo, hi, ovf)
    } else {
        // The whole product fits the next wider width.
        let ww = wider(w);
        let a = cx.un(ext, w, RAX);
        let b = cx.un(ext, w, src);
        let p = cx.bin(BinOp::Mul, ww, a, b);
        let hi = cx.bin_imm(BinOp::Shr, ww, p, w.bits() as u64);
        let ovf = if !cx.flags_needed() {
            Slot(0)
        } else if signed {
            let s = cx.un(UnOp::Sext, w, p);
            cx.cmp(Cond::Ne, ww, s, p)
        } else {
            cx.cmp_imm(Cond::Ne, ww, hi, 0)
        };
        (p, hi, ovf)
    };
    if w == Width::W8 {
        // AX = AH:AL is the 16-bit product.
        cx.write_reg(Register::AX, lo)?;
    } else {
        cx.write_reg(lo_reg, lo)?;
        cx.write_reg(hi_reg, hi)?;
    }
    cx.set_flags(FlagOp::Mul, w, lo, lo, lo, ovf);
    Ok(())
}

fn lift_mul(cx: &mut LiftCx<'_>) -> R {
    widening_mul(cx, false)
}

/// IMUL: one operand (widening), or `dst = src1 * src2` truncated (two and three
/// operands); CF = OF = the signed product does not fit the destination.
fn lift_imul(cx: &mut LiftCx<'_>) -> R {
    match cx.i.op_count() {
        1 => widening_mul(cx, true),
        2 | 3 => {
            let w = cx.width(0);
            let (a, b, imm) = if cx.i.op_count() == 2 {
                let a = cx.read(0)?;
                (a, Some(cx.read(1)?), None)
            } else {
                let a = cx.read(1)?;
                (a, None, Some(cx.imm(2).ok_or(Unsupported)? & w.mask()))
            };
            let need = cx.flags_needed();
            // The high half, computed before the destination (maybe an input) is written.
            let hi = match (need, b, imm) {
                (false, ..) => None,
                (true, Some(b), _) => Some(cx.bin(BinOp::SMulHi, w, a, b)),
                (true, None, Some(k)) => Some(cx.bin_imm(BinOp::SMulHi, w, a, k)),
                _ => return Err(Unsupported),
            };
            let op = match (b, imm) {
                (Some(b), _) => Op::Bin { op: BinOp::Mul, w, dst: Slot(0), a, b },
                (None, Some(k)) => Op::BinImm { op: BinOp::Mul, w, dst: Slot(0), a, imm: k },
                _ => return Err(Unsupported),
            };
            let lo = cx.write_op(0, op)?;
            if let Some(hi) = hi {
                let s = cx.bin_imm(BinOp::Sar, w, lo, w.bits() as u64 - 1);
                let ovf = cx.cmp(Cond::Ne, w, hi, s);
                cx.set_flags(FlagOp::Mul, w, lo, lo, lo, ovf);
            }
            Ok(())
        }
        _ => Err(Unsupported),
    }
}

/// 128/64-bit unsigned division: args `lo, hi, divisor`; returns the quotient.
fn helper_div128(_cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let n = (a[1] as u128) << 64 | a[0] as u128;
    let d = a[2] as u128;
    if d == 0 {
        return Err(Fault::DivideError);
    }
    u64::try_from(n / d).map_err(|_| Fault::DivideError)
}

/// 128/64-bit signed division: args `lo, hi, divisor`; returns the quotient.
fn helper_idiv128(_cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let n = ((a[1] as u128) << 64 | a[0] as u128) as i128;
    let d = a[2] as i64 as i128;
    if d == 0 {
        return Err(Fault::DivideError);
    }
    // `checked_div` fails only for i128::MIN / -1, whose quotient does not fit either.
    let q = n.checked_div(d).ok_or(Fault::DivideError)?;
    i64::try_from(q).map(|q| q as u64).map_err(|_| Fault::DivideError)
}

static DIV128: HelperDesc = HelperDesc {
    name: "div128",
    func: helper_div128,
    reads_state: false,
    writes_state: false,
    may_fault: true,
};
static IDIV128: HelperDesc = HelperDesc {
    name: "idiv128",
    func: helper_idiv128,
    reads_state: false,
    writes_state: false,
    may_fault: true,
};

fn divide(cx: &mut LiftCx<'_>, signed: bool) -> R {
    let w = cx.width(0);
    let src = cx.read(0)?;
    let (q, r) = if w == Width::W64 {
        let h = if signed { &IDIV128 } else { &DIV128 };
        let q = cx.helper(h, &[RAX, RDX, src]);
        let qd = cx.bin(BinOp::Mul, w, q, src);
        let r = cx.bin(BinOp::Sub, w, RAX, qd);
        (q, r)
    } else {
        // The dividend: AX, DX:AX or EDX:EAX, as a 64-bit value.
        let n = match w {
            Width::W8 => cx.un(UnOp::Zext, Width::W16, RAX),
            _ => {
                let lo = cx.un(UnOp::Zext, w, RAX);
                let hi = cx.un(UnOp::Zext, w, RDX);
                let h = cx.bin_imm(BinOp::Shl, Width::W64, hi, w.bits() as u64);
                cx.bin(BinOp::Or, Width::W64, h, lo)
            }
        };
        let zero = cx.cmp_imm(Cond::Eq, w, src, 0);
        cx.fault_if(zero, Fault::DivideError);
        let (n, d) = if signed {
            (cx.un(UnOp::Sext, wider(w), n), cx.un(UnOp::Sext, w, src))
        } else {
            (n, cx.un(UnOp::Zext, w, src))
        };
        let (dop, rop) =
            if signed { (BinOp::SDiv, BinOp::SRem) } else { (BinOp::UDiv, BinOp::URem) };
        let q = cx.bin(dop, Width::W64, n, d);
        let bad = if signed {
            let s = cx.un(UnOp::Sext, w, q);
            cx.cmp(Cond::Ne, Width::W64, s, q)
        } else {
            cx.cmp_imm(Cond::Ugt, Width::W64, q, w.mask())
        };
        cx.fault_if(bad, Fault::DivideError);
        let r = cx.bin(rop, Width::W64, n, d);
        (q, r)
    };
    if w == Width::W8 {
        // AL = quotient, AH = remainder.
        let ql = cx.un(UnOp::Zext, Width::W8, q);
        let rl = cx.un(UnOp::Zext, Width::W8, r);
        let rh = cx.bin_imm(BinOp::Shl, Width::W64, rl, 8);
        let ax = cx.bin(BinOp::Or, Width::W64, rh, ql);
        cx.write_reg(Register::AX, ax)
    } else {
        let (qr, rr) = acc_regs(w);
        cx.write_reg(qr, q)?;
        cx.write_reg(rr, r)
    }
}

fn lift_div(cx: &mut LiftCx<'_>) -> R {
    divide(cx, false)
}
fn lift_idiv(cx: &mut LiftCx<'_>) -> R {
    divide(cx, true)
}

/// MULX hi, lo, src: `hi:lo = EDX/RDX * src`, no flags. When both destinations are the
/// same register it receives the high half.
fn lift_mulx(cx: &mut LiftCx<'_>) -> R {
    let w = cx.width(0);
    let src = cx.read(2)?;
    let (lo, hi) = match w {
        Width::W64 => (cx.bin(BinOp::Mul, w, RDX, src), cx.bin(BinOp::UMulHi, w, RDX, src)),
        Width::W32 => {
            let a = cx.un(UnOp::Zext, w, RDX);
            let b = cx.un(UnOp::Zext, w, src);
            let p = cx.bin(BinOp::Mul, Width::W64, a, b);
            (p, cx.bin_imm(BinOp::Shr, Width::W64, p, 32))
        }
        _ => return Err(Unsupported),
    };
    cx.write(1, lo)?;
    cx.write(0, hi)
}

/// ADCX/ADOX dst, src: `dst += src + CF` (or OF); only that flag is written.
fn carry_add(cx: &mut LiftCx<'_>, flag: u64) -> R {
    let w = cx.width(0);
    let cin = if flag == rflags::CF { cx.carry() } else { cx.cond(ConditionCode::o) };
    let old = if cx.flags_needed() { Some(cx.arith_flags()) } else { None };
    let a = cx.read(0)?;
    let b = cx.read(1)?;
    let t = cx.bin(BinOp::Add, w, a, b);
    let c1 = cx.cmp(Cond::Ult, w, t, a);
    let r = cx.bin(BinOp::Add, w, t, cin);
    let c2 = cx.cmp(Cond::Ult, w, r, t);
    cx.write(0, r)?;
    let Some(old) = old else {
        return Ok(());
    };
    let cout = cx.bin(BinOp::Or, Width::W64, c1, c2);
    let keep = cx.bin_imm(BinOp::And, Width::W64, old, !flag);
    let pos = flag.trailing_zeros() as u64;
    let bitv = if pos == 0 { cout } else { cx.bin_imm(BinOp::Shl, Width::W64, cout, pos) };
    let new = cx.bin(BinOp::Or, Width::W64, keep, bitv);
    cx.set_flags_raw(new);
    Ok(())
}

fn lift_adcx(cx: &mut LiftCx<'_>) -> R {
    carry_add(cx, rflags::CF)
}
fn lift_adox(cx: &mut LiftCx<'_>) -> R {
    carry_add(cx, rflags::OF)
}
