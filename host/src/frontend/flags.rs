//! Lazy x86 arithmetic flags: the only place that knows how CF PF AF ZF SF OF come from an
//! operation.
//!
//! While lifting, the last flag-setting instruction is kept as `FlagState::Pending`: its
//! `FlagOp`, width and operand slots. A consumer in the same block (`jcc`, `setcc`,
//! `cmovcc`, `adc`, ...) asks `LiftCx::cond`/`carry`, which for the common pairs is one
//! IR compare on the operands (`cmp a, b; jl` → `icmp.slt a, b`). A flag write whose
//! flags are dead (iced liveness, computed by the translator) emits nothing. At block exits
//! and before helpers that read state, the pending state is *committed*: `%cc_op` gets
//! `FlagOp | width << 8`, and `%cc_res/%cc_a/%cc_b/%cc_c` the operands; conditions on
//! committed state go through the `FLAGS_COND` helper, which evaluates `eval_flags` here.
//! The translator records the same commit as a fault fix-up for each instruction that
//! starts with flags pending, so a fault or a code-write exit sees exact flags.

use super::cx::LiftCx;
use crate::cpu::{rflags, slot, CpuState, Fault, Width};
use crate::ir::{BinOp, Cond, HelperCx, HelperDesc, Op, Slot};
use iced_x86::{ConditionCode, RflagsBits};

/// The operation behind the lazy flags. Stored in the low byte of `%cc_op`; bits 8..10
/// hold the width (0 = 8 bits .. 3 = 64 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlagOp {
    /// `res` holds the arithmetic flag bits themselves.
    Eflags = 0,
    /// `res = a + b`.
    Add,
    /// `res = a + b + c` (c = carry in, 0 or 1).
    Adc,
    /// `res = a - b` (also CMP).
    Sub,
    /// `res = a - b - c` (c = borrow in).
    Sbb,
    /// AND/OR/XOR/TEST: CF = OF = 0.
    Logic,
    /// `res = a + 1`, CF preserved in `c`.
    Inc,
    /// `res = a - 1`, CF preserved in `c`.
    Dec,
    /// `res = -a`.
    Neg,
    /// `res = a << b`, b in 1..=63.
    Shl,
    /// `res = a >> b` (logical).
    Shr,
    /// `res = a >> b` (arithmetic).
    Sar,
    /// MUL/IMUL: `c` = 1 when the result overflowed (CF = OF = c).
    Mul,
    /// SHRD: `res = a >> b` with bits shifted in from another operand; CF as `Shr`,
    /// OF = sign change (`a` and `res` differ in the sign bit).
    Shrd,
}

impl FlagOp {
    fn from_u8(v: u8) -> FlagOp {
        match v {
            1 => FlagOp::Add,
            2 => FlagOp::Adc,
            3 => FlagOp::Sub,
            4 => FlagOp::Sbb,
            5 => FlagOp::Logic,
            6 => FlagOp::Inc,
            7 => FlagOp::Dec,
            8 => FlagOp::Neg,
            9 => FlagOp::Shl,
            10 => FlagOp::Shr,
            11 => FlagOp::Sar,
            12 => FlagOp::Mul,
            13 => FlagOp::Shrd,
            _ => FlagOp::Eflags,
        }
    }
    /// Which of a, b, c the op needs (res is always needed).
    fn uses(self) -> (bool, bool, bool) {
        match self {
            FlagOp::Eflags | FlagOp::Logic => (false, false, false),
            FlagOp::Add | FlagOp::Sub => (true, true, false),
            FlagOp::Adc | FlagOp::Sbb => (true, true, true),
            FlagOp::Inc | FlagOp::Dec => (false, false, true),
            FlagOp::Neg => (true, false, false),
            FlagOp::Shl | FlagOp::Shr | FlagOp::Sar | FlagOp::Shrd => (true, true, false),
            FlagOp::Mul => (false, false, true),
        }
    }
}

fn width_of(code: u64) -> Width {
    match (code >> 8) & 3 {
        0 => Width::W8,
        1 => Width::W16,
        2 => Width::W32,
        _ => Width::W64,
    }
}

