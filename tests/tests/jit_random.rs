//! Randomized differential test: seeded random IR blocks run by the interpreter and by the
//! JIT from identical states must agree on every guest slot, every memory byte, the
//! sequence of memory accesses, `code_written` and the `BlockExit`.
//!
//! The generator covers every op kind and width, edge-value constants, forward side exits,
//! faults (memory and `FaultIf`) with fix-ups, stores into watched code (`CodeWritten`),
//! and helpers with every combination of state flags. It ignores the lifter's ordering
//! rules on purpose (guest writes before faulting ops, several stores per instruction):
//! the JIT must match the interpreter on any verified block, not only on well-lifted ones.

mod jit_common;

use blockscope::backend::jit::Jit;
use blockscope::cpu::{Fault, Width, GUEST_SLOTS};
use blockscope::ir::{verify, AtomicOp, BinOp, Block, Cond, InsnMeta, Op, Slot, Term, UnOp};
use jit_common::*;
use std::sync::Arc;

const BINOPS: [BinOp; 17] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::And,
    BinOp::Or,
    BinOp::Xor,
    BinOp::Shl,
    BinOp::Shr,
    BinOp::Sar,
    BinOp::Rol,
    BinOp::Ror,
    BinOp::Mul,
    BinOp::UMulHi,
    BinOp::SMulHi,
    BinOp::UDiv,
    BinOp::SDiv,
    BinOp::URem,
    BinOp::SRem,
];
const UNOPS: [UnOp; 9] = [
    UnOp::Not,
    UnOp::Neg,
    UnOp::Zext,
    UnOp::Sext,
    UnOp::Bswap,
    UnOp::Popcnt,
    UnOp::Clz,
    UnOp::Ctz,
    UnOp::Parity,
];
const CONDS: [Cond; 10] = [
    Cond::Eq,
    Cond::Ne,
    Cond::Ult,
    Cond::Ule,
    Cond::Ugt,
    Cond::Uge,
    Cond::Slt,
    Cond::Sle,
    Cond::Sgt,
    Cond::Sge,
];
const WIDTHS: [Width; 4] = [Width::W8, Width::W16, Width::W32, Width::W64];
const ATOMICS: [AtomicOp; 5] =
    [AtomicOp::Xchg, AtomicOp::Add, AtomicOp::And, AtomicOp::Or, AtomicOp::Xor];
const FAULTS: [Fault; 4] = [
    Fault::DivideError,
    Fault::InvalidOpcode,
    Fault::GeneralProtection(0),
    Fault::PageFault { addr: 0x1234, code: 6 },
];

struct Gen<'r> {
    rng: &'r mut Rng,
    /// Pcs that loop back into the block or its region (targets of back edges).
    loops: Vec<u64>,
    ops: Vec<Op>,
    temps: u16,
    defined: Vec<Slot>,
}

