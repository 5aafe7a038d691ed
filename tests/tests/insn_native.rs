//! Every lifted instruction form against the host CPU (see `blockscope_tests::driver`).
//!
//! Forms come from `blockscope::frontend::lifted_codes()` and are split into groups that
//! run as separate tests (in parallel): general-purpose, SSE, control flow and string
//! instructions. Each test prints its skip list and, for every failing mnemonic, a few
//! reports (disassembly, bytes, input state, each differing field), then fails if any
//! form disagrees with the host. Narrow a run with `BLOCKSCOPE_INSN_FILTER=add,shl`.

use blockscope_tests::driver::{filter_accepts, run_forms};
use blockscope_tests::gen::with_code;
use iced_x86::{Code, FlowControl, Mnemonic, OpCodeOperandKind as K};

fn is_branch(c: Code) -> bool {
    with_code(c).flow_control() != FlowControl::Next
}

fn is_string(c: Code) -> bool {
    use Mnemonic::*;
    matches!(
        c.mnemonic(),
        Movsb
            | Movsw
            | Movsd
            | Movsq
            | Cmpsb
            | Cmpsw
            | Cmpsd
            | Cmpsq
            | Stosb
            | Stosw
            | Stosd
            | Stosq
            | Lodsb
            | Lodsw
            | Lodsd
            | Lodsq
            | Scasb
            | Scasw
            | Scasd
            | Scasq
            | Xlatb
    ) && c.op_code().op_kinds().iter().all(|k| !matches!(k, K::xmm_reg | K::xmm_or_mem | K::xmm_rm))
}

fn is_sse(c: Code) -> bool {
    c.op_code()
        .op_kinds()
        .iter()
        .any(|k| matches!(k, K::xmm_reg | K::xmm_rm | K::xmm_or_mem | K::xmm_vvvv | K::xmm_is4))
}

fn run_group(name: &str, pred: impl Fn(Code) -> bool) {
    run_group_with(name, pred, false)
}

/// `run_group`, with REP string instructions expanded (`Config::expand_rep`) or not.
fn run_group_with(name: &str, pred: impl Fn(Code) -> bool, expand_rep: bool) {
    use std::sync::atomic::Ordering;
    // One group at a time: random memory operands may point near pages another test
    // thread maps or unmaps, which would make the native and emulated runs see different
    // mappings. (The lock also keeps `EXPAND_REP` to one group.)
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let codes: Vec<Code> = blockscope::frontend::lifted_codes()
        .into_iter()
        .filter(|c| pred(*c) && filter_accepts(*c))
        .collect();
    blockscope_tests::emu::EXPAND_REP.store(expand_rep, Ordering::Relaxed);
    let rep = run_forms(&codes);
    blockscope_tests::emu::EXPAND_REP.store(false, Ordering::Relaxed);
    println!("{}", rep.summary(name));
    // A group whose forms are all skipped asserts nothing: the string group ran none from
    // the start (its implicit operands were refused before their generator was reached).
    assert!(codes.is_empty() || rep.forms > 0, "{name}: no form of the group ran");
    assert!(
        rep.failures.is_empty(),
        "{name}: {} mnemonics differ from the host CPU: {}",
        rep.failures.len(),
        rep.failures.keys().cloned().collect::<Vec<_>>().join(", ")
    );
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn gpr_forms_match_host() {
    run_group("general-purpose", |c| !is_branch(c) && !is_string(c) && !is_sse(c));
}

#[test]
fn sse_forms_match_host() {
    run_group("sse", |c| !is_branch(c) && is_sse(c));
}

#[test]
fn branch_forms_match_host() {
    run_group("control flow", is_branch);
}

#[test]
fn string_forms_match_host() {
    run_group("string", |c| !is_branch(c) && is_string(c));
}

/// The string group again with REP string instructions expanded, one element per run
/// (what a plugin that instruments memory accesses asks for): registers, flags and
/// memory must still match the CPU's.
#[test]
fn expanded_string_forms_match_host() {
    run_group_with("string, REP expanded", |c| !is_branch(c) && is_string(c), true);
}

/// The harness itself on every form it can run, lifted or not: generation, encoding and
/// native execution work and are deterministic (two runs of one input agree).
#[test]
fn native_runs_of_all_forms_are_deterministic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let codes: Vec<Code> = Code::values()
        .filter(|c| blockscope_tests::gen::check_form(*c).is_ok() && filter_accepts(*c))
        .collect();
    let (ran, bad) = blockscope_tests::driver::native_selfcheck(&codes, 4);
    println!("native self-check: {ran} forms run");
    assert!(ran > 500, "only {ran} forms could be run natively");
    assert!(bad.is_empty(), "native runs differ between two identical runs: {bad:#?}");
}
