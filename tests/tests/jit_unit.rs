//! Focused JIT tests with hand-written blocks and exact expected results: faults with
//! fix-ups, the code-written rule, helpers that read and write state, panics in helpers,
//! division edge cases, code regions filling up, and compiled blocks shared by threads.
//! Every case is also checked against the interpreter.

mod jit_common;

use blockscope::backend::jit::Jit;
use blockscope::backend::BlockExit;
use blockscope::cpu::{slot, CpuState, Fault, Width};
use blockscope::ir::{verify, BinOp, Block, InsnMeta, Op, Slot, Term};
use jit_common::*;
use std::sync::Arc;

const PC: u64 = 0x40_1000;
const RAX: Slot = Slot(slot::RAX);
const RCX: Slot = Slot(slot::RCX);
const RDX: Slot = Slot(slot::RDX);
const RBX: Slot = Slot(slot::RBX);
const CC_OP: Slot = Slot(slot::CC_OP);
const CC_RES: Slot = Slot(slot::CC_RES);

fn t(n: u16) -> Slot {
    Slot::temp(n)
}

/// A block of instructions of 4 bytes each, starting at `PC`.
fn block(insns: Vec<Vec<Op>>, term: Term, fixups: Vec<(u32, Vec<Op>)>) -> Block {
    let mut ops = Vec::new();
    let mut meta = Vec::new();
    for (k, i) in insns.into_iter().enumerate() {
        meta.push(InsnMeta { pc: PC + 4 * k as u64, len: 4, first_op: ops.len() as u32 });
        ops.extend(i);
    }
    let mut temps = 0;
    for op in ops.iter().chain(fixups.iter().flat_map(|f| f.1.iter())) {
        let mut see = |s: Slot| {
            if !s.is_guest() {
                temps = temps.max(s.0 - Slot::temp(0).0 + 1);
            }
        };
        op.dst().into_iter().for_each(&mut see);
        op.for_each_src(&mut see);
    }
    let end = PC + 4 * meta.len() as u64;
    let b = Block { pc: PC, end, ops, insns: meta, term, temps, fixups };
    verify(&b).expect("valid block");
    b
}

fn setup() -> (Jit, Box<CpuState>, ScratchMem) {
    let mut cpu = Box::<CpuState>::default();
    for s in 0..16 {
        cpu.slots[s] = 0x1000 + s as u64;
    }
    (Jit::new().expect("jit"), cpu, ScratchMem::new(vec![0xaa; MEM_LEN as usize]))
}

#[test]
fn fault_runs_fixups_and_leaves_state_before_the_instruction() {
    let (mut jit, cpu, mem) = setup();
    // insn 0: rax = 5; pending flag result in t1 (not yet committed)
    // insn 1: load from an unmapped address -> #PF; its fix-up commits t1 to cc_res.
    let b = block(
        vec![
            vec![
                Op::Const { dst: RAX, imm: 5 },
                Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(1), a: RAX, imm: 1 },
            ],
            vec![
                Op::Const { dst: t(0), imm: 0x10 },
                Op::Load { w: Width::W32, dst: RCX, addr: t(0) },
            ],
        ],
        Term::Jump(0x9999),
        vec![(1, vec![Op::Mov { dst: CC_RES, src: t(1) }, Op::Const { dst: CC_OP, imm: 3 }])],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "fault");
    assert_eq!(
        out.exit,
        BlockExit::Fault { fault: Fault::PageFault { addr: 0x10, code: 0 }, next: PC + 8 }
    );
    assert_eq!(out.slots[slot::RIP as usize], PC + 4);
    assert_eq!(out.slots[0], 5);
    assert_eq!(out.slots[slot::CC_RES as usize], 6);
    assert_eq!(out.slots[slot::CC_OP as usize], 3);
    assert_eq!(out.slots[1], 0x1001, "rcx untouched by the faulting load");
}

#[test]
fn fault_if_with_constant_fault() {
    let (mut jit, cpu, mem) = setup();
    let b = block(
        vec![vec![
            Op::CmpImm {
                cc: blockscope::ir::Cond::Eq,
                w: Width::W64,
                dst: t(0),
                a: RAX,
                imm: 0x1000,
            },
            Op::FaultIf { c: t(0), fault: Fault::DivideError },
        ]],
        Term::Jump(0x9999),
        vec![],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "fault_if");
    assert_eq!(out.exit, BlockExit::Fault { fault: Fault::DivideError, next: PC + 4 });
    assert_eq!(out.slots[slot::RIP as usize], PC);
}