impl Gen<'_> {
    fn guest(&mut self) -> Slot {
        Slot(self.rng.below(GUEST_SLOTS as u64) as u16)
    }

    fn src(&mut self) -> Slot {
        if !self.defined.is_empty() && self.rng.chance(3, 5) {
            let i = self.rng.below(self.defined.len() as u64) as usize;
            self.defined[i]
        } else {
            self.guest()
        }
    }

    fn dst(&mut self) -> Slot {
        match self.rng.below(10) {
            0..=4 => {
                let t = Slot::temp(self.temps);
                self.temps += 1;
                t
            }
            5 | 6 if !self.defined.is_empty() => {
                let i = self.rng.below(self.defined.len() as u64) as usize;
                self.defined[i]
            }
            _ => self.guest(),
        }
    }

    fn push(&mut self, op: Op) {
        if let Some(d) = op.dst() {
            if !d.is_guest() && !self.defined.contains(&d) {
                self.defined.push(d);
            }
        }
        self.ops.push(op);
    }

    /// A temporary holding `imm`.
    fn konst(&mut self, imm: u64) -> Slot {
        let dst = Slot::temp(self.temps);
        self.temps += 1;
        self.push(Op::Const { dst, imm });
        dst
    }

    /// An address: mostly inside the scratch buffer, sometimes in its watched part,
    /// sometimes just outside, rarely anywhere.
    fn addr(&mut self, w: Width) -> Slot {
        let n = w.bytes() as u64;
        let a = match self.rng.below(20) {
            0..=12 => MEM_BASE + self.rng.below(MEM_LEN - n + 1),
            13..=16 => CODE_LO - n + 1 + self.rng.below(CODE_HI - CODE_LO + n - 1),
            17 | 18 => MEM_BASE + MEM_LEN - n + 1 + self.rng.below(n + 4),
            _ => value(self.rng),
        };
        self.konst(a)
    }

    /// A condition that is rarely true, or a constant.
    fn cond(&mut self) -> Slot {
        if self.rng.chance(1, 4) {
            let v = self.rng.below(2);
            return self.konst(v);
        }
        let (a, w) = (self.src(), self.rng.pick(&WIDTHS));
        let cc = self.rng.pick(&[Cond::Eq, Cond::Eq, Cond::Ult, Cond::Sgt]);
        let imm = value(self.rng);
        let dst = Slot::temp(self.temps);
        self.temps += 1;
        self.push(Op::CmpImm { cc, w, dst, a, imm });
        dst
    }

    fn op(&mut self) {
        let w = self.rng.pick(&WIDTHS);
        let op = match self.rng.below(40) {
            0..=2 => Op::Const { dst: self.dst(), imm: value(self.rng) },
            3 | 4 => Op::Mov { src: self.src(), dst: self.dst() },
            5..=12 => {
                let (a, b) = (self.src(), self.src());
                Op::Bin { op: self.rng.pick(&BINOPS), w, a, b, dst: self.dst() }
            }
            13..=16 => {
                let a = self.src();
                Op::BinImm {
                    op: self.rng.pick(&BINOPS),
                    w,
                    a,
                    imm: value(self.rng),
                    dst: self.dst(),
                }
            }
            17..=19 => Op::Un { op: self.rng.pick(&UNOPS), w, a: self.src(), dst: self.dst() },
            20 | 21 => {
                let (a, b) = (self.src(), self.src());
                Op::Cmp { cc: self.rng.pick(&CONDS), w, a, b, dst: self.dst() }
            }
            22 => {
                let a = self.src();
                Op::CmpImm {
                    cc: self.rng.pick(&CONDS),
                    w,
                    a,
                    imm: value(self.rng),
                    dst: self.dst(),
                }
            }
            23 | 24 => {
                let (c, t, f) = (self.src(), self.src(), self.src());
                Op::Select { c, t, f, dst: self.dst() }
            }
            25..=27 => {
                let addr = self.addr(w);
                Op::Load { w, addr, dst: self.dst() }
            }
            28..=30 => {
                let addr = self.addr(w);
                Op::Store { w, addr, val: self.src() }
            }
            31 => {
                let addr = self.addr(w);
                let val = self.src();
                Op::AtomicRmw { op: self.rng.pick(&ATOMICS), w, addr, val, dst: self.dst() }
            }
            32 => {
                let addr = self.addr(w);
                let (expected, new) = (self.src(), self.src());
                Op::AtomicCas { w, addr, expected, new, dst: self.dst() }
            }
            33 | 34 => self.helper(),
            35 => self.plugin_op(w),
            36 | 37 => Op::FaultIf { c: self.cond(), fault: self.rng.pick(&FAULTS) },
            _ => {
                let target = if self.rng.chance(1, 4) {
                    self.rng.pick(&self.loops)
                } else {
                    0x50_0000 + self.rng.below(0x1000)
                };
                Op::ExitIf { c: self.cond(), target }
            }
        };
        self.push(op);
    }

    /// A plugin op: a (maybe conditional) callback, or a plugin-memory load or store.
    fn plugin_op(&mut self, w: Width) -> Op {
        let off = (self.rng.below(64) as u32) & !(w.bytes() as u32 - 1);
        let mask = (64 / w.bytes() as u32) - 1;
        let idx = if self.rng.chance(1, 2) { Some(self.src()) } else { None };
        match self.rng.below(3) {
            0 => {
                let nargs = self.rng.below(5) as u8;
                let mut args = [Slot(0); 4];
                for a in args.iter_mut().take(nargs as usize) {
                    *a = self.src();
                }
                let cond = if self.rng.chance(1, 2) { Some(self.src()) } else { None };
                Op::CallPlugin {
                    call: &PLUGIN_CALLS[self.rng.below(2) as usize],
                    args,
                    nargs,
                    cond,
                }
            }
            1 => Op::PluginLoad { w, dst: self.dst(), off, idx, mask },
            _ => Op::PluginStore { w, val: self.src(), off, idx, mask },
        }
    }

    fn helper(&mut self) -> Op {
        let h = self.rng.pick(&HELPERS);
        let nargs = self.rng.below(5) as u8;
        let mut args = [Slot(0); 4];
        for (k, a) in args.iter_mut().enumerate().take(nargs as usize) {
            *a = if std::ptr::eq(h, &H_MEM) && (k == 0 || k == 2) {
                self.addr(Width::W32)
            } else {
                self.src()
            };
        }
        let dst = if self.rng.chance(3, 4) { Some(self.dst()) } else { None };
        Op::Helper { h, args, nargs, dst }
    }

    /// Fix-up ops for an instruction: pure ops that write guest slots.
    fn fixup(&mut self) -> Vec<Op> {
        (0..1 + self.rng.below(3))
            .map(|_| {
                let dst = self.guest();
                match self.rng.below(3) {
                    0 => Op::Const { dst, imm: value(self.rng) },
                    1 => Op::Mov { dst, src: self.src() },
                    _ => {
                        let (a, b) = (self.src(), self.src());
                        let w = self.rng.pick(&WIDTHS);
                        Op::Bin { op: self.rng.pick(&BINOPS[..10]), w, dst, a, b }
                    }
                }
            })
            .collect()
    }
}

