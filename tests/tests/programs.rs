//! Programs against their native runs: the C guests in `tests/guest/` (built here with the
//! host gcc at -O0 and -O2, static and dynamic) and host binaries must give the same
//! stdout, stderr and exit status under blockscope as natively, in every tier.
//!
//! Set `BLOCKSCOPE_TIERS=interp` (comma list) to narrow the tiers while debugging.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn blockscope() -> PathBuf {
    // target/<profile>/deps/programs-<hash> → target/<profile>/blockscope
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("blockscope");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build)", bin.display());
    bin
}

fn tiers() -> Vec<String> {
    std::env::var("BLOCKSCOPE_TIERS")
        .unwrap_or_else(|_| "interp,jit,auto".into())
        .split(',')
        .map(str::to_string)
        .collect()
}

fn have_gcc() -> bool {
    static G: OnceLock<bool> = OnceLock::new();
    *G.get_or_init(|| {
        Command::new("gcc").arg("--version").output().is_ok_and(|o| o.status.success())
    })
}

fn static_libc() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("probe");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("p.c");
        std::fs::write(&src, "int main(void){return 0;}").unwrap();
        Command::new("gcc")
            .args(["-static", "-o"])
            .arg(dir.join("p"))
            .arg(&src)
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Build `tests/guest/<name>.c` with the given flags; returns the binary path.
fn build(name: &str, opt: &str, link_static: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest").join(format!("{name}.c"));
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}{opt}{}", if link_static { "-static" } else { "" }));
    let mut cmd = Command::new("gcc");
    cmd.arg(opt).arg("-g").arg("-w").arg("-o").arg(&out).arg(&src).args(["-lm", "-lpthread"]);
    if link_static {
        cmd.arg("-static");
    }
    let o = cmd.output().expect("gcc");
    assert!(o.status.success(), "gcc failed for {name}: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).env("BLOCKSCOPE_TEST_VAR", "set-by-test").output().expect("spawn")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn same_with(a: &Output, b: &Output, norm: fn(&[u8]) -> Vec<u8>) -> bool {
    use std::os::unix::process::ExitStatusExt;
    norm(&a.stdout) == norm(&b.stdout)
        && a.stderr == b.stderr
        && a.status.code() == b.status.code()
        && a.status.signal() == b.status.signal()
}

/// Run `prog args` natively and under each tier; all must agree. Output that depends on
/// the moment (e.g. the mtime of /tmp in `ls -la /`, changed by concurrent tests) is
/// handled by running natively again after a mismatch: the emulated run must equal the
/// native run before or after it.
fn compare(prog: &Path, args: &[&str]) {
    compare_with(prog, args, |v| v.to_vec())
}

/// `compare`, with stdout passed through `norm` on both sides first.
fn compare_with(prog: &Path, args: &[&str], norm: fn(&[u8]) -> Vec<u8>) {
    let same = |a: &Output, b: &Output| same_with(a, b, norm);
    let mut native = run(Command::new(prog).args(args));
    for tier in tiers() {
        let emu = run(Command::new(blockscope())
            .args(["run", "--tier", &tier, "--"])
            .arg(prog)
            .args(args));
        if !same(&emu, &native) {
            native = run(Command::new(prog).args(args));
        }
        assert!(
            same(&emu, &native),
            "{} {:?} differs under --tier {tier}\n=== native\n{}=== blockscope\n{}",
            prog.display(),
            args,
            show(&native),
            show(&emu)
        );
    }
}

fn guest(name: &str, args: &[&str]) {
    if !have_gcc() {
        eprintln!("skipping {name}: no gcc on this machine");
        return;
    }
    for opt in ["-O0", "-O2"] {
        compare(&build(name, opt, false), args);
        if static_libc() {
            compare(&build(name, opt, true), args);
        } else {
            eprintln!("skipping static {name}: no static libc");
        }
    }
}

macro_rules! guests {
    ($($name:ident $(: $($arg:literal)*)?;)*) => {
        $(#[test] fn $name() { guest(stringify!($name), &[$($($arg),*)?]); })*
    };
}

guests! {
    hello: "one" "two words";
    intmath;
    fpmath;
    fenv;
    strings;
    jumps;
    alarm;
    forkwait;
    threads;
    mmapio;
    smc;
}

fn host(prog: &str, args: &[&str]) {
    let Some(path) = which(prog) else {
        eprintln!("skipping {prog}: not installed");
        return;
    };
    compare(&path, args);
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

#[test]
fn host_true() {
    host("true", &[]);
}

#[test]
fn host_false_exit_status() {
    host("false", &[]);
}

/// `ls -la /` minus the `proc` line, with runs of blanks folded: the link count of /proc is
/// the number of live processes, which changes while tests run in parallel, and its width
/// shifts the column padding of every other line.
fn without_proc_line(out: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(out);
    let mut v = String::new();
    for line in text.lines().filter(|l| !l.ends_with(" proc")) {
        v.push_str(&line.split_whitespace().collect::<Vec<_>>().join(" "));
        v.push('\n');
    }
    v.into_bytes()
}

#[test]
fn host_ls_la_root() {
    let Some(ls) = which("ls") else {
        eprintln!("skipping ls: not installed");
        return;
    };
    compare_with(&ls, &["-la", "/"], without_proc_line);
}

#[test]
fn host_sh_loop_and_pipe() {
    host("sh", &["-c", "i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo line $i; done | sort -r | head -n 3; echo done"]);
}

#[test]
fn host_gzip_roundtrip() {
    host("sh", &["-c", "seq 1 60000 | gzip -9 | gunzip | sha256sum"]);
}

#[test]
fn host_sha256sum_and_sort() {
    host("sh", &["-c", "seq 1 5000 | sort -n -r | sha256sum; seq 1 300 | sort | tail -n 2"]);
}

#[test]
fn host_python_arith_json_threading() {
    host(
        "python3",
        &[
            "-c",
            "import json, threading\n\
             print(sum(i*i for i in range(20000)), 2**100, 7/3)\n\
             d = json.loads(json.dumps({'a': [1, 2.5, None, 'x'], 'b': {'c': True}}))\n\
             print(sorted(d), d['a'])\n\
             out = []\n\
             ts = [threading.Thread(target=lambda k=k: out.append(sum(range(k * 1000)))) for k in range(4)]\n\
             [t.start() for t in ts]; [t.join() for t in ts]\n\
             print(sorted(out))",
        ],
    );
}
