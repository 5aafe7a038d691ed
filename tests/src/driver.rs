//! The differential loop over instruction forms: generate instances and inputs, run each
//! input on the host CPU and in every tier, and collect a per-mnemonic report.
//!
//! Knobs (environment, read here because this is test code, not the engine):
//! - `BLOCKSCOPE_INSN_FILTER`: comma-separated mnemonics (`add,shl`) or iced `Code` names
//!   (`Add_rm32_r32`), case-insensitive; only matching forms run.
//! - `BLOCKSCOPE_INSN_STATES`: input states per form (default 512).
//! - `BLOCKSCOPE_INSN_JIT_EVERY`: run the JIT tier on every n-th input (default 4; the
//!   first inputs of every instance always run in both tiers).
//!
//! A form is *skipped* (counted and listed, never silently) when the harness cannot run it
//! natively, and *not lifted* when the frontend's lifter refuses the instance (the
//! emulator would raise #UD). A panic inside the emulator is a failure of that form.

use crate::case::{assemble, report, run_input, TIERS};
use crate::gen::{instances, Placement};
use crate::inputs::make_input;
use crate::native::NativeRunner;
use crate::rng::{hash_str, Rng};
use crate::state::{Outcome, SCRATCH_LEN};
use blockscope::config::Tier;
use iced_x86::{Code, InstructionInfoFactory, Mnemonic};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Failure reports printed per mnemonic.
const REPORTS_PER_MNEMONIC: usize = 3;

/// The outcome of a group of forms.
#[derive(Default)]
pub struct GroupReport {
    /// Forms that ran.
    pub forms: usize,
    /// Inputs that ran (each natively and in at least one tier).
    pub inputs: usize,
    /// Inputs that faulted natively (fault kinds compared).
    pub native_faults: usize,
    /// Native faults by mnemonic and kind.
    pub faults_by: BTreeMap<String, usize>,
    /// Skipped forms by reason.
    pub skipped: BTreeMap<String, Vec<Code>>,
    /// Forms whose every instance the lifter refuses.
    pub not_lifted: Vec<Code>,
    /// Forms where the lifter refuses some instances: (form, refused, total).
    pub partly_lifted: Vec<(Code, usize, usize)>,
    /// Failing forms by mnemonic: (forms, failing inputs, printed reports).
    pub failures: BTreeMap<String, (Vec<Code>, usize, Vec<String>)>,
}

