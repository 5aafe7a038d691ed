//! User-mode runtime against native runs, with freestanding guests (`user_guests/rt_*.c`,
//! raw syscalls, no libc, -O0 integer code only): process start-up (argv, envp, auxv,
//! brk, /proc/self/exe, arch_prctl), signals (faults with siginfo and ucontext, kill,
//! masks, sigaltstack, timers, pause, sigsuspend, SA_RESTART, int3, ud2), fork, raw clone
//! threads, a main thread exiting first, execve, file mmap, self-modifying code, and the
//! ways a process ends (exit codes, death by signal).

mod user_support;
use user_support::*;

#[test]
fn startup_args_env_auxv() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-basic");
    let p = build_nolibc(&d, "rt_basic");
    let env = [("BS_TEST_VAR", "hello world")];
    let nat = native(&p, &["a", "b"], &env);
    let emu = emulated(&[], &p, &["a", "b"], &env);
    assert_same("rt_basic a b", &nat, &emu);
    assert_eq!(status_str(&emu), "exit 42");
    let out = String::from_utf8_lossy(&emu.stdout);
    assert!(out.contains("env ok") && out.contains("brk ok") && out.contains("fs ok"), "{out}");
    assert!(out.contains(&format!("exe: {}", p.display())), "{out}");
}

#[test]
fn every_tier_option_runs() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-tiers");
    let p = build_nolibc(&d, "rt_basic");
    let env = [("BS_TEST_VAR", "hello world")];
    let nat = native(&p, &["x"], &env);
    for tier in ["--tier=interp", "--tier=jit", "--tier=auto"] {
        let emu = emulated(&[tier], &p, &["x"], &env);
        assert_same(tier, &nat, &emu);
    }
}

#[test]
fn signals() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-signal");
    let p = build_nolibc(&d, "rt_signal");
    let nat = native(&p, &[], &[]);
    let emu = emulated(&[], &p, &[], &[]);
    assert_same("rt_signal", &nat, &emu);
    assert!(String::from_utf8_lossy(&emu.stdout).contains("trap ok"), "{}", show(&emu));
}

#[test]
fn fork_threads_mmap_smc_exec() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-proc");
    let p = build_nolibc(&d, "rt_proc");
    let f = d.join("data");
    let f = f.to_str().expect("utf-8 temp path");
    let nat = native(&p, &[f], &[]);
    let emu = emulated(&[], &p, &[f], &[]);
    assert_same("rt_proc", &nat, &emu);
    assert!(String::from_utf8_lossy(&emu.stdout).contains("exec ok"), "{}", show(&emu));
}

#[test]
fn main_thread_exits_first() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-mainexit");
    let p = build_nolibc(&d, "rt_proc");
    let nat = native(&p, &["unused", "mainexit"], &[]);
    let emu = emulated(&[], &p, &["unused", "mainexit"], &[]);
    assert_same("rt_proc mainexit", &nat, &emu);
    assert_eq!(status_str(&emu), "exit 23");
}

#[test]
fn exit_codes_and_deaths_match_native() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-die");
    let p = build_nolibc(&d, "rt_die");
    let cases: &[(&[&str], &str)] = &[
        (&["exit", "0"], "exit 0"),
        (&["exit", "1"], "exit 1"),
        (&["exit", "255"], "exit 255"),
        (&["exit", "256"], "exit 0"),
        (&["exit", "300"], "exit 44"),
        (&["segv"], "signal 11"),
        (&["kill", "15"], "signal 15"),
        (&["kill", "6"], "signal 6"),
        (&["kill", "10"], "signal 10"),
        (&["kill", "17"], "exit 1"), // SIGCHLD is ignored by default
        (&["ud2"], "signal 4"),
        (&["pipe"], "signal 13"),
    ];
    for (args, want) in cases {
        let nat = native(&p, args, &[]);
        let emu = emulated(&[], &p, args, &[]);
        assert_same(&format!("rt_die {args:?}"), &nat, &emu);
        assert_eq!(status_str(&emu), *want, "rt_die {args:?}");
    }
}

#[test]
fn unimplemented_instruction_is_sigill_with_one_line() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-unimpl");
    let p = build_nolibc(&d, "rt_die");
    let emu = emulated(&[], &p, &["unimpl"], &[]);
    assert_eq!(status_str(&emu), "signal 4", "{}", show(&emu));
    let stderr = String::from_utf8_lossy(&emu.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("blockscope: unimplemented instruction at 0x"), "{stderr}");
    assert!(lines[0].ends_with("vaddps zmm0,zmm1,zmm2"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&emu.stdout), "start\n");
}

#[test]
fn ignored_signals_are_inherited() {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new("rt-sigign");
    let p = build_nolibc(&d, "rt_die");
    // A shell ignores SIGPIPE and SIGTERM, then execs the program (natively or under
    // blockscope): the program sees EPIPE instead of dying, and survives kill(SIGTERM).
    let run = |prefix: &[&str], args: &[&str]| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' PIPE TERM; exec \"$@\"")
            .arg("sh")
            .args(prefix)
            .arg(&p)
            .args(args)
            .output()
            .expect("run sh")
    };
    for args in [&["pipe"][..], &["kill", "15"][..]] {
        let nat = run(&[], args);
        let emu = run(&[blockscope(), "run", "--"], args);
        assert_same(&format!("rt_die {args:?} with SIG_IGN inherited"), &nat, &emu);
        assert!(nat.status.code().is_some(), "{}", show(&nat));
    }
}
