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
}

#[test]
fn selfcheck_counts_agree_in_the_interpreter() {
    check_tier(Tier::Interp, "selfcheck-interp");
}

#[test]
fn selfcheck_counts_agree_in_auto_tier() {
    check_tier(Tier::Auto, "selfcheck-auto");
}
