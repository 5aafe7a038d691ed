//! The shipped plugins on the loop guest (in-process, every available tier): exact counts,
//! the AFL map, the drcov file.

mod plugin_common;

use blockscope::config::Tier;
use plugin_common::*;
use std::sync::Arc;

const TIERS: &[Tier] = &[Tier::Interp, Tier::Jit, Tier::Auto];

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
        // Per-block counters (default), none (shared counters only), and too few for
        // every block (both kinds in one run) give the same totals.
        for slots in [0, 1] {
            let out = scratch(&format!("count-slots{slots}-{tier:?}")).join("count.txt");
            run_with(&[format!("count,slots={slots},rep=iterations,out={}", out.display())], tier);
            let text = std::fs::read_to_string(&out).unwrap();
            assert!(text.ends_with("total: insns=603 blocks=101 threads=1\n"), "{slots}: {text}");
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
    let e = load(&["count,slots=lots"]).err().expect("refused");
    assert_eq!(
        e.to_string(),
        "plugin `count` failed to install: slots must be a number from 0 to 1048576, not `lots`"
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

/// The printed records of a trace (`blockscope memtrace FILE`) as (thread, pc, kind, size,
/// address, value).
fn memtrace_records(path: &std::path::Path) -> Vec<(u32, u64, String, u8, u64, u64)> {
    let mut text = Vec::new();
    blockscope::plugin::memtrace::memtrace_main(&[path.display().to_string()], &mut text).unwrap();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| {
            // T0 0x401011 load  8 [0x7f0000000320] = 0x0
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 7, "{l}");
            let addr = f[4].trim_start_matches('[').trim_end_matches(']');
            let thread = f[0].trim_start_matches('T').parse().unwrap();
            (thread, hex(f[1]), f[2].to_string(), f[3].parse().unwrap(), hex(addr), hex(f[6]))
        })
        .collect()
}

#[test]
fn memtrace_records_every_access_and_filters_by_address() {
    for &tier in TIERS {
        let dir = scratch(&format!("memtrace-{tier:?}"));
        let (all, some) = (dir.join("all.bin"), dir.join("some.bin"));
        let g = loop_guest();
        let (lo, hi) = (g.data + 0x1000, g.data + 0x2000);
        let plugins = Arc::new(
            load(&[
                &format!("memtrace,out={}", all.display()),
                &format!("memtrace,out={},addr={lo:#x}-{hi:#x}", some.display()),
            ])
            .unwrap(),
        );
        run(&g, plugins.clone(), tier);
        plugins.on_exit().unwrap();
        let mut text = Vec::new();
        let arg = |p: &std::path::Path| vec!["--summary".to_string(), p.display().to_string()];
        blockscope::plugin::memtrace::memtrace_main(&arg(&all), &mut text).unwrap();
        let s = String::from_utf8(text).unwrap();
        assert!(s.contains("accesses: 300\n"), "{s}");
        assert!(s.contains("loads: 100  stores: 200  rmw: 0\n"), "{s}");
        assert!(s.contains("bytes: 1700 "), "{s}");
        // Every record, against what the guest does: for rcx = 100 down to 1, load
        // data[rcx] (0), store data[rcx] = rcx, store the byte rcx at data+0x1000+rcx; each
        // access always at the same pc, in program order.
        let recs = memtrace_records(&all);
        assert_eq!(recs.len(), 300, "{tier:?}");
        let pcs: Vec<u64> = recs[..3].iter().map(|r| r.1).collect();
        assert!(pcs[0] < pcs[1] && pcs[1] < pcs[2], "{tier:?}: {pcs:x?}");
        assert!(pcs.iter().all(|&pc| pc > g.code && pc < g.code + 0x40), "{pcs:x?}");
        for (i, r) in recs.iter().enumerate() {
            let c = 100 - (i / 3) as u64;
            let want = match i % 3 {
                0 => (0, pcs[0], "load".to_string(), 8, g.data + 8 * c, 0),
                1 => (0, pcs[1], "store".to_string(), 8, g.data + 8 * c, c),
                _ => (0, pcs[2], "store".to_string(), 1, g.data + 0x1000 + c, c),
            };
            assert_eq!(*r, want, "{tier:?}: record {i}");
        }
        // The filtered trace: the byte stores only.
        let recs = memtrace_records(&some);
        assert_eq!(recs.len(), 100, "{tier:?}");
        for (i, r) in recs.iter().enumerate() {
            let c = 100 - i as u64;
            assert_eq!(*r, (0, pcs[2], "store".to_string(), 1, g.data + 0x1000 + c, c));
        }
        // --limit stops early.
        let mut text = Vec::new();
        let args = ["--limit".to_string(), "2".to_string(), all.display().to_string()];
        blockscope::plugin::memtrace::memtrace_main(&args, &mut text).unwrap();
        let s = String::from_utf8(text).unwrap();
        let first = s.lines().next().unwrap();
        assert!(first.starts_with("T0 0x") && first.contains(" load  8 "), "{s}");
        assert!(first.ends_with(&format!("[{:#x}] = 0x0", g.data + 800)), "{s}");
        assert_eq!(s.lines().count(), 2);
    }
}

