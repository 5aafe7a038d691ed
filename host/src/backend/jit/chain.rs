//! Chaining compiled blocks without patching code, and the memory that makes it safe.
//!
//! - **Code generations.** All code compiled between two cache flushes forms one
//!   `CodeGen`: its `CodeRegion`s, the entry trampoline, and the *data* the code refers to
//!   by address (exit slots and fault sites). A generation is freed only when nothing holds
//!   it: every `CompiledTb` holds its generation, a vCPU's indirect table holds the
//!   generation of the code it lists, and a `LinkPoint` holds the generation of its slot.
//!   Chains and table entries never cross generations, so code reachable from a running
//!   block always belongs to a generation someone holds. This is the "free at quiescence"
//!   rule: a full cache is flushed by starting a new generation; the old one goes away when
//!   the last vCPU has left its code and the exec loop has dropped its blocks.
//! - **Exit slots.** Each direct exit (a `jump`, either side of a `branch`, an `exit_if`)
//!   of a compiled block loads its successor's entry from an `ExitSlot` (data, never code).
//!   Zero means unlinked: the block returns to the dispatcher, reporting the slot
//!   (`JitCtx::last_exit`), and the dispatcher links it once the successor is compiled.
//!   Every `CompiledTb` lists the slots linked *into* it; invalidation clears them all
//!   (`CompiledTb::kill`), under the same lock `link_from` takes, so no link into a dead
//!   block can appear afterwards.
//! - **Indirect table.** Indirect jumps and returns look their target up in a per-vCPU,
//!   direct-mapped pc → code table before leaving compiled code. Only its vCPU writes it,
//!   between runs, so it needs no synchronisation; the exec loop clears it whenever blocks
//!   are invalidated.
//! - **Budget.** Every chained transfer decrements `JitCtx::budget`; at zero the code
//!   returns to the dispatcher, so a vCPU stuck in a chained loop still notices
//!   interrupts, invalidations and flushes.

use super::code::CodeRegion;
use super::exits::FaultSite;
use crate::ir::Block;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One direct exit of compiled code.
#[repr(C)]
#[derive(Debug)]
pub struct ExitSlot {
    /// Entry of the linked successor, or 0.
    pub(super) target: AtomicUsize,
    /// Guest pc the exit goes to.
    pub(super) pc: u64,
}

/// The tier-up cell of a block compiled quickly (`Jit::compile_baseline`). Its code
/// counts down `left` on every entry and, reaching zero, returns `kind::HOT` once, so the
/// run loop has it compiled again, optimised. Once that code exists, `forward` holds its
/// entry and the quick code tail-calls it on entry: paths that still lead to the quick
/// code (an indirect-table entry, a link made before) reach the optimised code instead.
#[repr(C)]
pub(super) struct HotCell {
    pub left: AtomicU64,
    pub forward: AtomicUsize,
}

/// Byte offsets of the `HotCell` fields (read and written by generated code).
pub(super) const HOT_LEFT: i32 = std::mem::offset_of!(HotCell, left) as i32;
pub(super) const HOT_FORWARD: i32 = std::mem::offset_of!(HotCell, forward) as i32;

/// Byte offset of `ExitSlot::target` (read by generated code).
pub(super) const SLOT_TARGET: i32 = std::mem::offset_of!(ExitSlot, target) as i32;

/// An entry of the indirect table. An empty entry holds a pc that hashes to another
/// entry (`empty_entry`), so no probe can ever match it, whatever value a guest jumps to.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct IndEntry {
    pub pc: u64,
    pub code: usize,
}

/// log2 of the number of indirect-table entries.
pub(super) const IND_BITS: u32 = 14;
/// Number of indirect-table entries.
pub(super) const IND_SIZE: usize = 1 << IND_BITS;
/// Shift used by the table hash `(pc ^ (pc >> IND_SHIFT)) & (IND_SIZE - 1)`.
pub(super) const IND_SHIFT: i64 = 16;

/// The table slot for `pc` (the generated code computes the same).
pub(super) const fn ind_index(pc: u64) -> usize {
    ((pc ^ (pc >> IND_SHIFT)) as usize) & (IND_SIZE - 1)
}

