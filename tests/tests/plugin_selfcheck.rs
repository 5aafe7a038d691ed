//! The selfcheck plugin counts blocks, instructions and memory accesses inline, by
//! callback and by conditional callback; on a guest loop with known counts all of them
//! must agree with each other and with the known totals, in every tier.

mod plugin_common;

use blockscope::config::Tier;
use plugin_common::*;
use std::sync::Arc;

fn check_tier(tier: Tier, name: &str) {
    let g = loop_guest();
    let dir = scratch(name);
    let out = dir.join("counts.txt");
    let plugins =
        Arc::new(load(&[&format!("selfcheck,out={}", out.display())]).expect("load selfcheck"));
    let cpu = run(&g, plugins.clone(), tier);
    assert_eq!(cpu.gpr(1), 0, "the loop ran to the end");
    plugins.on_exit().expect("no plugin failed");
    let c = parse_counts(&std::fs::read_to_string(&out).expect("counts written"));
    let get = |k: &str| *c.get(k).unwrap_or_else(|| panic!("{k} missing in {c:?}"));
    assert_eq!(get("insns_inline"), 603);
    assert_eq!(get("insns_callback"), 603);
    assert_eq!(get("insns_cond"), 603);
    assert_eq!(get("tbs_inline"), 101);
    assert_eq!(get("tbs_callback"), 101);
    assert_eq!(get("mems_inline"), 300);
    assert_eq!(get("mems_callback"), 300);
    assert_eq!(get("mems_even_cond") + get("mems_odd_cond"), 300);
    assert_eq!(get("mems_even_inline"), get("mems_even_cond"));
    // qword accesses are 8-aligned (even); the byte store hits rdi+rcx+0x1000: 50 odd rcx.
    assert_eq!(get("mems_odd_cond"), 50);
    assert_eq!(get("mem_bytes"), 100 * (8 + 8 + 1));
    assert_eq!(get("vcpus"), 1);
    assert_eq!(get("late_expand_accepted"), 0, "REP expansion is only for install");
    assert_eq!(get("rep_expanded"), 0, "no plugin asked for REP expansion");
}

#[test]
fn selfcheck_counts_agree_in_the_interpreter() {
    check_tier(Tier::Interp, "selfcheck-interp");
}

#[test]
fn selfcheck_counts_agree_in_the_jit() {
    check_tier(Tier::Jit, "selfcheck-jit");
}

#[test]
fn selfcheck_counts_agree_in_auto_tier() {
    check_tier(Tier::Auto, "selfcheck-auto");
}

/// Two guest threads on one engine: per-thread scoreboards, shared callbacks.
#[test]
fn counts_are_per_thread_and_add_up() {
    use blockscope::exec::{Engine, Exit, Vcpu};
    let g = loop_guest();
    let dir = scratch("selfcheck-threads");
    let (sc, cnt) = (dir.join("selfcheck.txt"), dir.join("count.txt"));
    let plugins = Arc::new(
        load(&[
            &format!("selfcheck,out={}", sc.display()),
            &format!("count,mode=insn,out={}", cnt.display()),
        ])
        .unwrap(),
    );
    let engine = Engine::with_plugins(
        blockscope::config::Config { tier: Tier::Interp, ..Default::default() },
        plugins.clone(),
    );
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (engine, shared, code, stack) =
                (engine.clone(), g.shared.clone(), g.code, g.stack_top - t * 0x4000);
            std::thread::spawn(move || {
                let mut cpu = blockscope::cpu::CpuState::new_user();
                cpu.set_rip(code);
                cpu.set_gpr(4, stack);
                let mut v = Vcpu::new(engine, cpu, blockscope::mem::Direct::new(shared));
                assert_eq!(v.run(), Exit::Syscall);
                v.engine.plugins.vcpu_exit(&v.cpu);
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    plugins.on_exit().unwrap();
    let c = parse_counts(&std::fs::read_to_string(&sc).unwrap());
    assert_eq!(c["vcpus"], 2);
    assert_eq!(c["insns_inline"], 2 * 603);
    assert_eq!(c["insns_callback"], 2 * 603);
    assert_eq!(c["mems_callback"], 2 * 300);
    let text = std::fs::read_to_string(&cnt).unwrap();
    assert!(
        text.contains("thread 0: insns=603 blocks=101\nthread 1: insns=603 blocks=101\n"),
        "{text}"
    );
    assert!(text.ends_with("total: insns=1206 blocks=202 threads=2\n"), "{text}");
}
