//! Chaining at the JIT level: linking exits through data slots, the chain budget,
//! unlinking by `kill`, the indirect table, generations, and the user-mode fast path for
//! loads and stores (`mem::Direct` accessors called from generated code).

mod jit_common;

use blockscope::backend::interp::run_block;
use blockscope::backend::jit::{ChainState, Jit, JitOptions};
use blockscope::backend::BlockExit;
use blockscope::cpu::{slot, CpuState, Fault, Width};
use blockscope::ir::{BinOp, Block, Cond, InsnMeta, Op, Slot, Term};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};
use jit_common::*;
use std::sync::Arc;

const A: u64 = 0x40_0000;
const B: u64 = 0x40_0100;
const OUT: u64 = 0x40_0200;
const RAX: Slot = Slot(0);
const RCX: Slot = Slot(1);
const RBX: Slot = Slot(3);

fn one_insn(pc: u64, ops: Vec<Op>, term: Term, temps: u16) -> Block {
    Block {
        pc,
        end: pc + 4,
        ops,
        insns: vec![InsnMeta { pc, len: 4, first_op: 0 }],
        term,
        temps,
        fixups: vec![],
    }
}

/// A: rax += 1; jump B.   B: rbx += rax; branch (rax <u 100) A, OUT.
fn loop_blocks() -> (Block, Block) {
    let a = one_insn(
        A,
        vec![Op::BinImm { op: BinOp::Add, w: Width::W64, dst: RAX, a: RAX, imm: 1 }],
        Term::Jump(B),
        0,
    );
    let b = one_insn(
        B,
        vec![
            Op::Bin { op: BinOp::Add, w: Width::W64, dst: RBX, a: RBX, b: RAX },
            Op::CmpImm { cc: Cond::Ult, w: Width::W64, dst: Slot::temp(0), a: RAX, imm: 100 },
        ],
        Term::Branch { c: Slot::temp(0), taken: A, not_taken: OUT },
        1,
    );
    (a, b)
}

/// Interpret the two-block loop from A to OUT.
fn interpret_loop(a: &Block, b: &Block, cpu: &mut CpuState) {
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    while cpu.rip() != OUT {
        let blk = if cpu.rip() == A { a } else { b };
        run_block(blk, cpu, &mut mem);
    }
}

#[test]
fn linked_blocks_run_a_whole_loop_in_compiled_code() {
    let (a, b) = loop_blocks();
    let mut jit = Jit::new().unwrap();
    let (ta, tb) =
        (jit.compile(&Arc::new(a.clone())).unwrap(), jit.compile(&Arc::new(b.clone())).unwrap());
    let mut chain = ChainState::default();
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    let mut cpu = Box::<CpuState>::default();
    cpu.set_rip(A);
    // Unlinked: A leaves through its slot to B; link it, then B's slot back to A.
    let (e, lp) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(e, BlockExit::Jump(B));
    let lp = lp.expect("unlinked exit reported");
    assert_eq!(lp.target_pc(), B);
    assert!(tb.link_from(&lp));
    assert!(!ta.link_from(&lp), "a slot links only to a block at its target pc");
    let (e, lp) = tb.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(e, BlockExit::Jump(A));
    assert!(ta.link_from(&lp.expect("B -> A unlinked")));
    // Now one call runs the rest of the loop.
    let (e, lp) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(e, BlockExit::Jump(OUT));
    assert!(lp.is_some(), "the loop exit is still unlinked");
    let mut want = Box::<CpuState>::default();
    want.set_rip(A);
    interpret_loop(&a, &b, &mut want);
    assert_eq!(cpu.slots[..64], want.slots[..64]);
    assert_eq!((cpu.slots[0], cpu.slots[3]), (100, 5050));
}

