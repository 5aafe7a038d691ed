//! IR block → Cranelift function, with exactly `interp::run_block`'s semantics.
//!
//! The function is `fn(ctx: *mut JitCtx, cpu: *mut CpuState) -> u64` (see `exits` for the
//! returned code). Its shape is a tree: the main path runs the ops in order and ends in the
//! terminator; every op that can stop the block (a shim status, `FaultIf`, `ExitIf`)
//! branches to a cold side path that writes back dirty slots, sets `%rip` and returns.
//! Side paths never rejoin the main path, so which slots are cached and dirty is known
//! statically at every point (`regs::SlotState`).
//!
//! The interpreter's stop rules, by *mode* (the mode a side path's remaining ops run in):
//! - `Normal`: a fault in instruction k runs k's fix-ups and leaves at k's pc with
//!   `next = pc + len`; a taken `ExitIf` leaves to its target; after a store, atomic or
//!   helper that reports `code_written`, the rest of instruction k runs in `CwMid(k)` and
//!   the block leaves before k+1 with `CodeWritten` (running k+1's fix-ups), or, when k is
//!   the last instruction, the rest of the block runs in `CwLast`.
//! - `CwMid(k)`: a fault runs k's fix-ups with `next` = k+1's pc; a further code-write
//!   report is not a stop (the flag stays set until the exec loop takes it); the end of k
//!   leaves with `CodeWritten`; `ExitIf` leaves normally.
//! - `CwLast`: as `Normal` for faults and exits (a REP op's restart exit must be taken);
//!   further code-write reports are not stops; the end of the block takes the terminator.
//!
//! The code-written continuation is emitted as a copy of the remaining ops of the
//! instruction on the cold path, so the hot path pays one status test per memory op.
//!
//! Exits (see `chain`): a direct exit loads its `ExitSlot` and tail-calls the linked
//! successor (budget permitting) or returns `JUMP` naming the slot; an indirect exit probes
//! the vCPU's indirect table the same way. Functions use Cranelift's `tail` calling
//! convention so a chain of blocks runs in one host frame.
//!
//! Loops and regions: a function may hold several blocks (a hot region, entered at the
//! first). A direct exit to a block of the function (or a one-block loop's exit to itself)
//! jumps to that block's header inside the function, budget permitting (so does an
//! indirect jump or return whose target equals one of the pcs listed for its block), so guest
//! registers stay in host registers across blocks and iterations. For that every header
//! has the same slot state: every guest slot any block mentions is loaded before the
//! headers, and every slot any block writes is counted dirty; a back edge reloads what a
//! state-writing helper made it forget.
//!
//! User-mode fast path (`direct`): with a page map, a load or store checks the map bytes
//! of its first and last page inline and, when they allow it, is one host access. When
//! they do not (a fault, a write to a code page), the cold path is a *resume exit*: it
//! stores the dirty guest slots and the temporaries the rest of the block reads, and
//! returns `kind::RESUME`; `entry` then has the interpreter run the block on from that op,
//! with its exact fault and code-write handling. (Before, the cold path called the shim
//! and carried a copy of the rest of the instruction for the code-write case: a third of
//! all generated code, and of compile time.) Without a page map, the access calls the raw
//! accessor for its width and, on a non-zero status, is redone through the generic shim;
//! the two paths rejoin, the only place where the function is not a tree.

use super::arith;
use super::chain::{
    ind_index, ExitSlot, HotCell, HOT_FORWARD, HOT_LEFT, IND_SHIFT, IND_SIZE, SLOT_TARGET,
};
use super::exits::{kind, FaultSite};
use super::regs::{Regs, SlotState};
use super::rt::{
    rmw_code, status, RtFn, CTX_BUDGET, CTX_FAULT_SITE, CTX_IND_SRC, CTX_IND_TABLE, CTX_LAST_EXIT,
    CTX_RESUME, CTX_RET_STATUS, CTX_RET_VALUE, CTX_SPENT_IN_LOOP,
};
use crate::cpu::{Fault, Width};
use crate::ir::{Block, Op, Slot, Term};
use crate::mem::DirectAccessors;
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, AbiParam, InstBuilder, MemFlagsData, SigRef, Signature, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// What `build` hands back: the data the code refers to by address. The boxes must be
/// kept alive (by the code generation) for as long as the code can run.
#[allow(
    clippy::vec_box,
    reason = "generated code embeds each element's address: it must never move"
)]
pub(super) struct ExitData {
    pub slots: Vec<Box<ExitSlot>>,
    pub sites: Vec<Box<FaultSite>>,
    /// The blocks a resume exit names (`kind::RESUME`): the interpreter finishes them.
    pub blocks: Vec<Arc<Block>>,
    /// The tier-up cell of a quickly compiled block (`tier_up_prologue`).
    pub hot: Option<Box<HotCell>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    CwMid(usize),
    CwLast,
}

struct Lower<'a, 'f> {
    fb: FunctionBuilder<'f>,
    b: &'a Arc<Block>,
    regs: Regs,
    ctx: Value,
    cpu: Value,
    data: ExitData,
    slot_of_pc: HashMap<u64, usize>,
    site_of: HashMap<(Option<Fault>, u64), usize>,
    sigs: Vec<(RtFn, SigRef)>,
    raw_sigs: [Option<SigRef>; 2],
    tail_sig: SigRef,
    direct: Option<DirectAccessors>,
    panic_block: Option<ir::Block>,
    /// The one `return`: every exit that returns to the dispatcher jumps here with its
    /// code, so the epilogue (restoring the callee-saved registers) is emitted once.
    ret_block: Option<ir::Block>,
    /// Loop headers of the region's blocks by pc (empty when not looping).
    heads: Vec<(u64, ir::Block)>,
    /// The slot state at every loop header.
    head_st: SlotState,
    /// Exits being emitted must return to the dispatcher (no chaining, no self-loop):
    /// set while lowering what runs after a code write, so the loop can invalidate.
    no_chain: bool,
    /// Per region block: the pcs its indirect terminator tests before leaving, in order.
    indirect: &'a [Vec<u64>],
    /// Index of the block being lowered.
    cur: usize,
    /// Preserve-all wrappers of `rt_load` and `rt_store` (0: none, call the shims).
    preserve_all: [usize; 2],
    /// Their signatures, once imported.
    pa_sigs: [Option<SigRef>; 2],
    /// The chain budget left (a function argument, `tb_signature`), in a variable so a
    /// loop's back edge can count it down. Stored to `JitCtx::budget` before every return.
    budget_var: Variable,
    /// In a looping function, plugin-memory words used only as 64-bit scalars (inline
    /// counters) live in variables: `(byte offset, variable)`. They are stored back before
    /// every return, tail call and plugin callback (which may read them), and reloaded
    /// after a callback. A counter in memory would make every iteration wait for the
    /// previous one's store.
    plugin_vars: Vec<(u32, Variable)>,
    /// In a looping function, the one-entry caches of indexed plugin arrays: the entry's
    /// index and value live in variables, so a counter bumped every iteration at the
    /// same index (an edge-coverage map in a loop) is a register add; another index
    /// writes the entry back and loads the new one. Flushed and reloaded as `plugin_vars`.
    plugin_caches: Vec<PluginCache>,
    /// The last cache selection `(cache offset, unmasked index value, block it ended in)`:
    /// a load and store of the same entry in one straight-line piece (an edge counter's
    /// bump) check the cached index once.
    cache_sel: Option<(u32, Value, cranelift_codegen::ir::Block)>,
    /// The plugin memory base loaded in the current Cranelift block, if any.
    base_here: Option<(cranelift_codegen::ir::Block, Value)>,
    /// Load the plugin memory base once for the whole function (see `lower`).
    hoist_base: bool,
    /// A block of this loop reads `%rip`: back edges set it (see `lower`).
    loop_rip: bool,
    /// In a looping function (user mode), per stack load/store site `(block, op index)`:
    /// the variable holding the base of the page the function's stack loads (or stores)
    /// last found allowed, so staying on that page costs one compare (`inline_access`).
    /// Starts at a value no guest address is within a page of.
    site_caches: HashMap<(usize, usize), Variable>,
}

/// A one-entry write-back cache of a plugin array (see `Lower::plugin_caches`).
#[derive(Clone, Copy)]
struct PluginCache {
    off: u32,
    w: Width,
    mask: u32,
    /// The cached entry's index before masking (always valid: entry 0 is loaded at
    /// function entry).
    idx: Variable,
    /// Its value, a variable of width `w`.
    val: Variable,
}

/// How `build` lowers, besides what.
pub(super) struct How {
    /// The user-mode fast path for loads and stores.
    pub direct: Option<DirectAccessors>,
    /// The preserve-all wrappers of `rt_load` and `rt_store` (0: none).
    pub preserve_all: [usize; 2],
    /// The target's frontend configuration.
    pub frontend: TargetFrontendConfig,
    /// Emit the tier-up prologue (quick compiles of one block that does not loop).
    pub tier_up: bool,
}