fn gen_block(rng: &mut Rng) -> Block {
    let pc0 = 0x40_0000 + rng.below(0x1000);
    gen_block_at(rng, pc0, &[pc0])
}

/// A random block at `pc0` whose back edges go to one of `loops`.
fn gen_block_at(rng: &mut Rng, pc0: u64, loops: &[u64]) -> Block {
    let mut g = Gen { rng, loops: loops.to_vec(), ops: Vec::new(), temps: 0, defined: Vec::new() };
    let mut pc = pc0;
    let mut insns = Vec::new();
    let mut fixups = Vec::new();
    if g.rng.chance(1, 20) {
        // A prologue before the first instruction (injected plugin IR looks like this).
        for _ in 0..1 + g.rng.below(3) {
            g.op();
        }
    }
    let ninsns = if g.rng.chance(1, 50) { 0 } else { 1 + g.rng.below(6) };
    for k in 0..ninsns {
        if g.rng.chance(1, 3) {
            let f = g.fixup();
            fixups.push((k as u32, f));
        }
        let len = 1 + g.rng.below(15) as u8;
        insns.push(InsnMeta { pc, len, first_op: g.ops.len() as u32 });
        pc += len as u64;
        for _ in 0..g.rng.below(7) {
            g.op();
        }
    }
    if ninsns == 0 && g.rng.chance(1, 2) {
        let f = g.fixup();
        fixups.push((0, f));
    }
    // Some blocks loop to themselves (the JIT turns those exits into a back edge).
    let back = g.rng.chance(1, 4);
    let back_to = g.rng.pick(loops);
    let taken = if back { back_to } else { 0x60_0000 + g.rng.below(0x100) };
    let term = match g.rng.below(20) {
        0..=5 => Term::Jump(if back { back_to } else { pc }),
        6..=10 => Term::Branch { c: g.src(), taken, not_taken: pc },
        11..=13 => Term::Indirect { target: g.src(), is_ret: g.rng.chance(1, 2) },
        14 | 15 => Term::Syscall { next: pc },
        16 => Term::Halt { next: pc },
        _ => Term::Fault { fault: g.rng.pick(&FAULTS), pc: pc.saturating_sub(1), next: pc },
    };
    let b = Block { pc: pc0, end: pc, ops: g.ops, insns, term, temps: g.temps, fixups };
    if let Err(e) = verify(&b) {
        panic!("generator made an invalid block ({e}):\n{b}");
    }
    b
}

fn exit_kind(e: &blockscope::backend::BlockExit) -> usize {
    use blockscope::backend::BlockExit as E;
    match e {
        E::Jump(_) => 0,
        E::Indirect { .. } => 1,
        E::Syscall => 2,
        E::Halt => 3,
        E::Fault { .. } => 4,
        E::CodeWritten => 5,
    }
}

