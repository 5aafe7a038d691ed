//! C programs built with the host gcc at -O0 and -O2, static and dynamic, run natively and
//! under blockscope in each tier (interpreter only, JIT only, and the default mix):
//! stdout, stderr and exit status must be equal.
//! An "unimplemented instruction" in any variant is a failure like any other difference.

mod user_support;
use user_support::*;

const VARIANTS: &[(&str, bool)] = &[("-O0", true), ("-O2", true), ("-O0", false), ("-O2", false)];

/// Build `user_guests/<name>.c` in all variants and compare each run with native.
fn check(name: &str, args: &[&str], env: &[(&str, &str)]) {
    if !have_gcc() {
        return;
    }
    let d = TempDir::new(&format!("prog-{name}"));
    for (opt, stat) in VARIANTS {
        let bin = d.join(&format!("{name}{opt}{}", if *stat { "-static" } else { "" }));
        let mut flags = vec![*opt, "-pthread", "-w"];
        if *stat {
            flags.push("-static");
        }
        gcc(&guest_src(&format!("{name}.c")), &bin, &flags);
        let args: Vec<String> =
            args.iter().map(|a| a.replace("@TMP", d.0.to_str().unwrap_or("."))).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let nat = native(&bin, &args, env);
        for tier in ["--tier=interp", "--tier=jit", "--tier=auto"] {
            let emu = emulated(&[tier], &bin, &args, env);
            let link = if *stat { "static" } else { "dynamic" };
            assert_same(&format!("{name} {opt} {link} {tier}"), &nat, &emu);
        }
    }
}

#[test]
fn hello() {
    check("hello", &[], &[]);
}

#[test]
fn args_env_auxv() {
    check("args", &["one", "two three"], &[("BS_A", "alpha"), ("BS_B", "")]);
}

#[test]
fn exit_codes() {
    check("exitcode", &["0"], &[]);
    check("exitcode", &["7"], &[]);
    check("exitcode", &["quick"], &[]);
    check("exitcode", &["abort"], &[]);
}

#[test]
fn segv_handler_siglongjmp() {
    check("segv", &[], &[]);
}

#[test]
fn inline_memory_faults_exactly() {
    check("pagemap", &[], &[]);
}

#[test]
fn sigalrm() {
    check("alarm", &[], &[]);
}

#[test]
fn fork_wait_exec_system() {
    check("fork", &[], &[]);
}

#[test]
fn pthreads_mutex_condvar() {
    check("threads", &[], &[]);
}

#[test]
fn mmap_file_io() {
    check("mmapio", &["@TMP/mmapio.dat"], &[]);
}

#[test]
fn self_modifying_code() {
    check("smc", &[], &[]);
}

#[test]
fn proc_self_exe() {
    check("selfexe", &[], &[]);
}

#[test]
fn signals_and_threads() {
    check("threadsig", &[], &[]);
}

#[test]
fn fork_while_threads_run() {
    check("forkthreads", &[], &[]);
}