#[test]
fn budget_returns_to_the_dispatcher_with_exact_state() {
    let (a, b) = loop_blocks();
    let mut jit = Jit::new().unwrap();
    let (ta, tb) =
        (jit.compile(&Arc::new(a.clone())).unwrap(), jit.compile(&Arc::new(b.clone())).unwrap());
    let mut chain = ChainState::default();
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    let mut cpu = Box::<CpuState>::default();
    cpu.set_rip(A);
    let (_, lp) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    tb.link_from(&lp.unwrap());
    let (_, lp) = tb.run_chained(&mut cpu, &mut mem, &mut chain);
    ta.link_from(&lp.unwrap());
    // Budget 7: seven transfers (A->B, B->A, ...), the eighth is declined.
    chain.budget = 7;
    let (e, lp) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert!(lp.is_none(), "a declined transfer through a linked slot needs no link");
    let mut want = Box::<CpuState>::default();
    want.set_rip(A);
    let mut m2 = ScratchMem::new(vec![0; MEM_LEN as usize]);
    run_block(&a, &mut want, &mut m2);
    run_block(&b, &mut want, &mut m2);
    // 2 blocks ran before the call; the call ran 8 blocks (the entry + 7 transfers).
    for k in 0..8 {
        run_block(if k % 2 == 0 { &a } else { &b }, &mut want, &mut m2);
    }
    assert_eq!(e, BlockExit::Jump(want.rip()));
    assert_eq!(cpu.slots[..64], want.slots[..64]);
}

#[test]
fn kill_unlinks_every_exit_into_a_block() {
    let (a, b) = loop_blocks();
    let mut jit = Jit::new().unwrap();
    let (ta, tb) =
        (jit.compile(&Arc::new(a.clone())).unwrap(), jit.compile(&Arc::new(b.clone())).unwrap());
    let mut chain = ChainState::default();
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    let mut cpu = Box::<CpuState>::default();
    cpu.set_rip(A);
    let (_, lp) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    let lp = lp.unwrap();
    assert!(tb.link_from(&lp));
    tb.kill();
    assert!(tb.is_dead());
    cpu.set_rip(A);
    let (e, lp2) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(e, BlockExit::Jump(B), "A no longer chains into the dead B");
    assert!(lp2.is_some());
    assert!(!tb.link_from(&lp), "a dead block refuses links");
}

#[test]
fn indirect_exits_use_the_vcpu_table() {
    let mut jit = Jit::new().unwrap();
    // A: jump_indirect rcx.   B: rax = 7; jump OUT.
    let a = one_insn(A, vec![], Term::Indirect { target: RCX, is_ret: true }, 0);
    let b = one_insn(B, vec![Op::Const { dst: RAX, imm: 7 }], Term::Jump(OUT), 0);
    let (ta, tb) =
        (jit.compile(&Arc::new(a.clone())).unwrap(), jit.compile(&Arc::new(b.clone())).unwrap());
    let mut chain = ChainState::default();
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    let mut cpu = Box::<CpuState>::default();
    cpu.slots[1] = B;
    let (e, _) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(e, BlockExit::Indirect { pc: B, is_ret: true });
    tb.remember_in(&mut chain);
    let (e, _) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!((e, cpu.slots[0]), (BlockExit::Jump(OUT), 7));
    // A miss (another target) leaves normally.
    cpu.slots[1] = B + 1;
    cpu.slots[0] = 0;
    let (e, _) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!((e, cpu.slots[0]), (BlockExit::Indirect { pc: B + 1, is_ret: true }, 0));
    // `run` alone never chains, even with a populated table elsewhere.
    cpu.slots[1] = B;
    assert_eq!(ta.run(&mut cpu, &mut mem), BlockExit::Indirect { pc: B, is_ret: true });
    // A dead block is not remembered; clearing forgets.
    chain.clear();
    tb.kill();
    tb.remember_in(&mut chain);
    let (e, _) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(e, BlockExit::Indirect { pc: B, is_ret: true });
}

