//! The IR verifier: slots in range, temporaries defined before use, instruction metadata
//! ordered. It runs on every block in debug builds and on every block a plugin changed.

use super::block::{Block, Term};
use super::op::Op;
use crate::cpu::{GUEST_SLOTS, MAX_TEMPS};
use thiserror::Error;

/// Why a block was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A slot number beyond the guest state and the block's temporaries.
    #[error("op {op}: slot {slot} out of range")]
    SlotOutOfRange {
        /// Op index.
        op: usize,
        /// Slot number.
        slot: u16,
    },
    /// A temporary read before any op wrote it.
    #[error("op {op}: temporary t{temp} read before it is written")]
    UndefinedTemp {
        /// Op index.
        op: usize,
        /// Temporary number.
        temp: usize,
    },
    /// Too many temporaries.
    #[error("block uses {0} temporaries, the limit is {MAX_TEMPS}")]
    TooManyTemps(usize),
    /// Instruction metadata whose op ranges are out of order.
    #[error("instruction metadata out of order at entry {0}")]
    BadInsnMeta(usize),
    /// A plugin-memory access whose offset is not aligned to its width, or whose index
    /// mask is not a power of two minus one.
    #[error("op {0}: misaligned plugin memory access")]
    BadPluginAccess(usize),
}

/// Check a block.
pub fn verify(b: &Block) -> Result<(), VerifyError> {
    let temps = b.temps as usize;
    if temps > MAX_TEMPS {
        return Err(VerifyError::TooManyTemps(temps));
    }
    let mut defined = vec![false; temps];
    let check = |op: usize, s: u16, defined: &[bool], is_src: bool| -> Result<(), VerifyError> {
        let s_us = s as usize;
        if s_us < GUEST_SLOTS {
            return Ok(());
        }
        let t = s_us - GUEST_SLOTS;
        if t >= temps {
            return Err(VerifyError::SlotOutOfRange { op, slot: s });
        }
        if is_src && !defined[t] {
            return Err(VerifyError::UndefinedTemp { op, temp: t });
        }
        Ok(())
    };
    for (i, op) in b.ops.iter().enumerate() {
        if let Op::PluginLoad { w, off, mask, .. } | Op::PluginStore { w, off, mask, .. } = *op {
            if !(off as usize).is_multiple_of(w.bytes()) || (mask as u64 + 1).count_ones() != 1 {
                return Err(VerifyError::BadPluginAccess(i));
            }
        }
        let mut err = Ok(());
        op.for_each_src(|s| {
            if err.is_ok() {
                err = check(i, s.0, &defined, true);
            }
        });
        err?;
        if let Some(d) = op.dst() {
            check(i, d.0, &defined, false)?;
            if !d.is_guest() {
                defined[d.index() - GUEST_SLOTS] = true;
            }
        }
    }
    let n = b.ops.len();
    match b.term {
        Term::Branch { c, .. } => check(n, c.0, &defined, true)?,
        Term::Indirect { target, .. } => check(n, target.0, &defined, true)?,
        _ => {}
    }
    for (i, w) in b.insns.windows(2).enumerate() {
        // Ops stay in instruction order; pcs need not rise (a block may go on at the
        // target of an elided `jmp`, backwards).
        if w[0].first_op > w[1].first_op {
            return Err(VerifyError::BadInsnMeta(i + 1));
        }
    }
    Ok(())
}
