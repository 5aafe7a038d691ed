//! Evaluation of IR blocks over a `CpuState` and a `GuestMemory`.
//!
//! Guest slots and temporaries live in one array (`CpuState::slots`), indexed with
//! `& SLOT_MASK` so the compiler drops the bounds check. Ops run in order; a fault runs
//! the block's fix-up ops for the faulting instruction (committing lazy flags that were
//! still pending), sets `%rip` to the instruction and returns.

use crate::backend::BlockExit;
use crate::cpu::{CpuState, Fault, Width, SLOT_MASK};
use crate::ir::{BinOp, Block, HelperCx, Op, Term, UnOp};
use crate::mem::{GuestMemory, RmwOp};
use std::sync::atomic::{AtomicU64, Ordering};

/// Evaluate a binary op at width `w`.
#[inline(always)]
pub fn eval_bin(op: BinOp, w: Width, a: u64, b: u64) -> u64 {
    let m = w.mask();
    let bits = w.bits();
    let r = match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
        BinOp::Shl => (a & m).wrapping_shl(b as u32 & 63),
        BinOp::Shr => (a & m).wrapping_shr(b as u32 & 63),
        BinOp::Sar => (w.sext(a) as i64).wrapping_shr(b as u32 & 63) as u64,
        BinOp::Rol | BinOp::Ror => {
            let n = (b as u32) % bits;
            let v = a & m;
            if n == 0 {
                v
            } else if op == BinOp::Rol {
                (v << n) | (v >> (bits - n))
            } else {
                (v >> n) | (v << (bits - n))
            }
        }
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::UMulHi => {
            let p = (a & m) as u128 * (b & m) as u128;
            (p >> bits) as u64
        }
        BinOp::SMulHi => {
            let p = (w.sext(a) as i64 as i128) * (w.sext(b) as i64 as i128);
            (p >> bits) as u64
        }
        BinOp::UDiv => (a & m).checked_div(b & m).unwrap_or(0),
        BinOp::URem => (a & m).checked_rem(b & m).unwrap_or(0),
        BinOp::SDiv => {
            let (x, y) = (w.sext(a) as i64, w.sext(b) as i64);
            if y == 0 {
                0
            } else {
                x.wrapping_div(y) as u64
            }
        }
        BinOp::SRem => {
            let (x, y) = (w.sext(a) as i64, w.sext(b) as i64);
            if y == 0 {
                0
            } else {
                x.wrapping_rem(y) as u64
            }
        }
    };
    r & m
}

/// Evaluate a unary op at width `w`.
#[inline(always)]
pub fn eval_un(op: UnOp, w: Width, a: u64) -> u64 {
    let m = w.mask();
    match op {
        UnOp::Not => !a & m,
        UnOp::Neg => a.wrapping_neg() & m,
        UnOp::Zext => a & m,
        UnOp::Sext => w.sext(a),
        UnOp::Bswap => match w {
            Width::W8 => a & m,
            Width::W16 => (a as u16).swap_bytes() as u64,
            Width::W32 => (a as u32).swap_bytes() as u64,
            Width::W64 => a.swap_bytes(),
        },
        UnOp::Popcnt => (a & m).count_ones() as u64,
        UnOp::Clz => ((a & m).leading_zeros() - (64 - w.bits())) as u64,
        UnOp::Ctz => {
            let v = a & m;
            if v == 0 {
                w.bits() as u64
            } else {
                v.trailing_zeros() as u64
            }
        }
        UnOp::Parity => ((a as u8).count_ones().is_multiple_of(2)) as u64,
    }
}

fn rmw_op(op: crate::ir::AtomicOp) -> RmwOp {
    match op {
        crate::ir::AtomicOp::Xchg => RmwOp::Xchg,
        crate::ir::AtomicOp::Add => RmwOp::Add,
        crate::ir::AtomicOp::And => RmwOp::And,
        crate::ir::AtomicOp::Or => RmwOp::Or,
        crate::ir::AtomicOp::Xor => RmwOp::Xor,
    }
}

/// Read `w` bytes at byte offset `at` of plugin memory (little-endian words). The plugin
/// module keeps accesses in bounds and aligned; an access outside reads 0.
fn pmem_load(m: &[AtomicU64], at: usize, w: Width) -> u64 {
    let word = m.get(at / 8).map_or(0, |a| a.load(Ordering::Relaxed));
    (word >> ((at % 8) * 8)) & w.mask()
}

