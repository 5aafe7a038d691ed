//! Plugins on a real ELF program with symbols and DWARF, loaded in-process (a libc-free
//! static program, so no user-mode runtime is needed): several plugins composed in one
//! run; function names from the ELF symbol table; lcov lines from DWARF; the drcov module
//! table; the tutorial plugin; and, where Valgrind is installed, the instruction count
//! against callgrind's `Ir` and our callgrind.out against `callgrind_annotate`.

mod plugin_common;

use blockscope::config::Tier;
use blockscope::cpu::CpuState;
use blockscope::exec::{Engine, Exit, Vcpu};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};
use object::{Object, ObjectSegment};
use plugin_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const TEXT: &str = "0x30000000";

fn build_guest(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/guest/sums.c");
    let out = dir.join("sums");
    let o = Command::new("gcc")
        .args([
            "-g",
            "-O1",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-fno-stack-protector",
            "-fcf-protection=none",
        ])
        .arg(format!("-Wl,-Ttext-segment={TEXT}"))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .ok()?;
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    Some(out)
}

/// Map the PT_LOAD segments at their addresses, register the module, run to the exit
/// syscall.
fn run_elf(path: &Path, plugins: Arc<blockscope::plugin::Plugins>) {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let shared = DirectShared::new();
    let rwx = Prot(Prot::READ | Prot::WRITE | Prot::EXEC);
    let mut mem = Direct::new(shared.clone());
    let (mut lo, mut hi) = (u64::MAX, 0);
    for seg in file.segments() {
        let (addr, size) = (seg.address(), seg.size());
        let page = addr & !0xfff;
        let end = (addr + size + 0xfff) & !0xfff;
        shared.mmap_anon(page, end - page, rwx, true).expect("map segment");
        mem.write_bytes(addr, seg.data().unwrap()).unwrap();
        (lo, hi) = (lo.min(page), hi.max(end));
    }
    plugins.on_module_load(path.to_str().unwrap(), lo, hi, 0, file.entry());
    let stack = shared.mmap_anon(0, 0x10000, rwx, false).unwrap();
    let engine = Engine::with_plugins(
        blockscope::config::Config { tier: Tier::Interp, ..Default::default() },
        plugins,
    );
    let mut cpu = CpuState::new_user();
    cpu.set_rip(file.entry());
    cpu.set_gpr(4, stack + 0x8000);
    let mut v = Vcpu::new(engine, cpu, mem);
    match v.run() {
        Exit::Syscall => assert_eq!(v.cpu.gpr(0), 60, "stopped at exit"),
        e => panic!("guest stopped with {e:?} at {:#x}", v.cpu.rip()),
    }
    // What user mode does at a syscall: tell the plugins.
    v.engine.plugins.on_syscall(&v.cpu, 60, &[0; 6]);
}

#[test]
fn plugins_compose_on_a_real_program() {
    let dir = scratch("elf");
    let Some(prog) = build_guest(&dir) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let f = |n: &str| dir.join(n).display().to_string();
    let specs = [
        format!("count,out={}", f("count.txt")),
        format!("count,exit_block=drop,rep=iterations,out={}", f("count-vg.txt")),
        format!("profile,report={},callgrind={}", f("profile.txt"), f("callgrind.out")),
        format!("coverage,lcov={},drcov={}", f("cov.info"), f("cov.drcov")),
        format!("malloc-count,symbol=my_malloc,out={}", f("malloc.txt")),
    ];
    let v: Vec<&str> = specs.iter().map(|s| s.as_str()).collect();
    let plugins = Arc::new(load(&v).expect("load four plugins"));
    assert_eq!(plugins.names(), ["count", "count", "profile", "coverage", "malloc-count"]);
    run_elf(&prog, plugins.clone());
    plugins.on_exit().expect("no plugin failed");

    let malloc = std::fs::read_to_string(dir.join("malloc.txt")).unwrap();
    assert!(malloc.starts_with("my_malloc: 3 calls, 5108 bytes\n"), "{malloc}");

    let profile = std::fs::read_to_string(dir.join("profile.txt")).unwrap();
    let funcs = profile.split("functions (exclusive, inclusive):\n").nth(1).unwrap();
    assert!(funcs.lines().next().unwrap().contains("  sum  "), "sum is the hottest:\n{profile}");
    assert!(funcs.contains("  my_malloc  ") && funcs.contains("  _start  "), "{profile}");
    assert!(!funcs.contains("never_called"), "{profile}");

    let lcov = std::fs::read_to_string(dir.join("cov.info")).unwrap();
    assert!(lcov.contains("sums.c\n"), "{lcov}");
    let da = |line: u32| -> u64 {
        let key = format!("DA:{line},");
        let l = lcov
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{lcov}"));
        l[key.len()..].parse().unwrap()
    };
    // gcc -O1 sees that sum() is pure and calls sum(100) once: `s += i` runs 100 times.
    assert_eq!(da(14), 100, "`s += i`:\n{lcov}");
    assert_eq!(da(19), 0, "never_called() never runs:\n{lcov}");
    assert_eq!(da(31), 0, "the call of never_called() never runs:\n{lcov}");
    assert_eq!(da(26), 1, "my_malloc(8) ran once:\n{lcov}");

    let drcov = std::fs::read(dir.join("cov.drcov")).unwrap();
    let head = String::from_utf8_lossy(&drcov[..drcov.len().min(400)]).to_string();
    assert!(head.contains(&format!(", {}\n", prog.display())), "{head}");

    let total = |file: &str| -> u64 {
        let count = std::fs::read_to_string(dir.join(file)).unwrap();
        let last = count.lines().last().unwrap().to_string();
        last.split("insns=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
    };
    // _start's last block (mov, mov, syscall) is the one the program exits in.
    assert_eq!(total("count.txt"), total("count-vg.txt") + 3);
    let ours = total("count-vg.txt");

    // Against Valgrind, where installed.
    let cg = dir.join("callgrind.native.out");
    let vg = Command::new("valgrind")
        .args(["--tool=callgrind", "-q"])
        .arg(format!("--callgrind-out-file={}", cg.display()))
        .arg(&prog)
        .output();
    match vg {
        Ok(o) if o.status.success() => {
            let text = std::fs::read_to_string(&cg).unwrap();
            let ir: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))
                .expect("callgrind total")
                .trim()
                .parse()
                .unwrap();
            assert_eq!(ours, ir, "instruction count equals callgrind's Ir");
            let ann = |p: &Path| {
                let o = Command::new("callgrind_annotate").arg(p).output().unwrap();
                let s = String::from_utf8_lossy(&o.stdout).to_string();
                let first = s
                    .split("file:function")
                    .nth(1)
                    .and_then(|t| t.lines().nth(2))
                    .unwrap_or("")
                    .to_string();
                (first, s)
            };
            let (theirs, t) = ann(&cg);
            let (mine, m) = ann(&dir.join("callgrind.out"));
            // Valgrind names `sum`, or (when it reads no symbols from this libc-free binary)
            // gives its address.
            let data = std::fs::read(&prog).unwrap();
            let elf = object::File::parse(&*data).unwrap();
            use object::ObjectSymbol;
            let sum =
                object::Object::symbols(&elf).find(|s| s.name() == Ok("sum")).unwrap().address();
            let by_addr = format!(":{sum:#018x} ");
            assert!(
                theirs.contains(":sum ") || theirs.contains(&by_addr),
                "valgrind's hottest: {t}"
            );
            assert!(mine.contains(":sum ") || mine.ends_with(":sum"), "our hottest: {m}");
        }
        _ => eprintln!("valgrind not available: instruction count not compared"),
    }
}