#[test]
fn random_blocks_agree_with_interpreter() {
    const BLOCKS: u64 = 3000;
    const STATES: u64 = 3;
    let mut jit = Jit::new().expect("jit");
    let mut rng = Rng(0x5eed_b10c_5c0e);
    let mut kinds = [0usize; 6];
    for n in 0..BLOCKS {
        let b = gen_block(&mut rng);
        let tb = compile(&mut jit, &b);
        for s in 0..STATES {
            let cpu = random_cpu(&mut rng);
            let mut mem = ScratchMem::new((0..MEM_LEN).map(|_| rng.next() as u8).collect());
            mem.written = rng.chance(1, 25);
            let out = assert_tb(&mut jit, &tb, &b, &cpu, &mem, &format!("block {n}, state {s}"));
            kinds[exit_kind(&out.exit)] += 1;
        }
    }
    // The generator must actually reach every kind of exit, or the test proves little.
    println!("exit kinds (jump, indirect, syscall, halt, fault, code written): {kinds:?}");
    for (k, &c) in kinds.iter().enumerate() {
        assert!(c >= 50, "exit kind {k} reached only {c} times: {kinds:?}");
    }
}

/// Self-looping blocks run chained with a budget of k must equal k+1 interpreted runs
/// (stopping at the first exit that is not back to the block).
#[test]
fn random_self_loops_agree_with_repeated_interpretation() {
    use blockscope::backend::interp::run_block;
    use blockscope::backend::jit::ChainState;
    use blockscope::backend::BlockExit;
    let mut jit = Jit::new().expect("jit");
    let mut rng = Rng(0x1009_5eed);
    let (mut looped, mut tested) = (0, 0);
    while tested < 1500 {
        let b = gen_block(&mut rng);
        let loops = matches!(b.term, Term::Jump(pc) if pc == b.pc)
            || matches!(b.term, Term::Branch { taken, .. } if taken == b.pc)
            || b.ops.iter().any(|op| matches!(op, Op::ExitIf { target, .. } if *target == b.pc));
        if !loops {
            continue;
        }
        tested += 1;
        let tb = compile(&mut jit, &b);
        let k = rng.below(6);
        let cpu = random_cpu(&mut rng);
        let mem = ScratchMem::new((0..MEM_LEN).map(|_| rng.next() as u8).collect());
        let (mut ci, mut mi) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut ci, &plugin_words(&cpu));
        PLUGIN_LOG.with(|l| l.borrow_mut().clear());
        let mut ei = BlockExit::Halt;
        for _ in 0..=k {
            ei = run_block(&b, &mut ci, &mut mi);
            // The run loop leaves after a block that wrote code (to invalidate it).
            if ei != BlockExit::Jump(b.pc) || mi.written {
                break;
            }
        }
        let log_i = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let (mut cj, mut mj) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut cj, &plugin_words(&cpu));
        let mut chain = ChainState::default();
        chain.budget = k;
        let (ej, _) = tb.run_chained(&mut cj, &mut mj, &mut chain);
        if ej == BlockExit::Jump(b.pc) && k > 0 {
            looped += 1;
        }
        let log_j = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let same = ei == ej
            && ci.slots[..GUEST_SLOTS] == cj.slots[..GUEST_SLOTS]
            && mi.bytes == mj.bytes
            && log_i == log_j
            && plugin_words(&ci) == plugin_words(&cj);
        if !(same && mi.log == mj.log) {
            let diff: Vec<String> = (0..GUEST_SLOTS)
                .filter(|&s| ci.slots[s] != cj.slots[s])
                .map(|s| format!("slot {s}: {:#x} vs {:#x}", ci.slots[s], cj.slots[s]))
                .collect();
            panic!(
                "budget {k}: interp {ei:?}, jit {ej:?}\n{diff:?}\nlogs {:?}\n vs {:?}\n{b}\n{}",
                mi.log,
                mj.log,
                jit.clif(&Arc::new(b.clone())).unwrap_or_default()
            );
        }
    }
    assert!(looped >= 50, "only {looped} runs looped through the budget");
}