/// Write the low `w` bytes of `v` at byte offset `at` of plugin memory. Only the owning
/// vCPU writes its plugin memory, so a narrow store may read-modify-write the word.
fn pmem_store(m: &[AtomicU64], at: usize, w: Width, v: u64) {
    if let Some(a) = m.get(at / 8) {
        let sh = (at % 8) * 8;
        let mask = w.mask() << sh;
        let old = a.load(Ordering::Relaxed);
        a.store((old & !mask) | ((v << sh) & mask), Ordering::Relaxed);
    }
}

enum Stop {
    Done,
    Fault(usize, Fault),
    Exit(u64),
    CodeWritten(usize),
}

#[inline(always)]
fn exec_ops(ops: &[Op], base: usize, cpu: &mut CpuState, mem: &mut dyn GuestMemory) -> Stop {
    macro_rules! s {
        ($x:expr) => {
            cpu.slots[$x.0 as usize & SLOT_MASK]
        };
    }
    for (j, op) in ops.iter().enumerate() {
        match *op {
            Op::Const { dst, imm } => s!(dst) = imm,
            Op::Mov { dst, src } => s!(dst) = s!(src),
            Op::Bin { op, w, dst, a, b } => s!(dst) = eval_bin(op, w, s!(a), s!(b)),
            Op::BinImm { op, w, dst, a, imm } => s!(dst) = eval_bin(op, w, s!(a), imm),
            Op::Un { op, w, dst, a } => s!(dst) = eval_un(op, w, s!(a)),
            Op::Cmp { cc, w, dst, a, b } => s!(dst) = cc.eval(w, s!(a), s!(b)) as u64,
            Op::CmpImm { cc, w, dst, a, imm } => s!(dst) = cc.eval(w, s!(a), imm) as u64,
            Op::Select { dst, c, t, f } => s!(dst) = if s!(c) != 0 { s!(t) } else { s!(f) },
            Op::Load { w, dst, addr } => match mem.load(s!(addr), w) {
                Ok(v) => s!(dst) = v,
                Err(f) => return Stop::Fault(base + j, f),
            },
            Op::Store { w, addr, val } => {
                if let Err(f) = mem.store(s!(addr), w, s!(val)) {
                    return Stop::Fault(base + j, f);
                }
                if mem.code_written() {
                    return Stop::CodeWritten(base + j);
                }
            }
            Op::AtomicRmw { op, w, dst, addr, val } => {
                match mem.atomic_rmw(rmw_op(op), s!(addr), w, s!(val)) {
                    Ok(v) => s!(dst) = v,
                    Err(f) => return Stop::Fault(base + j, f),
                }
                if mem.code_written() {
                    return Stop::CodeWritten(base + j);
                }
            }
            Op::AtomicCas { w, dst, addr, expected, new } => {
                match mem.atomic_cas(s!(addr), w, s!(expected), s!(new)) {
                    Ok(v) => s!(dst) = v,
                    Err(f) => return Stop::Fault(base + j, f),
                }
                if mem.code_written() {
                    return Stop::CodeWritten(base + j);
                }
            }
            Op::Helper { h, args, nargs, dst } => {
                let mut a = [0u64; 4];
                for k in 0..nargs as usize {
                    a[k] = s!(args[k]);
                }
                let r = {
                    let mut cx = HelperCx { cpu: &mut *cpu, mem: &mut *mem };
                    (h.func)(&mut cx, a)
                };
                match r {
                    Ok(v) => {
                        if let Some(d) = dst {
                            s!(d) = v;
                        }
                    }
                    Err(f) => return Stop::Fault(base + j, f),
                }
                if mem.code_written() {
                    return Stop::CodeWritten(base + j);
                }
            }
            Op::FaultIf { c, fault } => {
                if s!(c) != 0 {
                    return Stop::Fault(base + j, fault);
                }
            }
            Op::ExitIf { c, target } => {
                if s!(c) != 0 {
                    return Stop::Exit(target);
                }
            }
            Op::CallPlugin { call, args, nargs, cond } => {
                if cond.is_none_or(|c| s!(c) != 0) {
                    let mut a = [0u64; 4];
                    for k in 0..nargs as usize {
                        a[k] = s!(args[k]);
                    }
                    (call.func)(&call.site, cpu.vcpu_index, a[0], a[1], a[2], a[3]);
                }
            }
            Op::PluginLoad { w, dst, off, idx, mask } => {
                let i = idx.map_or(0, |i| s!(i) & mask as u64) as usize;
                s!(dst) = pmem_load(cpu.plugin_mem, off as usize + i * w.bytes(), w);
            }
            Op::PluginStore { w, val, off, idx, mask } => {
                let i = idx.map_or(0, |i| s!(i) & mask as u64) as usize;
                pmem_store(cpu.plugin_mem, off as usize + i * w.bytes(), w, s!(val));
            }
        }
    }
    Stop::Done
}