/// REP string instructions are expanded for memtrace: each element is a record, and a
/// count loaded alongside sees each iteration as a run of the instruction (Valgrind's
/// convention), whatever its `rep` argument says.
#[test]
fn memtrace_sees_each_element_of_rep_string_instructions() {
    use iced_x86::code_asm::*;
    for &tier in TIERS {
        let dir = scratch(&format!("memtrace-rep-{tier:?}"));
        let (trace, counts) = (dir.join("rep.bin"), dir.join("count.txt"));
        let g = guest(|code, data| {
            assemble(code, |a| {
                a.mov(rax, 0x05_0403_0201u64)?;
                a.mov(rdi, data)?;
                a.mov(qword_ptr(rdi), rax)?;
                a.mov(rsi, data)?;
                a.mov(rdi, data + 0x100)?;
                a.mov(rcx, 5u64)?;
                a.rep().movsb()?;
                a.mov(al, 0x5a)?;
                a.mov(rcx, 3u64)?;
                a.rep().stosb()?;
                a.xor(ecx, ecx)?;
                a.rep().movsb()?;
                a.mov(rcx, 4u64)?;
                a.mov(rdi, data + 0x200)?;
                a.mov(al, 7)?;
                a.repne().scasb()?;
                a.syscall()?;
                Ok(())
            })
        });
        let plugins = Arc::new(
            load(&[
                &format!("count,out={}", counts.display()),
                &format!("memtrace,out={}", trace.display()),
            ])
            .unwrap(),
        );
        let cpu = run(&g, plugins.clone(), tier);
        plugins.on_exit().unwrap();
        assert_eq!(cpu.gpr(1), 0, "{tier:?}: rcx after repne scasb");
        assert_eq!(cpu.gpr(7), g.data + 0x204, "{tier:?}: rdi after repne scasb");
        let recs = memtrace_records(&trace);
        let kinds: Vec<(String, u8, u64, u64)> =
            recs.iter().map(|r| (r.2.clone(), r.3, r.4, r.5)).collect();
        let mut want = vec![("store".to_string(), 8, g.data, 0x05_0403_0201)];
        for i in 0..5 {
            want.push(("load".into(), 1, g.data + i, i + 1));
            want.push(("store".into(), 1, g.data + 0x100 + i, i + 1));
        }
        for i in 0..3 {
            want.push(("store".into(), 1, g.data + 0x105 + i, 0x5a));
        }
        for i in 0..4 {
            want.push(("load".into(), 1, g.data + 0x200 + i, 0));
        }
        assert_eq!(kinds, want, "{tier:?}");
        // Each REP element's records carry the REP instruction's pc.
        assert!(recs[1..11].iter().all(|r| r.1 == recs[1].1), "{tier:?}");
        // Instructions: mov rax, mov rdi, store, mov rsi, mov rdi, mov rcx (6); rep movsb
        // 5 + 1; mov al, mov rcx (2); rep stosb 3 + 1; xor (1); rep movsb with rcx = 0
        // (1); mov rcx, mov rdi, mov al (3); repne scasb 4 + 1; syscall (1): 29. Blocks: an
        // expanded REP ends its block and each later iteration is a block of its own:
        // 1 + 5, 1 + 3, 1, 1 + 4 and the syscall's: 17.
        let text = std::fs::read_to_string(&counts).unwrap();
        assert!(text.ends_with("total: insns=29 blocks=17 threads=1\n"), "{tier:?}: {text}");
    }
}