/// Compute the arithmetic RFLAGS bits from a committed lazy state.
pub fn eval_flags(cc_op: u64, res: u64, a: u64, b: u64, c: u64) -> u64 {
    let op = FlagOp::from_u8(cc_op as u8);
    if op == FlagOp::Eflags {
        return res & rflags::ARITH;
    }
    let w = width_of(cc_op);
    let (m, sb, bits) = (w.mask(), w.sign_bit(), w.bits() as u64);
    let (r, a, b) = (res & m, a & m, b & m);
    let c1 = c & 1 != 0;
    let (cf, of, af) = match op {
        FlagOp::Add => (r < a, (a ^ r) & (b ^ r) & sb != 0, (a ^ b ^ r) & 0x10 != 0),
        FlagOp::Adc => {
            (if c1 { r <= a } else { r < a }, (a ^ r) & (b ^ r) & sb != 0, (a ^ b ^ r) & 0x10 != 0)
        }
        FlagOp::Sub => (a < b, (a ^ b) & (a ^ r) & sb != 0, (a ^ b ^ r) & 0x10 != 0),
        FlagOp::Sbb => {
            (if c1 { a <= b } else { a < b }, (a ^ b) & (a ^ r) & sb != 0, (a ^ b ^ r) & 0x10 != 0)
        }
        FlagOp::Logic => (false, false, false),
        FlagOp::Inc => (c1, r == sb, r & 0xf == 0),
        FlagOp::Dec => (c1, r == sb - 1, r & 0xf == 0xf),
        FlagOp::Neg => (a != 0, r == sb, (a ^ r) & 0x10 != 0),
        FlagOp::Shl => {
            let cf = b <= bits && b > 0 && (a >> (bits - b)) & 1 != 0;
            (cf, ((r & sb != 0) as u64 ^ cf as u64) != 0, false)
        }
        FlagOp::Shr => (b > 0 && b <= 64 && (a >> (b - 1)) & 1 != 0, a & sb != 0, false),
        FlagOp::Sar => {
            let sa = w.sext(a) as i64;
            (b > 0 && (sa >> (b - 1).min(63)) & 1 != 0, false, false)
        }
        FlagOp::Mul => (c1, c1, false),
        FlagOp::Shrd => (b > 0 && b <= 64 && (a >> (b - 1)) & 1 != 0, (a ^ r) & sb != 0, false),
        FlagOp::Eflags => unreachable!(),
    };
    let mut f = 0;
    if cf {
        f |= rflags::CF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= rflags::PF;
    }
    if af {
        f |= rflags::AF;
    }
    if r == 0 {
        f |= rflags::ZF;
    }
    if r & sb != 0 {
        f |= rflags::SF;
    }
    if of {
        f |= rflags::OF;
    }
    f
}

/// Whether condition `cc` (iced numbering, `ConditionCode as u64`) holds for flag bits `f`.
pub fn eval_cond(cc: u64, f: u64) -> bool {
    let cf = f & rflags::CF != 0;
    let zf = f & rflags::ZF != 0;
    let sf = f & rflags::SF != 0;
    let of = f & rflags::OF != 0;
    let pf = f & rflags::PF != 0;
    match cc {
        x if x == ConditionCode::o as u64 => of,
        x if x == ConditionCode::no as u64 => !of,
        x if x == ConditionCode::b as u64 => cf,
        x if x == ConditionCode::ae as u64 => !cf,
        x if x == ConditionCode::e as u64 => zf,
        x if x == ConditionCode::ne as u64 => !zf,
        x if x == ConditionCode::be as u64 => cf || zf,
        x if x == ConditionCode::a as u64 => !cf && !zf,
        x if x == ConditionCode::s as u64 => sf,
        x if x == ConditionCode::ns as u64 => !sf,
        x if x == ConditionCode::p as u64 => pf,
        x if x == ConditionCode::np as u64 => !pf,
        x if x == ConditionCode::l as u64 => sf != of,
        x if x == ConditionCode::ge as u64 => sf == of,
        x if x == ConditionCode::le as u64 => zf || sf != of,
        x if x == ConditionCode::g as u64 => !zf && sf == of,
        _ => false,
    }
}

fn committed_flags(cpu: &CpuState) -> u64 {
    eval_flags(
        cpu.slot(slot::CC_OP),
        cpu.slot(slot::CC_RES),
        cpu.slot(slot::CC_A),
        cpu.slot(slot::CC_B),
        cpu.slot(slot::CC_C),
    )
}