fn run_fixups(b: &Block, insn: usize, cpu: &mut CpuState, mem: &mut dyn GuestMemory) {
    if let Some(ops) = b.fixups_for(insn) {
        // Fix-up ops only move and compute slots; they cannot fault.
        let _ = exec_ops(ops, 0, cpu, mem);
    }
}

/// Run one block. On return `%rip` holds the pc the exit names.
pub fn run_block(b: &Block, cpu: &mut CpuState, mem: &mut dyn GuestMemory) -> BlockExit {
    run_block_from(b, 0, cpu, mem)
}

/// Run block `b` on from op `start`, with the slots (temporaries included) as the ops
/// before it left them: the JIT's resume exit hands a block over here when an access
/// needs the slow path. On return `%rip` holds the pc the exit names.
pub fn run_block_from(
    b: &Block,
    start: usize,
    cpu: &mut CpuState,
    mem: &mut dyn GuestMemory,
) -> BlockExit {
    let start = start.min(b.ops.len());
    match exec_ops(&b.ops[start..], start, cpu, mem) {
        Stop::Done => {}
        Stop::Exit(pc) => {
            cpu.set_rip(pc);
            return BlockExit::Jump(pc);
        }
        Stop::Fault(i, fault) => {
            let k = b.insn_of_op(i);
            run_fixups(b, k, cpu, mem);
            let m = b.insns.get(k).copied();
            let (pc, next) = m.map_or((b.pc, b.pc), |m| (m.pc, m.pc + m.len as u64));
            cpu.set_rip(pc);
            return BlockExit::Fault { fault, next };
        }
        Stop::CodeWritten(i) => {
            // Finish the writing instruction: later code-write reports (the flag stays set
            // until the exec loop takes it) do not stop it; a fault or an exit does. Then
            // leave at the next instruction, or, after the last one, take the terminator.
            let k = b.insn_of_op(i);
            let last = k + 1 >= b.insns.len();
            let end = if last { b.ops.len() } else { b.insns[k + 1].first_op as usize };
            let mut from = i + 1;
            loop {
                match exec_ops(&b.ops[from..end], from, cpu, mem) {
                    Stop::CodeWritten(j) => from = j + 1,
                    Stop::Fault(_, fault) => {
                        run_fixups(b, k, cpu, mem);
                        let m = b.insns.get(k).copied();
                        let (pc, next) = m.map_or((b.pc, b.pc), |m| (m.pc, m.pc + m.len as u64));
                        cpu.set_rip(pc);
                        return BlockExit::Fault { fault, next };
                    }
                    Stop::Exit(pc) => {
                        cpu.set_rip(pc);
                        return BlockExit::Jump(pc);
                    }
                    Stop::Done => break,
                }
            }
            if !last {
                run_fixups(b, k + 1, cpu, mem);
                cpu.set_rip(b.insns[k + 1].pc);
                return BlockExit::CodeWritten;
            }
        }
    }
    match b.term {
        Term::Jump(pc) => {
            cpu.set_rip(pc);
            BlockExit::Jump(pc)
        }
        Term::Branch { c, taken, not_taken } => {
            let pc = if cpu.slots[c.0 as usize & SLOT_MASK] != 0 { taken } else { not_taken };
            cpu.set_rip(pc);
            BlockExit::Jump(pc)
        }
        Term::Indirect { target, is_ret } => {
            let pc = cpu.slots[target.0 as usize & SLOT_MASK];
            cpu.set_rip(pc);
            BlockExit::Indirect { pc, is_ret }
        }
        Term::Syscall { next } => {
            cpu.set_rip(next);
            BlockExit::Syscall
        }
        Term::Halt { next } => {
            cpu.set_rip(next);
            BlockExit::Halt
        }
        Term::Fault { fault, pc, next } => {
            cpu.set_rip(pc);
            BlockExit::Fault { fault, next }
        }
    }
}
