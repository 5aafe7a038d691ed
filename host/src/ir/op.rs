//! IR operations.

use super::helper::HelperDesc;
use super::plugin_call::PluginCall;
pub use crate::cpu::Width;
use crate::cpu::{Fault, GUEST_SLOTS};

/// A 64-bit storage cell: a guest state word (below `GUEST_SLOTS`) or a temporary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u16);

impl Slot {
    /// Temporary number `n`.
    pub const fn temp(n: u16) -> Slot {
        Slot(GUEST_SLOTS as u16 + n)
    }
    /// Whether this slot is guest state.
    pub const fn is_guest(self) -> bool {
        (self.0 as usize) < GUEST_SLOTS
    }
    /// Index into `CpuState::slots`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Binary operations. Shift and rotate counts are taken modulo 64 (shifts) or modulo
/// the width (rotates); a shift acts on the zero-extended (`shl`, `shr`) or sign-extended
/// (`sar`) input, so `shl.i8 x, 9` is 0. Division by zero yields 0 and signed overflow
/// wraps: lifters test for #DE before dividing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Bitwise and.
    And,
    /// Bitwise or.
    Or,
    /// Bitwise exclusive or.
    Xor,
    /// Shift left.
    Shl,
    /// Logical shift right.
    Shr,
    /// Arithmetic shift right.
    Sar,
    /// Rotate left within the width.
    Rol,
    /// Rotate right within the width.
    Ror,
    /// Low half of the product.
    Mul,
    /// High half of the unsigned double-width product.
    UMulHi,
    /// High half of the signed double-width product.
    SMulHi,
    /// Unsigned division.
    UDiv,
    /// Signed division (truncating).
    SDiv,
    /// Unsigned remainder.
    URem,
    /// Signed remainder.
    SRem,
}

/// Unary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// Bitwise not.
    Not,
    /// Two's complement negation.
    Neg,
    /// Keep the low `width` bits (zero extension).
    Zext,
    /// Sign-extend the low `width` bits to 64 bits (the result is *not* masked).
    Sext,
    /// Byte swap within the width.
    Bswap,
    /// Population count.
    Popcnt,
    /// Count leading zeros within the width (width when zero).
    Clz,
    /// Count trailing zeros (width when zero).
    Ctz,
    /// Parity of the low byte: 1 when it has an even number of set bits (x86 PF).
    Parity,
}

/// Integer comparisons; the result is 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Unsigned less than.
    Ult,
    /// Unsigned less or equal.
    Ule,
    /// Unsigned greater than.
    Ugt,
    /// Unsigned greater or equal.
    Uge,
    /// Signed less than.
    Slt,
    /// Signed less or equal.
    Sle,
    /// Signed greater than.
    Sgt,
    /// Signed greater or equal.
    Sge,
}

impl Cond {
    /// Evaluate on width-`w` operands.
    #[inline]
    pub fn eval(self, w: Width, a: u64, b: u64) -> bool {
        let (ua, ub) = (a & w.mask(), b & w.mask());
        let (sa, sb) = (w.sext(a) as i64, w.sext(b) as i64);
        match self {
            Cond::Eq => ua == ub,
            Cond::Ne => ua != ub,
            Cond::Ult => ua < ub,
            Cond::Ule => ua <= ub,
            Cond::Ugt => ua > ub,
            Cond::Uge => ua >= ub,
            Cond::Slt => sa < sb,
            Cond::Sle => sa <= sb,
            Cond::Sgt => sa > sb,
            Cond::Sge => sa >= sb,
        }
    }
}

/// Atomic read-modify-write operations (LOCK-prefixed or XCHG with memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// Exchange.
    Xchg,
    /// Add (XADD, LOCK ADD; LOCK SUB adds the negation).
    Add,
    /// And.
    And,
    /// Or.
    Or,
    /// Xor.
    Xor,
}