/// Build the body of `func` (whose signature, `tb_signature`, the caller set) for the
/// region `blocks` (entered at `blocks[0]`; usually a single block). `indirect[k]` lists
/// the region pcs block k's indirect terminator may jump to inside the function (tested in
/// that order; missing means none).
pub(super) fn build(
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    blocks: &[&Arc<Block>],
    indirect: &[Vec<u64>],
    how: How,
) -> ExitData {
    let How { direct, preserve_all, frontend, tier_up } = how;
    let mut fb = FunctionBuilder::new(func, fctx);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    fb.seal_block(entry);
    let (ctx, cpu) = (fb.block_params(entry)[0], fb.block_params(entry)[1]);
    let budget = fb.block_params(entry)[2];
    let budget_var = fb.declare_var(types::I64);
    fb.def_var(budget_var, budget);
    let tail_sig = fb.import_signature(tb_signature());
    let temps = blocks.iter().map(|b| b.temps).max().unwrap_or(0);
    let mut l = Lower {
        fb,
        b: blocks[0],
        regs: Regs::new(cpu, temps),
        ctx,
        cpu,
        data: ExitData { slots: Vec::new(), sites: Vec::new(), blocks: Vec::new(), hot: None },
        slot_of_pc: HashMap::new(),
        site_of: HashMap::new(),
        sigs: Vec::new(),
        raw_sigs: [None; 2],
        tail_sig,
        direct,
        panic_block: None,
        ret_block: None,
        heads: Vec::new(),
        head_st: SlotState::default(),
        no_chain: false,
        indirect,
        cur: 0,
        preserve_all,
        pa_sigs: [None; 2],
        budget_var,
        plugin_vars: Vec::new(),
        plugin_caches: Vec::new(),
        cache_sel: None,
        base_here: None,
        hoist_base: true,
        loop_rip: false,
        site_caches: HashMap::new(),
    };
    let pcs: Vec<u64> = blocks.iter().map(|b| b.pc).collect();
    let loops = exits_to(blocks[0], &pcs)
        || indirect.first().is_some_and(|t| t.iter().any(|p| pcs.contains(p)));
    if blocks.len() == 1 && !loops {
        if tier_up {
            l.tier_up_prologue();
        }
        let mut st = SlotState::default();
        l.lower_ops(0..blocks[0].ops.len(), Mode::Normal, &mut st);
        l.terminator(&mut st);
    } else {
        // A loop (one block jumping to itself) or a region: every guest slot any block
        // mentions is loaded before the headers. `%rip` is part of the loop state only
        // if an op or a fix-up reads it (lifted code never does; helpers may not, see
        // `HelperDesc`): it is then loaded on entry and set to the head's pc by back
        // edges. Otherwise every way back to the run loop stores its own (as in a single
        // block), and a back edge need not set it.
        let (mut used, mut written) = (0, 0);
        for b in blocks {
            let (u, w) = guest_slots(b);
            used |= u;
            written |= w;
        }
        let rip = 1u64 << crate::cpu::slot::RIP;
        l.loop_rip = blocks.iter().any(|b| reads_rip(b));
        if l.loop_rip {
            used |= rip;
            written |= rip;
        }
        let mut st = SlotState::default();
        for s in bits(used) {
            l.read(&mut st, Slot(s));
        }
        l.head_st = SlotState { loaded: used, dirty: written };
        let refs: Vec<&Block> = blocks.iter().map(|b| &***b).collect();
        let plan = plan_plugin_memory(&refs);
        // Plugin memory accessed densely (a trace buffer: several stores per guest
        // access) keeps one base register for the whole function; sparsely (a counter per
        // block), the base is loaded where it is used (`plugin_base`).
        let in_memory = refs
            .iter()
            .flat_map(|b| &b.ops)
            .filter(|op| match **op {
                Op::PluginLoad { off, idx, .. } | Op::PluginStore { off, idx, .. } => {
                    idx.is_some() || !plan.scalars.contains(&off)
                }
                _ => false,
            })
            .count();
        l.hoist_base = in_memory > 2 * refs.len();
        for off in plan.scalars {
            let var = l.fb.declare_var(types::I64);
            l.plugin_vars.push((off, var));
        }
        // Array caches only in a one-block loop, where an edge map's entry is the same on
        // every iteration. In a multi-block region (a switch dispatch loop) successive
        // updates mostly hit other entries: the cache would miss each time, costing more
        // than the plain update it replaces (bytecode under coverage: 1.20x -> 1.5x).
        let arrays = if blocks.len() == 1 { plan.arrays } else { Vec::new() };
        for (off, w, mask) in arrays {
            // The value has the entry's own width, so a byte counter's bump is one narrow
            // add with no re-extension.
            let (idx, val) = (l.fb.declare_var(types::I64), l.fb.declare_var(width_ty(w)));
            l.plugin_caches.push(PluginCache { off, w, mask, idx, val });
        }
        l.reload_plugin_vars();
        if direct.is_some_and(|d| d.page_map != 0) {
            // One cache for all the stack loads of the function and one for its stores:
            // a frame is one or two pages, so the sites share the page they hit, and two
            // loop-carried values instead of one per site (bytecode's dispatch loop had
            // 25, all spilled) leave the guest's registers in registers. Any site may use
            // the page another found allowed: each compare covers its own access.
            let none = l.konst(NO_PAGE);
            let mut caches: [Option<Variable>; 2] = [None, None];
            for (k, b) in blocks.iter().enumerate() {
                for i in stack_sites(b) {
                    let store = matches!(b.ops[i], Op::Store { .. }) as usize;
                    let var = *caches[store].get_or_insert_with(|| {
                        let var = l.fb.declare_var(types::I64);
                        l.fb.def_var(var, none);
                        var
                    });
                    l.site_caches.insert((k, i), var);
                }
            }
        }
        l.heads = blocks.iter().map(|b| (b.pc, l.fb.create_block())).collect();
        l.fb.ins().jump(l.heads[0].1, &[]);
        for (k, b) in blocks.iter().enumerate() {
            l.b = b;
            l.cur = k;
            l.fb.switch_to_block(l.heads[k].1);
            let mut st = l.head_st;
            l.lower_ops(0..b.ops.len(), Mode::Normal, &mut st);
            l.terminator(&mut st);
        }
    }
    if let Some(p) = l.panic_block {
        // One shared exit for every shim that caught a panic: nothing to write back, the
        // panic is re-raised by `entry`.
        l.fb.switch_to_block(p);
        l.ret(kind::PANIC);
    }
    if let Some(r) = l.ret_block {
        l.fb.switch_to_block(r);
        let c = l.fb.block_params(r)[0];
        l.fb.ins().return_(&[c]);
    }
    l.fb.seal_all_blocks();
    l.fb.finalize(frontend);
    l.data
}

/// The initial page of a site cache, so the first access checks the page map: a
/// non-canonical page (no program can use it; a guest access to it is the one that would
/// pass the compare unchecked, and fault on the host instead of being delivered) with no
/// special value (not near 0, -1, or a sign boundary).
const NO_PAGE: u64 = 0x5a5a_5a5a_5a5a_5000;

/// Runs of a quickly compiled block before it asks to be compiled again, optimised
/// (`tier_up_prologue`). A quick compile's code is about half as fast; a block that runs
/// this often outside any loop the region builder sees (a function called from all over,
/// an interpreter's opcode handler reached through returns) pays back the second compile
/// many times over.
pub(super) const TIER_UP_RUNS: u64 = 1 << 13;

/// The loads and stores of `b` whose address is the guest's stack or frame pointer plus
/// a constant or an index (pushes, pops, locals, arrays on the stack): they stay on one
/// page for long stretches, so a site cache pays. (Sites that wander over pages, such as
/// hash-table probes, would pay a cold check on nearly every access; they keep the plain
/// page-map check.)
fn stack_sites(b: &Block) -> Vec<usize> {
    use crate::cpu::slot::{RBP, RSP};
    let stackish = |s: Slot| s.is_guest() && (s.0 == RSP || s.0 == RBP);
    // Temporaries holding stack-or-frame-pointer-plus-constant at the current point.
    let mut based: Vec<Slot> = Vec::new();
    let mut out = Vec::new();
    for (i, op) in b.ops.iter().enumerate() {
        let addr = match *op {
            Op::Load { addr, .. } | Op::Store { addr, .. } => Some(addr),
            _ => None,
        };
        if let Some(a) = addr {
            if stackish(a) || based.contains(&a) {
                out.push(i);
            }
        }
        if let Some(d) = op.dst() {
            let from_stack = match *op {
                Op::BinImm { op: crate::ir::BinOp::Add | crate::ir::BinOp::Sub, a, .. } => {
                    stackish(a) || based.contains(&a)
                }
                // An array on the stack: base plus scaled index.
                Op::Bin { op: crate::ir::BinOp::Add, a, b, .. } => {
                    stackish(a) || based.contains(&a) || stackish(b) || based.contains(&b)
                }
                Op::Mov { src, .. } => stackish(src) || based.contains(&src),
                _ => false,
            };
            based.retain(|&t| t != d);
            if from_stack && !d.is_guest() {
                based.push(d);
            }
        }
    }
    out
}

/// How a looping function keeps plugin memory in variables (`plan_plugin_memory`).
#[derive(Debug, Default, PartialEq, Eq)]
struct PluginPlan {
    /// Offsets of 64-bit words accessed only as whole scalars (inline counters) and, in a
    /// loop of several blocks, by more than one of them.
    scalars: Vec<u32>,
    /// Arrays `(offset, width, mask)` accessed only by index, all with that width and
    /// mask (an edge-coverage map): each gets a one-entry write-back cache.
    arrays: Vec<(u32, Width, u32)>,
}

