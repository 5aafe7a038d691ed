//! Shared helpers for the user-mode tests: build guest programs with the host gcc into a
//! per-test temporary directory, run them natively and under blockscope, compare.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The blockscope binary under test.
pub fn blockscope() -> &'static str {
    env!("CARGO_BIN_EXE_blockscope")
}

/// Directory of the guest sources.
pub fn guest_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/user_guests").join(name)
}

/// A fresh temporary directory for one test (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Create `bs-<test>-<pid>` under the system temp dir.
    pub fn new(test: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("bs-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    /// A path inside.
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether gcc is available; prints a skip message if not.
pub fn have_gcc() -> bool {
    let ok =
        Command::new("gcc").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIP: gcc not found; user-mode program tests need the host gcc");
    }
    ok
}

/// Compile `src` with gcc and `flags` into `out`. Panics with gcc's output on failure.
pub fn gcc(src: &Path, out: &Path, flags: &[&str]) {
    let o = Command::new("gcc")
        .args(flags)
        .arg("-I")
        .arg(guest_src(""))
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .expect("run gcc");
    assert!(o.status.success(), "gcc {src:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// Flags for the freestanding runtime guests (`nolibc.h`): only basic integer code.
pub const NOLIBC: &[&str] = &[
    "-O0",
    "-static",
    "-nostdlib",
    "-fno-pie",
    "-no-pie",
    "-mgeneral-regs-only",
    "-fno-stack-protector",
    "-fno-builtin",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
];

/// Build a nolibc guest from `user_guests/<name>.c` into `dir`.
pub fn build_nolibc(dir: &TempDir, name: &str) -> PathBuf {
    let out = dir.join(name);
    gcc(&guest_src(&format!("{name}.c")), &out, NOLIBC);
    out
}

/// Run `prog args` natively.
pub fn native(prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(prog).args(args).envs(env.iter().copied()).output().expect("run native")
}

/// Run `blockscope run [opts] -- prog args`.
pub fn emulated(opts: &[&str], prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(blockscope())
        .arg("run")
        .args(opts)
        .arg("--")
        .arg(prog)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run blockscope")
}

/// Exit code or death signal, as a shell would print it.
pub fn status_str(o: &Output) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (o.status.code(), o.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

/// Show an output for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        status_str(o),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Assert that blockscope's run equals the native one (stdout, stderr, status).
pub fn assert_same(what: &str, nat: &Output, emu: &Output) {
    assert!(
        nat.stdout == emu.stdout && nat.stderr == emu.stderr && nat.status == emu.status,
        "{what}: blockscope differs from native\n=== native ===\n{}\n=== blockscope ===\n{}",
        show(nat),
        show(emu)
    );
}
