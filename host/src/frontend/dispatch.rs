//! The lifter table: every family file declares its rows with `lifts!`; this file
//! concatenates them into one array indexed by `iced_x86::Mnemonic`, built once.

use super::cx::{LiftCx, Unsupported};
use iced_x86::{Code, Mnemonic};
use std::sync::OnceLock;

/// A lifter: lifts `cx.i` or says the form is unsupported.
pub type LiftFn = fn(&mut LiftCx<'_>) -> Result<(), Unsupported>;

/// Declare a family's rows: `lifts! { Add => lift_add, Sub => lift_sub }`.
macro_rules! lifts {
    ($($m:ident => $f:path),* $(,)?) => {
        pub(super) const LIFTS: &[(iced_x86::Mnemonic, super::dispatch::LiftFn)] =
            &[$((iced_x86::Mnemonic::$m, $f)),*];
    };
}
pub(crate) use lifts;

fn families() -> &'static [&'static [(Mnemonic, LiftFn)]] {
    &[
        super::alu::LIFTS,
        super::atomic::LIFTS,
        super::bit::LIFTS,
        super::branch::LIFTS,
        super::cmov_set::LIFTS,
        super::misc::LIFTS,
        super::muldiv::LIFTS,
        super::shift::LIFTS,
        super::stack::LIFTS,
        super::string::LIFTS,
        super::system::LIFTS,
        super::sse::LIFTS,
        super::sse_int::LIFTS,
        super::sse_mov::LIFTS,
        super::sse_str::LIFTS,
        super::x87::LIFTS,
        super::sse_fp::LIFTS,
        super::sse_cvt::LIFTS,
        super::fxsave::LIFTS,
    ]
}

/// Per mnemonic, the lifters of every family that claims it, in family order. Most
/// mnemonics have one; a few name two instructions (`MOVSD`/`CMPSD` are both a string op
/// and an SSE2 scalar op), and the translator tries each until one accepts the form.
fn table() -> &'static [Vec<LiftFn>] {
    static T: OnceLock<Vec<Vec<LiftFn>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = vec![Vec::new(); Mnemonic::values().count()];
        for fam in families() {
            for &(m, f) in fam.iter() {
                t[m as usize].push(f);
            }
        }
        t
    })
}

/// The lifters for a mnemonic (empty if none).
pub(crate) fn lifters(m: Mnemonic) -> &'static [LiftFn] {
    &table()[m as usize]
}

/// Whether some family lifts `m`.
pub fn is_lifted(m: Mnemonic) -> bool {
    !lifters(m).is_empty()
}

/// All mnemonics with a lifter.
pub fn lifted_mnemonics() -> Vec<Mnemonic> {
    let mut v: Vec<Mnemonic> = families().iter().flat_map(|f| f.iter().map(|r| r.0)).collect();
    v.sort_by_key(|m| *m as u32);
    v.dedup();
    v
}

/// All 64-bit-mode `Code`s whose mnemonic has a lifter. A lifter may still refuse a form
/// (privileged, unusual operands); `lift_probe` tells for a concrete instruction.
pub fn lifted_codes() -> Vec<Code> {
    Code::values().filter(|c| is_lifted(c.mnemonic()) && c.op_code().mode64()).collect()
}