impl GroupReport {
    /// A printable summary: skip list, unlifted forms, failures with reports.
    pub fn summary(&self, name: &str) -> String {
        let mut s = format!(
            "== {name}: {} forms run, {} inputs ({} fault natively), {} failing mnemonics\n",
            self.forms,
            self.inputs,
            self.native_faults,
            self.failures.len()
        );
        let skipped: usize = self.skipped.values().map(Vec::len).sum();
        s += &format!("-- skipped {skipped} forms:\n");
        for (why, codes) in &self.skipped {
            let names: Vec<String> = codes.iter().take(8).map(|c| format!("{c:?}")).collect();
            let more = if codes.len() > 8 {
                format!(" ... (+{})", codes.len() - 8)
            } else {
                String::new()
            };
            s += &format!("   {why}: {} [{}{more}]\n", codes.len(), names.join(", "));
        }
        if !self.faults_by.is_empty() {
            let v: Vec<String> = self.faults_by.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            s += &format!("-- native faults (compared as faults): {}\n", v.join(", "));
        }
        if !self.not_lifted.is_empty() {
            let names: Vec<String> = self.not_lifted.iter().map(|c| format!("{c:?}")).collect();
            s += &format!("-- lifter refuses {} forms: {}\n", names.len(), names.join(", "));
        }
        if !self.partly_lifted.is_empty() {
            let v: Vec<String> =
                self.partly_lifted.iter().map(|(c, r, t)| format!("{c:?} ({r}/{t})")).collect();
            s += &format!("-- lifter refuses some instances of: {}\n", v.join(", "));
        }
        for (m, (codes, n, reports)) in &self.failures {
            s += &format!("-- FAIL {m}: {} forms, {n} failing inputs\n", codes.len());
            for r in reports {
                s += &format!("{r}\n");
            }
        }
        s
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether `code` passes `BLOCKSCOPE_INSN_FILTER`.
pub fn filter_accepts(code: Code) -> bool {
    let Ok(f) = std::env::var("BLOCKSCOPE_INSN_FILTER") else { return true };
    let m = format!("{:?}", code.mnemonic()).to_lowercase();
    let c = format!("{code:?}").to_lowercase();
    f.split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .any(|s| s == m || s == c)
}

/// Run every form in `codes` and report.
pub fn run_forms(codes: &[Code]) -> GroupReport {
    let mut rep = GroupReport::default();
    let mut runner = NativeRunner::new();
    let l = runner.layout();
    let place = Placement::new(&l);
    let per_form = env_usize("BLOCKSCOPE_INSN_STATES", 512).max(1);
    let jit_every = env_usize("BLOCKSCOPE_INSN_JIT_EVERY", 4).max(1);
    let mut info = InstructionInfoFactory::new();
    for &code in codes {
        let mut rng = Rng::new(hash_str(&format!("{code:?}")));
        let form = match instances(code, &l, &place, &mut rng) {
            Ok(f) => f,
            Err(why) => {
                rep.skipped.entry(why).or_default().push(code);
                continue;
            }
        };
        let n_inst = form.instances.len();
        let per_inst = per_form.div_ceil(n_inst).max(2);
        let mut lifted_any = false;
        let mut ran_form = false;
        let mut refused = 0;
        'inst: for (ii, ins) in form.instances.iter().enumerate() {
            let snip = match assemble(ins, &l, &place) {
                Ok(s) => s,
                Err(why) => {
                    rep.skipped.entry(why).or_default().push(code);
                    continue;
                }
            };
            match catch_unwind(|| blockscope::frontend::lift_probe(&snip.insn)) {
                Ok(true) => {}
                Ok(false) => {
                    refused += 1;
                    continue;
                }
                Err(p) => {
                    let e = failure(&mut rep, code);
                    e.1 += 1;
                    if e.2.len() < REPORTS_PER_MNEMONIC {
                        e.2.push(format!(
                            "{}: lifter panicked: {}",
                            describe(&snip),
                            panic_msg(&*p)
                        ));
                    }
                    ran_form = true;
                    lifted_any = true;
                    continue;
                }
            }
            lifted_any = true;
            ran_form = true;
            runner.set_code(&snip.code);
            let used = info.info(&snip.insn).used_memory().to_vec();
            let mut base = vec![0u8; SCRATCH_LEN];
            rng.fill(&mut base);
            for j in 0..per_inst {
                let edge = (j < per_inst.div_ceil(3)).then_some(ii * 11 + j);
                let input = make_input(&snip.insn, &used, &l, &place, &base, &mut rng, edge);
                let both = j < 2 || j % jit_every == 0;
                let tiers: &[Tier] = if both { &TIERS } else { &TIERS[..1] };
                let r =
                    catch_unwind(AssertUnwindSafe(|| run_input(&mut runner, &snip, &input, tiers)));
                rep.inputs += 1;
                let mism = match r {
                    Ok((native, m)) => {
                        if let Outcome::Fault(k) = native {
                            rep.native_faults += 1;
                            let kind = format!("{k:?}");
                            let kind = kind.split('(').next().unwrap_or_default();
                            let key = format!("{} {kind}", mnemonic_name(code.mnemonic()));
                            *rep.faults_by.entry(key).or_default() += 1;
                        }
                        m
                    }
                    Err(p) => {
                        let e = failure(&mut rep, code);
                        e.1 += 1;
                        if e.2.len() < REPORTS_PER_MNEMONIC {
                            e.2.push(format!(
                                "{}: emulator panicked: {}",
                                describe(&snip),
                                panic_msg(&*p)
                            ));
                        }
                        continue 'inst;
                    }
                };
                if let Some(m) = mism.first() {
                    let e = failure(&mut rep, code);
                    e.1 += 1;
                    if e.2.len() < REPORTS_PER_MNEMONIC {
                        e.2.push(report(&snip, &input, m));
                    }
                }
            }
        }
        if ran_form {
            rep.forms += 1;
        }
        if !lifted_any {
            rep.not_lifted.push(code);
        } else if refused > 0 {
            rep.partly_lifted.push((code, refused, n_inst));
        }
    }
    rep
}

fn describe(s: &crate::case::Snippet) -> String {
    format!("{}  [{}]", crate::case::disasm(&s.insn), crate::compare::hex(&s.bytes))
}

fn panic_msg(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn failure(rep: &mut GroupReport, code: Code) -> &mut (Vec<Code>, usize, Vec<String>) {
    let e = rep.failures.entry(mnemonic_name(code.mnemonic())).or_default();
    if e.0.last() != Some(&code) {
        e.0.push(code);
    }
    e
}

fn mnemonic_name(m: Mnemonic) -> String {
    format!("{m:?}").to_lowercase()
}

/// Harness self-check: run a few inputs of every runnable form in `codes` natively twice
/// (no emulator) and return the forms run and those whose two runs differ. Exercises the
/// generator and the native runner on forms the frontend does not lift yet.
pub fn native_selfcheck(codes: &[Code], inputs_per_form: usize) -> (usize, Vec<String>) {
    let mut runner = NativeRunner::new();
    let l = runner.layout();
    let place = Placement::new(&l);
    let mut info = InstructionInfoFactory::new();
    let (mut ran, mut bad) = (0, Vec::new());
    for &code in codes {
        let mut rng = Rng::new(hash_str(&format!("{code:?}")));
        let Ok(form) = instances(code, &l, &place, &mut rng) else { continue };
        ran += 1;
        let step = form.instances.len().div_ceil(inputs_per_form).max(1);
        for (ii, ins) in form.instances.iter().enumerate().step_by(step) {
            let Ok(snip) = assemble(ins, &l, &place) else { continue };
            runner.set_code(&snip.code);
            let used = info.info(&snip.insn).used_memory().to_vec();
            let mut base = vec![0u8; SCRATCH_LEN];
            rng.fill(&mut base);
            let input = make_input(&snip.insn, &used, &l, &place, &base, &mut rng, Some(ii));
            let a = runner.run(snip.entry, &input.regs, &input.mem);
            let b = runner.run(snip.entry, &input.regs, &input.mem);
            if a != b {
                bad.push(format!(
                    "{}  [{}]",
                    crate::case::disasm(&snip.insn),
                    crate::compare::hex(&snip.bytes)
                ));
            }
        }
    }
    (ran, bad)
}
