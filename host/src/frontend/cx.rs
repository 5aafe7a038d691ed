//! `LiftCx`: what a lifter sees while lifting one guest instruction, and the IR builder.
//!
//! Lifter contract:
//! - Read operands with `read`/`imm`/`addr`, write them with `write`; write other guest
//!   state only through `set_reg`/`set_slot` (never `emit(Op::Mov { dst: guest, .. })`):
//!   those keep pending lazy-flag operands valid when a guest slot is overwritten.
//! - A value read from an operand is valid in its low `width` bits only.
//! - Emit every op that can fault (loads, stores, helpers, `fault_if`) before the
//!   instruction's first write to a guest register.
//! - Set flags with `set_flags(FlagOp, ...)`; read them with `cond`/`carry`/`rflags`.
//! - Return `Err(Unsupported)` for a form you don't handle: the translator then treats the
//!   instruction as unimplemented (#UD) and discards anything you emitted.

use super::flags::FlagState;
use crate::cpu::{slot, Fault, Width, MAX_TEMPS};
use crate::ir::{BinOp, Cond, HelperDesc, Op, Slot, Term, UnOp};
use iced_x86::Instruction;

/// A lifter could not handle this instruction form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// Lifting state for one block, positioned at one instruction.
pub struct LiftCx<'a> {
    /// The instruction being lifted.
    pub i: &'a Instruction,
    /// Its address.
    pub pc: u64,
    /// Address of the next instruction.
    pub next: u64,
    pub(crate) ops: Vec<Op>,
    pub(crate) temps: u16,
    pub(crate) flags: FlagState,
    /// iced `RflagsBits` that are read after this instruction before being overwritten.
    pub(crate) live_out: u32,
    pub(crate) term: Option<Term>,
    /// Cached effective address of the memory operand of this instruction.
    pub(crate) mem_addr: Option<Slot>,
    /// Lift REP string instructions one element per run (`LiftOpts::rep_each`).
    pub(crate) rep_each: bool,
}

impl<'a> LiftCx<'a> {
    pub(crate) fn new(i: &'a Instruction) -> LiftCx<'a> {
        LiftCx {
            i,
            pc: i.ip(),
            next: i.next_ip(),
            ops: Vec::with_capacity(256),
            temps: 0,
            flags: FlagState::Committed,
            live_out: u32::MAX,
            term: None,
            mem_addr: None,
            rep_each: false,
        }
    }

    /// A fresh temporary.
    pub fn temp(&mut self) -> Slot {
        let t = Slot::temp(self.temps);
        self.temps += 1;
        debug_assert!((self.temps as usize) < MAX_TEMPS);
        t
    }
    /// Append a raw op. Must not write a guest slot (use `set_slot`).
    pub fn emit(&mut self, op: Op) {
        debug_assert!(op.dst().is_none_or(|d| !d.is_guest()), "emit() to a guest slot: {op}");
        self.ops.push(op);
    }
    /// `t = imm`
    pub fn konst(&mut self, imm: u64) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::Const { dst, imm });
        dst
    }
    /// `t = a op b`
    pub fn bin(&mut self, op: BinOp, w: Width, a: Slot, b: Slot) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::Bin { op, w, dst, a, b });
        dst
    }
    /// `t = a op imm`
    pub fn bin_imm(&mut self, op: BinOp, w: Width, a: Slot, imm: u64) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::BinImm { op, w, dst, a, imm });
        dst
    }
    /// `t = op a`
    pub fn un(&mut self, op: UnOp, w: Width, a: Slot) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::Un { op, w, dst, a });
        dst
    }
    /// `t = (a cc b)`
    pub fn cmp(&mut self, cc: Cond, w: Width, a: Slot, b: Slot) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::Cmp { cc, w, dst, a, b });
        dst
    }
    /// `t = (a cc imm)`
    pub fn cmp_imm(&mut self, cc: Cond, w: Width, a: Slot, imm: u64) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::CmpImm { cc, w, dst, a, imm });
        dst
    }
    /// `t = c ? t : f`
    pub fn select(&mut self, c: Slot, t: Slot, f: Slot) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::Select { dst, c, t, f });
        dst
    }
    /// `t = load.w [addr]`
    pub fn load(&mut self, w: Width, addr: Slot) -> Slot {
        let dst = self.temp();
        self.ops.push(Op::Load { w, dst, addr });
        dst
    }
    /// `store.w [addr], val`
    pub fn store(&mut self, w: Width, addr: Slot, val: Slot) {
        self.ops.push(Op::Store { w, addr, val });
    }
    /// Call a helper returning a value.
    pub fn helper(&mut self, h: &'static HelperDesc, args: &[Slot]) -> Slot {
        let dst = self.temp();
        self.helper_into(h, args, Some(dst));
        dst
    }
    /// Call a helper for its effect.
    pub fn helper_void(&mut self, h: &'static HelperDesc, args: &[Slot]) {
        self.helper_into(h, args, None);
    }
    fn helper_into(&mut self, h: &'static HelperDesc, args: &[Slot], dst: Option<Slot>) {
        assert!(args.len() <= 4, "helper {} takes at most 4 args", h.name);
        if h.reads_state || h.writes_state {
            // Helpers that look at guest state see committed flags.
            self.commit_flags();
        }
        let mut a = [Slot(0); 4];
        a[..args.len()].copy_from_slice(args);
        self.ops.push(Op::Helper { h, args: a, nargs: args.len() as u8, dst });
        if h.writes_state {
            self.flags = FlagState::Committed;
        }
    }
    /// Raise `fault` when `c != 0`.
    pub fn fault_if(&mut self, c: Slot, fault: Fault) {
        self.ops.push(Op::FaultIf { c, fault });
    }

    /// Write a guest slot (keeps pending flag operands valid).
    pub fn set_slot(&mut self, dst: u16, v: Slot) {
        let d = Slot(dst);
        if d == v {
            return;
        }
        self.protect_pending(d);
        self.ops.push(Op::Mov { dst: d, src: v });
    }
    /// Write a guest slot from the result of an op built by `f` (saves a Mov).
    pub fn set_slot_op(&mut self, dst: u16, mut op: Op) {
        let d = Slot(dst);
        self.protect_pending(d);
        set_dst(&mut op, d);
        self.ops.push(op);
    }
    /// Before overwriting guest slot `d`, copy it if the pending flags refer to it.
    fn protect_pending(&mut self, d: Slot) {
        if self.flags.refers_to(d) {
            let t = self.temp();
            self.ops.push(Op::Mov { dst: t, src: d });
            self.flags.replace(d, t);
        }
    }
    /// Write the full 64-bit GPR `n`.
    pub fn set_gpr(&mut self, n: u8, v: Slot) {
        self.set_slot(slot::gpr(n), v);
    }
    /// Read the full 64-bit GPR `n`.
    pub fn gpr(&self, n: u8) -> Slot {
        Slot(slot::gpr(n))
    }

    /// End the block after this instruction.
    pub fn end(&mut self, t: Term) {
        self.term = Some(t);
    }
    /// Whether any of the iced `RflagsBits` in `mask` are live after this instruction.
    pub fn flags_live(&self, mask: u32) -> bool {
        self.live_out & mask != 0
    }
}

pub(crate) fn set_dst(op: &mut Op, d: Slot) {
    match op {
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
        | Op::AtomicCas { dst, .. } => *dst = d,
        Op::Helper { dst, .. } => *dst = Some(d),
        _ => panic!("set_slot_op: op has no destination"),
    }
}