/// Which plugin memory `blocks` touch in a way that variables can hold: words used only
/// as whole 64-bit scalars, and arrays used only through an index with one width and
/// mask, none overlapping any other access.
///
/// In a loop of several blocks, a word only one block uses (count's per-block counter)
/// stays in memory: one `add [mem], 1` per run of that block, off the loop's critical
/// path, where a variable per block would compete with the guest's registers (sort under
/// count: 1.14x -> 1.09x). A word several blocks use (coverage's previous-block word)
/// chains them through the loop: a variable.
fn plan_plugin_memory(blocks: &[&Block]) -> PluginPlan {
    type Kind = (u32, Width, Option<u32>);
    let key = |a: &Kind| (a.0, a.1 as u8, a.2);
    // Every kind of access, (offset, width, index mask if indexed), with how many blocks
    // make it.
    let mut acc: Vec<(Kind, usize)> = Vec::new();
    for b in blocks {
        let mut mine: Vec<Kind> = b
            .ops
            .iter()
            .filter_map(|op| match *op {
                Op::PluginLoad { w, off, idx, mask, .. }
                | Op::PluginStore { w, off, idx, mask, .. } => Some((off, w, idx.map(|_| mask))),
                _ => None,
            })
            .collect();
        mine.sort_unstable_by_key(key);
        mine.dedup();
        for a in mine {
            match acc.iter_mut().find(|e| e.0 == a) {
                Some(e) => e.1 += 1,
                None => acc.push((a, 1)),
            }
        }
    }
    acc.sort_unstable_by_key(|e| key(&e.0));
    let range = |&(off, w, m): &Kind| {
        let n = m.map_or(1, |m| u64::from(m) + 1);
        (u64::from(off), u64::from(off) + n * w.bytes() as u64)
    };
    // A kind of access qualifies when no *other* distinct access overlaps its bytes.
    let alone = |k: usize| {
        let (a, b) = range(&acc[k].0);
        acc.iter().enumerate().all(|(j, o)| {
            let (c, d) = range(&o.0);
            j == k || d <= a || b <= c
        })
    };
    let mut plan = PluginPlan::default();
    for (k, &(a, users)) in acc.iter().enumerate() {
        if !alone(k) {
            continue;
        }
        match a {
            (off, Width::W64, None) if blocks.len() == 1 || users > 1 => plan.scalars.push(off),
            (off, w, Some(mask)) => plan.arrays.push((off, w, mask)),
            _ => {}
        }
    }
    plan
}

/// The Cranelift integer type of width `w`.
fn width_ty(w: Width) -> types::Type {
    match w {
        Width::W8 => types::I8,
        Width::W16 => types::I16,
        Width::W32 => types::I32,
        Width::W64 => types::I64,
    }
}

/// Whether some direct exit of `b` goes to one of `pcs`.
fn exits_to(b: &Block, pcs: &[u64]) -> bool {
    let exit_if =
        b.ops.iter().any(|op| matches!(op, Op::ExitIf { target, .. } if pcs.contains(target)));
    exit_if
        || match b.term {
            Term::Jump(pc) => pcs.contains(&pc),
            Term::Branch { taken, not_taken, .. } => {
                pcs.contains(&taken) || pcs.contains(&not_taken)
            }
            _ => false,
        }
}

/// The temporaries defined before op `i` of `b` that op `i`, the ops after it, their
/// fix-ups or the terminator read: what a resume exit at `i` must hand the interpreter.
fn live_temps(b: &Block, i: usize) -> Vec<u16> {
    let temp_index = |s: Slot| (!s.is_guest()).then(|| s.index() - crate::cpu::GUEST_SLOTS);
    let mut defined = vec![false; b.temps as usize];
    for op in &b.ops[..i.min(b.ops.len())] {
        if let Some(t) = op.dst().and_then(temp_index) {
            if let Some(d) = defined.get_mut(t) {
                *d = true;
            }
        }
    }
    let mut live = vec![false; b.temps as usize];
    let mut mark = |s: Slot| {
        if let Some(t) = temp_index(s) {
            if defined.get(t).copied().unwrap_or(false) {
                live[t] = true;
            }
        }
    };
    let k = b.insn_of_op(i);
    let fixups = b.fixups.iter().filter(|f| f.0 as usize >= k).flat_map(|f| f.1.iter());
    for op in b.ops[i.min(b.ops.len())..].iter().chain(fixups) {
        op.for_each_src(&mut mark);
    }
    match b.term {
        Term::Branch { c, .. } => mark(c),
        Term::Indirect { target, .. } => mark(target),
        _ => {}
    }
    (0..b.temps).filter(|&t| live[t as usize]).map(|t| t + crate::cpu::GUEST_SLOTS as u16).collect()
}

/// Whether an op of `b`, a fix-up or the terminator reads `%rip` (lifted code does not; the
/// randomized tests do).
fn reads_rip(b: &Block) -> bool {
    let mut r = false;
    let mut see = |s: Slot| r |= s.0 == crate::cpu::slot::RIP;
    for op in b.ops.iter().chain(b.fixups.iter().flat_map(|f| f.1.iter())) {
        op.for_each_src(&mut see);
    }
    match b.term {
        Term::Branch { c, .. } => see(c),
        Term::Indirect { target, .. } => see(target),
        _ => {}
    }
    r
}

/// Guest slots `b`'s ops and terminator mention, and those its ops write.
fn guest_slots(b: &Block) -> (u64, u64) {
    let (mut used, mut written) = (0u64, 0u64);
    let mut note = |s: Slot, w: bool| {
        if s.is_guest() {
            used |= 1 << s.index();
            if w {
                written |= 1 << s.index();
            }
        }
    };
    for op in &b.ops {
        op.for_each_src(|s| note(s, false));
        if let Some(d) = op.dst() {
            note(d, true);
        }
    }
    match b.term {
        Term::Branch { c, .. } => note(c, false),
        Term::Indirect { target, .. } => note(target, false),
        _ => {}
    }
    (used, written)
}

/// The set bits of `m`, as slot numbers.
fn bits(mut m: u64) -> impl Iterator<Item = u16> {
    std::iter::from_fn(move || {
        (m != 0).then(|| {
            let s = m.trailing_zeros() as u16;
            m &= m - 1;
            s
        })
    })
}

/// The signature of every compiled block: `fn(ctx, cpu, budget) -> exit kind`,
/// tail-callable. The chain budget travels in a register from block to block (a counter
/// in `JitCtx` would put a store-to-load dependency on every transfer); a return to the
/// run loop stores it to `JitCtx::budget`.
pub(super) fn tb_signature() -> Signature {
    let mut sig = Signature::new(CallConv::Tail);
    sig.params.push(AbiParam::new(types::I64)); // ctx
    sig.params.push(AbiParam::new(types::I64)); // cpu
    sig.params.push(AbiParam::new(types::I64)); // chain budget left
    sig.returns.push(AbiParam::new(types::I64)); // exit kind
    sig
}

/// The signature of a raw `mem::direct` accessor: `(addr[, val]) -> (val, status)`.
fn raw_signature(nargs: usize) -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..nargs {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I64));
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

impl Lower<'_, '_> {
    fn konst(&mut self, v: u64) -> Value {
        self.fb.ins().iconst(types::I64, v as i64)
    }

    fn read(&mut self, st: &mut SlotState, s: Slot) -> Value {
        self.regs.read(&mut self.fb, st, s)
    }

    fn write(&mut self, st: &mut SlotState, s: Slot, v: Value) {
        self.regs.write(&mut self.fb, st, s, v)
    }

    /// Write back, set `%rip`, return `code`.
    fn leave(&mut self, st: &mut SlotState, rip: Value, code: u64) {
        self.regs.write_back(&mut self.fb, st);
        self.regs.store_rip(&mut self.fb, rip);
        self.ret(code);
    }

    /// Return `code` through the shared epilogue, storing the budget left to the context.
    fn ret(&mut self, code: u64) {
        self.flush_plugin_vars();
        let b = self.fb.use_var(self.budget_var);
        self.store_ctx(b, CTX_BUDGET);
        let c = self.konst(code);
        let r = match self.ret_block {
            Some(r) => r,
            None => {
                let r = self.fb.create_block();
                self.fb.append_block_param(r, types::I64);
                self.fb.set_cold_block(r);
                self.ret_block = Some(r);
                r
            }
        };
        self.fb.ins().jump(r, &[c.into()]);
    }