/// The empty entry at index `i`: its pc `i ^ 1` hashes to index `i ^ 1`, never `i`.
const fn empty_entry(i: usize) -> IndEntry {
    IndEntry { pc: (i ^ 1) as u64, code: 0 }
}

const _: () = assert!(ind_index(empty_entry(5).pc) != 5 && (IND_SHIFT as u32) > IND_BITS);

/// A table that never hits: runs without chaining use it.
pub(super) static EMPTY_TABLE: [IndEntry; IND_SIZE] = {
    let mut t = [IndEntry { pc: 0, code: 0 }; IND_SIZE];
    let mut i = 0;
    while i < IND_SIZE {
        t[i] = empty_entry(i);
        i += 1;
    }
    t
};

static NEXT_GEN: AtomicU64 = AtomicU64::new(1);

/// All code and code-referenced data compiled between two flushes.
#[allow(
    clippy::vec_box,
    reason = "generated code embeds each element's address: it must never move"
)]
pub struct CodeGen {
    id: u64,
    regions: Mutex<Vec<Arc<CodeRegion>>>,
    slots: Mutex<Vec<Box<ExitSlot>>>,
    sites: Mutex<Vec<Box<FaultSite>>>,
    /// Blocks resume exits hand to the interpreter.
    blocks: Mutex<Vec<Arc<Block>>>,
    /// Tier-up cells of quickly compiled blocks.
    hot: Mutex<Vec<Box<HotCell>>>,
    /// Host address of the `fn(ctx, cpu, entry) -> u64` trampoline (0 until compiled).
    trampoline: AtomicUsize,
    /// Host addresses of the preserve-all wrappers of `rt_load` and `rt_store` (0 until
    /// compiled): the cold paths of inline guest accesses call them.
    preserve_all: [AtomicUsize; 2],
    /// Code bytes handed out so far.
    used: AtomicUsize,
}

impl CodeGen {
    pub(super) fn new() -> CodeGen {
        CodeGen {
            id: NEXT_GEN.fetch_add(1, Ordering::Relaxed),
            regions: Mutex::new(Vec::new()),
            slots: Mutex::new(Vec::new()),
            sites: Mutex::new(Vec::new()),
            blocks: Mutex::new(Vec::new()),
            hot: Mutex::new(Vec::new()),
            trampoline: AtomicUsize::new(0),
            preserve_all: [AtomicUsize::new(0), AtomicUsize::new(0)],
            used: AtomicUsize::new(0),
        }
    }

    /// A process-unique number for this generation.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Code bytes compiled into this generation.
    pub fn code_bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Number of code regions mapped for this generation.
    pub fn region_count(&self) -> usize {
        self.regions.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn add_region(&self, r: Arc<CodeRegion>) {
        self.regions.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    pub(super) fn note_code(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Keep a compiled block's exit data alive for the generation's lifetime.
    #[allow(
        clippy::vec_box,
        reason = "generated code embeds each element's address: it must never move"
    )]
    pub(super) fn adopt(
        &self,
        slots: Vec<Box<ExitSlot>>,
        sites: Vec<Box<FaultSite>>,
        blocks: Vec<Arc<Block>>,
        hot: Option<Box<HotCell>>,
    ) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).extend(slots);
        self.sites.lock().unwrap_or_else(|e| e.into_inner()).extend(sites);
        if !blocks.is_empty() {
            self.blocks.lock().unwrap_or_else(|e| e.into_inner()).extend(blocks);
        }
        if let Some(h) = hot {
            self.hot.lock().unwrap_or_else(|e| e.into_inner()).push(h);
        }
    }

    pub(super) fn set_trampoline(&self, p: usize) {
        self.trampoline.store(p, Ordering::Release);
    }

    pub(super) fn trampoline(&self) -> usize {
        self.trampoline.load(Ordering::Acquire)
    }

    pub(super) fn set_preserve_all(&self, load: usize, store: usize) {
        self.preserve_all[0].store(load, Ordering::Release);
        self.preserve_all[1].store(store, Ordering::Release);
    }

    /// The preserve-all wrappers of `rt_load` and `rt_store` (zeros before compiled).
    pub(super) fn preserve_all(&self) -> [usize; 2] {
        [self.preserve_all[0].load(Ordering::Acquire), self.preserve_all[1].load(Ordering::Acquire)]
    }
}

