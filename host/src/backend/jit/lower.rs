//! IR block → Cranelift function, with exactly `interp::run_block`'s semantics.
//!
//! The function is `fn(ctx: *mut JitCtx, cpu: *mut CpuState) -> u64` (see `exits` for the
//! returned code). Its shape is a tree: the main path runs the ops in order and ends in the
//! terminator; every op that can stop the block (a shim status, `FaultIf`, `ExitIf`)
//! branches to a cold side path that writes back dirty slots, sets `%rip` and returns.
//! Side paths never rejoin the main path, so which slots are cached and dirty is known
//! statically at every point (`regs::SlotState`).
//!
//! The interpreter's stop rules, by *mode* (the mode a side path's remaining ops run in):
//! - `Normal`: a fault in instruction k runs k's fix-ups and leaves at k's pc with
//!   `next = pc + len`; a taken `ExitIf` leaves to its target; after a store, atomic or
//!   helper that reports `code_written`, the rest of instruction k runs in `CwMid(k)` and
//!   the block leaves before k+1 with `CodeWritten` (running k+1's fix-ups), or, when k is
//!   the last instruction, the rest of the block runs in `CwLast`.
//! - `CwMid(k)`: a fault runs k's fix-ups with `next` = k+1's pc; another code write (or
//!   the end of k) leaves with `CodeWritten`; `ExitIf` leaves normally.
//! - `CwLast`: any stop (fault, exit, code write) silently ends the op sequence and the
//!   terminator decides the exit, as the interpreter ignores that run's stop reason.
//!
//! The code-written continuation is emitted as a copy of the remaining ops of the
//! instruction on the cold path, so the hot path pays one status test per memory op.

use super::arith;
use super::exits::{fault_code, kind, FaultSite};
use super::regs::{Regs, SlotState};
use super::rt::{rmw_code, status, RtFn};
use crate::cpu::Fault;
use crate::ir::{Block, Op, Slot, Term};
use cranelift_codegen::ir::{self, condcodes::IntCC, types, InstBuilder, SigRef, Value};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    CwMid(usize),
    CwLast,
}

struct Lower<'a, 'f> {
    fb: FunctionBuilder<'f>,
    b: &'a Block,
    regs: Regs,
    ctx: Value,
    sites: Vec<FaultSite>,
    sigs: Vec<(RtFn, SigRef)>,
    call_conv: CallConv,
    panic_block: Option<ir::Block>,
}

