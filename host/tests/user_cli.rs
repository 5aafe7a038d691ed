//! The `blockscope` command line: help, version, bad input (one line, exit 2, never a
//! panic), PATH lookup, `#!` scripts, `--strace`, `--trace-translate`, `--plugin`.

mod user_support;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use user_support::*;

fn one_error_line(o: &std::process::Output, prog: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", show(o));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{stderr}");
    assert!(lines[0].starts_with(&format!("blockscope: {prog}: ")), "{stderr}");
    assert!(lines[0].contains(what), "expected {what:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn run_bs(args: &[&str]) -> std::process::Output {
    Command::new(blockscope()).args(args).output().expect("run blockscope")
}

#[test]
fn help_documents_exit_status_and_version_prints() {
    let h = run_bs(&["--help"]);
    assert!(h.status.success());
    let s = String::from_utf8_lossy(&h.stdout);
    assert!(s.contains("run") && s.contains("128+N") && s.contains("2 "), "{s}");
    let h = run_bs(&["run", "--help"]);
    let s = String::from_utf8_lossy(&h.stdout);
    for opt in ["--tier", "--plugin", "--strace", "--trace-translate", "128+N"] {
        assert!(s.contains(opt), "run --help lacks {opt}:\n{s}");
    }
    let v = run_bs(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("blockscope "));
}

