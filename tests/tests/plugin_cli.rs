//! The plugin options of the `blockscope` command, end to end: each loading error is one
//! line on stderr and exit status 2 before the guest starts; a plugin failing while the
//! guest runs is named, the others still write their outputs, and the status is 3;
//! `blockscope plugins` lists the shipped plugins; `blockscope memtrace` reads traces.

mod plugin_common;

use plugin_common::*;
use std::path::PathBuf;
use std::process::{Command, Output};

fn blockscope() -> PathBuf {
    let bin = target_dir().join("blockscope");
    assert!(bin.exists(), "{} is missing: build the workspace first (cargo build)", bin.display());
    bin
}

fn run(args: &[&str]) -> Output {
    Command::new(blockscope())
        .args(args)
        .env("BLOCKSCOPE_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("spawn blockscope")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `blockscope run <plugin options> -- /bin/true` fails with status 2 and exactly `line`.
fn load_error(plugin: &str, line: &str) {
    let o = run(&["run", "--plugin", plugin, "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(2), "{plugin}: {}", stderr(&o));
    assert_eq!(stderr(&o), format!("blockscope: {line}\n"), "{plugin}");
}

#[test]
fn loading_errors_are_one_line_and_status_2() {
    load_error("/nonexistent/libx.so", "plugin `/nonexistent/libx.so` not found");
    load_error(
        "selfcheck,colour=blue",
        "plugin `selfcheck`: unknown argument `colour` (it accepts: out, panic, bad)",
    );
    load_error(
        "panics-on-install",
        "plugin `panics-on-install` failed to install: panicked during install: deliberate panic in install",
    );
    load_error(
        "panics-on-install,fail=1",
        "plugin `panics-on-install` failed to install: refusing to install, as asked (fail=1)",
    );
    let bad = plugin_lib("bad_abi");
    load_error(
        bad.to_str().unwrap(),
        &format!(
            "plugin {} was built for plugin ABI 99.{}, this blockscope supports ABI {}.{}",
            bad.display(),
            blockscope_plugin_api::ABI_MINOR,
            blockscope_plugin_api::ABI_MAJOR,
            blockscope_plugin_api::ABI_MINOR
        ),
    );
}

#[test]
fn a_plugin_failing_at_run_time_gives_status_3_and_the_others_flush() {
    let out = scratch("cli-panic").join("count.txt");
    let o = run(&[
        "run",
        "--plugin",
        "selfcheck,panic=callback",
        "--plugin",
        &format!("count,out={}", out.display()),
        "--",
        "/bin/true",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("blockscope: plugin `selfcheck` failed: panicked in a callback: "),
        "{err}"
    );
    let text = std::fs::read_to_string(&out).expect("count wrote its output");
    assert!(text.starts_with("thread 0: insns="), "{text}");
}

#[test]
fn plugins_lists_the_shipped_plugins() {
    let o = run(&["plugins"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for name in blockscope::plugin::SHIPPED {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
    }
}

#[test]
fn memtrace_subcommand_reads_a_trace() {
    let dir = scratch("cli-memtrace");
    let trace = dir.join("t.bin");
    let o =
        run(&["run", "--plugin", &format!("memtrace,out={}", trace.display()), "--", "/bin/true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["memtrace", "--summary", trace.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("accesses: "), "{text}");
    let n: u64 = text.lines().next().unwrap()["accesses: ".len()..].parse().unwrap();
    assert!(n > 1000, "{text}");
    // Printed records: as many lines as accesses.
    let o = run(&["memtrace", trace.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.iter().filter(|&&b| b == b'\n').count() as u64, n);
    // A trace cut short: one line, status 2.
    let bytes = std::fs::read(&trace).unwrap();
    let cut = dir.join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let o = run(&["memtrace", "--summary", cut.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), format!("blockscope: memtrace: {}: truncated chunk\n", cut.display()));
    let o = run(&["memtrace", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("blockscope: memtrace: cannot open /nonexistent: "),
        "{}",
        stderr(&o)
    );
}
