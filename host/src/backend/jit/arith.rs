//! Lowering of the pure IR ops (constants, moves, arithmetic, compares, selects).
//!
//! Each function mirrors one arm of `backend::interp::eval` bit for bit: values are `i64`,
//! an op of width `w` reads the low `w` bits of its inputs and writes its result
//! zero-extended (`Sext` excepted). The traps Cranelift attaches to some instructions are
//! made unreachable here: divisors are replaced by 1 when they are 0 (or -1 for signed
//! division, whose overflow Cranelift also traps on) and the result is chosen with a
//! `select`, so `x / 0 == 0` and `MIN / -1 == MIN` exactly as in the interpreter.

use super::regs::{Regs, SlotState};
use crate::cpu::Width;
use crate::ir::{BinOp, Cond, Op, UnOp};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// The Cranelift integer type of a width.
pub(super) fn ty(w: Width) -> Type {
    match w {
        Width::W8 => types::I8,
        Width::W16 => types::I16,
        Width::W32 => types::I32,
        Width::W64 => types::I64,
    }
}

/// `v & w.mask()` (as reduce + extend, which x86 does in one `mov r32`/`movzx`).
fn zext(fb: &mut FunctionBuilder<'_>, w: Width, v: Value) -> Value {
    if w == Width::W64 {
        v
    } else {
        let n = fb.ins().ireduce(ty(w), v);
        fb.ins().uextend(types::I64, n)
    }
}

/// `w.sext(v)`.
fn sext(fb: &mut FunctionBuilder<'_>, w: Width, v: Value) -> Value {
    if w == Width::W64 {
        v
    } else {
        let n = fb.ins().ireduce(ty(w), v);
        fb.ins().sextend(types::I64, n)
    }
}

/// The low `w` bits of `v` as a `w`-typed value.
fn narrow(fb: &mut FunctionBuilder<'_>, w: Width, v: Value) -> Value {
    if w == Width::W64 {
        v
    } else {
        fb.ins().ireduce(ty(w), v)
    }
}

/// A `w`-typed value zero-extended to `i64`.
fn widen(fb: &mut FunctionBuilder<'_>, w: Width, v: Value) -> Value {
    if w == Width::W64 {
        v
    } else {
        fb.ins().uextend(types::I64, v)
    }
}

fn intcc(cc: Cond) -> IntCC {
    match cc {
        Cond::Eq => IntCC::Equal,
        Cond::Ne => IntCC::NotEqual,
        Cond::Ult => IntCC::UnsignedLessThan,
        Cond::Ule => IntCC::UnsignedLessThanOrEqual,
        Cond::Ugt => IntCC::UnsignedGreaterThan,
        Cond::Uge => IntCC::UnsignedGreaterThanOrEqual,
        Cond::Slt => IntCC::SignedLessThan,
        Cond::Sle => IntCC::SignedLessThanOrEqual,
        Cond::Sgt => IntCC::SignedGreaterThan,
        Cond::Sge => IntCC::SignedGreaterThanOrEqual,
    }
}

/// `eval_bin(op, w, a, b)`.
pub(super) fn bin(fb: &mut FunctionBuilder<'_>, op: BinOp, w: Width, a: Value, b: Value) -> Value {
    let bits = w.bits() as i64;
    let w64 = w == Width::W64;
    match op {
        BinOp::Add => {
            let r = fb.ins().iadd(a, b);
            zext(fb, w, r)
        }
        BinOp::Sub => {
            let r = fb.ins().isub(a, b);
            zext(fb, w, r)
        }
        BinOp::And => {
            let r = fb.ins().band(a, b);
            zext(fb, w, r)
        }
        BinOp::Or => {
            let r = fb.ins().bor(a, b);
            zext(fb, w, r)
        }
        BinOp::Xor => {
            let r = fb.ins().bxor(a, b);
            zext(fb, w, r)
        }
        BinOp::Mul => {
            let r = fb.ins().imul(a, b);
            zext(fb, w, r)
        }
        // i64 shifts take the count modulo 64, as the interpreter does.
        BinOp::Shl => {
            let r = fb.ins().ishl(a, b);
            zext(fb, w, r)
        }
        BinOp::Shr => {
            let a = zext(fb, w, a);
            fb.ins().ushr(a, b)
        }
        BinOp::Sar => {
            let a = sext(fb, w, a);
            let r = fb.ins().sshr(a, b);
            zext(fb, w, r)
        }
        BinOp::Rol | BinOp::Ror => {
            // Count modulo the width (a power of two), rotation within the width.
            let n = fb.ins().band_imm_u(b, bits - 1);
            let v = narrow(fb, w, a);
            let n = narrow(fb, w, n);
            let r = if op == BinOp::Rol { fb.ins().rotl(v, n) } else { fb.ins().rotr(v, n) };
            widen(fb, w, r)
        }
        BinOp::UMulHi if w64 => fb.ins().umulhi(a, b),
        BinOp::UMulHi => {
            let (a, b) = (zext(fb, w, a), zext(fb, w, b));
            let p = fb.ins().imul(a, b);
            fb.ins().ushr_imm_u(p, bits)
        }
        BinOp::SMulHi if w64 => fb.ins().smulhi(a, b),
        BinOp::SMulHi => {
            let (a, b) = (sext(fb, w, a), sext(fb, w, b));
            let p = fb.ins().imul(a, b);
            let r = fb.ins().sshr_imm_u(p, bits);
            zext(fb, w, r)
        }
        BinOp::UDiv | BinOp::URem => {
            let (a, b) = (zext(fb, w, a), zext(fb, w, b));
            let zero = fb.ins().icmp_imm_s(IntCC::Equal, b, 0);
            let one = fb.ins().iconst(types::I64, 1);
            let d = fb.ins().select(zero, one, b);
            let q = if op == BinOp::UDiv { fb.ins().udiv(a, d) } else { fb.ins().urem(a, d) };
            let z = fb.ins().iconst(types::I64, 0);
            fb.ins().select(zero, z, q)
        }
        BinOp::SDiv | BinOp::SRem => {
            let (x, y) = (sext(fb, w, a), sext(fb, w, b));
            let zero = fb.ins().icmp_imm_s(IntCC::Equal, y, 0);
            let m1 = fb.ins().icmp_imm_s(IntCC::Equal, y, -1);
            let bad = fb.ins().bor(zero, m1);
            let one = fb.ins().iconst(types::I64, 1);
            let d = fb.ins().select(bad, one, y);
            let z = fb.ins().iconst(types::I64, 0);
            let r = if op == BinOp::SDiv {
                // x / -1 == -x (wrapping); x / 0 == 0.
                let q = fb.ins().sdiv(x, d);
                let neg = fb.ins().ineg(x);
                let q = fb.ins().select(m1, neg, q);
                fb.ins().select(zero, z, q)
            } else {
                // x % -1 == 0; x % 0 == 0.
                let r = fb.ins().srem(x, d);
                fb.ins().select(bad, z, r)
            };
            zext(fb, w, r)
        }
    }
}