/// Arithmetic flags of a CPU state (for signal frames, PUSHF in helpers, debuggers).
pub fn arith_flags(cpu: &CpuState) -> u64 {
    committed_flags(cpu)
}

/// The full RFLAGS value of a CPU state.
pub fn full_rflags(cpu: &CpuState) -> u64 {
    committed_flags(cpu) | (cpu.slot(slot::RFLAGS) & !rflags::ARITH) | rflags::FIXED1
}

/// Set a CPU state's RFLAGS from a full value (signal return, system-mode IRET).
pub fn set_full_rflags(cpu: &mut CpuState, v: u64) {
    cpu.set_slot(slot::CC_OP, FlagOp::Eflags as u64);
    cpu.set_slot(slot::CC_RES, v & rflags::ARITH);
    cpu.set_slot(slot::RFLAGS, (v & !rflags::ARITH) | rflags::FIXED1);
}

fn helper_cond(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    Ok(eval_cond(a[0], committed_flags(cx.cpu)) as u64)
}
fn helper_flags(cx: &mut HelperCx<'_>, _a: [u64; 4]) -> Result<u64, Fault> {
    Ok(committed_flags(cx.cpu))
}

/// `cond(cc)` over the committed lazy flags.
pub static FLAGS_COND: HelperDesc = HelperDesc {
    name: "flags_cond",
    func: helper_cond,
    reads_state: true,
    writes_state: false,
    may_fault: false,
};
/// The arithmetic flag bits of the committed lazy flags.
pub static FLAGS_GET: HelperDesc = HelperDesc {
    name: "flags_get",
    func: helper_flags,
    reads_state: true,
    writes_state: false,
    may_fault: false,
};

/// Pending lazy flags of the instruction being lifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The operation.
    pub op: FlagOp,
    /// Its width.
    pub w: Width,
    /// Result (None: not computed yet; only for `Sub`, recomputed from a and b).
    pub res: Option<Slot>,
    /// First operand.
    pub a: Slot,
    /// Second operand.
    pub b: Slot,
    /// Carry/borrow in, preserved CF, or overflow bit.
    pub c: Slot,
    /// When set, the second operand is this immediate and `b` is unused.
    pub bimm: Option<u64>,
}

/// Where the flags are during lifting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagState {
    /// The cc slots in `CpuState` hold the truth.
    Committed,
    /// A flag-setting op whose operands are in slots.
    Pending(Pending),
}

impl FlagState {
    pub(crate) fn refers_to(&self, s: Slot) -> bool {
        match self {
            FlagState::Committed => false,
            FlagState::Pending(p) => {
                let (ua, ub, uc) = p.op.uses();
                p.res == Some(s)
                    || ua && p.a == s
                    || ub && p.bimm.is_none() && p.b == s
                    || uc && p.c == s
            }
        }
    }
    pub(crate) fn replace(&mut self, from: Slot, to: Slot) {
        if let FlagState::Pending(p) = self {
            if p.res == Some(from) {
                p.res = Some(to);
            }
            if p.a == from {
                p.a = to;
            }
            if p.b == from {
                p.b = to;
            }
            if p.c == from {
                p.c = to;
            }
        }
    }
    /// The ops that commit this state to the cc slots (empty when already committed).
    pub(crate) fn commit_ops(&self) -> Vec<Op> {
        let mut v = Vec::new();
        if let FlagState::Pending(p) = *self {
            let code = p.op as u64 | ((p.w as u64) << 8);
            v.push(Op::Const { dst: Slot(slot::CC_OP), imm: code });
            match p.res {
                Some(r) => v.push(Op::Mov { dst: Slot(slot::CC_RES), src: r }),
                None => match p.bimm {
                    Some(imm) => v.push(Op::BinImm {
                        op: BinOp::Sub,
                        w: p.w,
                        dst: Slot(slot::CC_RES),
                        a: p.a,
                        imm,
                    }),
                    None => v.push(Op::Bin {
                        op: BinOp::Sub,
                        w: p.w,
                        dst: Slot(slot::CC_RES),
                        a: p.a,
                        b: p.b,
                    }),
                },
            }
            let (ua, ub, uc) = p.op.uses();
            if ua {
                v.push(Op::Mov { dst: Slot(slot::CC_A), src: p.a });
            }
            if ub {
                match p.bimm {
                    Some(imm) => v.push(Op::Const { dst: Slot(slot::CC_B), imm }),
                    None => v.push(Op::Mov { dst: Slot(slot::CC_B), src: p.b }),
                }
            }
            if uc {
                v.push(Op::Mov { dst: Slot(slot::CC_C), src: p.c });
            }
        }
        v
    }
}