/// Random regions (2 to 4 blocks jumping among themselves) compiled as one function and
/// run with a budget of k transfers must equal interpreting up to k+1 of their blocks.
#[test]
fn random_regions_agree_with_interpreting_their_blocks() {
    use blockscope::backend::interp::run_block;
    use blockscope::backend::jit::ChainState;
    use blockscope::backend::BlockExit;
    let mut jit = Jit::new().expect("jit");
    let mut rng = Rng(0x4e61_05ee);
    let mut moved = 0;
    for n in 0..2500 {
        let count = 2 + rng.below(3) as usize;
        let pcs: Vec<u64> = (0..count as u64).map(|k| 0x40_0000 + k * 0x1000).collect();
        // Bias the terminators towards the region so runs go around it.
        let blocks: Vec<Block> = pcs
            .iter()
            .map(|&pc| loop {
                let b = gen_block_at(&mut rng, pc, &pcs);
                if matches!(b.term, Term::Jump(t) if pcs.contains(&t))
                    || matches!(b.term, Term::Branch { taken, .. } if pcs.contains(&taken))
                    || rng.chance(1, 3)
                {
                    break b;
                }
            })
            .collect();
        let owned: Vec<Arc<Block>> = blocks.iter().cloned().map(Arc::new).collect();
        let refs: Vec<&Arc<Block>> = owned.iter().collect();
        let tb = match jit.compile_region(&refs, None) {
            Ok(tb) => tb,
            Err(e) => panic!("region {n}: {e}"),
        };
        let k = rng.below(8);
        let cpu = random_cpu(&mut rng);
        let mem = ScratchMem::new((0..MEM_LEN).map(|_| rng.next() as u8).collect());
        let (mut ci, mut mi) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut ci, &plugin_words(&cpu));
        PLUGIN_LOG.with(|l| l.borrow_mut().clear());
        let mut at = pcs[0];
        let mut ei = BlockExit::Halt;
        for step in 0..=k {
            if step == 1 {
                moved += 1;
            }
            let b = &blocks[pcs.iter().position(|&p| p == at).expect("region pc")];
            ei = run_block(b, &mut ci, &mut mi);
            match ei {
                BlockExit::Jump(t) if pcs.contains(&t) && !mi.written => at = t,
                _ => break,
            }
        }
        let log_i = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let (mut cj, mut mj) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut cj, &plugin_words(&cpu));
        let mut chain = ChainState::default();
        chain.budget = k;
        let (ej, _) = tb.run_chained(&mut cj, &mut mj, &mut chain);
        let log_j = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let same = ei == ej
            && ci.slots[..GUEST_SLOTS] == cj.slots[..GUEST_SLOTS]
            && mi.bytes == mj.bytes
            && mi.log == mj.log
            && log_i == log_j
            && plugin_words(&ci) == plugin_words(&cj);
        if !same {
            let diff: Vec<String> = (0..GUEST_SLOTS)
                .filter(|&s| ci.slots[s] != cj.slots[s])
                .map(|s| format!("slot {s}: {:#x} vs {:#x}", ci.slots[s], cj.slots[s]))
                .collect();
            let text: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
            panic!(
                "region {n}, budget {k}: interp {ei:?}, jit {ej:?}\n{diff:?}\n{}",
                text.join("\n")
            );
        }
    }
    assert!(moved >= 250, "only {moved} runs went from one region block to another");
}