#[test]
fn missing_program() {
    let o = run_bs(&["run", "--", "/no/such/program"]);
    one_error_line(&o, "/no/such/program", "no such file");
    let o = run_bs(&["run", "--", "no-such-program-in-path-xyz"]);
    one_error_line(&o, "no-such-program-in-path-xyz", "no such file");
    let o = run_bs(&["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn not_elf_not_x86_64_unreadable() {
    let d = TempDir::new("cli-bad");
    let text = d.join("text");
    std::fs::write(&text, "just some text\n").unwrap();
    std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run_bs(&["run", "--", text.to_str().unwrap()]);
    one_error_line(&o, text.to_str().unwrap(), "not an ELF");

    // A 32-bit x86 ELF header and an AArch64 one.
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 1;
    h[5] = 1;
    h[6] = 1;
    h[16] = 2;
    h[18] = 3;
    let e32 = d.join("elf32");
    std::fs::write(&e32, &h).unwrap();
    std::fs::set_permissions(&e32, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run_bs(&["run", "--", e32.to_str().unwrap()]);
    one_error_line(&o, e32.to_str().unwrap(), "32-bit");
    h[4] = 2;
    h[18] = 183;
    let arm = d.join("arm64");
    std::fs::write(&arm, &h).unwrap();
    std::fs::set_permissions(&arm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run_bs(&["run", "--", arm.to_str().unwrap()]);
    one_error_line(&o, arm.to_str().unwrap(), "AArch64");

    // Truncated x86-64 ELF.
    h[18] = 62;
    let trunc = d.join("trunc");
    std::fs::write(&trunc, &h[..40]).unwrap();
    std::fs::set_permissions(&trunc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run_bs(&["run", "--", trunc.to_str().unwrap()]);
    one_error_line(&o, trunc.to_str().unwrap(), "malformed");

    // Not executable, and a directory.
    let noexec = d.join("noexec");
    std::fs::write(&noexec, &h).unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_bs(&["run", "--", noexec.to_str().unwrap()]);
    one_error_line(&o, noexec.to_str().unwrap(), "permission denied");
    let o = run_bs(&["run", "--", d.0.to_str().unwrap()]);
    one_error_line(&o, d.0.to_str().unwrap(), "is a directory");
}

#[test]
fn missing_plugin_is_one_line_and_status_2() {
    let o = run_bs(&["run", "--plugin", "no-such-plugin.so", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("blockscope: "), "{err}");
    assert!(err.contains("no-such-plugin.so"), "{err}");
}

#[test]
fn path_lookup_script_and_argv0() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("cli-path");
    let p = build_nolibc(&d, "rt_basic");
    // Found through PATH, argv[0] is the name as typed.
    let path = format!("{}:/usr/bin:/bin", d.0.display());
    let o = Command::new(blockscope())
        .args(["run", "--", "rt_basic", "one"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("argv: rt_basic\nargv: one\n"), "{}", show(&o));
    assert!(s.contains(&format!("execfn: {}", p.display())), "{s}");
    // --argv0
    let o = emulated(&["--argv0", "renamed"], &p, &[], &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("argv: renamed\n"), "{}", show(&o));
    // A #! script whose interpreter is the guest: argv = interp, arg, script, args.
    let script = d.join("script");
    std::fs::write(&script, format!("#!{} opt\nignored\n", p.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nat = native(&script, &["x"], &[]);
    let emu = emulated(&[], &script, &["x"], &[]);
    assert_same("#! script", &nat, &emu);
    let s = String::from_utf8_lossy(&emu.stdout);
    assert!(
        s.contains(&format!(
            "argc=4\nargv: {}\nargv: opt\nargv: {}\nargv: x\n",
            p.display(),
            script.display()
        )),
        "{s}"
    );
}

#[test]
fn strace_and_trace_translate_go_to_stderr() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("cli-trace");
    let p = build_nolibc(&d, "rt_die");
    let o = emulated(&["--strace"], &p, &["exit", "3"], &[]);
    assert_eq!(status_str(&o), "exit 3");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "start\n");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("] write(1, 0x") && e.contains(", 6) = 6\n"), "{e}");
    assert!(e.contains("exit_group(3)") && e.contains("+++ exited with 3 +++"), "{e}");
    let o = emulated(&["--trace-translate"], &p, &["exit", "0"], &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("---- TB 0x") && e.contains("syscall"), "{e}");
    assert_eq!(status_str(&o), "exit 0");
}

/// `--stats` prints the engine's counters at exit; the tuning knobs take effect and
/// refuse out-of-range values with clap's one-line error and status 2.
#[test]
fn stats_and_tuning_knobs() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("cli-stats");
    let p = build_nolibc(&d, "rt_die");
    let counter = |e: &str, name: &str| -> u64 {
        let line = e.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{e}"));
        line[name.len()..].trim().parse().unwrap_or_else(|_| panic!("{line}"))
    };
    // Interpreter only: every block run is an interpreted run, nothing is compiled.
    let o = emulated(&["--stats", "--tier", "interp"], &p, &["exit", "4"], &[]);
    assert_eq!(status_str(&o), "exit 4");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("==blockscope== stats"), "{e}");
    assert!(counter(&e, "blocks translated") > 0, "{e}");
    assert!(counter(&e, "interpreted block runs") >= counter(&e, "blocks translated"), "{e}");
    assert_eq!(counter(&e, "blocks compiled"), 0, "{e}");
    // JIT: every block is compiled before it runs; blocks of one instruction at most.
    let o =
        emulated(&["--stats", "--tier", "jit", "--max-block-insns", "1"], &p, &["exit", "5"], &[]);
    assert_eq!(status_str(&o), "exit 5");
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(counter(&e, "blocks compiled"), counter(&e, "blocks translated"), "{e}");
    assert!(counter(&e, "entries into compiled code") > 0, "{e}");
    // A guest that closes its stderr (GNU tools do at exit) or takes fd 1000 does not
    // silence blockscope: its messages go to a private copy of stderr the guest cannot
    // close, replace or use (as Valgrind's log fd): to the guest fd 1000 is not open.
    // Natively the dup2 and close succeed.
    let n = native(&p, &["closefds"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&n.stdout),
        "start\ndup1000=EBADF fcntl1000=EBADF close2=0 dup2=1000 close1000=0 range=0\n"
    );
    let o = emulated(&["--stats"], &p, &["closefds"], &[]);
    assert_eq!(status_str(&o), "exit 0");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "start\ndup1000=EBADF fcntl1000=EBADF close2=0 dup2=EBADF close1000=EBADF range=0\n"
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("==blockscope== stats") && e.contains("slow accesses in jit code"), "{e}");
    // --perf-map: one line per compiled block in /tmp/perf-PID.map, "ADDR SIZE bs_0xPC".
    let child = Command::new(blockscope())
        .args(["run", "--perf-map", "--tier", "jit", "--"])
        .arg(&p)
        .args(["exit", "0"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run blockscope");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let map = std::path::PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let text = std::fs::read_to_string(&map).expect("perf map written");
    let _ = std::fs::remove_file(&map);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 3, "{text}");
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 3, "{l}");
        assert!(u64::from_str_radix(f[0], 16).is_ok() && u64::from_str_radix(f[1], 16).is_ok());
        assert!(f[2].starts_with("bs_0x"), "{l}");
    }
    // Without --stats, nothing extra on stderr.
    let o = emulated(&["--hot-threshold", "1", "--jit-cache-mib", "4"], &p, &["exit", "0"], &[]);
    assert_eq!(status_str(&o), "exit 0");
    assert!(o.stderr.is_empty(), "{}", show(&o));
    for bad in [
        ["--hot-threshold", "0"],
        ["--max-block-insns", "1000"],
        ["--jit-cache-mib", "0"],
        ["--jit-chain-budget", "-1"],
    ] {
        let o = run_bs(&["run", bad[0], bad[1], "--", "true"]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", show(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.starts_with("error: ") && e.contains(bad[0]), "{bad:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