#[test]
fn code_write_finishes_the_instruction_and_leaves_before_the_next() {
    let (mut jit, cpu, mem) = setup();
    let b = block(
        vec![
            vec![
                Op::Const { dst: t(0), imm: CODE_LO },
                Op::Store { w: Width::W8, addr: t(0), val: RAX },
                Op::Const { dst: RBX, imm: 7 },
                Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(1), a: RBX, imm: 1 },
            ],
            vec![Op::Const { dst: RCX, imm: 9 }],
        ],
        Term::Jump(0x9999),
        vec![(1, vec![Op::Mov { dst: CC_RES, src: t(1) }])],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "code written");
    assert_eq!(out.exit, BlockExit::CodeWritten);
    assert_eq!(out.slots[slot::RIP as usize], PC + 4);
    assert_eq!(out.slots[3], 7, "rest of the writing instruction ran");
    assert_eq!(out.slots[1], 0x1001, "next instruction did not run");
    assert_eq!(out.slots[slot::CC_RES as usize], 8, "next instruction's fix-ups ran");
    assert!(out.mem.written);
    assert_eq!(out.mem.bytes[(CODE_LO - MEM_BASE) as usize], 0x00);
}

#[test]
fn code_write_in_last_instruction_ends_at_the_terminator() {
    let (mut jit, cpu, mem) = setup();
    let b = block(
        vec![vec![
            Op::Const { dst: t(0), imm: CODE_LO },
            Op::Store { w: Width::W64, addr: t(0), val: RAX },
            Op::Const { dst: RBX, imm: 7 },
        ]],
        Term::Branch { c: RBX, taken: 0x7777, not_taken: 0x8888 },
        vec![],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "code written last");
    assert_eq!(out.exit, BlockExit::Jump(0x7777));
    assert_eq!(out.slots[slot::RIP as usize], 0x7777);
    assert!(out.mem.written);
}

#[test]
fn side_exit_writes_back_dirty_slots() {
    let (mut jit, cpu, mem) = setup();
    let b = block(
        vec![
            vec![Op::Const { dst: RAX, imm: 1 }, Op::ExitIf { c: RAX, target: 0x5555 }],
            vec![Op::Const { dst: RCX, imm: 2 }],
        ],
        Term::Jump(0x9999),
        vec![],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "side exit");
    assert_eq!(out.exit, BlockExit::Jump(0x5555));
    assert_eq!((out.slots[0], out.slots[1]), (1, 0x1001));
}

#[test]
fn helpers_see_dirty_state_and_their_writes_are_reloaded() {
    let (mut jit, cpu, mem) = setup();
    let b = block(
        vec![
            // rax = 77 (dirty); reads(0, 1) returns (slots[0] + 1) ^ slots[1].
            vec![
                Op::Const { dst: RAX, imm: 77 },
                Op::Const { dst: t(0), imm: 0 },
                Op::Const { dst: t(4), imm: 1 },
                Op::Helper {
                    h: &H_READS,
                    args: [t(0), t(4), t(0), t(0)],
                    nargs: 2,
                    dst: Some(RDX),
                },
            ],
            // rbx cached, then blind_write(3, 42) sets rbx = 42; rcx = rbx + 1 must see 42.
            vec![
                Op::Mov { dst: t(1), src: RBX },
                Op::Const { dst: t(2), imm: 3 },
                Op::Const { dst: t(3), imm: 42 },
                Op::Helper {
                    h: &H_BLIND_WRITE,
                    args: [t(2), t(3), t(0), t(0)],
                    nargs: 2,
                    dst: None,
                },
                Op::BinImm { op: BinOp::Add, w: Width::W64, dst: RCX, a: RBX, imm: 1 },
            ],
        ],
        Term::Jump(0x9999),
        vec![],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "helpers");
    assert_eq!(out.slots[2], 78 ^ 0x1001, "the helper saw the dirty rax");
    assert_eq!(out.slots[3], 42);
    assert_eq!(out.slots[1], 43);
}