/// One-block loops whose only plugin-memory use is an edge-map bump (`map[idx] += 1`,
/// the coverage plugin's pattern, at a random width): the JIT keeps the entry in a
/// one-entry cache keyed by the unmasked index, so indices that differ only above the
/// mask (and the same index twice in one block) must still match the interpreter.
#[test]
fn one_block_loops_with_an_edge_map_agree_with_interpreting() {
    use blockscope::backend::interp::run_block;
    use blockscope::backend::jit::ChainState;
    use blockscope::backend::BlockExit;
    let mut jit = Jit::new().expect("jit");
    let mut rng = Rng(0xed6e_5a17);
    let mut looped = 0;
    for n in 0..1500 {
        let pc = 0x40_0000;
        let mut b = loop {
            let b = gen_block_at(&mut rng, pc, &[pc]);
            if matches!(b.term, Term::Jump(t) if t == pc)
                || matches!(b.term, Term::Branch { taken, .. } if taken == pc)
            {
                break b;
            }
        };
        let w = rng.pick(&WIDTHS);
        let mask = (64 / w.bytes() as u32) - 1;
        let (t, one) = (Slot::temp(b.temps), Slot::temp(b.temps + 1));
        b.temps += 2;
        // No other plugin-memory use (it would overlap the map and disable the cache).
        for op in b.ops.iter_mut() {
            match *op {
                Op::PluginLoad { dst, .. } => *op = Op::Const { dst, imm: 0 },
                Op::PluginStore { .. } => *op = Op::Const { dst: one, imm: 0 },
                _ => {}
            }
        }
        // One or two bumps, indexed by guest registers the block changes as it runs.
        let mut bump = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let idx = Some(Slot(rng.below(GUEST_SLOTS as u64) as u16));
            bump.extend([
                Op::PluginLoad { w, dst: t, off: 0, idx, mask },
                Op::Const { dst: one, imm: 1 },
                Op::Bin { op: BinOp::Add, w: Width::W64, dst: t, a: t, b: one },
                Op::PluginStore { w, val: t, off: 0, idx, mask },
            ]);
        }
        // Before a random instruction (or at the end); later instructions' ops move.
        let j = rng.below(b.insns.len() as u64 + 1) as usize;
        let at = b.insns.get(j).map_or(b.ops.len(), |m| m.first_op as usize);
        let added = bump.len() as u32;
        b.ops.splice(at..at, bump);
        for m in b.insns.iter_mut().skip(j) {
            m.first_op += added;
        }
        verify(&b).unwrap_or_else(|e| panic!("loop {n}: {e}\n{b}"));
        let tb = match jit.compile_region(&[&Arc::new(b.clone())], None) {
            Ok(tb) => tb,
            Err(e) => panic!("loop {n}: {e}"),
        };
        let k = rng.below(12);
        let cpu = random_cpu(&mut rng);
        let mem = ScratchMem::new((0..MEM_LEN).map(|_| rng.next() as u8).collect());
        let (mut ci, mut mi) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut ci, &plugin_words(&cpu));
        PLUGIN_LOG.with(|l| l.borrow_mut().clear());
        let mut ei = BlockExit::Halt;
        for step in 0..=k {
            if step == 2 {
                looped += 1;
            }
            ei = run_block(&b, &mut ci, &mut mi);
            if !matches!(ei, BlockExit::Jump(t) if t == pc && !mi.written) {
                break;
            }
        }
        PLUGIN_LOG.with(|l| l.borrow_mut().clear());
        let (mut cj, mut mj) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut cj, &plugin_words(&cpu));
        let mut chain = ChainState::default();
        chain.budget = k;
        let (ej, _) = tb.run_chained(&mut cj, &mut mj, &mut chain);
        PLUGIN_LOG.with(|l| l.borrow_mut().clear());
        let same = ei == ej
            && ci.slots[..GUEST_SLOTS] == cj.slots[..GUEST_SLOTS]
            && mi.bytes == mj.bytes
            && plugin_words(&ci) == plugin_words(&cj);
        assert!(
            same,
            "loop {n}, budget {k}: interp {ei:?}, jit {ej:?}\nplugin memory {:x?} vs {:x?}\n{b}",
            plugin_words(&ci),
            plugin_words(&cj)
        );
    }
    assert!(looped >= 150, "only {looped} runs went around their loop twice");
}

/// Make `b` end in an indirect jump (or return) to a value chosen at run time among a
/// region pc, another pc (in the region or not) and a random guest slot.
fn end_in_indirect(rng: &mut Rng, b: &mut Block, pcs: &[u64]) {
    let base = b.temps;
    let t = |k: u16| Slot::temp(base + k);
    let inside = pcs[rng.below(pcs.len() as u64) as usize];
    let other = if rng.chance(1, 2) {
        pcs[rng.below(pcs.len() as u64) as usize]
    } else {
        0x60_0000 + rng.below(0x100)
    };
    let (c1, c2) = (Slot(rng.below(GUEST_SLOTS as u64) as u16), Slot(rng.below(16) as u16));
    b.ops.push(Op::Const { dst: t(0), imm: inside });
    b.ops.push(Op::Const { dst: t(1), imm: other });
    b.ops.push(Op::Select { dst: t(2), c: c1, t: t(0), f: t(1) });
    // Now and then the target is whatever a guest register holds (nearly always a miss).
    let target = if rng.chance(1, 8) { Slot(rng.below(16) as u16) } else { t(2) };
    b.ops.push(Op::Select { dst: t(3), c: c2, t: target, f: t(2) });
    b.temps += 4;
    b.term = Term::Indirect { target: t(3), is_ret: rng.chance(1, 2) };
    if let Err(e) = verify(b) {
        panic!("made an invalid block ({e}):\n{b}");
    }
}