impl std::fmt::Debug for CodeGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeGen").field("id", &self.id).field("bytes", &self.code_bytes()).finish()
    }
}

/// The blocks linked into one compiled block, and whether it is dead.
#[derive(Debug, Default)]
pub(super) struct Incoming {
    pub dead: bool,
    /// Addresses of the `ExitSlot`s (same generation) that point at the block.
    pub from: Vec<usize>,
}

/// An unlinked exit a run left through: link it to the successor once that is compiled.
#[derive(Debug)]
pub struct LinkPoint {
    /// Address of the `ExitSlot`, in `gen`'s arena.
    pub(super) slot: usize,
    /// Guest pc the exit goes to.
    pub(super) pc: u64,
    /// Keeps the slot alive.
    pub(super) gen: Arc<CodeGen>,
}

impl LinkPoint {
    /// Guest pc the exit goes to.
    pub fn target_pc(&self) -> u64 {
        self.pc
    }
}

/// Per-vCPU chaining state: the indirect table and the chain budget.
pub struct ChainState {
    table: Box<[IndEntry]>,
    table_gen: Option<Arc<CodeGen>>,
    /// Chained transfers allowed per run before returning to the dispatcher.
    pub budget: u64,
    /// Whether the last run returned because it used up its budget (a hot loop).
    pub(super) spent: bool,
    /// ... on a loop edge inside one function (the loop is compiled as one already).
    pub(super) spent_in_loop: bool,
    /// The guest pc of the block whose indirect exit the last run returned through (0 if
    /// none).
    pub(super) indirect_from: u64,
    /// Set once the table has entries (cleared by `clear`).
    dirty: AtomicBool,
    /// Whether the last run returned because a quickly compiled block became hot.
    pub(super) hot: bool,
}

/// Default `ChainState::budget`.
pub const DEFAULT_BUDGET: u64 = 1 << 14;

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            table: EMPTY_TABLE.to_vec().into_boxed_slice(),
            table_gen: None,
            budget: DEFAULT_BUDGET,
            spent: false,
            spent_in_loop: false,
            indirect_from: 0,
            dirty: AtomicBool::new(false),
            hot: false,
        }
    }
}

impl ChainState {
    /// Forget every indirect-table entry (after invalidation or a flush).
    pub fn clear(&mut self) {
        if self.dirty.swap(false, Ordering::Relaxed) {
            self.table.copy_from_slice(&EMPTY_TABLE);
        }
        self.table_gen = None;
    }

    /// Whether the last `run_chained` stopped because its budget was used up: the code it
    /// ran is looping, a good place for a hot region.
    pub fn budget_spent(&self) -> bool {
        self.spent
    }

    /// The guest pc of the block whose indirect jump the last run returned through, if it
    /// did (the run loop profiles its targets).
    pub fn indirect_from(&self) -> Option<u64> {
        (self.indirect_from != 0).then_some(self.indirect_from)
    }

    /// Whether the last run returned because the quickly compiled block at `%rip` has run
    /// often enough to be compiled again, optimised (`Jit::compile_region` of it alone).
    pub fn hot_block(&self) -> bool {
        self.hot
    }

    /// Whether that happened on a loop edge inside one compiled function, rather than on
    /// a chained transfer between functions.
    pub fn budget_spent_in_loop(&self) -> bool {
        self.spent_in_loop
    }

    /// Whether the table's entries (if any) belong to `gen`.
    pub(super) fn table_gen_is(&self, gen: &Arc<CodeGen>) -> bool {
        self.table_gen.as_ref().is_none_or(|g| Arc::ptr_eq(g, gen))
    }

    pub(super) fn table_ptr(&self) -> *const IndEntry {
        self.table.as_ptr()
    }

    /// Record that indirect jumps to `pc` may go straight to `entry` (of generation `gen`).
    pub(super) fn remember(&mut self, pc: u64, entry: usize, gen: &Arc<CodeGen>) {
        if !self.table_gen.as_ref().is_some_and(|g| Arc::ptr_eq(g, gen)) {
            self.clear();
            self.table_gen = Some(gen.clone());
        }
        self.table[ind_index(pc)] = IndEntry { pc, code: entry };
        self.dirty.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ChainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainState")
            .field("gen", &self.table_gen)
            .field("budget", &self.budget)
            .finish()
    }
}