/// One IR operation.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// `dst = imm`
    Const {
        /// Destination.
        dst: Slot,
        /// Value.
        imm: u64,
    },
    /// `dst = src`
    Mov {
        /// Destination.
        dst: Slot,
        /// Source.
        src: Slot,
    },
    /// `dst = a op b` at width `w`.
    Bin {
        /// Operation.
        op: BinOp,
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Left operand.
        a: Slot,
        /// Right operand.
        b: Slot,
    },
    /// `dst = a op imm` at width `w`.
    BinImm {
        /// Operation.
        op: BinOp,
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Left operand.
        a: Slot,
        /// Right operand.
        imm: u64,
    },
    /// `dst = op a` at width `w`.
    Un {
        /// Operation.
        op: UnOp,
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Operand.
        a: Slot,
    },
    /// `dst = (a cc b) ? 1 : 0` at width `w`.
    Cmp {
        /// Condition.
        cc: Cond,
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Left operand.
        a: Slot,
        /// Right operand.
        b: Slot,
    },
    /// `dst = (a cc imm) ? 1 : 0` at width `w`.
    CmpImm {
        /// Condition.
        cc: Cond,
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Left operand.
        a: Slot,
        /// Right operand.
        imm: u64,
    },
    /// `dst = c != 0 ? t : f`
    Select {
        /// Destination.
        dst: Slot,
        /// Condition.
        c: Slot,
        /// Value if true.
        t: Slot,
        /// Value if false.
        f: Slot,
    },
    /// `dst = zext(mem[addr], w)`; may fault.
    Load {
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Linear address.
        addr: Slot,
    },
    /// `mem[addr] = val` (low `w` bits); may fault; may invalidate translated code.
    Store {
        /// Width.
        w: Width,
        /// Linear address.
        addr: Slot,
        /// Value.
        val: Slot,
    },
    /// Atomically `dst = mem[addr]; mem[addr] = old op val`; may fault.
    AtomicRmw {
        /// Operation.
        op: AtomicOp,
        /// Width.
        w: Width,
        /// Receives the old memory value.
        dst: Slot,
        /// Linear address.
        addr: Slot,
        /// Operand.
        val: Slot,
    },
    /// Atomic compare-and-exchange: `dst = mem[addr]; if dst == expected { mem[addr] = new }`.
    AtomicCas {
        /// Width.
        w: Width,
        /// Receives the old memory value.
        dst: Slot,
        /// Linear address.
        addr: Slot,
        /// Expected value.
        expected: Slot,
        /// Replacement.
        new: Slot,
    },
    /// Call a host helper with up to four arguments; `dst` receives its result.
    Helper {
        /// The helper.
        h: &'static HelperDesc,
        /// Arguments (`nargs` of them are used).
        args: [Slot; 4],
        /// Number of arguments used.
        nargs: u8,
        /// Result slot, if any.
        dst: Option<Slot>,
    },
    /// Raise `fault` if `c != 0`.
    FaultIf {
        /// Condition.
        c: Slot,
        /// The fault.
        fault: Fault,
    },
    /// Leave the block to the direct target `pc` if `c != 0`.
    ExitIf {
        /// Condition.
        c: Slot,
        /// Guest pc of the target.
        target: u64,
    },
    /// Call a plugin callback, `(call.func)(&call.site, cpu.vcpu_index, args..)` with
    /// unused arguments 0, only when `cond` is absent or non-zero. Never faults; reads and
    /// writes no guest state (so the JIT need not write back or reload guest slots).
    CallPlugin {
        /// The call site.
        call: &'static PluginCall,
        /// Arguments (`nargs` of them are used).
        args: [Slot; 4],
        /// Number of arguments used.
        nargs: u8,
        /// Condition, if any.
        cond: Option<Slot>,
    },
    /// `dst = zext(pmem[off + (idx & mask) * w.bytes()])`: a load from the running vCPU's
    /// plugin memory (`CpuState::plugin_mem`, little-endian bytes). `idx` absent means 0.
    /// The plugin module guarantees the access is in bounds and `off` is aligned to `w`.
    PluginLoad {
        /// Width.
        w: Width,
        /// Destination.
        dst: Slot,
        /// Byte offset.
        off: u32,
        /// Dynamic entry index, if any.
        idx: Option<Slot>,
        /// Mask applied to the index (a power of two minus one).
        mask: u32,
    },
    /// `pmem[off + (idx & mask) * w.bytes()] = val` (low `w` bytes); see `PluginLoad`.
    PluginStore {
        /// Width.
        w: Width,
        /// Value.
        val: Slot,
        /// Byte offset.
        off: u32,
        /// Dynamic entry index, if any.
        idx: Option<Slot>,
        /// Mask applied to the index.
        mask: u32,
    },
}

impl Op {
    /// The slot this op writes, if any.
    pub fn dst(&self) -> Option<Slot> {
        match *self {
            Op::Const { dst, .. }
            | Op::Mov { dst, .. }
            | Op::Bin { dst, .. }
            | Op::BinImm { dst, .. }
            | Op::Un { dst, .. }
            | Op::Cmp { dst, .. }
            | Op::CmpImm { dst, .. }
            | Op::Select { dst, .. }
            | Op::Load { dst, .. }
            | Op::AtomicRmw { dst, .. }
            | Op::AtomicCas { dst, .. }
            | Op::PluginLoad { dst, .. } => Some(dst),
            Op::Helper { dst, .. } => dst,
            Op::Store { .. }
            | Op::FaultIf { .. }
            | Op::ExitIf { .. }
            | Op::CallPlugin { .. }
            | Op::PluginStore { .. } => None,
        }
    }

    /// Calls `f` on every slot this op reads.
    pub fn for_each_src(&self, mut f: impl FnMut(Slot)) {
        match *self {
            Op::Const { .. } => {}
            Op::Mov { src, .. } => f(src),
            Op::Bin { a, b, .. } | Op::Cmp { a, b, .. } => {
                f(a);
                f(b)
            }
            Op::BinImm { a, .. } | Op::Un { a, .. } | Op::CmpImm { a, .. } => f(a),
            Op::Select { c, t, f: e, .. } => {
                f(c);
                f(t);
                f(e)
            }
            Op::Load { addr, .. } => f(addr),
            Op::Store { addr, val, .. } => {
                f(addr);
                f(val)
            }
            Op::AtomicRmw { addr, val, .. } => {
                f(addr);
                f(val)
            }
            Op::AtomicCas { addr, expected, new, .. } => {
                f(addr);
                f(expected);
                f(new)
            }
            Op::Helper { args, nargs, .. } => args[..nargs as usize].iter().for_each(|&s| f(s)),
            Op::FaultIf { c, .. } | Op::ExitIf { c, .. } => f(c),
            Op::CallPlugin { args, nargs, cond, .. } => {
                args[..nargs as usize].iter().for_each(|&s| f(s));
                if let Some(c) = cond {
                    f(c)
                }
            }
            Op::PluginLoad { idx, .. } => {
                if let Some(i) = idx {
                    f(i)
                }
            }
            Op::PluginStore { val, idx, .. } => {
                f(val);
                if let Some(i) = idx {
                    f(i)
                }
            }
        }
    }

    /// Whether the op can raise a guest fault.
    pub fn may_fault(&self) -> bool {
        match self {
            Op::Load { .. }
            | Op::Store { .. }
            | Op::AtomicRmw { .. }
            | Op::AtomicCas { .. }
            | Op::FaultIf { .. } => true,
            Op::Helper { h, .. } => h.may_fault,
            _ => false,
        }
    }
}