#[test]
fn generations_never_link_to_each_other_and_cache_full_is_reported() {
    let (a, b) = loop_blocks();
    let opts = JitOptions { region_size: 4096, cache_limit: 3 * 4096 };
    let mut jit = Jit::with_options(opts).unwrap();
    let ta = jit.compile(&Arc::new(a.clone())).unwrap();
    let mut chain = ChainState::default();
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    let mut cpu = Box::<CpuState>::default();
    let (_, lp) = ta.run_chained(&mut cpu, &mut mem, &mut chain);
    jit.flush().unwrap();
    let tb = jit.compile(&Arc::new(b.clone())).unwrap();
    assert_ne!(ta.generation().id(), tb.generation().id());
    assert!(!tb.link_from(&lp.unwrap()), "no links across generations");
    let mut full = false;
    for _ in 0..1000 {
        match jit.compile(&Arc::new(b.clone())) {
            Ok(_) => {}
            Err(blockscope::backend::jit::JitError::CacheFull) => {
                full = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full, "a bounded cache must fill up");
    assert!(jit.generation().code_bytes() <= 3 * 4096);
    jit.flush().unwrap();
    assert!(jit.compile(&Arc::new(b.clone())).is_ok(), "a flushed cache accepts code again");
}

/// A `Direct` memory with one RW page and one watched ("code") RW page. Address 0x10 is
/// never mapped, so accesses there fault.
fn direct_mem() -> (Direct, u64) {
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    let base = shared.mmap_anon(0, 2 * 4096, Prot(Prot::READ | Prot::WRITE), false).unwrap();
    // Touch both pages first: a never-touched page has no PTE, and a write to it faults
    // as "not present" even when it is a watched code page.
    mem.store(base, Width::W8, 0).unwrap();
    mem.store(base + 4096, Width::W8, 0).unwrap();
    mem.watch_code(base + 4096, base + 4096 + 16);
    (mem, base)
}

#[test]
fn direct_fast_path_matches_the_interpreter() {
    let (mut mem, base) = direct_mem();
    let mut jit = Jit::new().unwrap();
    let t = Slot::temp;
    let mk = |addr: u64, store_val: Option<u64>| {
        let mut ops = vec![Op::Const { dst: t(0), imm: addr }];
        match store_val {
            Some(v) => {
                ops.push(Op::Const { dst: t(1), imm: v });
                ops.push(Op::Store { w: Width::W32, addr: t(0), val: t(1) });
                ops.push(Op::Const { dst: RBX, imm: 1 });
            }
            None => ops.push(Op::Load { w: Width::W16, dst: RAX, addr: t(0) }),
        }
        let n = ops.len() as u32;
        Block {
            pc: A,
            end: A + 8,
            ops,
            insns: vec![
                InsnMeta { pc: A, len: 4, first_op: 0 },
                InsnMeta { pc: A + 4, len: 4, first_op: n },
            ],
            term: Term::Jump(OUT),
            temps: 2,
            fixups: vec![],
        }
    };
    let cases = [
        (mk(base + 8, Some(0xdead_beef)), BlockExit::Jump(OUT)),
        (mk(base + 8, None), BlockExit::Jump(OUT)),
        (mk(base + 4096 + 4, Some(0x1234_5678)), BlockExit::CodeWritten),
        (
            mk(0x10, None),
            BlockExit::Fault { fault: Fault::PageFault { addr: 0x10, code: 4 }, next: A + 4 },
        ),
        (
            mk(0x10, Some(1)),
            BlockExit::Fault { fault: Fault::PageFault { addr: 0x10, code: 6 }, next: A + 4 },
        ),
    ];
    for (k, (b, want)) in cases.iter().enumerate() {
        let tbc = jit.compile_for(&Arc::new(b.clone()), mem.direct_accessors()).unwrap();
        let mut ci = Box::<CpuState>::default();
        let ei = run_block(b, &mut ci, &mut mem);
        let wi = mem.take_code_writes();
        if *want == BlockExit::CodeWritten {
            // Re-arm the watch the interpreter's write consumed.
            mem.watch_code(base + 4096, base + 4096 + 16);
        }
        let mut cj = Box::<CpuState>::default();
        let ej = tbc.run(&mut cj, &mut mem);
        let wj = mem.take_code_writes();
        assert_eq!((ei, ej), (*want, *want), "case {k}");
        assert_eq!(wi, wj, "case {k}: code writes");
        assert_eq!(ci.slots[..64], cj.slots[..64], "case {k}");
        assert_eq!(cj.slots[slot::RIP as usize], ci.rip());
    }
    assert_eq!(mem.load(base + 8, Width::W32), Ok(0xdead_beef));
}

/// A slow access in compiled code (a fault, or a store to a watched code page) leaves the
/// function with a resume exit: the interpreter finishes the block from that op. The
/// block's temporaries defined before the access and read after it (by later ops, by a
/// fix-up, by the terminator) must reach the interpreter, and in a region the block
/// resumed must be the one that made the access. Each case runs compiled (alone and as
/// the second block of a two-block region) and interpreted, from the same state.
#[test]
fn resume_exits_hand_the_rest_of_the_block_to_the_interpreter() {
    let (mut mem, base) = direct_mem();
    let code_page = base + 4096;
    let mut jit = Jit::new().unwrap();
    let t = Slot::temp;
    const B: u64 = A + 0x100;
    // insn 0: t0 = rcx + 5 (read after the access); rax = 7 (dirty); t2 = rax + 1 (a
    //         pending flag result, committed by insn 1's fix-up)
    // insn 1: store [addr] <- rcx (or load); rbx = t0 * 3
    // insn 2: rcx = t0 ^ rbx; terminator branches on t1 (defined in insn 0)
    let mk = |pc: u64, addr: u64, store: bool| {
        let mut ops = vec![
            Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(0), a: RCX, imm: 5 },
            Op::Const { dst: RAX, imm: 7 },
            Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(2), a: RAX, imm: 1 },
            Op::CmpImm { cc: Cond::Ne, w: Width::W64, dst: t(1), a: RCX, imm: 0 },
        ];
        let i1 = ops.len() as u32;
        ops.push(Op::Const { dst: t(3), imm: addr });
        ops.push(if store {
            Op::Store { w: Width::W64, addr: t(3), val: RCX }
        } else {
            Op::Load { w: Width::W64, dst: Slot(slot::RDX), addr: t(3) }
        });
        ops.push(Op::BinImm { op: BinOp::Mul, w: Width::W64, dst: RBX, a: t(0), imm: 3 });
        let i2 = ops.len() as u32;
        ops.push(Op::Bin { op: BinOp::Xor, w: Width::W64, dst: RCX, a: t(0), b: RBX });
        Block {
            pc,
            end: pc + 12,
            ops,
            insns: vec![
                InsnMeta { pc, len: 4, first_op: 0 },
                InsnMeta { pc: pc + 4, len: 4, first_op: i1 },
                InsnMeta { pc: pc + 8, len: 4, first_op: i2 },
            ],
            term: Term::Branch { c: t(1), taken: OUT, not_taken: OUT + 0x40 },
            temps: 4,
            fixups: vec![(1, vec![Op::Mov { dst: Slot(slot::CC_RES), src: t(2) }])],
        }
    };
    let head = one_insn(A, vec![Op::Const { dst: Slot(slot::RSI), imm: 1 }], Term::Jump(B), 0);
    let cases = [
        (code_page + 8, true, BlockExit::CodeWritten),
        (
            0x10,
            true,
            BlockExit::Fault { fault: Fault::PageFault { addr: 0x10, code: 6 }, next: B + 8 },
        ),
        (
            0x10,
            false,
            BlockExit::Fault { fault: Fault::PageFault { addr: 0x10, code: 4 }, next: B + 8 },
        ),
        (base + 16, true, BlockExit::Jump(OUT)),
    ];
    let before = blockscope::backend::jit::slow_accesses();
    let mut resumed = 0;
    for (k, &(addr, store, want)) in cases.iter().enumerate() {
        let b = mk(B, addr, store);
        let mut start = Box::<CpuState>::default();
        start.slots[RCX.0 as usize] = 0x55;
        // The interpreter: the head block, then the block.
        let mut ci = start.clone();
        run_block(&head, &mut ci, &mut mem);
        let ei = run_block(&b, &mut ci, &mut mem);
        let wi = mem.take_code_writes();
        mem.watch_code(code_page, code_page + 16);
        // Compiled alone, and as the second block of a region entered at the head.
        let alone = jit.compile_for(&Arc::new(b.clone()), mem.direct_accessors()).unwrap();
        let (ha, ba) = (Arc::new(head.clone()), Arc::new(b.clone()));
        let region = jit.compile_region(&[&ha, &ba], mem.direct_accessors()).unwrap();
        for (what, code, from_head) in [("alone", &alone, false), ("region", &region, true)] {
            let mut cj = start.clone();
            if !from_head {
                run_block(&head, &mut cj, &mut mem);
            }
            let mut chain = ChainState::default();
            chain.budget = 8;
            let (ej, _) = code.run_chained(&mut cj, &mut mem, &mut chain);
            let wj = mem.take_code_writes();
            mem.watch_code(code_page, code_page + 16);
            assert_eq!((ei, ej), (want, want), "case {k} {what}");
            assert_eq!(wi, wj, "case {k} {what}: code writes");
            assert_eq!(ci.slots[..64], cj.slots[..64], "case {k} {what}: guest slots");
            if want != BlockExit::Jump(OUT) {
                resumed += 1;
            }
        }
    }
    assert_eq!(mem.load(base + 16, Width::W64), Ok(0x55));
    assert_eq!(mem.load(code_page + 8, Width::W64), Ok(0x55));
    // Every slow case left through a resume exit (other tests may add to the counter).
    assert!(blockscope::backend::jit::slow_accesses() - before >= resumed);
}

