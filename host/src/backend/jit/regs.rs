//! Guest slots and temporaries as Cranelift variables.
//!
//! Every guest slot (< `GUEST_SLOTS`) a block touches is a `Variable`: loaded from
//! `CpuState` on first read, kept in SSA values afterwards, and stored back only when dirty,
//! at exits, before helpers that read or write state, and on cold paths. Temporaries are
//! variables too (cranelift-frontend turns them into plain SSA values; a block has no
//! loops, so no phis appear). The `slots[GUEST_SLOTS..]` area the interpreter uses for
//! temporaries is written only by a resume exit, which hands the rest of the block to the
//! interpreter (`lower::resume_exit`).
//!
//! Which slots are loaded and which are dirty is known at compile time, because a block is
//! a tree: a straight main path with cold side paths that never rejoin it. `SlotState` is
//! that knowledge at one program point; a side path starts from a copy of the main path's
//! state and changes only its copy.

use crate::cpu::{CpuState, GUEST_SLOTS};
use crate::ir::Slot;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::{FunctionBuilder, Variable};

/// Which guest slots are cached in variables, and which of those differ from `CpuState`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SlotState {
    /// Bit `s`: slot `s` has a current value in its variable.
    pub loaded: u64,
    /// Bit `s`: the variable holds a value not yet stored to `CpuState`.
    pub dirty: u64,
}

const _: () = assert!(GUEST_SLOTS == 64, "SlotState uses one u64 bit per guest slot");

/// The variables of one function being built.
pub(super) struct Regs {
    guest: [Option<Variable>; GUEST_SLOTS],
    temps: Vec<Option<Variable>>,
    /// The `*mut CpuState` function argument.
    cpu: Value,
}

/// Byte offset of slot `s` in `CpuState`.
fn slot_offset(s: usize) -> i32 {
    const BASE: usize = std::mem::offset_of!(CpuState, slots);
    const _: () = assert!(BASE + (crate::cpu::SLOT_MASK + 1) * 8 < i32::MAX as usize);
    (BASE + s * 8) as i32
}

impl Regs {
    pub(super) fn new(cpu: Value, temps: u16) -> Regs {
        Regs { guest: [None; GUEST_SLOTS], temps: vec![None; temps as usize], cpu }
    }

    fn var(&mut self, fb: &mut FunctionBuilder<'_>, s: Slot) -> Variable {
        let cell = if s.is_guest() {
            &mut self.guest[s.index()]
        } else {
            let t = s.index() - GUEST_SLOTS;
            if t >= self.temps.len() {
                // The verifier bounds temporaries by `Block::temps`; tolerate blocks that
                // were not verified by growing the table instead of panicking.
                self.temps.resize(t + 1, None);
            }
            &mut self.temps[t]
        };
        *cell.get_or_insert_with(|| fb.declare_var(types::I64))
    }

    /// The current value of `s`.
    pub(super) fn read(
        &mut self,
        fb: &mut FunctionBuilder<'_>,
        st: &mut SlotState,
        s: Slot,
    ) -> Value {
        let var = self.var(fb, s);
        if s.is_guest() {
            let bit = 1u64 << s.index();
            if st.loaded & bit == 0 {
                let v = fb.ins().load(
                    types::I64,
                    MemFlagsData::trusted(),
                    self.cpu,
                    slot_offset(s.index()),
                );
                fb.def_var(var, v);
                st.loaded |= bit;
            }
        }
        fb.use_var(var)
    }

    /// Set `s` to `v`.
    pub(super) fn write(
        &mut self,
        fb: &mut FunctionBuilder<'_>,
        st: &mut SlotState,
        s: Slot,
        v: Value,
    ) {
        let var = self.var(fb, s);
        fb.def_var(var, v);
        if s.is_guest() {
            let bit = 1u64 << s.index();
            st.loaded |= bit;
            st.dirty |= bit;
        }
    }

    /// Store every dirty guest slot to `CpuState`; afterwards none is dirty.
    pub(super) fn write_back(&mut self, fb: &mut FunctionBuilder<'_>, st: &mut SlotState) {
        let mut d = st.dirty;
        while d != 0 {
            let s = d.trailing_zeros() as usize;
            d &= d - 1;
            let var = self.var(fb, Slot(s as u16));
            let v = fb.use_var(var);
            fb.ins().store(MemFlagsData::trusted(), v, self.cpu, slot_offset(s));
        }
        st.dirty = 0;
    }

    /// Forget every cached guest slot (after a helper that writes state): the next read
    /// loads it again. Dirty slots must have been written back first.
    pub(super) fn forget(st: &mut SlotState) {
        debug_assert_eq!(st.dirty, 0, "forgetting dirty slots loses guest writes");
        *st = SlotState::default();
    }

    /// Store `v` to slot `s` of `CpuState` (a temporary, for the interpreter: a resume
    /// exit hands it the block's state in the middle).
    pub(super) fn store_slot(&self, fb: &mut FunctionBuilder<'_>, s: usize, v: Value) {
        debug_assert!(s <= crate::cpu::SLOT_MASK, "slot {s} outside CpuState::slots");
        fb.ins().store(MemFlagsData::trusted(), v, self.cpu, slot_offset(s));
    }

    /// Store `v` to `%rip` in `CpuState` directly (exits set it after the write-back).
    pub(super) fn store_rip(&self, fb: &mut FunctionBuilder<'_>, v: Value) {
        fb.ins().store(
            MemFlagsData::trusted(),
            v,
            self.cpu,
            slot_offset(crate::cpu::slot::RIP as usize),
        );
    }
}
