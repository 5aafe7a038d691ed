//! XMM operand plumbing shared by the SSE families.
//!
//! An XMM register is two guest slots, `slot::xmm_lo(n)` and `slot::xmm_hi(n)`. A 128-bit
//! memory operand is read and written as two 64-bit accesses at `addr` and `addr + 8`;
//! legacy-SSE forms that require 16-byte alignment check it first (#GP(0), like the
//! hardware with MXCSR.MM clear). Loads of a source operand happen before any write, so
//! a fault leaves the guest state untouched. A 16-byte store that crosses into an
//! unwritable page may leave its first 8 bytes written (the hardware writes nothing).

use super::cx::{LiftCx, Unsupported};
use super::operand::xmm_num;
use crate::cpu::{slot, Fault, Width};
use crate::ir::{BinOp, HelperDesc, Op, Slot};
use iced_x86::OpKind;

/// A 128-bit value as two slots (guest slots of a register, or temporaries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V128 {
    /// Bits 0..64.
    pub lo: Slot,
    /// Bits 64..128.
    pub hi: Slot,
}

impl V128 {
    /// The slots of xmm register `n`.
    pub fn reg(n: u8) -> V128 {
        V128 { lo: Slot(slot::xmm_lo(n)), hi: Slot(slot::xmm_hi(n)) }
    }
}

/// A call of a *pure* helper (no state access, no fault) as an op whose destination is
/// filled in by `set_slot_op` or `per_half`.
pub fn pure_call(h: &'static HelperDesc, args: &[Slot]) -> Op {
    debug_assert!(!h.reads_state && !h.writes_state && !h.may_fault, "{} is not pure", h.name);
    let mut a = [Slot(0); 4];
    a[..args.len()].copy_from_slice(args);
    Op::Helper { h, args: a, nargs: args.len() as u8, dst: Some(Slot(0)) }
}

impl LiftCx<'_> {
    /// Write xmm register `d` from a half-wise computation: `f(cx, d_half, s_half)` emits
    /// the ops for one half and returns the final op, which is written straight into the
    /// guest slot. Only for operations where result half k depends on input halves k
    /// alone (the low half is written before the high half is computed).
    pub fn per_half(&mut self, d: u8, s: V128, f: impl Fn(&mut Self, Slot, Slot) -> Op) {
        let dv = V128::reg(d);
        let op = f(self, dv.lo, s.lo);
        self.set_slot_op(slot::xmm_lo(d), op);
        let op = f(self, dv.hi, s.hi);
        self.set_slot_op(slot::xmm_hi(d), op);
    }

    /// Whether any operand is an MMX register (legacy MMX forms of SSE mnemonics).
    pub fn has_mmx_operand(&self) -> bool {
        (0..self.i.op_count())
            .any(|n| self.i.op_kind(n) == OpKind::Register && self.i.op_register(n).is_mm())
    }

    /// The XMM register number of operand `n`, if it is an XMM register.
    pub fn xmm_op(&self, n: u32) -> Result<u8, Unsupported> {
        if self.i.op_kind(n) != OpKind::Register {
            return Err(Unsupported);
        }
        xmm_num(self.i.op_register(n)).ok_or(Unsupported)
    }

    /// Raise #GP(0) unless `a` is 16-byte aligned.
    pub fn check_align16(&mut self, a: Slot) {
        let m = self.bin_imm(BinOp::And, Width::W64, a, 15);
        self.fault_if(m, Fault::GeneralProtection(0));
    }

    /// Read operand `n` (XMM register or m128) as 128 bits; `align`: the memory form
    /// requires 16-byte alignment.
    pub fn read_v128(&mut self, n: u32, align: bool) -> Result<V128, Unsupported> {
        match self.i.op_kind(n) {
            OpKind::Register => Ok(V128::reg(self.xmm_op(n)?)),
            OpKind::Memory => {
                let a = self.addr()?;
                if align {
                    self.check_align16(a);
                }
                let lo = self.load(Width::W64, a);
                let a8 = self.bin_imm(BinOp::Add, Width::W64, a, 8);
                let hi = self.load(Width::W64, a8);
                Ok(V128 { lo, hi })
            }
            _ => Err(Unsupported),
        }
    }

    /// Read the low `w` bits of operand `n`: an XMM register's low half (valid in its low
    /// `w` bits only) or a `w`-bit memory load (zero-extended). Memory forms of this kind
    /// have no alignment requirement.
    pub fn read_xmm_low(&mut self, n: u32, w: Width) -> Result<Slot, Unsupported> {
        match self.i.op_kind(n) {
            OpKind::Register => Ok(Slot(slot::xmm_lo(self.xmm_op(n)?))),
            OpKind::Memory => {
                let a = self.addr()?;
                Ok(self.load(w, a))
            }
            _ => Err(Unsupported),
        }
    }

    /// Store 128 bits to the memory operand (`align`: 16-byte alignment required).
    pub fn store_v128(&mut self, v: V128, align: bool) -> Result<(), Unsupported> {
        let a = self.addr()?;
        if align {
            self.check_align16(a);
        }
        self.store(Width::W64, a, v.lo);
        let a8 = self.bin_imm(BinOp::Add, Width::W64, a, 8);
        self.store(Width::W64, a8, v.hi);
        Ok(())
    }

    /// Write xmm register `r` (both halves).
    /// `v` may name guest slots, including those of `r`: the high half is copied first
    /// when it is `r`'s low half.
    pub fn write_xmm(&mut self, r: u8, v: V128) {
        let lo_slot = Slot(slot::xmm_lo(r));
        let hi = if v.hi == lo_slot && v.lo != lo_slot {
            let t = self.temp();
            self.emit(Op::Mov { dst: t, src: v.hi });
            t
        } else {
            v.hi
        };
        self.set_slot(slot::xmm_lo(r), v.lo);
        self.set_slot(slot::xmm_hi(r), hi);
    }

    /// Write xmm register `r` with `lo` and a zero high half.
    pub fn write_xmm_lo_zero_hi(&mut self, r: u8, lo: Slot) {
        self.set_slot(slot::xmm_lo(r), lo);
        self.set_slot_op(slot::xmm_hi(r), Op::Const { dst: Slot(0), imm: 0 });
    }
}