const ALL_STATUS: u32 = RflagsBits::OF
    | RflagsBits::SF
    | RflagsBits::ZF
    | RflagsBits::AF
    | RflagsBits::CF
    | RflagsBits::PF;

impl LiftCx<'_> {
    /// Record the flags of `op` on width `w` with result `res` and operands.
    /// Skipped entirely when none of the flags this instruction writes is live.
    pub fn set_flags(&mut self, op: FlagOp, w: Width, res: Slot, a: Slot, b: Slot, c: Slot) {
        if self.live_out & self.i.rflags_modified() & ALL_STATUS == 0 {
            return;
        }
        self.flags = FlagState::Pending(Pending { op, w, res: Some(res), a, b, c, bimm: None });
    }
    /// Like `set_flags` with an immediate second operand.
    pub fn set_flags_imm(&mut self, op: FlagOp, w: Width, res: Slot, a: Slot, imm: u64, c: Slot) {
        if !self.flags_needed() {
            return;
        }
        let p = Pending { op, w, res: Some(res), a, b: Slot(0), c, bimm: Some(imm) };
        self.flags = FlagState::Pending(p);
    }
    /// Flags of a compare `a - imm` whose result is not otherwise needed.
    pub fn set_flags_cmp_imm(&mut self, w: Width, a: Slot, imm: u64) {
        if !self.flags_needed() {
            return;
        }
        let p =
            Pending { op: FlagOp::Sub, w, res: None, a, b: Slot(0), c: Slot(0), bimm: Some(imm) };
        self.flags = FlagState::Pending(p);
    }
    /// Whether any status flag this instruction writes is live afterwards.
    pub fn flags_needed(&self) -> bool {
        self.live_out & self.i.rflags_modified() & ALL_STATUS != 0
    }
    /// Flags of a compare `a - b` whose result is not otherwise needed.
    pub fn set_flags_cmp(&mut self, w: Width, a: Slot, b: Slot) {
        if self.live_out & self.i.rflags_modified() & ALL_STATUS == 0 {
            return;
        }
        self.flags = FlagState::Pending(Pending {
            op: FlagOp::Sub,
            w,
            res: None,
            a,
            b,
            c: Slot(0),
            bimm: None,
        });
    }
    /// Flags given as raw arithmetic bits (rotates, BT, POPF, SAHF, ...).
    pub fn set_flags_raw(&mut self, bits: Slot) {
        if self.live_out & self.i.rflags_modified() & ALL_STATUS == 0 {
            return;
        }
        self.flags = FlagState::Pending(Pending {
            op: FlagOp::Eflags,
            w: Width::W64,
            res: Some(bits),
            a: Slot(0),
            b: Slot(0),
            c: Slot(0),
            bimm: None,
        });
    }
    /// Commit pending flags to the cc slots now.
    pub fn commit_flags(&mut self) {
        let ops = self.flags.commit_ops();
        for op in ops {
            self.ops.push(op);
        }
        self.flags = FlagState::Committed;
    }

    fn pending_res(&mut self) -> Option<(Pending, Slot)> {
        match self.flags {
            FlagState::Committed => None,
            FlagState::Pending(mut p) => {
                let r = match p.res {
                    Some(r) => r,
                    None => {
                        let r = match p.bimm {
                            Some(imm) => self.bin_imm(BinOp::Sub, p.w, p.a, imm),
                            None => self.bin(BinOp::Sub, p.w, p.a, p.b),
                        };
                        p.res = Some(r);
                        self.flags = FlagState::Pending(p);
                        r
                    }
                };
                Some((p, r))
            }
        }
    }

    /// The arithmetic flag bits as a value.
    pub fn arith_flags(&mut self) -> Slot {
        if let FlagState::Pending(Pending { op: FlagOp::Eflags, res: Some(r), .. }) = self.flags {
            return r;
        }
        self.commit_flags();
        self.helper(&FLAGS_GET, &[])
    }

    /// The full RFLAGS value (arithmetic bits plus `%rflags`).
    pub fn rflags(&mut self) -> Slot {
        let a = self.arith_flags();
        self.bin(BinOp::Or, Width::W64, a, Slot(slot::RFLAGS))
    }

    /// Set RFLAGS from a full value: arithmetic bits become lazy `Eflags`, `mask` says which
    /// non-arithmetic bits may change (others keep their value).
    pub fn set_rflags(&mut self, v: Slot, mask: u64) {
        let arith = self.bin_imm(BinOp::And, Width::W64, v, rflags::ARITH);
        let other_mask = mask & !rflags::ARITH;
        if other_mask != 0 {
            let keep = self.bin_imm(BinOp::And, Width::W64, Slot(slot::RFLAGS), !other_mask);
            let new = self.bin_imm(BinOp::And, Width::W64, v, other_mask);
            let merged = self.bin(BinOp::Or, Width::W64, keep, new);
            let fixed = self.bin_imm(BinOp::Or, Width::W64, merged, rflags::FIXED1);
            self.set_slot(slot::RFLAGS, fixed);
        }
        self.flags = FlagState::Pending(Pending {
            op: FlagOp::Eflags,
            w: Width::W64,
            res: Some(arith),
            a: Slot(0),
            b: Slot(0),
            c: Slot(0),
            bimm: None,
        });
    }

    /// CF as 0/1.
    pub fn carry(&mut self) -> Slot {
        if let FlagState::Pending(p) = self.flags {
            match p.op {
                FlagOp::Sub => {
                    return match p.bimm {
                        Some(imm) => self.cmp_imm(Cond::Ult, p.w, p.a, imm),
                        None => self.cmp(Cond::Ult, p.w, p.a, p.b),
                    }
                }
                FlagOp::Add => {
                    let (_, r) = self.pending_res().expect("pending");
                    return self.cmp(Cond::Ult, p.w, r, p.a);
                }
                FlagOp::Logic => return self.konst(0),
                FlagOp::Inc | FlagOp::Dec | FlagOp::Mul => return p.c,
                // NEG: CF = (operand != 0); `neg; sbb r, r` turns it into a mask.
                FlagOp::Neg => return self.cmp_imm(Cond::Ne, p.w, p.a, 0),
                FlagOp::Eflags => {
                    let (_, r) = self.pending_res().expect("pending");
                    return self.bin_imm(BinOp::And, Width::W64, r, 1);
                }
                _ => {}
            }
        }
        let f = self.arith_flags();
        self.bin_imm(BinOp::And, Width::W64, f, 1)
    }

    /// Condition `cc` as 0/1, fused with the pending flag op when possible.
    pub fn cond(&mut self, cc: ConditionCode) -> Slot {
        use ConditionCode as C;
        if let FlagState::Pending(p) = self.flags {
            let w = p.w;
            match p.op {
                FlagOp::Sub => {
                    let c = match cc {
                        C::e => Some(Cond::Eq),
                        C::ne => Some(Cond::Ne),
                        C::b => Some(Cond::Ult),
                        C::ae => Some(Cond::Uge),
                        C::be => Some(Cond::Ule),
                        C::a => Some(Cond::Ugt),
                        C::l => Some(Cond::Slt),
                        C::ge => Some(Cond::Sge),
                        C::le => Some(Cond::Sle),
                        C::g => Some(Cond::Sgt),
                        _ => None,
                    };
                    if let Some(c) = c {
                        return match p.bimm {
                            Some(imm) => self.cmp_imm(c, w, p.a, imm),
                            None => self.cmp(c, w, p.a, p.b),
                        };
                    }
                    if matches!(cc, C::s | C::ns) {
                        let (_, r) = self.pending_res().expect("pending");
                        let c = if cc == C::s { Cond::Slt } else { Cond::Sge };
                        return self.cmp_imm(c, w, r, 0);
                    }
                }
                FlagOp::Logic => {
                    let r = p.res.expect("logic result");
                    let c = match cc {
                        C::e | C::be => Some(Cond::Eq),
                        C::ne | C::a => Some(Cond::Ne),
                        C::s | C::l => Some(Cond::Slt),
                        C::ns | C::ge => Some(Cond::Sge),
                        C::le => Some(Cond::Sle),
                        C::g => Some(Cond::Sgt),
                        _ => None,
                    };
                    if let Some(c) = c {
                        return self.cmp_imm(c, w, r, 0);
                    }
                    match cc {
                        C::b | C::o => return self.konst(0),
                        C::ae | C::no => return self.konst(1),
                        _ => {}
                    }
                }
                FlagOp::Eflags => {}
                _ => {
                    let r = p.res.expect("result");
                    match cc {
                        C::e => return self.cmp_imm(Cond::Eq, w, r, 0),
                        C::ne => return self.cmp_imm(Cond::Ne, w, r, 0),
                        C::s => return self.cmp_imm(Cond::Slt, w, r, 0),
                        C::ns => return self.cmp_imm(Cond::Sge, w, r, 0),
                        C::b if p.op == FlagOp::Add => return self.cmp(Cond::Ult, w, r, p.a),
                        C::ae if p.op == FlagOp::Add => return self.cmp(Cond::Uge, w, r, p.a),
                        C::b if p.op == FlagOp::Neg => return self.cmp_imm(Cond::Ne, w, p.a, 0),
                        C::ae if p.op == FlagOp::Neg => return self.cmp_imm(Cond::Eq, w, p.a, 0),
                        C::b | C::o if p.op == FlagOp::Mul => {
                            return self.cmp_imm(Cond::Ne, Width::W64, p.c, 0)
                        }
                        C::ae | C::no if p.op == FlagOp::Mul => {
                            return self.cmp_imm(Cond::Eq, Width::W64, p.c, 0)
                        }
                        _ => {}
                    }
                }
            }
            if let FlagOp::Eflags = p.op {
                let r = p.res.expect("eflags");
                let bit = |cx: &mut Self, m: u64, want: bool| {
                    let t = cx.bin_imm(BinOp::And, Width::W64, r, m);
                    cx.cmp_imm(if want { Cond::Ne } else { Cond::Eq }, Width::W64, t, 0)
                };
                match cc {
                    C::e => return bit(self, rflags::ZF, true),
                    C::ne => return bit(self, rflags::ZF, false),
                    C::b => return bit(self, rflags::CF, true),
                    C::ae => return bit(self, rflags::CF, false),
                    C::s => return bit(self, rflags::SF, true),
                    C::ns => return bit(self, rflags::SF, false),
                    C::o => return bit(self, rflags::OF, true),
                    C::no => return bit(self, rflags::OF, false),
                    C::p => return bit(self, rflags::PF, true),
                    C::np => return bit(self, rflags::PF, false),
                    _ => {}
                }
            }
        }
        self.commit_flags();
        let k = self.konst(cc as u64);
        self.helper(&FLAGS_COND, &[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(op: FlagOp, w: Width, res: u64, a: u64, b: u64, c: u64) -> u64 {
        eval_flags(op as u64 | (w as u64) << 8, res, a, b, c)
    }

    #[test]
    fn sub_flags_match_known_values() {
        // 1 - 2 at 8 bits = 0xff: CF, SF, AF set; PF set (8 ones); OF clear.
        let fl = f(FlagOp::Sub, Width::W8, 0xff, 1, 2, 0);
        assert_eq!(fl, rflags::CF | rflags::SF | rflags::AF | rflags::PF);
        // 0x80 - 1 = 0x7f: OF (signed overflow), AF.
        let fl = f(FlagOp::Sub, Width::W8, 0x7f, 0x80, 1, 0);
        assert_eq!(fl, rflags::OF | rflags::AF);
    }

    #[test]
    fn add_carry_and_zero() {
        let fl = f(FlagOp::Add, Width::W32, 0, 0xffff_ffff, 1, 0);
        assert_eq!(fl, rflags::CF | rflags::ZF | rflags::PF | rflags::AF);
    }

    #[test]
    fn conditions_follow_the_sdm_table() {
        let lt = rflags::SF; // SF != OF
        assert!(eval_cond(ConditionCode::l as u64, lt));
        assert!(!eval_cond(ConditionCode::ge as u64, lt));
        assert!(eval_cond(ConditionCode::le as u64, rflags::ZF));
        assert!(eval_cond(ConditionCode::be as u64, rflags::CF));
        assert!(!eval_cond(ConditionCode::a as u64, rflags::CF));
    }
}
