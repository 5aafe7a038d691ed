//! Every way plugin set-up can fail ends with one clear line naming the plugin or file,
//! and exit status 2 (`EXIT_LOAD_ERROR`), before the guest starts; a plugin that fails
//! while the guest runs is reported with its name, the others still flush, and the run
//! ends with exit status 3 (`EXIT_PLUGIN_FAILED`).

mod plugin_common;

use blockscope::config::Tier;
use blockscope::plugin::{PluginError, Plugins, EXIT_LOAD_ERROR, EXIT_PLUGIN_FAILED};
use plugin_common::*;
use std::sync::Arc;

fn load_err(v: &[&str]) -> PluginError {
    match load(v) {
        Ok(_) => panic!("loading {v:?} should fail"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one line: {msg}");
            e
        }
    }
}

#[test]
fn missing_file_is_one_line_and_status_2() {
    let e = load_err(&["/nonexistent/dir/libnothing.so"]);
    assert!(matches!(e, PluginError::NotFound { .. }), "{e:?}");
    assert_eq!(e.to_string(), "plugin `/nonexistent/dir/libnothing.so` not found");
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn unknown_name_lists_where_it_looked() {
    let e = load_err(&["no-such-plugin"]);
    let msg = e.to_string();
    assert!(msg.starts_with("plugin `no-such-plugin` not found (looked in "), "{msg}");
    assert!(msg.contains(&plugin_dir().display().to_string()), "{msg}");
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn names_are_found_next_to_the_executable_and_in_the_search_path() {
    let by_exe = blockscope::plugin::resolve("selfcheck", Some(&plugin_dir()), &[]).unwrap();
    assert_eq!(by_exe, plugin_lib("selfcheck"));
    let dirs =
        blockscope::plugin::split_search_path(&format!("/nonexistent:{}", plugin_dir().display()));
    let by_path = blockscope::plugin::resolve("selfcheck", None, &dirs).unwrap();
    assert_eq!(by_path, plugin_lib("selfcheck"));
}

#[test]
fn a_file_that_is_not_a_library_cannot_be_loaded() {
    let dir = scratch("not-a-library");
    let f = dir.join("libjunk.so");
    std::fs::write(&f, "this is not an ELF file\n").unwrap();
    let e = load_err(&[f.to_str().unwrap()]);
    assert!(matches!(e, PluginError::Open { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cannot load plugin {}: ", f.display())), "{e}");
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn a_library_without_an_entry_point_is_not_a_plugin() {
    let Some(lib) = build_c_plugin("noentry", &["-DBS_TEST_NO_ENTRY"]) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let e = load_err(&[lib.to_str().unwrap()]);
    assert!(matches!(e, PluginError::NotAPlugin { .. }), "{e:?}");
    assert!(e.to_string().contains("is not a blockscope plugin"), "{e}");
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn a_rust_plugin_for_another_abi_major_is_refused() {
    let lib = plugin_lib("bad_abi");
    let e = load_err(&[lib.to_str().unwrap()]);
    assert!(matches!(e, PluginError::AbiMismatch { .. }), "{e:?}");
    let want = format!(
        "plugin {} was built for plugin ABI 99.{}, this blockscope supports ABI {}.{}",
        lib.display(),
        blockscope_plugin_api::ABI_MINOR,
        blockscope_plugin_api::ABI_MAJOR,
        blockscope_plugin_api::ABI_MINOR
    );
    assert_eq!(e.to_string(), want);
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn a_plugin_for_an_older_minor_loads_and_one_for_a_newer_minor_is_refused() {
    // Minors grow by appending to the host's table: a plugin built before an addition
    // loads; one built after an addition this host lacks does not.
    let minor = blockscope_plugin_api::ABI_MINOR;
    assert!(minor >= 1, "the REP-expansion functions came with minor 1");
    let Some(old) = build_c_plugin("minor0", &["-DBS_TEST_MINOR=0"]) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let spec = format!("{},out=/dev/null", old.display());
    assert!(load(&[spec.as_str()]).is_ok(), "a minor-0 plugin loads");
    let newer = format!("-DBS_TEST_MINOR={}", minor + 1);
    let Some(new) = build_c_plugin("minor-next", &[newer.as_str()]) else { return };
    let e = load_err(&[new.to_str().unwrap()]);
    assert!(matches!(e, PluginError::AbiMismatch { .. }), "{e:?}");
    let want = format!("built for plugin ABI {}.{}", blockscope_plugin_api::ABI_MAJOR, minor + 1);
    assert!(e.to_string().contains(&want), "{e}");
}

#[test]
fn a_c_plugin_for_another_abi_major_is_refused() {
    let Some(lib) = build_c_plugin("major99", &["-DBS_TEST_MAJOR=99"]) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let e = load_err(&[lib.to_str().unwrap()]);
    assert!(matches!(e, PluginError::AbiMismatch { .. }), "{e:?}");
    let want = format!("built for plugin ABI 99.{}", blockscope_plugin_api::ABI_MINOR);
    assert!(e.to_string().contains(&want), "{e}");
}

#[test]
fn an_unknown_argument_is_refused_before_install() {
    let e = load_err(&["selfcheck,out=/dev/null,colour=blue"]);
    assert_eq!(
        e.to_string(),
        "plugin `selfcheck`: unknown argument `colour` (it accepts: out, panic, bad)"
    );
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn a_bad_plugin_option_is_refused() {
    let e = blockscope::plugin::parse_spec(",out=x").unwrap_err();
    assert_eq!(e.to_string(), "bad --plugin value `,out=x`: no plugin name or path");
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
    let s = blockscope::plugin::parse_spec("count,inline,out=a=b").unwrap();
    assert_eq!(s.args, vec![("inline".into(), "on".into()), ("out".into(), "a=b".into())]);
}

#[test]
fn an_install_error_is_reported_with_the_plugin_name() {
    let e = load_err(&["panics-on-install,fail=1"]);
    assert_eq!(
        e.to_string(),
        "plugin `panics-on-install` failed to install: refusing to install, as asked (fail=1)"
    );
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn a_panic_in_install_is_caught_and_reported() {
    let e = load_err(&["panics-on-install"]);
    assert_eq!(
        e.to_string(),
        "plugin `panics-on-install` failed to install: panicked during install: deliberate panic in install"
    );
    assert_eq!(e.exit_status(), EXIT_LOAD_ERROR);
}

#[test]
fn a_c_plugin_install_error_is_reported() {
    let Some(lib) = build_c_plugin("ccount-noarg", &[]) else {
        eprintln!("skipped: gcc not found");
        return;
    };
    let e = load_err(&[lib.to_str().unwrap()]);
    assert_eq!(e.to_string(), "plugin `ccount` failed to install: the out argument is required");
}

/// A panicking callback disables its plugin; the guest finishes, the other plugin still
/// writes its output, and the run reports the failure (status 3) naming the plugin.
#[test]
fn a_panic_in_a_callback_is_caught_and_others_still_flush() {
    let g = loop_guest();
    let dir = scratch("panic-callback");
    let good = dir.join("good.txt");
    let plugins = Arc::new(
        load(&["selfcheck,panic=callback", &format!("selfcheck,out={}", good.display())]).unwrap(),
    );
    let cpu = run(&g, plugins.clone(), Tier::Interp);
    assert_eq!(cpu.gpr(1), 0, "the guest ran to the end");
    let e = plugins.on_exit().expect_err("the run must report the failed plugin");
    assert_eq!(e.exit_status(), EXIT_PLUGIN_FAILED);
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "plugin `selfcheck` failed: panicked in a callback: selfcheck: deliberate panic"
        ),
        "{msg}"
    );
    let c = parse_counts(&std::fs::read_to_string(&good).expect("the other plugin flushed"));
    assert_eq!(c["insns_callback"], 603);
}

#[test]
fn a_panic_at_exit_does_not_stop_the_others_from_flushing() {
    let g = loop_guest();
    let dir = scratch("panic-exit");
    let good = dir.join("good.txt");
    let plugins: Arc<Plugins> = Arc::new(
        load(&["selfcheck,panic=exit", &format!("selfcheck,out={}", good.display())]).unwrap(),
    );
    run(&g, plugins.clone(), Tier::Interp);
    let e = plugins.on_exit().expect_err("failure reported");
    assert_eq!(
        e.to_string(),
        "plugin `selfcheck` failed: panicked in exit: selfcheck: deliberate panic at exit"
    );
    assert!(good.exists(), "the plugin after the panicking one still wrote its output");
}