/// A quickly compiled block counts its runs: after enough of them one run returns at its
/// entry, state untouched, with `hot_block` set (once: later runs go on normally). Once
/// told to forward (`forward_to`), it runs the code it forwards to (here a different block
/// at the same pc, to make the difference visible), until `clear_forward`.
#[test]
fn quick_code_asks_for_a_tier_up_once_then_forwards_to_the_optimised_code() {
    let mut jit = Jit::new().unwrap();
    let mut mem = ScratchMem::new(vec![0; MEM_LEN as usize]);
    let add = |imm| {
        let ops = vec![Op::BinImm { op: BinOp::Add, w: Width::W64, dst: RAX, a: RAX, imm }];
        Arc::new(one_insn(A, ops, Term::Jump(OUT), 0))
    };
    let quick = jit.compile_baseline(&add(1), None).unwrap();
    let mut chain = ChainState::default();
    let mut cpu = Box::<CpuState>::default();
    let (mut runs, mut hot) = (0u64, 0);
    while runs < 1 << 20 {
        cpu.set_rip(A);
        let before = cpu.clone();
        let (exit, _) = quick.run_chained(&mut cpu, &mut mem, &mut chain);
        if chain.hot_block() {
            hot += 1;
            assert_eq!(exit, BlockExit::Jump(A), "a tier-up request leaves at the block");
            assert_eq!(cpu.slots[..64], before.slots[..64], "and leaves the state untouched");
            if hot == 1 {
                runs = (1 << 20) - 1000; // a thousand more runs: no second request
            }
        } else {
            assert_eq!(exit, BlockExit::Jump(OUT));
        }
        runs += 1;
    }
    assert_eq!(hot, 1, "exactly one tier-up request");
    let rax = cpu.slots[RAX.0 as usize];
    // Forward to another block at the same pc: the quick code now runs that one.
    let other = jit.compile_region(&[&add(100)], None).unwrap();
    assert!(quick.forward_to(&other));
    cpu.set_rip(A);
    assert_eq!(quick.run_chained(&mut cpu, &mut mem, &mut chain).0, BlockExit::Jump(OUT));
    assert_eq!(cpu.slots[RAX.0 as usize], rax + 100, "forwarded");
    quick.clear_forward();
    cpu.set_rip(A);
    quick.run_chained(&mut cpu, &mut mem, &mut chain);
    assert_eq!(cpu.slots[RAX.0 as usize], rax + 101, "its own code again");
    // Only code of the same pc (and generation) is accepted.
    let elsewhere = jit.compile(&Arc::new(one_insn(B, vec![], Term::Jump(OUT), 0))).unwrap();
    assert!(!quick.forward_to(&elsewhere));
    // Optimised code (not quick) has no tier-up cell.
    assert!(!other.forward_to(&quick));
}

