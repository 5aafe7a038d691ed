//! Operand plumbing: register, memory and immediate operands in one place.
//!
//! Registers: 64-bit reads are the guest slot itself; narrower reads use the same slot
//! (valid in the low bits) except AH/CH/DH/BH, which are shifted down. Writes follow the
//! architecture: 32-bit writes zero-extend to 64 bits, 8- and 16-bit writes merge.
//! Memory: the effective address is base + index*scale + displacement (RIP-relative
//! resolved at lift time), truncated to 32 bits under an address-size prefix, plus the
//! FS/GS base when such a segment override is present (other segments have base 0 in
//! 64-bit mode). The address is computed once per instruction and reused for the
//! write-back of read-modify-write forms.

use super::cx::{LiftCx, Unsupported};
use crate::cpu::{slot, Width};
use crate::ir::{BinOp, Op, Slot, UnOp};
use iced_x86::{OpKind, Register};

/// Where a register lives: GPR number, access width, and whether it is a high-byte register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GprRef {
    /// GPR number 0..16.
    pub n: u8,
    /// Access width.
    pub w: Width,
    /// AH, CH, DH or BH.
    pub high8: bool,
}

/// Classify a general-purpose register.
pub fn gpr_ref(r: Register) -> Option<GprRef> {
    if !r.is_gpr() {
        return None;
    }
    let high8 = matches!(r, Register::AH | Register::CH | Register::DH | Register::BH);
    let full = r.full_register();
    let n = (full as u32 - Register::RAX as u32) as u8;
    let w = Width::from_bytes(r.size());
    Some(GprRef { n, w, high8 })
}

/// The xmm register number of an XMM register.
pub fn xmm_num(r: Register) -> Option<u8> {
    if r.is_xmm() {
        Some((r as u32 - Register::XMM0 as u32) as u8)
    } else {
        None
    }
}