/// `eval_un(op, w, a)`.
pub(super) fn un(fb: &mut FunctionBuilder<'_>, op: UnOp, w: Width, a: Value) -> Value {
    let bits = w.bits() as i64;
    match op {
        UnOp::Not => {
            let r = fb.ins().bnot(a);
            zext(fb, w, r)
        }
        UnOp::Neg => {
            let r = fb.ins().ineg(a);
            zext(fb, w, r)
        }
        UnOp::Zext => zext(fb, w, a),
        UnOp::Sext => sext(fb, w, a),
        UnOp::Bswap if w == Width::W8 => zext(fb, w, a),
        UnOp::Bswap => {
            let n = narrow(fb, w, a);
            let r = fb.ins().bswap(n);
            widen(fb, w, r)
        }
        UnOp::Popcnt => {
            let v = zext(fb, w, a);
            fb.ins().popcnt(v)
        }
        UnOp::Clz => {
            // Leading zeros of the zero-extended value, minus the bits above the width.
            let v = zext(fb, w, a);
            let c = fb.ins().clz(v);
            if w == Width::W64 {
                c
            } else {
                fb.ins().iadd_imm_s(c, bits - 64)
            }
        }
        UnOp::Ctz if w == Width::W64 => fb.ins().ctz(a),
        UnOp::Ctz => {
            // A stop bit just above the width makes a zero input count `bits`.
            let v = fb.ins().bor_imm_u(a, 1i64 << bits);
            fb.ins().ctz(v)
        }
        UnOp::Parity => {
            let v = fb.ins().band_imm_u(a, 0xff);
            let c = fb.ins().popcnt(v);
            let odd = fb.ins().band_imm_u(c, 1);
            fb.ins().bxor_imm_u(odd, 1)
        }
    }
}

/// `cc.eval(w, a, b) as u64`.
pub(super) fn cmp(fb: &mut FunctionBuilder<'_>, cc: Cond, w: Width, a: Value, b: Value) -> Value {
    let (a, b) = (narrow(fb, w, a), narrow(fb, w, b));
    let c = fb.ins().icmp(intcc(cc), a, b);
    fb.ins().uextend(types::I64, c)
}

/// Lower a pure op (one that cannot fault or leave the block). Returns `false` for any
/// other op.
pub(super) fn lower_pure(
    fb: &mut FunctionBuilder<'_>,
    regs: &mut Regs,
    st: &mut SlotState,
    op: &Op,
) -> bool {
    let (dst, v) = match *op {
        Op::Const { dst, imm } => (dst, fb.ins().iconst(types::I64, imm as i64)),
        Op::Mov { dst, src } => (dst, regs.read(fb, st, src)),
        Op::Bin { op, w, dst, a, b } => {
            let (a, b) = (regs.read(fb, st, a), regs.read(fb, st, b));
            (dst, bin(fb, op, w, a, b))
        }
        Op::BinImm { op, w, dst, a, imm } => {
            let a = regs.read(fb, st, a);
            let b = fb.ins().iconst(types::I64, imm as i64);
            (dst, bin(fb, op, w, a, b))
        }
        Op::Un { op, w, dst, a } => {
            let a = regs.read(fb, st, a);
            (dst, un(fb, op, w, a))
        }
        Op::Cmp { cc, w, dst, a, b } => {
            let (a, b) = (regs.read(fb, st, a), regs.read(fb, st, b));
            (dst, cmp(fb, cc, w, a, b))
        }
        Op::CmpImm { cc, w, dst, a, imm } => {
            let a = regs.read(fb, st, a);
            let b = fb.ins().iconst(types::I64, imm as i64);
            (dst, cmp(fb, cc, w, a, b))
        }
        Op::Select { dst, c, t, f } => {
            let (c, t, f) = (regs.read(fb, st, c), regs.read(fb, st, t), regs.read(fb, st, f));
            (dst, fb.ins().select(c, t, f))
        }
        _ => return false,
    };
    regs.write(fb, st, dst, v);
    true
}

/// Whether `lower_pure` handles `op`.
pub(super) fn is_pure(op: &Op) -> bool {
    matches!(
        op,
        Op::Const { .. }
            | Op::Mov { .. }
            | Op::Bin { .. }
            | Op::BinImm { .. }
            | Op::Un { .. }
            | Op::Cmp { .. }
            | Op::CmpImm { .. }
            | Op::Select { .. }
    )
}