/// Wide accesses at page edges, compiled against the page map: an access checks the byte
/// of its last byte's page, whose `*_PREV` bit covers the page before; on the first page
/// of a mapping (the page before not allowed) it checks both pages instead. Crossing into
/// or out of an inaccessible page must fault exactly as in the interpreter, and the first
/// page of a mapping must still be accessed inline.
#[test]
fn wide_accesses_at_page_edges_match_the_interpreter() {
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    // Four pages: 0 and 3 inaccessible (PROT_NONE, still reserved), 1 and 2 read-write.
    let base = shared.mmap_anon(0, 4 * 4096, Prot(Prot::READ | Prot::WRITE), false).unwrap();
    for p in [base, base + 3 * 4096] {
        shared.revoke_fast(p, p + 4096);
        // SAFETY: the page belongs to the mapping made above, which nothing else uses.
        assert_eq!(unsafe { libc::mprotect(p as *mut libc::c_void, 4096, libc::PROT_NONE) }, 0);
        shared.map(p, 4096, Prot(0));
    }
    for p in [base + 4096, base + 2 * 4096] {
        mem.store(p, Width::W8, 0).unwrap();
    }
    let mut jit = Jit::new().unwrap();
    let t = Slot::temp;
    let (lo, hi) = (base + 4096, base + 3 * 4096);
    // The last two wrap around the address space: their last byte is on page 0, their
    // first at the top.
    let addrs = [lo, lo + 4, lo - 4, lo + 4096 - 4, hi - 8, hi - 4, hi - 1, lo - 1, !0, !0 - 2];
    for (k, &addr) in addrs.iter().enumerate() {
        for store in [false, true] {
            for w in [Width::W16, Width::W32, Width::W64] {
                let access = if store {
                    Op::Store { w, addr: t(0), val: RCX }
                } else {
                    Op::Load { w, dst: RAX, addr: t(0) }
                };
                let b = one_insn(
                    A,
                    vec![Op::Const { dst: t(0), imm: addr }, access],
                    Term::Jump(OUT),
                    1,
                );
                let code = jit.compile_for(&Arc::new(b.clone()), mem.direct_accessors()).unwrap();
                let mut ci = Box::<CpuState>::default();
                ci.slots[RCX.0 as usize] = 0x1122_3344_5566_7788 + k as u64;
                let mut cj = ci.clone();
                let ei = run_block(&b, &mut ci, &mut mem);
                let ej = code.run(&mut cj, &mut mem);
                let what = format!("{addr:#x} (page base {base:#x}) {w:?} store={store}");
                assert_eq!(ei, ej, "{what}");
                assert_eq!(ci.slots[..64], cj.slots[..64], "{what}");
                let inside =
                    addr >= lo && addr.checked_add(w.bytes() as u64).is_some_and(|e| e <= hi);
                assert_eq!(matches!(ej, BlockExit::Jump(OUT)), inside, "{what}");
            }
        }
    }
}