impl LiftCx<'_> {
    /// Width of operand `n` (registers, memory; immediates take the width of operand 0).
    pub fn width(&self, n: u32) -> Width {
        match self.i.op_kind(n) {
            OpKind::Register => Width::from_bytes(self.i.op_register(n).size().clamp(1, 8)),
            OpKind::Memory => Width::from_bytes(self.i.memory_size().size().clamp(1, 8)),
            _ => {
                if n == 0 {
                    Width::W64
                } else {
                    self.width(0)
                }
            }
        }
    }

    /// The immediate of operand `n`, if it is one (sign-extended as the encoding says).
    pub fn imm(&self, n: u32) -> Option<u64> {
        match self.i.op_kind(n) {
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
            | OpKind::Immediate8_2nd => Some(self.i.immediate(n)),
            _ => None,
        }
    }

    /// Read a general register as `w`-bit value (valid in the low bits).
    pub fn read_reg(&mut self, r: Register) -> Result<Slot, Unsupported> {
        let g = gpr_ref(r).ok_or(Unsupported)?;
        if g.high8 {
            let n = g.n;
            Ok(self.bin_imm(BinOp::Shr, Width::W64, Slot(slot::gpr(n)), 8))
        } else {
            Ok(Slot(slot::gpr(g.n)))
        }
    }

    /// Write a general register with architectural zero-extension / merging.
    pub fn write_reg(&mut self, r: Register, v: Slot) -> Result<(), Unsupported> {
        let g = gpr_ref(r).ok_or(Unsupported)?;
        if g.high8 {
            let n = g.n;
            let full = Slot(slot::gpr(n));
            let keep = self.bin_imm(BinOp::And, Width::W64, full, !0xff00);
            let lo = self.un(UnOp::Zext, Width::W8, v);
            let sh = self.bin_imm(BinOp::Shl, Width::W64, lo, 8);
            self.set_slot_op(
                slot::gpr(n),
                Op::Bin { op: BinOp::Or, w: Width::W64, dst: Slot(0), a: keep, b: sh },
            );
            return Ok(());
        }
        let dst = slot::gpr(g.n);
        match g.w {
            Width::W64 => self.set_slot(dst, v),
            Width::W32 => {
                self.set_slot_op(dst, Op::Un { op: UnOp::Zext, w: Width::W32, dst: Slot(0), a: v })
            }
            w => {
                let full = Slot(dst);
                let keep = self.bin_imm(BinOp::And, Width::W64, full, !w.mask());
                let lo = self.un(UnOp::Zext, w, v);
                self.set_slot_op(
                    dst,
                    Op::Bin { op: BinOp::Or, w: Width::W64, dst: Slot(0), a: keep, b: lo },
                );
            }
        }
        Ok(())
    }

    /// Effective linear address of the memory operand (computed once per instruction).
    pub fn addr(&mut self) -> Result<Slot, Unsupported> {
        if let Some(a) = self.mem_addr {
            return Ok(a);
        }
        let a = self.compute_addr(0)?;
        self.mem_addr = Some(a);
        Ok(a)
    }

    /// Effective address plus `extra` bytes (for multi-part memory operands).
    pub fn addr_plus(&mut self, extra: u64) -> Result<Slot, Unsupported> {
        let a = self.addr()?;
        if extra == 0 {
            return Ok(a);
        }
        Ok(self.bin_imm(BinOp::Add, Width::W64, a, extra))
    }

    /// The address computation without segment checks of string ops etc.
    fn compute_addr(&mut self, _n: u32) -> Result<Slot, Unsupported> {
        let i = self.i;
        let addr32 = i.memory_base().size() == 4 || i.memory_index().size() == 4;
        let mut cur: Option<Slot> = None;
        let mut disp = i.memory_displacement64();
        if i.is_ip_rel_memory_operand() {
            disp = i.ip_rel_memory_address();
        } else {
            let base = i.memory_base();
            if base != Register::None {
                let g = gpr_ref(base).ok_or(Unsupported)?;
                cur = Some(Slot(slot::gpr(g.n)));
            }
            let index = i.memory_index();
            if index != Register::None {
                let g = gpr_ref(index).ok_or(Unsupported)?;
                let mut x = Slot(slot::gpr(g.n));
                let scale = i.memory_index_scale();
                if scale > 1 {
                    x = self.bin_imm(BinOp::Shl, Width::W64, x, scale.trailing_zeros() as u64);
                }
                cur = Some(match cur {
                    Some(b) => self.bin(BinOp::Add, Width::W64, b, x),
                    None => x,
                });
            }
        }
        let w = if addr32 { Width::W32 } else { Width::W64 };
        let mut a = match cur {
            Some(c) if disp != 0 || addr32 => self.bin_imm(BinOp::Add, w, c, disp),
            Some(c) => c,
            None => self.konst(if addr32 { disp & 0xffff_ffff } else { disp }),
        };
        match i.memory_segment() {
            Register::FS => a = self.bin(BinOp::Add, Width::W64, a, Slot(slot::FS_BASE)),
            Register::GS => a = self.bin(BinOp::Add, Width::W64, a, Slot(slot::GS_BASE)),
            _ => {}
        }
        Ok(a)
    }

    /// Read operand `n` (register, memory or immediate) as a `width(n)`-bit value.
    pub fn read(&mut self, n: u32) -> Result<Slot, Unsupported> {
        match self.i.op_kind(n) {
            OpKind::Register => self.read_reg(self.i.op_register(n)),
            OpKind::Memory => {
                let w = self.width(n);
                let a = self.addr()?;
                Ok(self.load(w, a))
            }
            _ => match self.imm(n) {
                Some(v) => Ok(self.konst(v)),
                None => Err(Unsupported),
            },
        }
    }

    /// Write operand `n` (register or memory).
    pub fn write(&mut self, n: u32, v: Slot) -> Result<(), Unsupported> {
        match self.i.op_kind(n) {
            OpKind::Register => self.write_reg(self.i.op_register(n), v),
            OpKind::Memory => {
                let w = self.width(n);
                let a = self.addr()?;
                self.store(w, a, v);
                Ok(())
            }
            _ => Err(Unsupported),
        }
    }

    /// Compute `op` (its `dst` is ignored) into operand `n`. A 64-bit register, or a 32-bit
    /// one with a zero-extending op of that width, is written in place; other destinations
    /// go through a temporary and `write`. Returns the slot holding the result, valid in
    /// its low `width(n)` bits.
    pub fn write_op(&mut self, n: u32, mut op: Op) -> Result<Slot, Unsupported> {
        if self.i.op_kind(n) == OpKind::Register {
            if let Some(g) = gpr_ref(self.i.op_register(n)) {
                let zext_ok = match op {
                    Op::Bin { w, .. } | Op::BinImm { w, .. } | Op::Load { w, .. } => w == g.w,
                    Op::Un { op: u, w, .. } => w == g.w && u != UnOp::Sext,
                    _ => false,
                };
                if !g.high8 && (g.w == Width::W64 || g.w == Width::W32 && zext_ok) {
                    let d = slot::gpr(g.n);
                    self.set_slot_op(d, op);
                    return Ok(Slot(d));
                }
            }
        }
        let t = self.temp();
        super::cx::set_dst(&mut op, t);
        self.emit(op);
        self.write(n, t)?;
        Ok(t)
    }

    /// Whether operand `n` is memory.
    pub fn is_mem(&self, n: u32) -> bool {
        self.i.op_kind(n) == OpKind::Memory
    }

    /// Whether the instruction has a LOCK prefix.
    pub fn locked(&self) -> bool {
        self.i.has_lock_prefix()
    }
}