    /// The entry of a quickly compiled block (one block, not looping): tail-call its
    /// optimised version once there is one (`HotCell::forward`), pointing the vCPU's
    /// indirect-table entry for this pc, if it names this pc, at it too; otherwise count
    /// down `HotCell::left` and, at zero, return `kind::HOT` (once) so the run loop has the
    /// block compiled again, optimised. Nothing is dirty yet, so the hot exit only sets
    /// `%rip` to the block.
    fn tier_up_prologue(&mut self) {
        let cell = Box::new(HotCell {
            left: std::sync::atomic::AtomicU64::new(TIER_UP_RUNS),
            forward: AtomicUsize::new(0),
        });
        let flags = MemFlagsData::trusted();
        let c = self.konst(&*cell as *const HotCell as u64);
        self.data.hot = Some(cell);
        let fwd = self.fb.ins().load(types::I64, flags, c, HOT_FORWARD);
        let count = self.branch_cold(fwd);
        let table = self.fb.ins().load(types::I64, flags, self.ctx, CTX_IND_TABLE);
        let e = self.fb.ins().iadd_imm_s(table, (ind_index(self.b.pc) * 16) as i64);
        let epc = self.fb.ins().load(types::I64, flags, e, 0);
        let mine = self.fb.ins().icmp_imm_s(IntCC::Equal, epc, self.b.pc as i64);
        let (patch, jump) = (self.fb.create_block(), self.fb.create_block());
        self.fb.ins().brif(mine, patch, &[], jump, &[]);
        self.fb.seal_block(patch);
        self.fb.set_cold_block(patch);
        self.fb.set_cold_block(jump);
        self.fb.switch_to_block(patch);
        self.fb.ins().store(flags, fwd, e, 8);
        self.fb.ins().jump(jump, &[]);
        self.fb.seal_block(jump);
        self.fb.switch_to_block(jump);
        let b = self.budget();
        self.fb.ins().return_call_indirect(self.tail_sig, fwd, &[self.ctx, self.cpu, b]);
        self.fb.switch_to_block(count);
        let left = self.fb.ins().load(types::I64, flags, c, HOT_LEFT);
        let used_up = self.fb.ins().icmp_imm_s(IntCC::Equal, left, 0);
        let dec = self.branch_cold(used_up);
        let never = self.konst(u64::MAX);
        self.fb.ins().store(flags, never, c, HOT_LEFT);
        let rip = self.konst(self.b.pc);
        self.regs.store_rip(&mut self.fb, rip);
        self.ret(kind::HOT);
        self.fb.switch_to_block(dec);
        // A plain decrement: threads racing on it only lose counts.
        let left1 = self.fb.ins().iadd_imm_s(left, -1);
        self.fb.ins().store(flags, left1, c, HOT_LEFT);
    }

    /// The chain budget left.
    fn budget(&mut self) -> Value {
        self.fb.use_var(self.budget_var)
    }

    fn leave_at(&mut self, st: &mut SlotState, rip: u64, code: u64) {
        let r = self.konst(rip);
        self.leave(st, r, code)
    }

    fn store_ctx(&mut self, v: Value, off: i32) {
        self.fb.ins().store(MemFlagsData::trusted(), v, self.ctx, off);
    }

    /// Spend one unit of budget and tail-call `code`, or go to `miss` when none is left.
    fn chain_to(&mut self, code: Value, miss: ir::Block) {
        let b = self.budget();
        let go = self.fb.create_block();
        self.fb.ins().brif(b, go, &[], miss, &[]);
        self.fb.seal_block(go);
        self.fb.switch_to_block(go);
        let b1 = self.fb.ins().iadd_imm_s(b, -1);
        self.flush_plugin_vars();
        self.fb.ins().return_call_indirect(self.tail_sig, code, &[self.ctx, self.cpu, b1]);
    }

    /// To the loop header `head` of the region block at `pc` while the budget lasts; falls
    /// through (in a new current block) when it is spent.
    fn loop_back(&mut self, st: &mut SlotState, pc: u64, head: ir::Block) {
        let head_st = self.head_st;
        if self.loop_rip {
            let pcv = self.konst(pc);
            self.write(st, Slot(crate::cpu::slot::RIP), pcv);
        }
        for s in bits(head_st.loaded & !st.loaded) {
            self.read(st, Slot(s));
        }
        debug_assert_eq!(st.dirty & !head_st.dirty, 0, "back edge with an unexpected dirty slot");
        let b = self.budget();
        let (go, spent) = (self.fb.create_block(), self.fb.create_block());
        self.fb.ins().brif(b, go, &[], spent, &[]);
        self.fb.seal_block(go);
        self.fb.seal_block(spent);
        self.fb.switch_to_block(go);
        let b1 = self.fb.ins().iadd_imm_s(b, -1);
        self.fb.def_var(self.budget_var, b1);
        self.fb.ins().jump(head, &[]);
        self.fb.set_cold_block(spent);
        self.fb.switch_to_block(spent);
        let one = self.konst(1);
        self.store_ctx(one, CTX_SPENT_IN_LOOP);
        *st = head_st;
    }

    /// Leave to the direct target `pc`: through the exit slot when linked, else return.
    fn exit_direct(&mut self, st: &mut SlotState, pc: u64) {
        if self.no_chain {
            return self.leave_at(st, pc, kind::JUMP);
        }
        if let Some(&(_, head)) = self.heads.iter().find(|h| h.0 == pc) {
            self.loop_back(st, pc, head);
            // Budget spent: return to the dispatcher, which re-enters at `pc`.
            let rip = self.konst(pc);
            self.leave(st, rip, kind::JUMP);
            return;
        }
        // `%rip` is stored only on the way back to the run loop: a chained block never
        // reads it (every exit, fault and resume stores its own).
        self.regs.write_back(&mut self.fb, st);
        let idx = *self.slot_of_pc.entry(pc).or_insert_with(|| {
            self.data.slots.push(Box::new(ExitSlot { target: AtomicUsize::new(0), pc }));
            self.data.slots.len() - 1
        });
        let slot = self.konst(&*self.data.slots[idx] as *const ExitSlot as u64);
        let t = self.fb.ins().load(types::I64, MemFlagsData::trusted(), slot, SLOT_TARGET);
        let (linked, miss) = (self.fb.create_block(), self.fb.create_block());
        self.fb.set_cold_block(miss);
        self.fb.ins().brif(t, linked, &[], miss, &[]);
        self.fb.seal_block(linked);
        self.fb.switch_to_block(linked);
        self.chain_to(t, miss);
        self.fb.seal_block(miss);
        self.fb.switch_to_block(miss);
        let rip = self.konst(pc);
        self.regs.store_rip(&mut self.fb, rip);
        self.store_ctx(slot, CTX_LAST_EXIT);
        self.ret(kind::JUMP);
    }

    /// Jump to the header of each region block the current block's indirect terminator
    /// may go to when `pc` equals it (budget permitting, as `exit_direct`); continues, in a
    /// new current block, when it equals none.
    fn indirect_in_region(&mut self, st: &mut SlotState, pc: Value, is_ret: bool) {
        if self.no_chain {
            return;
        }
        let Some(targets) = self.indirect.get(self.cur) else { return };
        for &t in targets {
            let Some(&(_, head)) = self.heads.iter().find(|h| h.0 == t) else { continue };
            let eq = self.fb.ins().icmp_imm_s(IntCC::Equal, pc, t as i64);
            let (hit, next) = (self.fb.create_block(), self.fb.create_block());
            self.fb.ins().brif(eq, hit, &[], next, &[]);
            self.fb.seal_block(hit);
            self.fb.seal_block(next);
            self.fb.switch_to_block(hit);
            let mut s2 = *st;
            self.loop_back(&mut s2, t, head);
            // Budget spent: leave as the jump would have, the dispatcher re-enters at `t`.
            let rip = self.konst(t);
            self.leave(&mut s2, rip, if is_ret { kind::RET } else { kind::INDIRECT });
            self.fb.switch_to_block(next);
        }
    }

    /// Leave to the computed target `pc`: through the indirect table on a hit, else return.
    fn exit_indirect(&mut self, st: &mut SlotState, pc: Value, is_ret: bool) {
        if self.no_chain {
            return self.leave(st, pc, if is_ret { kind::RET } else { kind::INDIRECT });
        }
        self.regs.write_back(&mut self.fb, st);
        let flags = MemFlagsData::trusted();
        let table = self.fb.ins().load(types::I64, flags, self.ctx, CTX_IND_TABLE);
        let h = self.fb.ins().ushr_imm_u(pc, IND_SHIFT);
        let h = self.fb.ins().bxor(h, pc);
        let h = self.fb.ins().band_imm_u(h, IND_SIZE as i64 - 1);
        let off = self.fb.ins().ishl_imm_u(h, 4);
        let e = self.fb.ins().iadd(table, off);
        let epc = self.fb.ins().load(types::I64, flags, e, 0);
        let hit = self.fb.ins().icmp(IntCC::Equal, epc, pc);
        let (found, miss) = (self.fb.create_block(), self.fb.create_block());
        self.fb.ins().brif(hit, found, &[], miss, &[]);
        self.fb.seal_block(found);
        self.fb.switch_to_block(found);
        let code = self.fb.ins().load(types::I64, flags, e, 8);
        self.chain_to(code, miss);
        self.fb.seal_block(miss);
        self.fb.switch_to_block(miss);
        self.regs.store_rip(&mut self.fb, pc);
        // Name the block for the run loop, which profiles its targets (`--tier jit` has no
        // interpreted runs to learn them from).
        let src = self.konst(self.b.pc);
        self.store_ctx(src, CTX_IND_SRC);
        self.ret(if is_ret { kind::RET } else { kind::INDIRECT });
    }

    /// `brif c` to a new cold block, which becomes current; returns the fall-through
    /// block, to switch to once the cold path is complete.
    fn branch_cold(&mut self, c: Value) -> ir::Block {
        let cold = self.fb.create_block();
        let cont = self.fb.create_block();
        self.fb.ins().brif(c, cold, &[], cont, &[]);
        self.fb.seal_block(cold);
        self.fb.seal_block(cont);
        self.fb.set_cold_block(cold);
        self.fb.switch_to_block(cold);
        cont
    }

