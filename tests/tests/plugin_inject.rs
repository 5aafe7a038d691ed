//! Injection: what a plugin may inject turns into plain IR (inline counters are a load,
//! an add and a store on plugin memory, no call), and the verifier rejects everything
//! else with a message naming the plugin and the op, without disturbing the guest or the
//! other plugins.

mod plugin_common;

use blockscope::config::Tier;
use blockscope::cpu::{slot, Width};
use blockscope::ir::{BinOp, Block, InsnMeta, Op, Slot, Term};
use blockscope::plugin::EXIT_PLUGIN_FAILED;
use plugin_common::*;
use std::sync::Arc;

/// `t0 = load [%rdi]; %rax = add t0, 1; store [%rdi], %rax` as two instructions.
fn small_block() -> Block {
    let t0 = Slot::temp(0);
    Block {
        pc: 0x1000,
        end: 0x1007,
        ops: vec![
            Op::Load { w: Width::W64, dst: t0, addr: Slot(slot::RDI) },
            Op::BinImm { op: BinOp::Add, w: Width::W64, dst: Slot(slot::RAX), a: t0, imm: 1 },
            Op::Store { w: Width::W64, addr: Slot(slot::RDI), val: Slot(slot::RAX) },
        ],
        insns: vec![
            InsnMeta { pc: 0x1000, len: 3, first_op: 0 },
            InsnMeta { pc: 0x1003, len: 4, first_op: 2 },
        ],
        term: Term::Jump(0x1007),
        temps: 1,
        fixups: vec![],
    }
}

#[test]
fn inline_counters_are_plain_ir_without_calls() {
    let Some(lib) = build_c_plugin("ccount-ir", &[]) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let dir = scratch("inline-ir");
    let p = load(&[&format!("{},out={}", lib.display(), dir.join("o").display())]).unwrap();
    let mut b = small_block();
    p.on_translate(&mut b, &[], &[]);
    let text = b.to_string();
    // ccount adds the block's instruction count inline and calls one callback per block.
    assert!(text.contains("pload.i64 [pmem+0x0]"), "{text}");
    assert!(text.contains("add.i64") && text.contains(", 0x2"), "{text}");
    assert!(text.contains("pstore.i64 [pmem+0x0]"), "{text}");
    assert_eq!(b.ops.iter().filter(|o| matches!(o, Op::CallPlugin { .. })).count(), 1, "{text}");
    // The original ops follow, in order, and instruction 1 still starts at its store.
    let n = b.ops.len();
    assert!(matches!(b.ops[n - 1], Op::Store { .. }));
    assert_eq!(b.insns[0].first_op, 0);
    assert_eq!(b.insns[1].first_op as usize, n - 1);
    blockscope::ir::verify(&b).unwrap();
}

#[test]
fn access_ops_see_the_address_even_when_the_access_overwrites_it() {
    let plugins = load(&["selfcheck,out=/dev/null"]).unwrap();
    // `%rdi = load [%rdi]`: the address register is the destination.
    let mut b = Block {
        pc: 0x2000,
        end: 0x2003,
        ops: vec![Op::Load { w: Width::W64, dst: Slot(slot::RDI), addr: Slot(slot::RDI) }],
        insns: vec![InsnMeta { pc: 0x2000, len: 3, first_op: 0 }],
        term: Term::Jump(0x2003),
        temps: 0,
        fixups: vec![],
    };
    plugins.on_translate(&mut b, &[], &[]);
    let i = b.ops.iter().position(|o| matches!(o, Op::Load { .. })).unwrap();
    // The address is copied into a temporary right before the load.
    match b.ops[i - 1] {
        Op::Mov { dst, src } => {
            assert_eq!(src, Slot(slot::RDI));
            assert!(!dst.is_guest());
        }
        ref o => panic!("expected an address copy before the load, got {o}\n{b}"),
    }
    blockscope::ir::verify(&b).unwrap();
}

#[test]
fn a_c_plugin_counts_the_loop_guest() {
    let Some(lib) = build_c_plugin("ccount", &[]) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let g = loop_guest();
    let out = scratch("ccount-run").join("counts.txt");
    let plugins = Arc::new(load(&[&format!("{},out={}", lib.display(), out.display())]).unwrap());
    run(&g, plugins.clone(), Tier::Interp);
    plugins.on_exit().unwrap();
    let c = parse_counts(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(c["insns"], 603);
    assert_eq!(c["tbs"], 101);
}

/// Each forbidden injection: (selfcheck `bad=` value, expected message part).
const REJECTED: &[(&str, &str)] = &[
    ("reg", "injected op 0 (reg): register 18 is not readable"),
    ("scoreboard", "injected op 0 (sb_add): scoreboard 1000 does not belong to this plugin"),
    ("entry", "injected op 0 (sb_add): entry 4 is outside the scoreboard (4 entries)"),
    ("value", "injected op 2 (bin): operand a uses value 0, which was made at another point"),
    ("mem", "injected op 0 (mem_addr): only ops attached to a memory access may read it"),
    ("point", "is not in this block"),
];

#[test]
fn the_verifier_rejects_ops_that_reach_beyond_the_plugin() {
    for (bad, want) in REJECTED {
        let g = loop_guest();
        let out = scratch(&format!("reject-{bad}")).join("good.txt");
        let plugins = Arc::new(
            load(&[&format!("selfcheck,bad={bad}"), &format!("selfcheck,out={}", out.display())])
                .unwrap(),
        );
        let cpu = run(&g, plugins.clone(), Tier::Interp);
        assert_eq!(cpu.gpr(1), 0, "{bad}: the guest is unaffected");
        let e = plugins.on_exit().expect_err(bad);
        assert_eq!(e.exit_status(), EXIT_PLUGIN_FAILED);
        let msg = e.to_string();
        assert!(
            msg.starts_with("plugin `selfcheck` failed: rejected injection into the block at 0x"),
            "{bad}: {msg}"
        );
        assert!(msg.contains(want), "{bad}: {msg}");
        let c = parse_counts(&std::fs::read_to_string(&out).unwrap());
        assert_eq!(c["insns_inline"], 603, "{bad}: the other plugin still counts right");
    }
}

#[test]
fn the_ir_verifier_checks_plugin_memory_ops() {
    let mut b = small_block();
    b.ops.insert(
        0,
        Op::PluginLoad { w: Width::W64, dst: Slot::temp(1), off: 4, idx: None, mask: 0 },
    );
    b.temps = 2;
    b.insns[1].first_op += 1;
    assert_eq!(
        blockscope::ir::verify(&b).unwrap_err().to_string(),
        "op 0: misaligned plugin memory access"
    );
    b.ops[0] = Op::PluginLoad {
        w: Width::W8,
        dst: Slot::temp(1),
        off: 3,
        idx: Some(Slot(slot::RAX)),
        mask: 5,
    };
    assert!(blockscope::ir::verify(&b).is_err(), "mask 5 is not a power of two minus one");
    b.ops[0] = Op::PluginLoad {
        w: Width::W8,
        dst: Slot::temp(1),
        off: 3,
        idx: Some(Slot(slot::RAX)),
        mask: 7,
    };
    blockscope::ir::verify(&b).unwrap();
    assert_eq!(b.ops[0].to_string(), "t1 = pload.i8 [pmem+0x3 + (%rax & 0x7)*1]");
}
