//! Single-instruction goldens from `tests/golden/*.insn` (format: `blockscope_tests::golden`).
//!
//! Each golden's disassembly is checked against iced, its expected outputs against the
//! host CPU, and then the emulator (every tier) against the host on the whole state.

use blockscope_tests::case::{disasm, run_input, snippet_from_bytes, TIERS};
use blockscope_tests::gen::Placement;
use blockscope_tests::golden::{build_input, check_outputs, norm_disasm, parse};
use blockscope_tests::inputs::Input;
use blockscope_tests::native::NativeRunner;
use std::path::PathBuf;

#[test]
fn goldens_match_host_and_emulator() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "insn"))
        .collect();
    files.sort();
    let mut runner = NativeRunner::new();
    let l = runner.layout();
    let place = Placement::new(&l);
    let (mut total, mut golden_errs, mut emu_errs) = (0, Vec::new(), Vec::new());
    for path in &files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let goldens = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        for g in &goldens {
            total += 1;
            let at = format!("{name}:{}", g.line);
            let snip = match snippet_from_bytes(&g.bytes, &l, &place) {
                Ok(s) => s,
                Err(e) => {
                    golden_errs.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let d = disasm(&snip.insn);
            if norm_disasm(&d) != norm_disasm(&g.disasm) {
                golden_errs.push(format!("{at}: disassembly is `{d}`, golden says `{}`", g.disasm));
                continue;
            }
            runner.set_code(&snip.code);
            let (regs, mem) = build_input(g, l.scratch);
            let input = Input { regs, mem, targets: Vec::new() };
            let (native, mism) = run_input(&mut runner, &snip, &input, &TIERS);
            for e in check_outputs(g, &native, l.scratch, snip.flag_mask) {
                golden_errs.push(format!("{at}: `{d}`: host disagrees with the golden: {e}"));
            }
            for m in &mism {
                emu_errs
                    .push(format!("{at}: {}", blockscope_tests::case::report(&snip, &input, m)));
            }
        }
    }
    println!("{total} goldens in {} files", files.len());
    for e in golden_errs.iter().chain(&emu_errs) {
        println!("{e}");
    }
    assert!(total >= 30, "expected at least 30 goldens, found {total}");
    assert!(golden_errs.is_empty(), "{} goldens are wrong (see above)", golden_errs.len());
    assert!(emu_errs.is_empty(), "{} goldens fail in the emulator (see above)", emu_errs.len());
}