/// A loop's stack loads share one page cache (and its stores another): a site on another
/// page than the one the cache holds checks the page map, so a load that walks from the
/// frame's page onto the next and then half onto an inaccessible page faults exactly where
/// the interpreter does, with the same state, while its neighbour stays on the frame's
/// page.
#[test]
fn stack_sites_sharing_a_page_cache_still_check_their_own_page() {
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    // Pages 0 and 1 read-write, page 2 inaccessible.
    let base = shared.mmap_anon(0, 3 * 4096, Prot(Prot::READ | Prot::WRITE), false).unwrap();
    let bad = base + 2 * 4096;
    shared.revoke_fast(bad, bad + 4096);
    // SAFETY: the page belongs to the mapping made above, which nothing else uses.
    assert_eq!(unsafe { libc::mprotect(bad as *mut libc::c_void, 4096, libc::PROT_NONE) }, 0);
    shared.map(bad, 4096, Prot(0));
    let rsp = Slot(slot::RSP);
    let rdx = Slot(slot::RDX);
    let t = Slot::temp;
    // A: rax = [rsp + 8]; [rsp + 16] = rcx; rsi = [rsp + rbx - 4]; rdx = [rsp + rbx];
    //    [rsp + rbx + 8] = rax; rbx += 2048; rcx -= 1; branch (rcx != 0) A, OUT
    // The load of rsi leaves the shared cache on the page where the load of rdx starts,
    // so that load's compare alone must see that it crosses into the next page.
    let ops = vec![
        Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(0), a: rsp, imm: 8 },
        Op::Load { w: Width::W64, dst: RAX, addr: t(0) },
        Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(1), a: rsp, imm: 16 },
        Op::Store { w: Width::W64, addr: t(1), val: RCX },
        Op::Bin { op: BinOp::Add, w: Width::W64, dst: t(2), a: rsp, b: RBX },
        Op::BinImm { op: BinOp::Sub, w: Width::W64, dst: t(5), a: t(2), imm: 4 },
        Op::Load { w: Width::W64, dst: Slot(slot::RSI), addr: t(5) },
        Op::Load { w: Width::W64, dst: rdx, addr: t(2) },
        Op::BinImm { op: BinOp::Add, w: Width::W64, dst: t(3), a: t(2), imm: 8 },
        Op::Store { w: Width::W64, addr: t(3), val: RAX },
        Op::BinImm { op: BinOp::Add, w: Width::W64, dst: RBX, a: RBX, imm: 2048 },
        Op::BinImm { op: BinOp::Sub, w: Width::W64, dst: RCX, a: RCX, imm: 1 },
        Op::CmpImm { cc: Cond::Ne, w: Width::W64, dst: t(4), a: RCX, imm: 0 },
    ];
    let b = one_insn(A, ops, Term::Branch { c: t(4), taken: A, not_taken: OUT }, 6);
    let code = {
        let mut jit = Jit::new().unwrap();
        let ab = Arc::new(b.clone());
        jit.compile_region(&[&ab], mem.direct_accessors()).unwrap()
    };
    // Enough iterations to reach the inaccessible page, and fewer (the loop ends first).
    for iters in [10u64, 3] {
        let mut start = Box::<CpuState>::default();
        // The walking load of rdx straddles pages 0-1 on its second run and 1-2 (a
        // fault) on its fourth.
        start.slots[rsp.0 as usize] = base + 2044;
        start.slots[RCX.0 as usize] = iters;
        start.set_rip(A);
        let mut ci = start.clone();
        let mut ei = BlockExit::Halt;
        for _ in 0..iters {
            ei = run_block(&b, &mut ci, &mut mem);
            if ei != BlockExit::Jump(A) {
                break;
            }
        }
        let interp_mem: Vec<u64> =
            (0..2 * 512).map(|i| mem.load(base + 8 * i, Width::W64).unwrap()).collect();
        for i in 0..2 * 512 {
            mem.store(base + 8 * i, Width::W64, 0).unwrap();
        }
        let mut cj = start.clone();
        let mut chain = ChainState::default();
        chain.budget = 100;
        let (ej, _) = code.run_chained(&mut cj, &mut mem, &mut chain);
        let jit_mem: Vec<u64> =
            (0..2 * 512).map(|i| mem.load(base + 8 * i, Width::W64).unwrap()).collect();
        assert_eq!(ei, ej, "{iters} iterations");
        assert_eq!(ci.slots[..64], cj.slots[..64], "{iters} iterations: guest slots");
        assert!(interp_mem == jit_mem, "{iters} iterations: memory differs");
        let faults = matches!(ej, BlockExit::Fault { fault: Fault::PageFault { .. }, .. });
        assert_eq!(faults, iters == 10, "{iters} iterations: {ej:?}");
        for i in 0..2 * 512 {
            mem.store(base + 8 * i, Width::W64, 0).unwrap();
        }
    }
}