/// Build the body of `func` (whose signature the caller set) for block `b`. Returns the
/// fault-site table the exit codes index.
pub(super) fn build(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    b: &Block,
    call_conv: CallConv,
    frontend: TargetFrontendConfig,
) -> Vec<FaultSite> {
    let mut fb = FunctionBuilder::new(func, fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    fb.seal_block(entry);
    let (ctx, cpu) = (fb.block_params(entry)[0], fb.block_params(entry)[1]);
    let mut l = Lower {
        fb,
        b,
        regs: Regs::new(cpu, b.temps),
        ctx,
        sites: Vec::new(),
        sigs: Vec::new(),
        call_conv,
        panic_block: None,
    };
    let mut st = SlotState::default();
    l.lower_ops(0..b.ops.len(), Mode::Normal, &mut st);
    l.terminator(&mut st);
    if let Some(p) = l.panic_block {
        // One shared exit for every shim that caught a panic: nothing to write back, the
        // panic is re-raised by `entry`.
        l.fb.switch_to_block(p);
        let c = l.konst(kind::PANIC);
        l.fb.ins().return_(&[c]);
    }
    l.fb.seal_all_blocks();
    l.fb.finalize(frontend);
    l.sites
}

impl Lower<'_, '_> {
    fn konst(&mut self, v: u64) -> Value {
        self.fb.ins().iconst(types::I64, v as i64)
    }

    fn read(&mut self, st: &mut SlotState, s: Slot) -> Value {
        self.regs.read(&mut self.fb, st, s)
    }

    fn write(&mut self, st: &mut SlotState, s: Slot, v: Value) {
        self.regs.write(&mut self.fb, st, s, v)
    }

    /// Write back, set `%rip`, return `code`.
    fn leave(&mut self, st: &mut SlotState, rip: Value, code: u64) {
        self.regs.write_back(&mut self.fb, st);
        self.regs.store_rip(&mut self.fb, rip);
        let c = self.konst(code);
        self.fb.ins().return_(&[c]);
    }

    fn leave_at(&mut self, st: &mut SlotState, rip: u64, code: u64) {
        let r = self.konst(rip);
        self.leave(st, r, code)
    }

    /// `brif c` to a new cold block, which becomes current; returns the fall-through
    /// block, to switch to once the cold path is complete.
    fn branch_cold(&mut self, c: Value) -> ir::Block {
        let cold = self.fb.create_block();
        let cont = self.fb.create_block();
        self.fb.ins().brif(c, cold, &[], cont, &[]);
        self.fb.seal_block(cold);
        self.fb.seal_block(cont);
        self.fb.set_cold_block(cold);
        self.fb.switch_to_block(cold);
        cont
    }

    fn call_rt(&mut self, f: RtFn, args: &[Value]) -> (Value, Value) {
        debug_assert_eq!(args.len(), f.nargs(), "{} arity", f.name());
        let sig = match self.sigs.iter().find(|(g, _)| *g == f) {
            Some(&(_, s)) => s,
            None => {
                let s = self.fb.import_signature(f.signature(self.call_conv));
                self.sigs.push((f, s));
                s
            }
        };
        let addr = self.konst(f.addr() as u64);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.ctx);
        all.extend_from_slice(args);
        let call = self.fb.ins().call_indirect(sig, addr, &all);
        let r = self.fb.inst_results(call);
        (r[0], r[1])
    }

    /// Branch on a shim status: non-zero goes to a cold path that handles a code write
    /// (when `may_cw`; `dst` receives `value` first), a fault, or a panic.
    #[allow(clippy::too_many_arguments, reason = "one call site per op kind, all fields used")]
    fn check_status(
        &mut self,
        status: Value,
        value: Value,
        dst: Option<Slot>,
        i: usize,
        mode: Mode,
        st: &SlotState,
        may_cw: bool,
    ) {
        let cont = self.branch_cold(status);
        if may_cw {
            let is_cw = self.fb.ins().icmp_imm_s(IntCC::Equal, status, status::CODE_WRITTEN as i64);
            let other = self.branch_cold(is_cw);
            let mut s2 = *st;
            if let Some(d) = dst {
                self.write(&mut s2, d, value);
            }
            self.on_code_written(i, mode, &mut s2);
            self.fb.switch_to_block(other);
        }
        let is_fault = self.fb.ins().icmp_imm_s(IntCC::Equal, status, status::FAULT as i64);
        let fault_blk = self.fb.create_block();
        let panic_blk = match self.panic_block {
            Some(p) => p,
            None => {
                let p = self.fb.create_block();
                self.fb.set_cold_block(p);
                self.panic_block = Some(p);
                p
            }
        };
        self.fb.ins().brif(is_fault, fault_blk, &[], panic_blk, &[]);
        self.fb.seal_block(fault_blk);
        self.fb.set_cold_block(fault_blk);
        self.fb.switch_to_block(fault_blk);
        let mut s2 = *st;
        self.on_fault(i, mode, None, &mut s2);
        self.fb.switch_to_block(cont);
    }

    fn lower_ops(&mut self, range: Range<usize>, mode: Mode, st: &mut SlotState) {
        for i in range {
            self.lower_op(i, mode, st);
        }
    }

    fn lower_op(&mut self, i: usize, mode: Mode, st: &mut SlotState) {
        let op = self.b.ops[i];
        if arith::lower_pure(&mut self.fb, &mut self.regs, st, &op) {
            return;
        }
        match op {
            Op::Load { w, dst, addr } => {
                let a = self.read(st, addr);
                let wv = self.konst(w as u64);
                let (v, s) = self.call_rt(RtFn::Load, &[a, wv]);
                self.check_status(s, v, Some(dst), i, mode, st, false);
                self.write(st, dst, v);
            }
            Op::Store { w, addr, val } => {
                let (a, v) = (self.read(st, addr), self.read(st, val));
                let wv = self.konst(w as u64);
                let (r, s) = self.call_rt(RtFn::Store, &[a, wv, v]);
                self.check_status(s, r, None, i, mode, st, true);
            }
            Op::AtomicRmw { op, w, dst, addr, val } => {
                let (a, v) = (self.read(st, addr), self.read(st, val));
                let (o, wv) = (self.konst(rmw_code(op)), self.konst(w as u64));
                let (r, s) = self.call_rt(RtFn::AtomicRmw, &[o, a, wv, v]);
                self.check_status(s, r, Some(dst), i, mode, st, true);
                self.write(st, dst, r);
            }
            Op::AtomicCas { w, dst, addr, expected, new } => {
                let a = self.read(st, addr);
                let (e, n) = (self.read(st, expected), self.read(st, new));
                let wv = self.konst(w as u64);
                let (r, s) = self.call_rt(RtFn::AtomicCas, &[a, wv, e, n]);
                self.check_status(s, r, Some(dst), i, mode, st, true);
                self.write(st, dst, r);
            }
            Op::Helper { h, args, nargs, dst } => {
                let mut a = [self.konst(0); 4];
                for (k, s) in args.iter().take((nargs as usize).min(4)).enumerate() {
                    a[k] = self.read(st, *s);
                }
                if h.reads_state || h.writes_state {
                    self.regs.write_back(&mut self.fb, st);
                }
                let desc = self.konst(h as *const crate::ir::HelperDesc as u64);
                let (r, s) = self.call_rt(RtFn::CallHelper, &[desc, a[0], a[1], a[2], a[3]]);
                if h.writes_state {
                    Regs::forget(st);
                }
                self.check_status(s, r, dst, i, mode, st, true);
                if let Some(d) = dst {
                    self.write(st, d, r);
                }
            }
            Op::FaultIf { c, fault } => {
                let cv = self.read(st, c);
                let cont = self.branch_cold(cv);
                let mut s2 = *st;
                self.on_fault(i, mode, Some(fault), &mut s2);
                self.fb.switch_to_block(cont);
            }
            Op::ExitIf { c, target } => {
                let cv = self.read(st, c);
                let cont = self.branch_cold(cv);
                let mut s2 = *st;
                self.on_exit(target, mode, &mut s2);
                self.fb.switch_to_block(cont);
            }
            _ => unreachable!("pure ops are lowered by arith::lower_pure"),
        }
    }

    /// Run instruction `k`'s fix-up ops (all pure; `Jit::compile` checked).
    fn fixups(&mut self, k: usize, st: &mut SlotState) {
        if let Some(ops) = self.b.fixups_for(k) {
            for op in ops {
                let done = arith::lower_pure(&mut self.fb, &mut self.regs, st, op);
                debug_assert!(done, "impure fix-up op {op}");
            }
        }
    }

    fn fault_exit(&mut self, st: &mut SlotState, pc: u64, fault: Option<Fault>, next: u64) {
        self.sites.push(FaultSite { fault, next });
        let code = fault_code(self.sites.len() - 1);
        self.leave_at(st, pc, code)
    }

    /// Op `i` faulted (`fault` is `None` when a shim parked it in the context).
    fn on_fault(&mut self, i: usize, mode: Mode, fault: Option<Fault>, st: &mut SlotState) {
        let b = self.b;
        match mode {
            Mode::Normal => {
                let k = b.insn_of_op(i);
                self.fixups(k, st);
                let (pc, next) = b
                    .insns
                    .get(k)
                    .map_or((b.pc, b.pc), |m| (m.pc, m.pc.wrapping_add(m.len as u64)));
                self.fault_exit(st, pc, fault, next)
            }
            Mode::CwMid(k) => {
                self.fixups(k, st);
                self.fault_exit(st, b.insns[k].pc, fault, b.insns[k + 1].pc)
            }
            Mode::CwLast => self.terminator(st),
        }
    }

    fn on_exit(&mut self, target: u64, mode: Mode, st: &mut SlotState) {
        match mode {
            Mode::Normal | Mode::CwMid(_) => self.leave_at(st, target, kind::JUMP),
            Mode::CwLast => self.terminator(st),
        }
    }

    /// Op `i` succeeded and reported that translated code was written.
    fn on_code_written(&mut self, i: usize, mode: Mode, st: &mut SlotState) {
        let b = self.b;
        match mode {
            Mode::Normal => {
                let k = b.insn_of_op(i);
                if k + 1 < b.insns.len() {
                    let end = (b.insns[k + 1].first_op as usize).clamp(i + 1, b.ops.len());
                    self.lower_ops(i + 1..end, Mode::CwMid(k), st);
                    self.leave_code_written(k + 1, st);
                } else {
                    self.lower_ops(i + 1..b.ops.len(), Mode::CwLast, st);
                    self.terminator(st);
                }
            }
            Mode::CwMid(k) => self.leave_code_written(k + 1, st),
            Mode::CwLast => self.terminator(st),
        }
    }

    /// Leave before instruction `k` because code was written.
    fn leave_code_written(&mut self, k: usize, st: &mut SlotState) {
        self.fixups(k, st);
        self.leave_at(st, self.b.insns[k].pc, kind::CODE_WRITTEN)
    }

    fn terminator(&mut self, st: &mut SlotState) {
        match self.b.term {
            Term::Jump(pc) => self.leave_at(st, pc, kind::JUMP),
            Term::Branch { c, taken, not_taken } => {
                let cv = self.read(st, c);
                let (t, n) = (self.konst(taken), self.konst(not_taken));
                let pc = self.fb.ins().select(cv, t, n);
                self.leave(st, pc, kind::JUMP)
            }
            Term::Indirect { target, is_ret } => {
                let pc = self.read(st, target);
                self.leave(st, pc, if is_ret { kind::RET } else { kind::INDIRECT })
            }
            Term::Syscall { next } => self.leave_at(st, next, kind::SYSCALL),
            Term::Halt { next } => self.leave_at(st, next, kind::HALT),
            Term::Fault { fault, pc, next } => self.fault_exit(st, pc, Some(fault), next),
        }
    }
}