    fn call_rt(&mut self, f: RtFn, args: &[Value]) -> (Value, Value) {
        debug_assert_eq!(args.len(), f.nargs(), "{} arity", f.name());
        let sig = match self.sigs.iter().find(|(g, _)| *g == f) {
            Some(&(_, s)) => s,
            None => {
                let s = self.fb.import_signature(f.signature(CallConv::SystemV));
                self.sigs.push((f, s));
                s
            }
        };
        let addr = self.konst(f.addr() as u64);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.ctx);
        all.extend_from_slice(args);
        let call = self.fb.ins().call_indirect(sig, addr, &all);
        let r = self.fb.inst_results(call);
        (r[0], r[1])
    }

    /// The load or store shim `f` for a cold path: through its preserve-all wrapper when
    /// there is one (the call clobbers no register, so values live across it stay in
    /// registers on the hot path), else directly.
    fn call_mem_slow(&mut self, f: RtFn, args: &[Value]) -> (Value, Value) {
        let k = usize::from(f == RtFn::Store);
        debug_assert!(matches!(f, RtFn::Load | RtFn::Store));
        let wrapper = self.preserve_all[k];
        if wrapper == 0 {
            return self.call_rt(f, args);
        }
        let sig = match self.pa_sigs[k] {
            Some(s) => s,
            None => {
                let mut sig = Signature::new(CallConv::PreserveAll);
                for _ in 0..=args.len() {
                    sig.params.push(AbiParam::new(types::I64));
                }
                let s = self.fb.import_signature(sig);
                self.pa_sigs[k] = Some(s);
                s
            }
        };
        let addr = self.konst(wrapper as u64);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.ctx);
        all.extend_from_slice(args);
        self.fb.ins().call_indirect(sig, addr, &all);
        let flags = MemFlagsData::trusted();
        let v = self.fb.ins().load(types::I64, flags, self.ctx, CTX_RET_VALUE);
        let st = self.fb.ins().load(types::I64, flags, self.ctx, CTX_RET_STATUS);
        (v, st)
    }

    /// The page map for a tree-shaped inline access (`inline_access` whose slow path never
    /// rejoins): user mode, in an instruction running normally. After a code write
    /// (`CwMid`/`CwLast`) accesses rejoin, on what is already a cold path.
    fn tree_map(&self, mode: Mode) -> Option<usize> {
        self.direct.map(|d| d.page_map).filter(|&m| m != 0 && mode == Mode::Normal)
    }

    /// The page cache of load/store op `i` of the block being lowered (looping functions).
    fn site_cache(&self, i: usize) -> Option<Variable> {
        self.site_caches.get(&(self.cur, i)).copied()
    }

    /// The slow path of a tree-shaped access, op `i` (mode `Normal`): leave the function
    /// with the block's state as it is just before op `i` (dirty guest slots and the
    /// temporaries the rest of the block reads, stored where the interpreter keeps them),
    /// and let the interpreter run the block on from op `i` (`kind::RESUME`), doing the
    /// access with its exact fault and code-write handling. The cold path is a few stores:
    /// no shim call, no status dispatch, no copy of the rest of the instruction. Slow
    /// accesses are rare (none in the benchmark workloads), so code size, which is compile
    /// time, matters more here than the cost of the exit.
    fn resume_exit(&mut self, i: usize, st: &SlotState) {
        let mut s2 = *st;
        for t in live_temps(self.b, i) {
            let v = self.read(&mut s2, Slot(t));
            self.regs.store_slot(&mut self.fb, t as usize, v);
        }
        self.regs.write_back(&mut self.fb, &mut s2);
        let k = self.b.insn_of_op(i);
        let pc = self.b.insns.get(k).map_or(self.b.pc, |m| m.pc);
        let rip = self.konst(pc);
        self.regs.store_rip(&mut self.fb, rip);
        let idx = match self.data.blocks.iter().position(|b| Arc::ptr_eq(b, self.b)) {
            Some(idx) => idx,
            None => {
                self.data.blocks.push(self.b.clone());
                self.data.blocks.len() - 1
            }
        };
        let blk = self.konst(Arc::as_ptr(&self.data.blocks[idx]) as u64);
        self.store_ctx(blk, CTX_RESUME);
        self.ret(kind::RESUME | (i as u64) << kind::BITS);
    }

    /// The shared exit for shims that caught a panic.
    fn panic_exit(&mut self) -> ir::Block {
        match self.panic_block {
            Some(p) => p,
            None => {
                let p = self.fb.create_block();
                self.fb.set_cold_block(p);
                self.panic_block = Some(p);
                p
            }
        }
    }

    /// Branch on a shim status: non-zero goes to a cold path that handles a code write
    /// (when `may_cw`; `dst` receives `value` first), a fault, or a panic.
    #[allow(clippy::too_many_arguments, reason = "one call site per op kind, all fields used")]
    fn check_status(
        &mut self,
        status: Value,
        value: Value,
        dst: Option<Slot>,
        i: usize,
        mode: Mode,
        st: &SlotState,
        may_cw: bool,
    ) {
        // After a code write in this instruction (CwMid/CwLast), later code-write reports
        // are not stops: the instruction runs on as in the interpreter.
        let (status, may_cw) = if may_cw && mode != Mode::Normal {
            let is_cw = self.fb.ins().icmp_imm_s(IntCC::Equal, status, status::CODE_WRITTEN as i64);
            let zero = self.fb.ins().iconst(types::I64, 0);
            (self.fb.ins().select(is_cw, zero, status), false)
        } else {
            (status, may_cw)
        };
        let cont = self.branch_cold(status);
        if may_cw {
            let is_cw = self.fb.ins().icmp_imm_s(IntCC::Equal, status, status::CODE_WRITTEN as i64);
            let other = self.branch_cold(is_cw);
            let mut s2 = *st;
            if let Some(d) = dst {
                self.write(&mut s2, d, value);
            }
            self.on_code_written(i, mode, &mut s2);
            self.fb.switch_to_block(other);
        }
        let is_fault = self.fb.ins().icmp_imm_s(IntCC::Equal, status, status::FAULT as i64);
        let fault_blk = self.fb.create_block();
        let panic_blk = self.panic_exit();
        self.fb.ins().brif(is_fault, fault_blk, &[], panic_blk, &[]);
        self.fb.seal_block(fault_blk);
        self.fb.set_cold_block(fault_blk);
        self.fb.switch_to_block(fault_blk);
        let mut s2 = *st;
        self.on_fault(i, mode, None, &mut s2);
        self.fb.switch_to_block(cont);
    }

    fn lower_ops(&mut self, range: Range<usize>, mode: Mode, st: &mut SlotState) {
        for i in range {
            self.lower_op(i, mode, st);
        }
    }

    fn lower_op(&mut self, i: usize, mode: Mode, st: &mut SlotState) {
        let op = self.b.ops[i];
        if arith::lower_pure(&mut self.fb, &mut self.regs, st, &op) {
            return;
        }
        match op {
            Op::Load { w, dst, addr } => {
                let a = self.read(st, addr);
                let st0 = *st;
                if let Some(map) = self.tree_map(mode) {
                    let cache = self.site_cache(i);
                    let v = self.inline_access(map, w, a, None, cache, move |l: &mut Self| {
                        l.resume_exit(i, &st0);
                        None
                    });
                    self.write(st, dst, v);
                    return;
                }
                let slow = move |l: &mut Self| {
                    let wv = l.konst(w as u64);
                    let (v, s) = l.call_mem_slow(RtFn::Load, &[a, wv]);
                    l.check_status(s, v, Some(dst), i, mode, &st0, false);
                    v
                };
                let v = match self.direct {
                    Some(d) if d.page_map != 0 => {
                        self.inline_access(d.page_map, w, a, None, None, |l| Some(slow(l)))
                    }
                    Some(d) => self.direct_access(d.load[w as usize], &[a], slow),
                    None => slow(self),
                };
                self.write(st, dst, v);
            }
            Op::Store { w, addr, val } => {
                let (a, v) = (self.read(st, addr), self.read(st, val));
                let st0 = *st;
                if let Some(map) = self.tree_map(mode) {
                    let cache = self.site_cache(i);
                    self.inline_access(map, w, a, Some(v), cache, move |l: &mut Self| {
                        l.resume_exit(i, &st0);
                        None
                    });
                    return;
                }
                let slow = move |l: &mut Self| {
                    let wv = l.konst(w as u64);
                    let (r, s) = l.call_mem_slow(RtFn::Store, &[a, wv, v]);
                    l.check_status(s, r, None, i, mode, &st0, true);
                    r
                };
                match self.direct {
                    Some(d) if d.page_map != 0 => {
                        self.inline_access(d.page_map, w, a, Some(v), None, |l| Some(slow(l)))
                    }
                    Some(d) => self.direct_access(d.store[w as usize], &[a, v], slow),
                    None => slow(self),
                };
            }
            Op::AtomicRmw { op, w, dst, addr, val } => {
                let (a, v) = (self.read(st, addr), self.read(st, val));
                let (o, wv) = (self.konst(rmw_code(op)), self.konst(w as u64));
                let (r, s) = self.call_rt(RtFn::AtomicRmw, &[o, a, wv, v]);
                self.check_status(s, r, Some(dst), i, mode, st, true);
                self.write(st, dst, r);
            }
            Op::AtomicCas { w, dst, addr, expected, new } => {
                let a = self.read(st, addr);
                let (e, n) = (self.read(st, expected), self.read(st, new));
                let wv = self.konst(w as u64);
                let (r, s) = self.call_rt(RtFn::AtomicCas, &[a, wv, e, n]);
                self.check_status(s, r, Some(dst), i, mode, st, true);
                self.write(st, dst, r);
            }
            Op::Helper { h, args, nargs, dst } => {
                let mut a = [self.konst(0); 4];
                for (k, s) in args.iter().take((nargs as usize).min(4)).enumerate() {
                    a[k] = self.read(st, *s);
                }
                if h.reads_state || h.writes_state {
                    self.regs.write_back(&mut self.fb, st);
                }
                let desc = self.konst(h as *const crate::ir::HelperDesc as u64);
                let (r, s) = self.call_rt(RtFn::CallHelper, &[desc, a[0], a[1], a[2], a[3]]);
                if h.writes_state {
                    Regs::forget(st);
                }
                self.check_status(s, r, dst, i, mode, st, true);
                if let Some(d) = dst {
                    self.write(st, d, r);
                }
            }
            Op::FaultIf { c, fault } => {
                let cv = self.read(st, c);
                let cont = self.branch_cold(cv);
                let mut s2 = *st;
                self.on_fault(i, mode, Some(fault), &mut s2);
                self.fb.switch_to_block(cont);
            }
            Op::ExitIf { c, target } => {
                let cv = self.read(st, c);
                let cont = self.branch_cold(cv);
                let mut s2 = *st;
                self.on_exit(target, mode, &mut s2);
                self.fb.switch_to_block(cont);
            }
            Op::PluginLoad { w, dst, off, idx, mask } => {
                if let Some(var) = self.plugin_var(w, off, idx) {
                    let v = self.fb.use_var(var);
                    self.write(st, dst, v);
                    return;
                }
                if let (Some(c), Some(s)) = (self.plugin_cache(w, off, idx, mask), idx) {
                    self.plugin_cache_select(st, c, s);
                    let v = self.fb.use_var(c.val);
                    let v = if w == Width::W64 { v } else { self.fb.ins().uextend(types::I64, v) };
                    self.write(st, dst, v);
                    return;
                }
                let (a, at) = self.plugin_addr(st, w, off, idx, mask);
                let v = self.plugin_mem_load(w, a, at);
                self.write(st, dst, v);
            }
            Op::PluginStore { w, val, off, idx, mask } => {
                let v = self.read(st, val);
                if let Some(var) = self.plugin_var(w, off, idx) {
                    self.fb.def_var(var, v);
                    return;
                }
                if let (Some(c), Some(s)) = (self.plugin_cache(w, off, idx, mask), idx) {
                    self.plugin_cache_select(st, c, s);
                    // As memory would hold it: the low `w` bytes.
                    let v = if w == Width::W64 { v } else { self.fb.ins().ireduce(width_ty(w), v) };
                    self.fb.def_var(c.val, v);
                    return;
                }
                let (a, at) = self.plugin_addr(st, w, off, idx, mask);
                self.plugin_mem_store(w, a, at, v);
            }
            Op::CallPlugin { call, args, nargs, cond } => {
                // The callback reads and writes no guest state: no write-back, no reload.
                let mut a = [self.konst(0); 4];
                for (k, s) in args.iter().take((nargs as usize).min(4)).enumerate() {
                    a[k] = self.read(st, *s);
                }
                let cont = cond.map(|c| {
                    let cv = self.read(st, c);
                    let (go, cont) = (self.fb.create_block(), self.fb.create_block());
                    self.fb.ins().brif(cv, go, &[], cont, &[]);
                    self.fb.seal_block(go);
                    self.fb.switch_to_block(go);
                    cont
                });
                let mut sig = Signature::new(CallConv::SystemV);
                sig.params.push(AbiParam::new(types::I64)); // &PluginSite
                sig.params.push(AbiParam::new(types::I32)); // vcpu index
                sig.params.extend([AbiParam::new(types::I64); 4]);
                let sig = self.fb.import_signature(sig);
                let site = self.konst(&call.site as *const crate::ir::PluginSite as u64);
                let off = std::mem::offset_of!(crate::cpu::CpuState, vcpu_index) as i32;
                let vcpu = self.fb.ins().load(types::I32, MemFlagsData::trusted(), self.cpu, off);
                let func = self.konst(call.func as usize as u64);
                // The callback may read or write the plugin's memory.
                self.flush_plugin_vars();
                self.fb.ins().call_indirect(sig, func, &[site, vcpu, a[0], a[1], a[2], a[3]]);
                self.reload_plugin_vars();
                if let Some(cont) = cont {
                    self.fb.ins().jump(cont, &[]);
                    self.fb.seal_block(cont);
                    self.fb.switch_to_block(cont);
                }
            }
            _ => unreachable!("pure ops are lowered by arith::lower_pure"),
        }
    }

    /// The vCPU's plugin memory base (never changes while compiled code runs).
    fn plugin_base(&mut self) -> Value {
        let base_off = std::mem::offset_of!(crate::cpu::CpuState, plugin_mem_base) as i32;
        // Sparse use: loaded once per Cranelift block (from `cpu`, always in a register),
        // not hoisted to the function entry. A load kept live across a looping region is
        // spilled and reloaded anyway, and its live range pushes guest values out of
        // registers (count on bytecode: 1.18x -> 1.10x; memtrace, dense, is 7% slower
        // this way).
        // Either way one load per Cranelift block: quick compiles run no egraph to merge
        // repeated loads (a counter's load and store each loaded the base).
        let here = self.fb.current_block().expect("lowering inside a block");
        if let Some((b, v)) = self.base_here {
            if b == here {
                return v;
            }
        }
        // Dense use: readonly + can_move, so the egraph shares one load between all uses
        // and hoists it.
        let f = if self.hoist_base {
            MemFlagsData::trusted().with_readonly().with_can_move()
        } else {
            MemFlagsData::trusted().with_readonly()
        };
        let v = self.fb.ins().load(types::I64, f, self.cpu, base_off);
        self.base_here = Some((here, v));
        v
    }

    /// Store the promoted plugin words (`plugin_vars`) and cached array entries
    /// (`plugin_caches`) to plugin memory.
    fn flush_plugin_vars(&mut self) {
        if self.plugin_vars.is_empty() && self.plugin_caches.is_empty() {
            return;
        }
        let base = self.plugin_base();
        for k in 0..self.plugin_vars.len() {
            let (off, var) = self.plugin_vars[k];
            let v = self.fb.use_var(var);
            self.fb.ins().store(MemFlagsData::trusted(), v, base, off as i32);
        }
        for k in 0..self.plugin_caches.len() {
            let c = self.plugin_caches[k];
            let key = self.fb.use_var(c.idx);
            let i = self.fb.ins().band_imm_u(key, i64::from(c.mask));
            let v = self.fb.use_var(c.val);
            self.plugin_elem_store(base, c, i, v);
        }
    }

    /// Load the promoted plugin words, and entry 0 of every cached array.
    fn reload_plugin_vars(&mut self) {
        if self.plugin_vars.is_empty() && self.plugin_caches.is_empty() {
            return;
        }
        let base = self.plugin_base();
        for k in 0..self.plugin_vars.len() {
            let (off, var) = self.plugin_vars[k];
            let v = self.fb.ins().load(types::I64, MemFlagsData::trusted(), base, off as i32);
            self.fb.def_var(var, v);
        }
        self.cache_sel = None;
        for k in 0..self.plugin_caches.len() {
            let c = self.plugin_caches[k];
            let zero = self.konst(0);
            let v = self.plugin_elem_load(base, c, zero);
            self.fb.def_var(c.idx, zero);
            self.fb.def_var(c.val, v);
        }
    }

    /// Entry `i` (already masked) of the cached array `c`, at its own width.
    fn plugin_elem_load(&mut self, base: Value, c: PluginCache, i: Value) -> Value {
        let a = self.plugin_addr_at(base, c.w, c.off, Some(i));
        self.fb.ins().load(width_ty(c.w), MemFlagsData::trusted(), a, 0)
    }

    /// Store `v` (of the entry's width) as entry `i` (already masked) of `c`.
    fn plugin_elem_store(&mut self, base: Value, c: PluginCache, i: Value, v: Value) {
        let a = self.plugin_addr_at(base, c.w, c.off, Some(i));
        self.fb.ins().store(MemFlagsData::trusted(), v, a, 0);
    }

    /// A zero-extended plugin-memory load of width `w` at host address `a + at`.
    fn plugin_mem_load(&mut self, w: Width, a: Value, at: i32) -> Value {
        let f = MemFlagsData::trusted();
        match w {
            Width::W8 => self.fb.ins().uload8(types::I64, f, a, at),
            Width::W16 => self.fb.ins().uload16(types::I64, f, a, at),
            Width::W32 => self.fb.ins().uload32(f, a, at),
            Width::W64 => self.fb.ins().load(types::I64, f, a, at),
        }
    }

    /// A plugin-memory store of the low `w` bytes of `v` at host address `a + at`.
    fn plugin_mem_store(&mut self, w: Width, a: Value, at: i32, v: Value) {
        let f = MemFlagsData::trusted();
        match w {
            Width::W8 => self.fb.ins().istore8(f, v, a, at),
            Width::W16 => self.fb.ins().istore16(f, v, a, at),
            Width::W32 => self.fb.ins().istore32(f, v, a, at),
            Width::W64 => self.fb.ins().store(f, v, a, at),
        };
    }

    /// The cache of the plugin array accessed as `(w, off, idx, mask)`, if it has one.
    fn plugin_cache(
        &self,
        w: Width,
        off: u32,
        idx: Option<Slot>,
        mask: u32,
    ) -> Option<PluginCache> {
        idx?;
        self.plugin_caches.iter().find(|c| c.off == off && c.w == w && c.mask == mask).copied()
    }

    /// Make the entry slot `s` indexes (masked) the cached one of `c`: on a miss (cold),
    /// write the old entry back and load the new one. Nothing to do when the same index
    /// value was selected earlier in the same Cranelift block.
    fn plugin_cache_select(&mut self, st: &mut SlotState, c: PluginCache, s: Slot) {
        let raw = self.read(st, s);
        let here = self.fb.current_block().expect("lowering inside a block");
        if self.cache_sel == Some((c.off, raw, here)) {
            return;
        }
        // The cache is keyed by the unmasked index (one `and` less on a hit): two keys
        // with the same masked entry only cost a write-back and reload of that entry.
        let cur = self.fb.use_var(c.idx);
        let hit = self.fb.ins().icmp(IntCC::Equal, raw, cur);
        let (miss, cont) = (self.fb.create_block(), self.fb.create_block());
        self.fb.ins().brif(hit, cont, &[], miss, &[]);
        self.fb.seal_block(miss);
        self.fb.set_cold_block(miss);
        self.fb.switch_to_block(miss);
        let base = self.plugin_base();
        let old = self.fb.use_var(c.val);
        let old_i = self.fb.ins().band_imm_u(cur, i64::from(c.mask));
        self.plugin_elem_store(base, c, old_i, old);
        let i = self.fb.ins().band_imm_u(raw, i64::from(c.mask));
        let v = self.plugin_elem_load(base, c, i);
        self.fb.def_var(c.idx, raw);
        self.fb.def_var(c.val, v);
        self.fb.ins().jump(cont, &[]);
        self.fb.seal_block(cont);
        self.fb.switch_to_block(cont);
        self.cache_sel = Some((c.off, raw, cont));
    }

    /// The variable holding the plugin word at `off`, if it is promoted.
    fn plugin_var(&self, w: Width, off: u32, idx: Option<Slot>) -> Option<Variable> {
        if idx.is_some() || w != Width::W64 {
            return None;
        }
        self.plugin_vars.iter().find(|p| p.0 == off).map(|p| p.1)
    }

    /// Host address of a plugin-memory access, `cpu.plugin_mem_base + off + (idx & mask) * w`,
    /// as an address value and a constant offset to add to it.
    fn plugin_addr(
        &mut self,
        st: &mut SlotState,
        w: Width,
        off: u32,
        idx: Option<Slot>,
        mask: u32,
    ) -> (Value, i32) {
        let i = idx.map(|s| self.plugin_index(st, s, mask));
        let base = self.plugin_base();
        // The offset goes in the access's immediate (one CLIF op fewer per access, which
        // counts in quick compiles); an offset past `i32` is added instead.
        match i32::try_from(off) {
            Ok(at) => (self.plugin_addr_at(base, w, 0, i), at),
            Err(_) => (self.plugin_addr_at(base, w, off, i), 0),
        }
    }

    /// The entry index of an indexed plugin access: slot `s` masked.
    fn plugin_index(&mut self, st: &mut SlotState, s: Slot, mask: u32) -> Value {
        let i = self.read(st, s);
        self.fb.ins().band_imm_u(i, i64::from(mask))
    }

    /// `base + off + i * w` (`i` already masked; none for a scalar).
    fn plugin_addr_at(&mut self, base: Value, w: Width, off: u32, i: Option<Value>) -> Value {
        let base = if off == 0 { base } else { self.fb.ins().iadd_imm_s(base, i64::from(off)) };
        match i {
            None => base,
            Some(i) => {
                let i = self.fb.ins().ishl_imm_u(i, w.bytes().trailing_zeros() as i64);
                self.fb.ins().iadd(base, i)
            }
        }
    }

    /// Run instruction `k`'s fix-up ops (all pure; `Jit::compile` checked).
    fn fixups(&mut self, k: usize, st: &mut SlotState) {
        if let Some(ops) = self.b.fixups_for(k) {
            for op in ops {
                let done = arith::lower_pure(&mut self.fb, &mut self.regs, st, op);
                debug_assert!(done, "impure fix-up op {op}");
            }
        }
    }

    fn fault_exit(&mut self, st: &mut SlotState, pc: u64, fault: Option<Fault>, next: u64) {
        let idx = *self.site_of.entry((fault, next)).or_insert_with(|| {
            self.data.sites.push(Box::new(FaultSite { fault, next }));
            self.data.sites.len() - 1
        });
        let site = self.konst(&*self.data.sites[idx] as *const FaultSite as u64);
        self.store_ctx(site, CTX_FAULT_SITE);
        self.leave_at(st, pc, kind::FAULT)
    }

    /// Op `i` faulted (`fault` is `None` when a shim parked it in the context).
    fn on_fault(&mut self, i: usize, mode: Mode, fault: Option<Fault>, st: &mut SlotState) {
        let b = self.b;
        match mode {
            Mode::Normal => {
                let k = b.insn_of_op(i);
                self.fixups(k, st);
                let (pc, next) = b
                    .insns
                    .get(k)
                    .map_or((b.pc, b.pc), |m| (m.pc, m.pc.wrapping_add(m.len as u64)));
                self.fault_exit(st, pc, fault, next)
            }
            Mode::CwMid(k) => {
                self.fixups(k, st);
                self.fault_exit(st, b.insns[k].pc, fault, b.insns[k + 1].pc)
            }
            Mode::CwLast => self.on_fault(i, Mode::Normal, fault, st),
        }
    }

    fn on_exit(&mut self, target: u64, _mode: Mode, st: &mut SlotState) {
        self.exit_direct(st, target)
    }

    /// Op `i` succeeded and reported that translated code was written.
    fn on_code_written(&mut self, i: usize, mode: Mode, st: &mut SlotState) {
        let b = self.b;
        match mode {
            Mode::Normal => {
                // Whatever exit the rest takes must reach the dispatcher (which invalidates
                // the written code), never a chained or looping successor.
                let saved = std::mem::replace(&mut self.no_chain, true);
                let k = b.insn_of_op(i);
                if k + 1 < b.insns.len() {
                    let end = (b.insns[k + 1].first_op as usize).clamp(i + 1, b.ops.len());
                    self.lower_ops(i + 1..end, Mode::CwMid(k), st);
                    self.leave_code_written(k + 1, st);
                } else {
                    self.lower_ops(i + 1..b.ops.len(), Mode::CwLast, st);
                    self.terminator(st);
                }
                self.no_chain = saved;
            }
            Mode::CwMid(k) => self.leave_code_written(k + 1, st),
            Mode::CwLast => self.terminator(st),
        }
    }

    /// Leave before instruction `k` because code was written.
    fn leave_code_written(&mut self, k: usize, st: &mut SlotState) {
        self.fixups(k, st);
        self.leave_at(st, self.b.insns[k].pc, kind::CODE_WRITTEN)
    }

    fn terminator(&mut self, st: &mut SlotState) {
        match self.b.term {
            Term::Jump(pc) => self.exit_direct(st, pc),
            Term::Branch { taken, not_taken, .. } if taken == not_taken => {
                self.exit_direct(st, taken)
            }
            Term::Branch { c, taken, not_taken } => {
                let cv = self.read(st, c);
                if !self.heads.iter().any(|h| h.0 == taken || h.0 == not_taken) {
                    // Both exits store the same dirty slots: do it once, before the branch
                    // (not when an exit loops, whose back edge keeps them in registers).
                    self.regs.write_back(&mut self.fb, st);
                }
                let (t, n) = (self.fb.create_block(), self.fb.create_block());
                self.fb.ins().brif(cv, t, &[], n, &[]);
                self.fb.seal_block(t);
                self.fb.seal_block(n);
                self.fb.switch_to_block(t);
                self.exit_direct(&mut st.clone(), taken);
                self.fb.switch_to_block(n);
                self.exit_direct(st, not_taken);
            }
            Term::Indirect { target, is_ret } => {
                let pc = self.read(st, target);
                self.indirect_in_region(st, pc, is_ret);
                self.exit_indirect(st, pc, is_ret)
            }
            Term::Syscall { next } => self.leave_at(st, next, kind::SYSCALL),
            Term::Halt { next } => self.leave_at(st, next, kind::HALT),
            Term::Fault { fault, pc, next } => self.fault_exit(st, pc, Some(fault), next),
        }
    }

    /// Call a raw `mem::direct` accessor: `(addr[, val]) -> (val, status)`.
    fn call_raw(&mut self, addr: usize, args: &[Value]) -> (Value, Value) {
        let n = args.len() - 1;
        let sig = match self.raw_sigs[n] {
            Some(s) => s,
            None => {
                let s = self.fb.import_signature(raw_signature(args.len()));
                self.raw_sigs[n] = Some(s);
                s
            }
        };
        let f = self.konst(addr as u64);
        let call = self.fb.ins().call_indirect(sig, f, args);
        let r = self.fb.inst_results(call);
        (r[0], r[1])
    }

    /// A load (`val` None) or store of `w` at guest address `a`, done inline when the page
    /// map says it cannot fault: the bytes of its first and last page allow it. Otherwise
    /// `slow` (the shim) does it, with its exact fault and code-write handling. A `slow`
    /// that returns a value rejoins the fast path; one that returns `None` has left the
    /// function on every path, and the fast path goes on with no join (a tree, so the
    /// register allocator puts no moves on it for the cold path's sake). Returns the
    /// loaded value (stores: the stored one).
    fn inline_access(
        &mut self,
        map: usize,
        w: Width,
        a: Value,
        val: Option<Value>,
        cache: Option<Variable>,
        slow: impl FnOnce(&mut Self) -> Option<Value>,
    ) -> Value {
        use crate::mem::page_map;
        let size = w.bytes() as u64;
        let fast = self.fb.create_block();
        let cold = self.fb.create_block();
        let join = self.fb.create_block();
        let joined = self.fb.append_block_param(join, types::I64);
        // With a site cache (in loops): one compare against the page this site last found
        // allowed; the page map only when it moved to another page (cold).
        let ok_to = match cache {
            Some(var) => {
                let vb = self.fb.use_var(var);
                let d = self.fb.ins().isub(a, vb);
                let hit =
                    self.fb.ins().icmp_imm_u(IntCC::UnsignedLessThanOrEqual, d, 4096 - size as i64);
                let (check, ok) = (self.fb.create_block(), self.fb.create_block());
                self.fb.ins().brif(hit, fast, &[], check, &[]);
                self.fb.seal_block(check);
                self.fb.set_cold_block(check);
                self.fb.set_cold_block(ok);
                self.fb.switch_to_block(check);
                Some((var, ok))
            }
            None => None,
        };
        // Where the page-map check goes when the access is allowed.
        let allowed_to = ok_to.map_or(fast, |(_, ok)| ok);
        // Two predictable branches: inside the table; allowed by the page byte. A wide
        // access checks the byte of its *last* byte's page: its `*_PREV` bit says that
        // page and the one before allow the access, so it cannot fault wherever it
        // starts. Only when the page before does not (the first page of a mapping) is the
        // first page's byte read too (cold; usually the same page).
        let (need, need_prev) = match val {
            Some(_) => (page_map::WRITE, page_map::WRITE_PREV),
            None => (page_map::READ, page_map::READ_PREV),
        };
        let last = if size > 1 { self.fb.ins().iadd_imm_s(a, size as i64 - 1) } else { a };
        let page = self.fb.ins().ushr_imm_u(last, 12);
        let outside = self.fb.ins().icmp_imm_u(
            IntCC::UnsignedGreaterThanOrEqual,
            page,
            page_map::PAGES as i64,
        );
        let in_table = self.fb.create_block();
        self.fb.ins().brif(outside, cold, &[], in_table, &[]);
        self.fb.seal_block(in_table);
        if ok_to.is_some() {
            self.fb.set_cold_block(in_table);
        }
        self.fb.switch_to_block(in_table);
        let base = self.konst(map as u64);
        let at = self.fb.ins().iadd(base, page);
        let flags = self.fb.ins().uload8(types::I32, MemFlagsData::trusted(), at, 0);
        if size > 1 {
            let ok_prev = self.fb.ins().band_imm_u(flags, need_prev as i64);
            let precise = self.fb.create_block();
            self.fb.ins().brif(ok_prev, allowed_to, &[], precise, &[]);
            self.fb.seal_block(precise);
            self.fb.set_cold_block(precise);
            self.fb.switch_to_block(precise);
            // The first page is at most the last, so inside the table, unless the access
            // wraps around the address space: then its last byte is on page 0, whose
            // `*_PREV` bits are never set (no page before it), so it always comes here.
            let first = self.fb.ins().ushr_imm_u(a, 12);
            let wraps = self.fb.ins().icmp(IntCC::UnsignedGreaterThan, first, page);
            let in_map = self.fb.create_block();
            self.fb.ins().brif(wraps, cold, &[], in_map, &[]);
            self.fb.seal_block(in_map);
            self.fb.set_cold_block(in_map);
            self.fb.switch_to_block(in_map);
            let at1 = self.fb.ins().iadd(base, first);
            let flags1 = self.fb.ins().uload8(types::I32, MemFlagsData::trusted(), at1, 0);
            let both = self.fb.ins().band(flags, flags1);
            let allowed = self.fb.ins().band_imm_u(both, need as i64);
            self.fb.ins().brif(allowed, allowed_to, &[], cold, &[]);
        } else {
            let allowed = self.fb.ins().band_imm_u(flags, need as i64);
            self.fb.ins().brif(allowed, allowed_to, &[], cold, &[]);
        }
        if let Some((var, ok)) = ok_to {
            // Remember the page (an access that crosses into the next one is checked
            // again each time, as it never passes the one compare).
            self.fb.seal_block(ok);
            self.fb.switch_to_block(ok);
            let pb = self.fb.ins().band_imm_u(a, !0xfffi64);
            self.fb.def_var(var, pb);
            self.fb.ins().jump(fast, &[]);
        }
        self.fb.seal_block(fast);
        self.fb.seal_block(cold);
        self.fb.set_cold_block(cold);
        // The cold path first: a slow path that returns no value has left the function on
        // every path (a tree), and the fast path simply goes on, with no join.
        self.fb.switch_to_block(cold);
        let slow_value = slow(self);
        if let Some(v2) = slow_value {
            self.fb.ins().jump(join, &[v2.into()]);
        }
        self.fb.switch_to_block(fast);
        let ty = arith::ty(w);
        // Guest memory: plain flags (it may alias anything but the CPU state, and it
        // cannot trap here, the page map said so).
        let mem = MemFlagsData::new();
        let v = match val {
            None => {
                let x = self.fb.ins().load(ty, mem, a, 0);
                if ty == types::I64 {
                    x
                } else {
                    self.fb.ins().uextend(types::I64, x)
                }
            }
            Some(v) => {
                let x = if ty == types::I64 { v } else { self.fb.ins().ireduce(ty, v) };
                self.fb.ins().store(mem, x, a, 0);
                v
            }
        };
        if slow_value.is_none() {
            return v;
        }
        self.fb.ins().jump(join, &[v.into()]);
        self.fb.seal_block(join);
        self.fb.switch_to_block(join);
        joined
    }

    /// A load or store through the raw accessor, redone through the shim (`slow`, which
    /// checks the status and may leave) when the accessor reports anything but success.
    /// Returns the loaded value.
    fn direct_access(
        &mut self,
        raw: usize,
        args: &[Value],
        slow: impl FnOnce(&mut Self) -> Value,
    ) -> Value {
        let (v, s) = self.call_raw(raw, args);
        let join = self.fb.create_block();
        let joined = self.fb.append_block_param(join, types::I64);
        let cold = self.fb.create_block();
        self.fb.ins().brif(s, cold, &[], join, &[v.into()]);
        self.fb.seal_block(cold);
        self.fb.set_cold_block(cold);
        self.fb.switch_to_block(cold);
        let v2 = slow(self);
        self.fb.ins().jump(join, &[v2.into()]);
        self.fb.seal_block(join);
        self.fb.switch_to_block(join);
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ops: Vec<Op>) -> Block {
        Block {
            pc: 0x1000,
            end: 0x1001,
            ops,
            insns: Vec::new(),
            term: Term::Jump(0x1000),
            temps: 2,
            fixups: Vec::new(),
        }
    }

    fn load(w: Width, off: u32, idx: Option<Slot>, mask: u32) -> Op {
        Op::PluginLoad { w, dst: Slot::temp(0), off, idx, mask }
    }

    fn store(w: Width, off: u32, idx: Option<Slot>, mask: u32) -> Op {
        Op::PluginStore { w, val: Slot::temp(0), off, idx, mask }
    }

    #[test]
    fn plugin_plan_keeps_only_unaliased_scalars_and_arrays() {
        let i = Some(Slot::temp(1));
        // A counter word, an edge map of 256 bytes at 0x100, a word at 0x200 also read
        // as 32 bits (not promotable), an array at 0x300 read with two masks (no cache).
        let a = block(vec![
            load(Width::W64, 0, None, 0),
            store(Width::W64, 0, None, 0),
            load(Width::W8, 0x100, i, 0xff),
            store(Width::W8, 0x100, i, 0xff),
            load(Width::W64, 0x200, None, 0),
            load(Width::W32, 0x204, None, 0),
            load(Width::W16, 0x300, i, 0xf),
        ]);
        let b = block(vec![load(Width::W16, 0x300, i, 0x7), store(Width::W64, 8, None, 0)]);
        let plan = plan_plugin_memory(&[&a, &b]);
        assert_eq!(plan.arrays, vec![(0x100, Width::W8, 0xff)]);
        // In a loop of several blocks, only words more than one block uses: 0 and 8 are
        // each one block's (per-block counters), 0x10 (below) both blocks'.
        assert_eq!(plan.scalars, Vec::<u32>::new());
        let one = plan_plugin_memory(&[&a]);
        assert_eq!(one.scalars, vec![0]);
        assert_eq!(one.arrays, vec![(0x100, Width::W8, 0xff), (0x300, Width::W16, 0xf)]);
        let shared = |mut b: Block| {
            b.ops.push(store(Width::W64, 0x10, None, 0));
            b
        };
        let (a2, b2) = (shared(a), shared(b));
        let plan = plan_plugin_memory(&[&a2, &b2]);
        assert_eq!(plan.scalars, vec![0x10]);
        assert_eq!(plan.arrays, vec![(0x100, Width::W8, 0xff)]);
        // A scalar inside an array's range disqualifies both.
        let c = block(vec![load(Width::W8, 0x100, i, 0xff), load(Width::W64, 0x108, None, 0)]);
        assert_eq!(plan_plugin_memory(&[&c]), PluginPlan::default());
    }
}
