//! The shipped plugins on the loop guest (in-process, every available tier): exact counts,
//! the AFL map, the drcov file.

mod plugin_common;

use blockscope::config::Tier;
use plugin_common::*;
use std::sync::Arc;

const TIERS: &[Tier] = &[Tier::Interp, Tier::Auto];

fn run_with(specs: &[String], tier: Tier) -> Arc<blockscope::plugin::Plugins> {
    let g = loop_guest();
    let v: Vec<&str> = specs.iter().map(|s| s.as_str()).collect();
    let plugins = Arc::new(load(&v).expect("load"));
    plugins.on_module_load("/guest/loop", g.code, g.code + 0x8000, 0, g.code);
    run(&g, plugins.clone(), tier);
    plugins.on_exit().expect("no plugin failed");
    plugins
}

#[test]
fn count_reports_exact_totals_in_both_modes() {
    for &tier in TIERS {
        for mode in ["tb", "insn"] {
            let out = scratch(&format!("count-{mode}-{tier:?}")).join("count.txt");
            run_with(&[format!("count,mode={mode},rep=iterations,out={}", out.display())], tier);
            let text = std::fs::read_to_string(&out).unwrap();
            assert!(text.contains("thread 0: insns=603 blocks=101\n"), "{mode}: {text}");
            assert!(text.ends_with("total: insns=603 blocks=101 threads=1\n"), "{mode}: {text}");
        }
    }
}

#[test]
fn count_rejects_bad_modes() {
    let e = load(&["count,mode=fast"]).err().expect("refused");
    assert_eq!(
        e.to_string(),
        "plugin `count` failed to install: mode must be tb or insn, not `fast`"
    );
}

#[test]
fn coverage_writes_the_afl_map_and_drcov() {
    for &tier in TIERS {
        let dir = scratch(&format!("coverage-{tier:?}"));
        let (map, drcov) = (dir.join("map"), dir.join("cov.drcov"));
        run_with(
            &[format!("coverage,map_size=4096,map={},drcov={}", map.display(), drcov.display())],
            tier,
        );
        let m = std::fs::read(&map).unwrap();
        assert_eq!(m.len(), 4096);
        // Edges: start→entry block, entry→loop, loop→loop (98 times), loop→syscall block.
        let mut hit: Vec<u8> = m.iter().copied().filter(|&b| b != 0).collect();
        hit.sort();
        assert_eq!(hit, vec![1, 1, 1, 98], "edge counts");
        let d = std::fs::read(&drcov).unwrap();
        let text_end = d.windows(4).position(|w| w == b"bbs\n").expect("BB table header") + 4;
        let header = String::from_utf8_lossy(&d[..text_end]);
        assert!(header.starts_with("DRCOV VERSION: 2\n"), "{header}");
        assert!(header.contains("Module Table: version 2, count 1\n"), "{header}");
        assert!(header.contains(", /guest/loop\n"), "{header}");
        assert!(header.ends_with("BB Table: 3 bbs\n"), "{header}");
        let table = &d[text_end..];
        assert_eq!(table.len(), 3 * 8);
        let starts: Vec<u32> =
            table.chunks(8).map(|c| u32::from_le_bytes(c[..4].try_into().unwrap())).collect();
        assert_eq!(starts[0], 0, "the entry block starts at the module base");
        assert!(table.chunks(8).all(|c| u16::from_le_bytes([c[6], c[7]]) == 0), "module 0");
    }
}