#[test]
fn memtrace_rejects_bad_input() {
    let dir = scratch("memtrace-bad");
    let f = dir.join("junk");
    std::fs::write(&f, b"not a trace at all").unwrap();
    let mut out = Vec::new();
    let e = blockscope::plugin::memtrace::memtrace_main(&[f.display().to_string()], &mut out);
    assert_eq!(
        e.unwrap_err(),
        format!("{}: not a blockscope memory trace (bad magic)", f.display())
    );
    let e = blockscope::plugin::memtrace::memtrace_main(&[], &mut out).unwrap_err();
    assert_eq!(e, blockscope::plugin::memtrace::USAGE);
    // Another format version: named.
    let mut old = blockscope_plugin_api::trace::header();
    old[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&f, old).unwrap();
    let e = blockscope::plugin::memtrace::memtrace_main(&[f.display().to_string()], &mut out);
    assert_eq!(
        e.unwrap_err(),
        format!("{}: unsupported trace version 2 (this blockscope reads 3)", f.display())
    );
    // A real trace cut short or damaged anywhere: a one-line error (or fewer records),
    // never a panic.
    let good = dir.join("good.bin");
    run_with(&[format!("memtrace,out={}", good.display())], Tier::Interp);
    let bytes = std::fs::read(&good).unwrap();
    assert!(bytes.len() > 100, "{} bytes", bytes.len());
    let mut whole_chunks = 0;
    for cut in (17..bytes.len()).step_by(7) {
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let mut out = Vec::new();
        match blockscope::plugin::memtrace::memtrace_main(&[f.display().to_string()], &mut out) {
            Err(e) => {
                assert!(e.starts_with(&format!("{}: truncated", f.display())), "cut {cut}: {e}");
                assert!(!e.contains('\n'), "{e}");
            }
            // Cut between chunks: the records so far.
            Ok(()) => whole_chunks += 1,
        }
    }
    assert!(whole_chunks <= 1, "{whole_chunks} cuts read without an error");
    for at in (16..bytes.len()).step_by(5) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x41;
        std::fs::write(&f, &bad).unwrap();
        let mut out = Vec::new();
        if let Err(e) =
            blockscope::plugin::memtrace::memtrace_main(&[f.display().to_string()], &mut out)
        {
            assert!(e.starts_with(&format!("{}: ", f.display())) && !e.contains('\n'), "{e}");
        }
    }
    // Refused before anything is written: no trace file appears.
    let never = dir.join("never.bin");
    let e = load(&[format!("memtrace,addr=0x2000-0x1000,out={}", never.display()).as_str()])
        .err()
        .unwrap();
    assert!(e.to_string().contains("addr must be LO-HI in hex"), "{e}");
    assert!(!never.exists(), "a refused memtrace created {}", never.display());
}

#[test]
fn memtrace_cache_mode_counts_cold_misses() {
    let dir = scratch("memtrace-cache");
    let report = dir.join("report.txt");
    run_with(&[format!("memtrace,cache=on,report={}", report.display())], Tier::Interp);
    let r = std::fs::read_to_string(&report).unwrap();
    // 603 instruction fetches in one 64-byte line; loads touch data+8..data+808 (13 lines),
    // stores after them hit; byte stores touch 2 new lines. All misses are cold.
    assert!(r.contains("I refs:        603\nI1  misses:    1\nLLi misses:    1\n"), "{r}");
    assert!(r.contains("D refs:        300 (100 rd + 200 wr)\n"), "{r}");
    assert!(r.contains("D1  misses:    15 (13 rd + 2 wr)\n"), "{r}");
    assert!(r.contains("LLd misses:    15 (13 rd + 2 wr)\n"), "{r}");
}

/// main (page 0) calls f (page 1) 10 times; f loops 5 times and calls g (page 2).
/// Instructions: main 1 + 10*3 + 1 = 32, f 10*18 = 180, g 10*2 = 20; 232 in all.
fn call_guest() -> Guest {
    use iced_x86::code_asm::*;
    let g = guest(|code, _| {
        assemble(code, |a| {
            let mut l = a.create_label();
            a.mov(rbx, 10u64)?;
            a.set_label(&mut l)?;
            a.call(code + 0x1000)?;
            a.dec(rbx)?;
            a.jnz(l)?;
            a.syscall()?;
            Ok(())
        })
    });
    let f = assemble(g.code + 0x1000, |a| {
        let mut l = a.create_label();
        a.mov(rcx, 5u64)?;
        a.set_label(&mut l)?;
        a.add(rax, rcx)?;
        a.dec(rcx)?;
        a.jnz(l)?;
        a.call(g.code + 0x2000)?;
        a.ret()?;
        Ok(())
    });
    let gg = assemble(g.code + 0x2000, |a| {
        a.add(rax, 1)?;
        a.ret()?;
        Ok(())
    });
    let mut m = blockscope::mem::Direct::new(g.shared.clone());
    use blockscope::mem::GuestMemory;
    m.write_bytes(g.code + 0x1000, &f).unwrap();
    m.write_bytes(g.code + 0x2000, &gg).unwrap();
    g
}

