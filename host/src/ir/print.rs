//! Text form of the IR: `t3 = add.i64 %rax, t2`.

use super::block::{Block, Term};
use super::op::{Op, Slot};
use crate::cpu::{slot, GUEST_SLOTS};
use std::fmt;

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_guest() {
            f.write_str(&slot::name(self.0))
        } else {
            write!(f, "t{}", self.0 as usize - GUEST_SLOTS)
        }
    }
}

fn lower<T: fmt::Debug>(v: T) -> String {
    format!("{v:?}").to_lowercase()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Const { dst, imm } => write!(f, "{dst} = const {imm:#x}"),
            Op::Mov { dst, src } => write!(f, "{dst} = mov {src}"),
            Op::Bin { op, w, dst, a, b } => {
                write!(f, "{dst} = {}.{} {a}, {b}", lower(op), w.suffix())
            }
            Op::BinImm { op, w, dst, a, imm } => {
                write!(f, "{dst} = {}.{} {a}, {imm:#x}", lower(op), w.suffix())
            }
            Op::Un { op, w, dst, a } => write!(f, "{dst} = {}.{} {a}", lower(op), w.suffix()),
            Op::Cmp { cc, w, dst, a, b } => {
                write!(f, "{dst} = icmp.{}.{} {a}, {b}", lower(cc), w.suffix())
            }
            Op::CmpImm { cc, w, dst, a, imm } => {
                write!(f, "{dst} = icmp.{}.{} {a}, {imm:#x}", lower(cc), w.suffix())
            }
            Op::Select { dst, c, t, f: e } => write!(f, "{dst} = select {c}, {t}, {e}"),
            Op::Load { w, dst, addr } => write!(f, "{dst} = load.{} [{addr}]", w.suffix()),
            Op::Store { w, addr, val } => write!(f, "store.{} [{addr}], {val}", w.suffix()),
            Op::AtomicRmw { op, w, dst, addr, val } => {
                write!(f, "{dst} = atomic_{}.{} [{addr}], {val}", lower(op), w.suffix())
            }
            Op::AtomicCas { w, dst, addr, expected, new } => {
                write!(f, "{dst} = atomic_cas.{} [{addr}], {expected}, {new}", w.suffix())
            }
            Op::Helper { h, args, nargs, dst } => {
                if let Some(d) = dst {
                    write!(f, "{d} = ")?;
                }
                write!(f, "call {}(", h.name)?;
                for (i, a) in args[..nargs as usize].iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Op::FaultIf { c, fault } => write!(f, "fault_if {c}, {fault:?}"),
            Op::ExitIf { c, target } => write!(f, "exit_if {c}, {target:#x}"),
            Op::CallPlugin { call, args, nargs, cond } => {
                write!(f, "call_plugin {}:{:#x}(", call.plugin, call.site.udata)?;
                for (i, a) in args[..nargs as usize].iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")?;
                if let Some(c) = cond {
                    write!(f, " if {c}")?;
                }
                Ok(())
            }
            Op::PluginLoad { w, dst, off, idx, mask } => {
                write!(f, "{dst} = pload.{} [pmem+{off:#x}", w.suffix())?;
                if let Some(i) = idx {
                    write!(f, " + ({i} & {mask:#x})*{}", w.bytes())?;
                }
                f.write_str("]")
            }
            Op::PluginStore { w, val, off, idx, mask } => {
                write!(f, "pstore.{} [pmem+{off:#x}", w.suffix())?;
                if let Some(i) = idx {
                    write!(f, " + ({i} & {mask:#x})*{}", w.bytes())?;
                }
                write!(f, "], {val}")
            }
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Term::Jump(pc) => write!(f, "jump {pc:#x}"),
            Term::Branch { c, taken, not_taken } => {
                write!(f, "branch {c}, {taken:#x}, {not_taken:#x}")
            }
            Term::Indirect { target, is_ret } => {
                write!(f, "{} {target}", if is_ret { "ret" } else { "jump_indirect" })
            }
            Term::Syscall { next } => write!(f, "syscall next={next:#x}"),
            Term::Halt { next } => write!(f, "halt next={next:#x}"),
            Term::Fault { fault, pc, .. } => write!(f, "fault {fault:?} at {pc:#x}"),
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "block {:#x}..{:#x} ({} temps):", self.pc, self.end, self.temps)?;
        let mut next_insn = 0;
        for (i, op) in self.ops.iter().enumerate() {
            while next_insn < self.insns.len() && self.insns[next_insn].first_op as usize <= i {
                writeln!(f, "  ; {:#x}", self.insns[next_insn].pc)?;
                next_insn += 1;
            }
            writeln!(f, "    {op}")?;
        }
        for m in &self.insns[next_insn..] {
            writeln!(f, "  ; {:#x}", m.pc)?;
        }
        writeln!(f, "    {}", self.term)
    }
}