/// Random regions whose blocks also jump among themselves through indirect jumps and
/// returns (compiled with a random subset of each block's region targets, in random
/// order, as a profile would give them) and run with a budget of k transfers must equal
/// interpreting their blocks while each transfer is one the function keeps inside.
#[test]
fn random_regions_with_indirect_edges_agree_with_interpreting_their_blocks() {
    use blockscope::backend::interp::run_block;
    use blockscope::backend::jit::ChainState;
    use blockscope::backend::BlockExit;
    let mut jit = Jit::new().expect("jit");
    let mut rng = Rng(0x1d1e_c7ed);
    let (mut moved, mut indirect_moves) = (0, 0);
    for n in 0..2500 {
        let count = 2 + rng.below(4) as usize;
        let pcs: Vec<u64> = (0..count as u64).map(|k| 0x40_0000 + k * 0x1000).collect();
        let blocks: Vec<Block> = pcs
            .iter()
            .map(|&pc| {
                let mut b = loop {
                    let b = gen_block_at(&mut rng, pc, &pcs);
                    if !matches!(b.term, Term::Fault { .. } | Term::Halt { .. }) {
                        break b;
                    }
                };
                if rng.chance(2, 3) {
                    end_in_indirect(&mut rng, &mut b, &pcs);
                }
                b
            })
            .collect();
        // Each block's in-function indirect targets: a random subset in random order.
        let indirect: Vec<Vec<u64>> = blocks
            .iter()
            .map(|_| {
                let mut t: Vec<u64> = pcs.iter().copied().filter(|_| rng.chance(3, 4)).collect();
                for i in (1..t.len()).rev() {
                    t.swap(i, rng.below(i as u64 + 1) as usize);
                }
                t
            })
            .collect();
        let owned: Vec<Arc<Block>> = blocks.iter().cloned().map(Arc::new).collect();
        let refs: Vec<&Arc<Block>> = owned.iter().collect();
        let tb = match jit.compile_region_with(&refs, &indirect, None) {
            Ok(tb) => tb,
            Err(e) => panic!("region {n}: {e}"),
        };
        let k = rng.below(10);
        let cpu = random_cpu(&mut rng);
        let mem = ScratchMem::new((0..MEM_LEN).map(|_| rng.next() as u8).collect());
        let (mut ci, mut mi) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut ci, &plugin_words(&cpu));
        PLUGIN_LOG.with(|l| l.borrow_mut().clear());
        let mut at = 0;
        let mut ei = BlockExit::Halt;
        for step in 0..=k {
            if step == 1 {
                moved += 1;
            }
            ei = run_block(&blocks[at], &mut ci, &mut mi);
            let next = match ei {
                BlockExit::Jump(t) if !mi.written => pcs.iter().position(|&p| p == t),
                BlockExit::Indirect { pc, .. } if !mi.written && indirect[at].contains(&pc) => {
                    if step < k {
                        indirect_moves += 1;
                    }
                    pcs.iter().position(|&p| p == pc)
                }
                _ => None,
            };
            match next {
                Some(i) => at = i,
                None => break,
            }
        }
        let log_i = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let (mut cj, mut mj) = (cpu.clone(), mem.clone());
        set_plugin_mem(&mut cj, &plugin_words(&cpu));
        let mut chain = ChainState::default();
        chain.budget = k;
        let (ej, _) = tb.run_chained(&mut cj, &mut mj, &mut chain);
        let log_j = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
        let same = ei == ej
            && ci.slots[..GUEST_SLOTS] == cj.slots[..GUEST_SLOTS]
            && mi.bytes == mj.bytes
            && mi.log == mj.log
            && log_i == log_j
            && plugin_words(&ci) == plugin_words(&cj);
        if !same {
            let diff: Vec<String> = (0..GUEST_SLOTS)
                .filter(|&s| ci.slots[s] != cj.slots[s])
                .map(|s| format!("slot {s}: {:#x} vs {:#x}", ci.slots[s], cj.slots[s]))
                .collect();
            let text: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
            panic!(
                "region {n}, budget {k}: interp {ei:?}, jit {ej:?}\n{diff:?}\nindirect \
                 targets {indirect:x?}\n{}",
                text.join("\n")
            );
        }
    }
    assert!(moved >= 250, "only {moved} runs went from one region block to another");
    assert!(indirect_moves >= 250, "only {indirect_moves} indirect transfers stayed inside");
}