#[test]
fn helper_fault_keeps_its_partial_writes() {
    let (mut jit, cpu, mem) = setup();
    // writes(a0 = 0x0503, a1 = 0xabc, a2 = 0, a3 = 8): rbx = 0xabc, slots[5] ^= slots[0],
    // then #GP(8).
    let b = block(
        vec![
            vec![Op::Const { dst: RBX, imm: 1 }],
            vec![
                Op::Const { dst: t(0), imm: 0x0503 },
                Op::Const { dst: t(1), imm: 0xabc },
                Op::Const { dst: t(2), imm: 0 },
                Op::Const { dst: t(3), imm: 8 },
                Op::Helper {
                    h: &H_WRITES,
                    args: [t(0), t(1), t(2), t(3)],
                    nargs: 4,
                    dst: Some(RAX),
                },
            ],
        ],
        Term::Jump(0x9999),
        vec![(1, vec![Op::BinImm { op: BinOp::Add, w: Width::W64, dst: RDX, a: RBX, imm: 1 }])],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "helper fault");
    assert_eq!(out.exit, BlockExit::Fault { fault: Fault::GeneralProtection(8), next: PC + 8 });
    assert_eq!(out.slots[3], 0xabc);
    assert_eq!(out.slots[5], 0x1005 ^ 0x1000);
    assert_eq!(out.slots[2], 0xabd, "fix-up read the helper's write");
    assert_eq!(out.slots[0], 0x1000, "no result on fault");
}

#[test]
fn panicking_helper_panics_out_of_run() {
    let (mut jit, mut cpu, mut mem) = setup();
    let b = block(
        vec![vec![
            Op::Const { dst: t(0), imm: 0xdead },
            Op::Helper { h: &H_PANIC, args: [t(0); 4], nargs: 1, dst: Some(RAX) },
        ]],
        Term::Jump(0x9999),
        vec![],
    );
    let tb = jit.compile(&Arc::new(b.clone())).expect("compile");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tb.run(&mut cpu, &mut mem)));
    let err = r.expect_err("the helper's panic must reach the caller");
    assert_eq!(err.downcast_ref::<&str>(), Some(&"helper panicked on purpose"));
}

#[test]
fn division_edge_cases() {
    let (mut jit, mut cpu, mem) = setup();
    cpu.slots[0] = 0x8000_0000_0000_0000;
    cpu.slots[1] = u64::MAX;
    cpu.slots[2] = 0;
    cpu.slots[6] = 0x8000_0000;
    let d = |op, w, dst, b| Op::Bin { op, w, dst: Slot(dst), a: RAX, b };
    let b = block(
        vec![vec![
            d(BinOp::SDiv, Width::W64, 8, RCX),
            d(BinOp::SRem, Width::W64, 9, RCX),
            d(BinOp::UDiv, Width::W64, 10, RDX),
            d(BinOp::SDiv, Width::W32, 11, RDX),
            d(BinOp::URem, Width::W8, 12, RDX),
            d(BinOp::UDiv, Width::W64, 13, RCX),
            Op::Bin { op: BinOp::SDiv, w: Width::W32, dst: Slot(14), a: Slot(6), b: RCX },
        ]],
        Term::Jump(0x9999),
        vec![],
    );
    let out = assert_same(&mut jit, &b, &cpu, &mem, "division");
    assert_eq!(&out.slots[8..15], &[0x8000_0000_0000_0000, 0, 0, 0, 0, 0, 0x8000_0000]);
}

#[test]
fn full_regions_are_replaced_and_old_code_stays_runnable() {
    let mut jit = Jit::with_region_size(4096).expect("jit");
    let (_, cpu, mem) = setup();
    let mut tbs = Vec::new();
    for i in 0..200u64 {
        let b = block(vec![vec![Op::Const { dst: RAX, imm: i }]], Term::Jump(0x9999 + i), vec![]);
        tbs.push((i, b.clone(), compile(&mut jit, &b)));
    }
    assert!(jit.generation().region_count() > 1, "200 blocks must not fit in one 4 KiB region");
    for (i, b, tb) in &tbs {
        let out = assert_tb(&mut jit, tb, b, &cpu, &mem, "region");
        assert_eq!((out.slots[0], out.exit), (*i, BlockExit::Jump(0x9999 + i)));
    }
}

#[test]
fn compiled_blocks_run_on_other_threads() {
    let (mut jit, cpu, _) = setup();
    let b = block(
        vec![vec![Op::BinImm { op: BinOp::Mul, w: Width::W64, dst: RAX, a: RAX, imm: 3 }]],
        Term::Indirect { target: RAX, is_ret: true },
        vec![],
    );
    let tb = Arc::new(compile(&mut jit, &b));
    drop(jit); // the code must outlive the compiler
    let handles: Vec<_> = (0..4u64)
        .map(|k| {
            let (tb, mut cpu) = (tb.clone(), cpu.clone());
            std::thread::spawn(move || {
                let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
                cpu.slots[0] = k;
                (tb.run(&mut cpu, &mut mem), cpu.slots[slot::RIP as usize])
            })
        })
        .collect();
    for (k, h) in handles.into_iter().enumerate() {
        let pc = 3 * k as u64;
        assert_eq!(h.join().expect("thread"), (BlockExit::Indirect { pc, is_ret: true }, pc));
    }
}
