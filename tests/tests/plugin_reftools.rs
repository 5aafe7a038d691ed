//! The shipped plugins' outputs read by the reference tools, end to end through the
//! `blockscope` command on small libc-free static guests built with gcc: `afl-showmap`
//! reads the coverage plugin's AFL map from its shared memory, `genhtml` renders its lcov
//! file, and the count plugin's total equals callgrind's `Ir`. (That `callgrind_annotate`
//! names the same hottest function in the profile plugin's callgrind.out as in Valgrind's
//! own is checked by plugin_elf.rs.) Each test is skipped, with a message, only when gcc or
//! the reference tool is not installed.

mod plugin_common;

use plugin_common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn blockscope() -> PathBuf {
    let bin = target_dir().join("blockscope");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build)", bin.display());
    bin
}

/// Whether `tool` can be run (`arg` is an option it accepts and exits on).
fn have(tool: &str, arg: &str) -> bool {
    let ok =
        Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !ok {
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

/// Write `src` to `dir/name.c` and build it as a static program without libc; `None` when
/// gcc is missing.
fn build(dir: &Path, name: &str, src: &str, flags: &[&str]) -> Option<PathBuf> {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let o = Command::new("gcc")
        .args(["-O1", "-static", "-nostdlib", "-no-pie", "-fno-stack-protector"])
        .arg("-fcf-protection=none")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .output();
    match o {
        Ok(o) => {
            assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
            Some(out)
        }
        Err(_) => {
            eprintln!("skipped: gcc is not installed");
            None
        }
    }
}

/// `blockscope run --plugin spec -- prog` (plugins found in the build's directory).
fn run_with_plugin(spec: &str, prog: &Path) -> Output {
    Command::new(blockscope())
        .args(["run", "--plugin", spec, "--"])
        .arg(prog)
        .env("BLOCKSCOPE_PLUGIN_PATH", plugin_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads one byte from stdin and writes `A` if it is `a`, `other` otherwise: two inputs,
/// two paths.
const BRANCH: &str = r#"
static long sys(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}

void _start(void) {
    char c = 0;
    sys(0, 0, (long)&c, 1);
    long r;
    if (c == 'a')
        r = sys(1, 1, (long)"A\n", 2);
    else
        r = sys(1, 1, (long)"other\n", 6);
    sys(60, r <= 0, 0, 0);
}
"#;

/// `afl-showmap`'s tuples (`index:bucket` lines) as a map.
fn tuples(path: &Path) -> BTreeMap<usize, u8> {
    let t = std::fs::read_to_string(path).unwrap();
    t.lines()
        .map(|l| {
            let (i, b) = l.split_once(':').unwrap_or_else(|| panic!("bad tuple line `{l}`"));
            (i.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

#[test]
fn afl_showmap_reads_the_coverage_map() {
    let dir = scratch("reftools-afl");
    let Some(prog) = build(&dir, "branch", BRANCH, &[]) else { return };
    if !have("afl-showmap", "-h") {
        return;
    }
    let mut seen = Vec::new();
    for input in ["a", "b"] {
        let (out, map) = (dir.join(format!("tuples-{input}")), dir.join(format!("map-{input}")));
        let stdin = std::fs::File::open({
            let p = dir.join(format!("in-{input}"));
            std::fs::write(&p, input).unwrap();
            p
        })
        .unwrap();
        // blockscope is not AFL-instrumented: no binary check and no fork server; the
        // coverage plugin finds the map through `__AFL_SHM_ID`, which afl-showmap sets.
        let o = Command::new("afl-showmap")
            .arg("-q")
            .arg("-o")
            .arg(&out)
            .arg("--")
            .arg(blockscope())
            .args(["run", "--plugin"])
            .arg(format!("coverage,map={}", map.display()))
            .arg("--")
            .arg(&prog)
            .env("BLOCKSCOPE_PLUGIN_PATH", plugin_dir())
            .env("AFL_SKIP_BIN_CHECK", "1")
            .env("AFL_NO_FORKSRV", "1")
            .env("AFL_MAP_SIZE", "65536")
            .stdin(stdin)
            .output()
            .unwrap();
        assert!(o.status.success(), "afl-showmap: {}", text(&o));
        let t = tuples(&out);
        assert!(!t.is_empty(), "afl-showmap found no tuples: {}", text(&o));
        // The same edges as the map the plugin also wrote to a file.
        let m = std::fs::read(&map).unwrap();
        assert_eq!(m.len(), 65536);
        let hit: Vec<usize> = (0..m.len()).filter(|&i| m[i] != 0).collect();
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), hit, "tuples of input `{input}`");
        seen.push(t);
    }
    assert_ne!(
        seen[0].keys().collect::<Vec<_>>(),
        seen[1].keys().collect::<Vec<_>>(),
        "different branches give different edges"
    );
}

#[test]
fn genhtml_renders_the_lcov_file() {
    let dir = scratch("reftools-genhtml");
    let Some(prog) = build(&dir, "lcovguest", BRANCH, &["-g"]) else { return };
    if !have("genhtml", "--version") {
        return;
    }
    let info = dir.join("cov.info");
    let o = run_with_plugin(&format!("coverage,lcov={}", info.display()), &prog);
    assert!(o.status.success(), "blockscope: {}", text(&o));
    let lcov = std::fs::read_to_string(&info).unwrap();
    assert!(lcov.contains("lcovguest.c\n"), "{lcov}");
    let html = dir.join("html");
    let o = Command::new("genhtml").arg("-q").arg("-o").arg(&html).arg(&info).output().unwrap();
    assert!(o.status.success(), "genhtml: {}", text(&o));
    // The top index lists the source's directory, whose index lists the file.
    let index = std::fs::read_to_string(html.join("index.html")).unwrap();
    assert!(index.contains("reftools-genhtml"), "top index.html:\n{index}");
    let sub = html.join("reftools-genhtml");
    let index = std::fs::read_to_string(sub.join("index.html")).unwrap();
    assert!(index.contains("lcovguest.c"), "index.html names the source:\n{index}");
    let page = std::fs::read_to_string(sub.join("lcovguest.c.gcov.html")).unwrap();
    let line = page.lines().find(|l| l.contains("if (c == 'a')")).unwrap_or("");
    assert!(line.contains("\"lineCov\""), "the test of the input byte ran: {line}\n{page}");
    assert!(page.contains("\"lineNoCov\""), "some lines never ran:\n{page}");
}

/// The hot function of the guests below: 1000 multiply-adds (4002 instructions a call).
macro_rules! mix_c {
    () => {
        r#"
__attribute__((noinline)) static unsigned long mix(unsigned long x) {
    for (int i = 0; i < 1000; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    return x;
}
"#
    };
}

/// A hot function called 20 times, a `rep movsb` of 256 bytes just before the exit (in the
/// block that exits, where callgrind's blocks and ours differ), then `exit`.
const HOT: &str = concat!(
    r#"
static char src[256], dst[256];
static unsigned long acc;
"#,
    mix_c!(),
    r#"
void _start(void) {
    for (int k = 0; k < 20; k++)
        acc ^= mix(acc + k);
    unsigned long n = sizeof src;
    void *d = dst, *s = src;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    __asm__ volatile("syscall" : : "a"(60L), "D"(acc & 0) : "rcx", "r11", "memory");
    __builtin_unreachable();
}
"#
);

#[test]
fn count_equals_callgrinds_ir() {
    let dir = scratch("reftools-count");
    let Some(prog) = build(&dir, "hot", HOT, &[]) else { return };
    if !have("valgrind", "--version") {
        return;
    }
    let cg = dir.join("callgrind.out");
    let o = Command::new("valgrind")
        .args(["--tool=callgrind", "-q"])
        .arg(format!("--callgrind-out-file={}", cg.display()))
        .arg(&prog)
        .output()
        .unwrap();
    assert!(o.status.success(), "valgrind: {}", text(&o));
    let c = std::fs::read_to_string(&cg).unwrap();
    let ir: u64 = c
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))
        .expect("callgrind total")
        .trim()
        .parse()
        .unwrap();
    // mix alone runs 20 * 4002 instructions.
    assert!(ir > 80_000, "callgrind's Ir: {ir}");
    for mode in ["tb", "insn"] {
        let out = dir.join(format!("count-{mode}.txt"));
        let spec =
            format!("count,mode={mode},rep=iterations,exit_block=drop,out={}", out.display());
        let o = run_with_plugin(&spec, &prog);
        assert!(o.status.success(), "blockscope: {}", text(&o));
        let t = std::fs::read_to_string(&out).unwrap();
        let total = t.lines().last().unwrap();
        assert!(total.starts_with(&format!("total: insns={ir} blocks=")), "mode={mode}: {t}");
    }
}

/// HOT's work plus 64 KiB `rep stosb` fills and `rep movsb` copies (each element a data
/// access under Valgrind, and under memtrace now that it expands REP strings).
const STRINGS: &str = concat!(
    r#"
static char a[1 << 16], b[1 << 16];
static unsigned long acc;
"#,
    mix_c!(),
    r#"
void _start(void) {
    for (int k = 0; k < 4; k++) {
        acc ^= mix(acc + k);
        unsigned long n = sizeof a;
        void *d = a;
        __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(k) : "memory");
        n = sizeof a;
        d = b;
        void *s = a;
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        acc += b[k * 100];
    }
    __asm__ volatile("syscall" : : "a"(60L), "D"(acc & 0) : "rcx", "r11", "memory");
    __builtin_unreachable();
}
"#
);

/// The first number on the line of `text` that contains `label` (digits with or without
/// thousands separators).
fn number_after(text: &str, label: &str) -> u64 {
    let line =
        text.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("{label}:\n{text}"));
    let rest = &line[line.find(label).unwrap() + label.len()..];
    let digits: String = rest
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("{label}: {line}"))
}

#[test]
fn memtrace_cache_mode_is_close_to_cachegrind() {
    let dir = scratch("reftools-cache");
    let Some(prog) = build(&dir, "strings", STRINGS, &[]) else { return };
    if !have("valgrind", "--version") {
        return;
    }
    let geometry = [("I1", "32768,8,64"), ("D1", "32768,8,64"), ("LL", "8388608,16,64")];
    let o = Command::new("valgrind")
        .args(["--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null"])
        .args(geometry.iter().map(|(k, v)| format!("--{k}={v}")))
        .arg(&prog)
        .output()
        .unwrap();
    assert!(o.status.success(), "valgrind: {}", text(&o));
    let vg = String::from_utf8_lossy(&o.stderr).into_owned();
    // On the command line the geometry takes colons (commas separate plugin arguments).
    let args: Vec<String> = geometry
        .iter()
        .map(|(k, v)| format!("{}={}", k.to_lowercase(), v.replace(',', ":")))
        .collect();
    let o = run_with_plugin(&format!("memtrace,cache=on,{}", args.join(",")), &prog);
    assert!(o.status.success(), "blockscope: {}", text(&o));
    let ours = String::from_utf8_lossy(&o.stderr).into_owned();
    // The copies alone are 4 * 3 * 64 K data accesses; most of them miss D1 a line at a
    // time (2 K lines a fill or copy side).
    let d_refs = number_after(&vg, "D   refs:");
    assert!(d_refs > 4 * 3 * 65536, "cachegrind's D refs: {d_refs}\n{vg}");
    for (label, vg_label, tolerance) in [
        ("I refs:", "I   refs:", 0.01),
        ("D refs:", "D   refs:", 0.01),
        ("D1  misses:", "D1  misses:", 0.05),
        ("LL misses:", "LL misses:", 0.05),
    ] {
        let (mine, theirs) = (number_after(&ours, label), number_after(&vg, vg_label));
        let off = (mine as f64 - theirs as f64).abs() / theirs.max(1) as f64;
        assert!(
            off <= tolerance,
            "{label} {mine} against cachegrind's {theirs} ({:.1}% off)\nours:\n{ours}\ncachegrind:\n{vg}",
            off * 100.0
        );
    }
}