#[test]
fn profile_reports_exclusive_inclusive_cost_and_the_call_graph() {
    for &tier in TIERS {
        let dir = scratch(&format!("profile-{tier:?}"));
        let (rep, cg, folded, svg) = (
            dir.join("report.txt"),
            dir.join("callgrind.out"),
            dir.join("folded"),
            dir.join("f.svg"),
        );
        let g = call_guest();
        let plugins = Arc::new(
            load(&[&format!(
                "profile,report={},callgrind={},folded={},flamegraph={}",
                rep.display(),
                cg.display(),
                folded.display(),
                svg.display()
            )])
            .unwrap(),
        );
        run(&g, plugins.clone(), tier);
        plugins.on_exit().unwrap();
        let (main, f, gf) = (
            format!("{:#x}", g.code),
            format!("{:#x}", g.code + 0x1000),
            format!("{:#x}", g.code + 0x2000),
        );
        let r = std::fs::read_to_string(&rep).unwrap();
        assert!(r.starts_with("profile: 232 guest instructions\n"), "{r}");
        // exclusive, inclusive per function
        let funcs = r
            .split("functions (exclusive, inclusive):")
            .nth(1)
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap();
        let line = |name: &str| {
            funcs
                .lines()
                .find(|l| l.contains(&format!("  {name}  ")))
                .unwrap_or_else(|| panic!("{name}: {r}"))
                .to_string()
        };
        let nums = |l: String| -> Vec<u64> {
            l.split_whitespace().filter_map(|w| w.parse().ok()).collect()
        };
        assert_eq!(nums(line(&f))[..2], [180, 200], "{r}");
        assert_eq!(nums(line(&gf))[..2], [20, 20], "{r}");
        assert_eq!(nums(line(&main))[0], 32, "{r}");
        assert!(r.contains("call/ret"), "{r}");
        let c = std::fs::read_to_string(&cg).unwrap();
        assert!(
            c.contains(&format!(
                "fn={f}\n0 180\ncob=[unknown]\ncfi=[unknown]\ncfn={gf}\ncalls=10 0\n0 20\n"
            )),
            "{c}"
        );
        assert!(c.contains(&format!("cfn={f}\ncalls=10 0\n0 200\n")), "{c}");
        assert!(c.ends_with("totals: 232\n"), "{c}");
        if let Ok(o) = std::process::Command::new("callgrind_annotate").arg(&cg).output() {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "callgrind_annotate: {out}");
            assert!(out.contains("232 (100.0%)  PROGRAM TOTALS"), "{out}");
            let first =
                out.split("file:function").nth(1).and_then(|t| t.lines().nth(2)).unwrap_or("");
            assert!(
                first.starts_with("180 (77.59%)") && first.contains(&f),
                "hottest: {first}\n{out}"
            );
        } else {
            eprintln!("callgrind_annotate not installed: output format checked by hand only");
        }
        let fl = std::fs::read_to_string(&folded).unwrap();
        let sum: u64 =
            fl.lines().map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum();
        assert_eq!(sum, 232, "folded stacks add up to every instruction:\n{fl}");
        assert!(fl.contains(&format!("[root];{f};{gf} 20\n")), "{fl}");
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.starts_with("<?xml") && s.contains("<svg"), "flamegraph svg");
    }
}

#[test]
fn the_shipped_plugins_are_listed_with_their_arguments() {
    let text = blockscope::plugin::list_shipped(Some(&plugin_dir()), &[]);
    for name in blockscope::plugin::SHIPPED {
        assert!(
            text.lines().any(|l| l.starts_with(name) && !l.contains("unavailable")),
            "{name}:\n{text}"
        );
    }
    assert!(
        text.contains("count      instructions and blocks executed, per thread and total"),
        "{text}"
    );
    assert!(text.contains("mode=tb"), "{text}");
    assert!(text.contains("map_size=65536"), "{text}");
    assert!(text.contains("i1=32768:8:64"), "{text}");
    assert!(text.contains("flamegraph"), "{text}");
    let missing = blockscope::plugin::list_shipped(Some(std::path::Path::new("/nonexistent")), &[]);
    assert!(missing.starts_with("count      (unavailable: plugin `count` not found"), "{missing}");
}
