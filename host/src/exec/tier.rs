//! Tier-up and chaining glue between the run loop and `backend::jit`.
//!
//! - `--tier interp`: never compiles. `--tier jit`: a block is compiled (on the vCPU's
//!   thread) the first time it runs. `--tier auto`: a block is interpreted until it has run
//!   `hot_threshold` times, then queued once for the engine's compile thread; the
//!   interpreter keeps running it until the compiled code is installed in `Tb::jit`.
//!   The queue is a stack (newest hot block first). First compiles are quick (Cranelift
//!   without optimisation, single-pass register allocation: `Jit::compile_baseline`);
//!   hot regions, including a single looping block, are compiled optimised.
//! - A compiled block runs with `CompiledTb::run_chained`. When it leaves through an
//!   unlinked direct exit, the run loop's next lookup finds the successor; if that is
//!   compiled too, the exit is linked (`link_from`). After an indirect exit, a compiled
//!   target is entered in the vCPU's indirect table. Links and table entries only ever
//!   point at live blocks: invalidation kills a block's compiled code (`TbJit::kill`), which
//!   clears every slot linked into it, and every vCPU clears its table when it sees the
//!   engine's generation change.
//! - The code cache is bounded (`Config::jit_cache_size`). When it is full the JIT starts a
//!   new code generation and the engine flushes every TB; old code is freed once no vCPU
//!   and no block holds it (see `backend::jit::chain`).
//! - Hot regions: when a compiled run comes back because it used up its chain budget, it
//!   was looping. Unless it ran out on a back edge inside one function (that loop is one
//!   function already), the block it stopped at becomes the head of a region: the
//!   translated blocks reachable from it that lead back to it (at most
//!   `MAX_REGION_BLOCKS`), following direct exits and the hot targets an indirect jump
//!   took while its block was interpreted or when its compiled code missed the indirect
//!   table (`IndirectProfile`), compiled as one function (`Jit::compile_region_with`)
//!   and installed as the head's code; exits linked to the head's own code are unlinked
//!   so they relink to the region. Every member keeps the region in its `dependents`, so
//!   invalidating any member kills the region and the head falls back to its own code.
//! - A block the JIT cannot compile is marked failed and stays interpreted.

use super::cache::{Engine, Tb};
use crate::backend::jit::{ChainState, CompiledTb, Jit, JitError, JitOptions, LinkPoint};
use crate::backend::{interp, BlockExit};
use crate::config::Tier;
use crate::cpu::CpuState;
use crate::ir::{Block, Op, Term};
use crate::mem::{DirectAccessors, GuestMemory};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

const NOT_QUEUED: u8 = 0;
const QUEUED: u8 = 1;
const FAILED: u8 = 2;
/// `region_state` only: the region is the block alone, compiled again optimised because
/// it ran often (`ChainState::hot_block`). A loop region headed there may still replace it.
const TIERED: u8 = 3;

/// Most blocks in one hot region.
const MAX_REGION_BLOCKS: usize = 16;

/// Most distinct targets an indirect jump's profile records.
const IND_TARGETS: usize = 16;

/// The targets an indirect jump (`Term::Indirect`) was seen to take while its block was
/// interpreted, or when its compiled code left through it, with how often: hot ones
/// become region edges (`find_region`). Lock-free (vCPUs share TBs); once full, new
/// targets are not recorded. Pc 0 marks a free entry.
#[derive(Default)]
pub struct IndirectProfile {
    pcs: [AtomicU64; IND_TARGETS],
    hits: [AtomicU32; IND_TARGETS],
}

impl IndirectProfile {
    /// Count one jump to `pc`.
    pub fn record(&self, pc: u64) {
        if pc == 0 {
            return;
        }
        for (p, h) in self.pcs.iter().zip(&self.hits) {
            let cur = match p.load(Ordering::Relaxed) {
                0 => match p.compare_exchange(0, pc, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => pc,
                    Err(other) => other,
                },
                cur => cur,
            };
            if cur == pc {
                h.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// The recorded targets with their counts, most frequent first.
    pub fn targets(&self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self
            .pcs
            .iter()
            .zip(&self.hits)
            .map(|(p, h)| (p.load(Ordering::Relaxed), h.load(Ordering::Relaxed)))
            .filter(|&(p, _)| p != 0)
            .collect();
        v.sort_by_key(|&(_, h)| std::cmp::Reverse(h));
        v
    }
}

/// A TB's compiled code, if any.
#[derive(Default)]
pub struct TbJit {
    code: OnceLock<Arc<CompiledTb>>,
    state: AtomicU8,
    dead: AtomicBool,
    /// A region headed by this TB, preferred over `code` while it lives.
    region: Mutex<Option<Arc<CompiledTb>>>,
    has_region: AtomicBool,
    region_state: AtomicU8,
    /// Regions this TB belongs to: (their head, their code), killed with this TB.
    dependents: Mutex<Vec<(Weak<Tb>, Arc<CompiledTb>)>>,
    /// Where the block's indirect terminator went while it was interpreted (allocated on
    /// the first record: most blocks end otherwise, and a TB should fit few cache lines).
    pub indirect: OnceLock<Box<IndirectProfile>>,
}

impl TbJit {
    /// The compiled code, once installed.
    #[inline]
    pub fn compiled(&self) -> Option<&Arc<CompiledTb>> {
        self.code.get()
    }

    /// The code the run loop should enter: the region headed here, else the block's own.
    fn to_run(&self) -> Option<Arc<CompiledTb>> {
        if self.has_region.load(Ordering::Acquire) {
            if let Some(r) = self.region.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return Some(r);
            }
        }
        self.code.get().cloned()
    }

    fn install(&self, c: Arc<CompiledTb>) {
        let c = self.code.get_or_init(|| c);
        // A kill that raced with the compile must still unlink the new code.
        if self.dead.load(Ordering::SeqCst) {
            c.kill();
        }
    }

    fn drop_region(&self, code: &Arc<CompiledTb>) {
        let mut r = self.region.lock().unwrap_or_else(|e| e.into_inner());
        if r.as_ref().is_some_and(|c| Arc::ptr_eq(c, code)) {
            *r = None;
            self.has_region.store(false, Ordering::Release);
            if let Some(own) = self.code.get() {
                own.clear_forward();
            }
        }
    }

    /// The TB was invalidated: unlink every chain into its code, now or when it arrives,
    /// and kill every region it belongs to.
    pub fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(c) = self.code.get() {
            c.kill();
            c.clear_forward();
        }
        if let Some(r) = self.region.lock().unwrap_or_else(|e| e.into_inner()).take() {
            r.kill();
        }
        self.has_region.store(false, Ordering::Release);
        let deps = std::mem::take(&mut *self.dependents.lock().unwrap_or_else(|e| e.into_inner()));
        for (head, code) in deps {
            code.kill();
            if let Some(h) = head.upgrade() {
                h.jit.drop_region(&code);
            }
        }
    }
}

/// The engine's JIT: one compiler (shared by the vCPU threads and the compile thread)
/// and, in `Auto`, the compile queue.
#[derive(Default)]
pub struct EngineJit {
    jit: Mutex<Option<Result<Jit, String>>>,
    queue: OnceLock<Arc<JobQueue>>,
    /// Blocks compiled.
    pub compiled: AtomicU64,
    /// Entries into compiled code from the run loop (each may run many chained blocks).
    pub entries: AtomicU64,
    /// Blocks the JIT refused.
    pub failed: AtomicU64,
    /// Code-cache flushes.
    pub flushes: AtomicU64,
    /// Hot regions compiled.
    pub regions: AtomicU64,
    /// Block runs in the interpreter (counted only with `Config::stats`).
    pub interpreted: AtomicU64,
    /// Why compiled code returned to the run loop (counted only with `Config::stats`):
    /// see `ExitReason`.
    pub exits: [AtomicU64; ExitReason::COUNT],
}

/// Why compiled code returned to the run loop (`--stats`).
#[derive(Clone, Copy, Debug)]
pub enum ExitReason {
    /// A direct exit whose target was not linked (not compiled yet, or just linked now),
    /// or a quickly compiled block asking for its tier-up.
    Unlinked,
    /// An indirect jump or call whose target was not in the vCPU's table.
    IndirectMiss,
    /// A return whose target was not in the vCPU's table.
    ReturnMiss,
    /// The chain budget ran out.
    Budget,
    /// A syscall, fault, halt or code write.
    Other,
}

impl ExitReason {
    /// Number of reasons.
    pub const COUNT: usize = ExitReason::ALL.len();
    /// Label for `--stats`.
    pub fn label(self) -> &'static str {
        match self {
            ExitReason::Unlinked => "exits: unlinked jump",
            ExitReason::IndirectMiss => "exits: indirect miss",
            ExitReason::ReturnMiss => "exits: return miss",
            ExitReason::Budget => "exits: budget spent",
            ExitReason::Other => "exits: syscall/fault/other",
        }
    }
    /// Every reason, in `exits` order.
    pub const ALL: [ExitReason; 5] = [
        ExitReason::Unlinked,
        ExitReason::IndirectMiss,
        ExitReason::ReturnMiss,
        ExitReason::Budget,
        ExitReason::Other,
    ];
}

/// The compile thread's work: a stack, so the blocks that became hot last (the loop the
/// guest is in now) are compiled first, not after a backlog of start-up code that may
/// never run again.
#[derive(Default)]
struct JobQueue {
    jobs: Mutex<Vec<Job>>,
    ready: Condvar,
    /// Set when the engine goes away: the compile thread ends.
    closed: AtomicBool,
}

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest job, waiting for one; `None` once the queue is closed.
    fn pop(&self) -> Option<Job> {
        let mut jobs = self.lock();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(j) = jobs.pop() {
                return Some(j);
            }
            jobs = self.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        let _jobs = self.lock();
        self.closed.store(true, Ordering::Release);
        self.ready.notify_all();
    }
}

impl Drop for EngineJit {
    fn drop(&mut self) {
        if let Some(q) = self.queue.get() {
            q.close();
        }
    }
}

struct Job {
    tb: Arc<Tb>,
    direct: Option<DirectAccessors>,
    what: JobKind,
}

/// What a compile job makes of its block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// The block's first, quick compile.
    Block,
    /// The hot region headed by the block, optimised.
    Region,
    /// The block alone again, optimised (a tier-up: it ran often).
    TierUp,
}

/// Per-vCPU JIT state: the chaining state and what the last run left to link.
#[derive(Debug, Default)]
pub struct VcpuJit {
    chain: ChainState,
    pending_link: Option<LinkPoint>,
    pending_indirect: Option<u64>,
}

impl VcpuJit {
    /// Forget the indirect table and pending links (blocks were invalidated or flushed).
    pub fn clear(&mut self) {
        self.chain.clear();
        self.pending_link = None;
        self.pending_indirect = None;
    }
}

/// Run `tb` once (and, compiled, whatever it chains to) in the configured tier.
pub(super) fn run_tb(
    engine: &Arc<Engine>,
    tb: &Arc<Tb>,
    vj: &mut VcpuJit,
    cpu: &mut CpuState,
    mem: &mut dyn GuestMemory,
) -> BlockExit {
    let mut code = tb.jit.to_run();
    if code.is_none() {
        request(engine, tb, mem);
        code = tb.jit.to_run();
    }
    // Compiled code assumes no code write is pending when it starts (its user-mode fast
    // path could not report one); the loop takes them after every run, so this is rare.
    let Some(c) = code.filter(|_| !mem.code_written()) else {
        vj.pending_link = None;
        vj.pending_indirect = None;
        // Only counted for --stats: one shared atomic per interpreted block would make
        // every guest thread fight over its cache line.
        if engine.config.stats {
            engine.jit.interpreted.fetch_add(1, Ordering::Relaxed);
        }
        let exit = interp::run_block(&tb.block, cpu, mem);
        if let (BlockExit::Indirect { pc, .. }, Term::Indirect { .. }) = (exit, tb.block.term) {
            tb.jit.indirect.get_or_init(Box::default).record(pc);
        }
        return exit;
    };
    if let Some(lp) = vj.pending_link.take() {
        if lp.target_pc() == c.pc() {
            c.link_from(&lp);
        }
    }
    if vj.pending_indirect.take() == Some(c.pc()) {
        c.remember_in(&mut vj.chain);
    }
    // Counted only for --stats, like interpreted runs (one shared atomic per entry).
    if engine.config.stats {
        engine.jit.entries.fetch_add(1, Ordering::Relaxed);
    }
    vj.chain.budget = engine.config.jit_chain_budget;
    let (exit, lp) = c.run_chained(cpu, mem, &mut vj.chain);
    if engine.config.stats {
        let why = match exit {
            _ if vj.chain.budget_spent() => ExitReason::Budget,
            BlockExit::Jump(_) => ExitReason::Unlinked,
            BlockExit::Indirect { is_ret: false, .. } => ExitReason::IndirectMiss,
            BlockExit::Indirect { is_ret: true, .. } => ExitReason::ReturnMiss,
            _ => ExitReason::Other,
        };
        engine.jit.exits[why as usize].fetch_add(1, Ordering::Relaxed);
    }
    vj.pending_link = lp;
    if let BlockExit::Indirect { pc, .. } = exit {
        vj.pending_indirect = Some(pc);
        // Profile the target in the jumping block: a target is seen here once per vCPU
        // (then the indirect table has it), so this matters for `--tier jit`, whose
        // blocks are never interpreted.
        if let Some(src) = vj.chain.indirect_from().and_then(|s| engine.get(s)) {
            if matches!(src.block.term, Term::Indirect { .. }) {
                src.jit.indirect.get_or_init(Box::default).record(pc);
            }
        }
    }
    if vj.chain.budget_spent() {
        request_region(engine, cpu.rip(), vj.chain.budget_spent_in_loop(), JobKind::Region, mem);
    } else if vj.chain.hot_block() {
        request_region(engine, cpu.rip(), false, JobKind::TierUp, mem);
    }
    exit
}

/// `what` is `Region`: the code stopped at `pc` after using up its budget, build a region
/// headed there (`in_loop`: it ran out on a loop edge inside one function). `what` is
/// `TierUp`: the quickly compiled block at `pc` ran often, compile it alone again,
/// optimised.
fn request_region(
    engine: &Arc<Engine>,
    pc: u64,
    in_loop: bool,
    what: JobKind,
    mem: &dyn GuestMemory,
) {
    let Some(head) = engine.get(pc) else { return };
    // A loop whose budget ran out on its own back edge is already one function: another
    // copy headed here would not run faster. But a loop running through blocks chained
    // one to another is not, even when its blocks belong to a region entered elsewhere
    // (a region headed at an outer loop, say): it gets its own. So does a loop headed at
    // a block that was only tiered up alone.
    let from = match head.jit.region_state.load(Ordering::Relaxed) {
        NOT_QUEUED if !head.jit.has_region.load(Ordering::Acquire) => NOT_QUEUED,
        TIERED if what == JobKind::Region => TIERED,
        _ => return,
    };
    if (in_loop && in_live_region(&head))
        || head
            .jit
            .region_state
            .compare_exchange(from, QUEUED, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let direct = mem.direct_accessors();
    match engine.config.tier {
        Tier::Interp => {}
        Tier::Jit => compile_region(engine, &head, direct, what),
        Tier::Auto => enqueue(engine, Job { tb: head, direct, what }),
    }
}

/// The direct successors of a block.
fn direct_targets(b: &Block) -> impl Iterator<Item = u64> + '_ {
    let exits = b.ops.iter().filter_map(|op| match op {
        Op::ExitIf { target, .. } => Some(*target),
        _ => None,
    });
    let term = match b.term {
        Term::Jump(pc) => [Some(pc), None],
        Term::Branch { taken, not_taken, .. } => [Some(taken), Some(not_taken)],
        _ => [None, None],
    };
    exits.chain(term.into_iter().flatten())
}

/// The hot targets of `tb`'s indirect terminator, most frequent first: those seen at least
/// twice (once under `--tier jit`) and either on at least 1/32 of its profiled runs or
/// as often as the hot threshold.
///
/// The counts are biased: a target stops being counted once it is compiled and in the
/// vCPU's indirect table, while a target still interpreted keeps being counted on every
/// table miss. So a target the jump took `hot_threshold` times is hot whatever its share
/// (bytecode's LOAD handler was left out of its dispatch loop's region by share alone, and
/// the loop ran 2x slower).
fn hot_indirect_targets(engine: &Engine, tb: &Tb) -> Vec<u64> {
    if !matches!(tb.block.term, Term::Indirect { .. }) {
        return Vec::new();
    }
    let Some(t) = tb.jit.indirect.get().map(|p| p.targets()) else { return Vec::new() };
    let total: u64 = t.iter().map(|&(_, h)| u64::from(h)).sum();
    // `--tier jit` sees each target about once (when it misses the indirect table).
    let min: u64 = if engine.config.tier == Tier::Jit { 1 } else { 2 };
    let hot = u64::from(engine.config.hot_threshold).max(min);
    t.into_iter()
        .filter(|&(_, h)| {
            let h = u64::from(h);
            h >= min && (h * 32 >= total || h >= hot)
        })
        .map(|(p, _)| p)
        .collect()
}

/// The translated blocks on paths from `head` back to it (head first), found among at most
/// `MAX_REGION_BLOCKS` blocks reachable from it by direct exits and hot indirect targets.
fn find_region(engine: &Engine, head: &Arc<Tb>) -> Vec<Arc<Tb>> {
    let mut nodes = vec![head.clone()];
    let mut edges: Vec<Vec<usize>> = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let mut out = Vec::new();
        let mut targets: Vec<u64> = direct_targets(&nodes[i].block).collect();
        targets.extend(hot_indirect_targets(engine, &nodes[i]));
        for t in targets {
            let j = match nodes.iter().position(|n| n.block.pc == t) {
                Some(j) => j,
                None if nodes.len() < MAX_REGION_BLOCKS => match engine.get(t) {
                    Some(tb) if !tb.jit.dead.load(Ordering::Relaxed) => {
                        nodes.push(tb);
                        nodes.len() - 1
                    }
                    _ => continue,
                },
                None => continue,
            };
            out.push(j);
        }
        edges.push(out);
        i += 1;
    }
    // Keep the blocks that can get back to the head.
    let mut back = vec![false; nodes.len()];
    back[0] = true;
    let mut changed = true;
    while changed {
        changed = false;
        for (u, out) in edges.iter().enumerate() {
            if !back[u] && out.iter().any(|&v| back[v]) {
                back[u] = true;
                changed = true;
            }
        }
    }
    nodes.into_iter().zip(back).filter_map(|(n, b)| b.then_some(n)).collect()
}

/// Whether `tb` belongs to a live region (headed by it or another block).
fn in_live_region(tb: &Tb) -> bool {
    let deps = tb.jit.dependents.lock().unwrap_or_else(|e| e.into_inner());
    deps.iter().any(|(head, code)| {
        head.upgrade().is_some_and(|h| {
            let r = h.jit.region.lock().unwrap_or_else(|e| e.into_inner());
            r.as_ref().is_some_and(|c| Arc::ptr_eq(c, code))
        })
    })
}

/// Compile and install the region headed by `head`, optimised. A region may be the head
/// alone: a one-block loop whose first compile was the quick baseline.
fn compile_region(
    engine: &Arc<Engine>,
    head: &Arc<Tb>,
    direct: Option<DirectAccessors>,
    what: JobKind,
) {
    // A tier-up is the block alone: a loop through it gets its region from the budget
    // running out there, as usual, and that region replaces the tier-up.
    let members =
        if what == JobKind::TierUp { vec![head.clone()] } else { find_region(engine, head) };
    // A region of one block is the block alone compiled again, optimised (its first
    // compile was the quick one); worth it only if that block has compiled code to replace.
    if members.is_empty() || (members.len() == 1 && head.jit.compiled().is_none()) {
        head.jit.region_state.store(FAILED, Ordering::Relaxed);
        return;
    }
    let blocks: Vec<&Arc<Block>> = members.iter().map(|t| &t.block).collect();
    // Each member's hot indirect targets inside the region: its indirect terminator jumps
    // straight to them.
    let indirect: Vec<Vec<u64>> = members
        .iter()
        .map(|m| {
            let mut t = hot_indirect_targets(engine, m);
            t.retain(|pc| blocks.iter().any(|b| b.pc == *pc));
            t
        })
        .collect();
    let mut guard = engine.jit.jit.lock().unwrap_or_else(|e| e.into_inner());
    let Some(Ok(jit)) = guard.as_mut() else { return };
    let code = match jit.compile_region_with(&blocks, &indirect, direct) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            debug_assert!(!matches!(e, JitError::Codegen { .. }), "{e}");
            if engine.config.trace_translate {
                eprintln!("---- JIT region {:#x}: not compiled: {e}", head.block.pc);
            }
            head.jit.region_state.store(FAILED, Ordering::Relaxed);
            return;
        }
    };
    if engine.config.trace_translate {
        let pcs: Vec<String> = blocks.iter().map(|b| format!("{:#x}", b.pc)).collect();
        eprintln!("---- JIT region of {} blocks: {}", blocks.len(), pcs.join(" "));
        trace(jit, &code);
    }
    drop(guard);
    if engine.config.perf_map {
        perf_map_note(&code, &format!("_region{}", blocks.len()));
    }
    // Register before checking liveness: a member killed in between sees the region in
    // its dependents; one killed before is seen dead here.
    for m in &members {
        m.jit
            .dependents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Arc::downgrade(head), code.clone()));
    }
    if members.iter().any(|m| m.jit.dead.load(Ordering::SeqCst)) {
        code.kill();
        return;
    }
    let old = head.jit.region.lock().unwrap_or_else(|e| e.into_inner()).replace(code.clone());
    head.jit.has_region.store(true, Ordering::Release);
    if let Some(old) = old {
        // A loop region replacing the block's tier-up: links into the old code go to the
        // dispatcher once and are linked to the loop.
        old.unlink_incoming();
    }
    // A tier-up, which a loop region headed here may still replace.
    let state = if what == JobKind::TierUp { TIERED } else { QUEUED };
    head.jit.region_state.store(state, Ordering::Relaxed);
    // Exits linked to the head's own code would keep bypassing the region: unlink them,
    // the dispatcher links them to the region on their next use. Quickly compiled code
    // also forwards to the region on entry, for the ways in the dispatcher does not see
    // (a vCPU's indirect-table entry).
    if let Some(own) = head.jit.code.get() {
        own.unlink_incoming();
        own.forward_to(&code);
    }
    engine.jit.regions.fetch_add(1, Ordering::Relaxed);
}

/// `tb` is about to be interpreted: compile it now (`Jit`), count it and maybe queue it
/// (`Auto`), or do nothing (`Interp`).
fn request(engine: &Arc<Engine>, tb: &Arc<Tb>, mem: &dyn GuestMemory) {
    let cfg = &engine.config;
    match cfg.tier {
        Tier::Interp => {}
        Tier::Jit => {
            if tb.jit.state.load(Ordering::Relaxed) == NOT_QUEUED {
                tb.jit.state.store(QUEUED, Ordering::Relaxed);
                compile(engine, tb, mem.direct_accessors());
            }
        }
        Tier::Auto => {
            // A plain load and store, not a locked add (about 20 cycles per interpreted
            // block run): racing vCPUs may lose a count, which only delays the tier-up.
            let n = tb.execs.load(Ordering::Relaxed).saturating_add(1);
            tb.execs.store(n, Ordering::Relaxed);
            if n >= cfg.hot_threshold
                && tb
                    .jit
                    .state
                    .compare_exchange(NOT_QUEUED, QUEUED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                enqueue(
                    engine,
                    Job { tb: tb.clone(), direct: mem.direct_accessors(), what: JobKind::Block },
                );
            }
        }
    }
}

impl EngineJit {
    /// Run `f` (user mode: a `fork`) while no compilation is in progress and nobody holds
    /// the compile queue: both locks are held across `f`, so a forked child never
    /// inherits them locked.
    pub fn quiesced<R>(&self, f: impl FnOnce() -> R) -> R {
        let _jit = self.jit.lock().unwrap_or_else(|e| e.into_inner());
        let _queue = self.queue.get().map(|q| q.lock());
        f()
    }
}

/// In a child made by `fork`, only the forking thread exists: start a new compile thread
/// if the parent had one (otherwise queued blocks would never be compiled).
pub fn restart_compiler_after_fork(engine: &Arc<Engine>) {
    if let Some(q) = engine.jit.queue.get() {
        spawn_compiler(engine, q.clone());
    }
}

static HELPER_THREAD_INIT: OnceLock<fn()> = OnceLock::new();

/// Register a function that every helper thread the engine starts (the JIT compile
/// thread) runs first. User mode uses it to block guest signals there, so the kernel
/// never hands a guest's signal to a thread that is not a guest thread.
pub fn set_helper_thread_init(f: fn()) {
    let _ = HELPER_THREAD_INIT.set(f);
}

fn spawn_compiler(engine: &Arc<Engine>, queue: Arc<JobQueue>) {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    let q = queue.clone();
    let spawned = std::thread::Builder::new().name("blockscope-jit".into()).spawn(move || {
        let queue = q;
        if let Some(init) = HELPER_THREAD_INIT.get() {
            init();
        }
        // Ends when the engine is dropped (it closes the queue).
        while let Some(job) = queue.pop() {
            let Some(engine) = weak.upgrade() else { break };
            match job.what {
                JobKind::Block => compile(&engine, &job.tb, job.direct),
                what => compile_region(&engine, &job.tb, job.direct, what),
            }
        }
    });
    if let Err(e) = spawned {
        eprintln!("blockscope: cannot start the jit thread ({e}); interpreting only");
        queue.close();
    }
}

fn enqueue(engine: &Arc<Engine>, job: Job) {
    let q = engine.jit.queue.get_or_init(|| {
        let q = Arc::new(JobQueue::default());
        spawn_compiler(engine, q.clone());
        q
    });
    let mut jobs = q.lock();
    if q.closed.load(Ordering::Acquire) {
        // No compile thread: the block simply stays interpreted.
        engine.jit.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    jobs.push(job);
    drop(jobs);
    q.ready.notify_one();
}

/// Compile `tb` and install the code. On a full cache, start a new code generation and
/// flush every TB (the block is retranslated and recompiled when it is hot again).
fn compile(engine: &Arc<Engine>, tb: &Arc<Tb>, direct: Option<DirectAccessors>) {
    if tb.jit.dead.load(Ordering::SeqCst) {
        return;
    }
    let mut guard = engine.jit.jit.lock().unwrap_or_else(|e| e.into_inner());
    let jit = guard.get_or_insert_with(|| {
        let opts = JitOptions {
            cache_limit: engine.config.jit_cache_size,
            region_size: engine.config.jit_cache_size.clamp(1 << 16, 16 << 20),
        };
        Jit::with_options(opts).map_err(|e| {
            eprintln!("blockscope: jit unavailable ({e}); interpreting only");
            e.to_string()
        })
    });
    let Ok(jit) = jit else {
        tb.jit.state.store(FAILED, Ordering::Relaxed);
        return;
    };
    match jit.compile_baseline(&tb.block, direct) {
        Ok(c) => {
            if engine.config.trace_translate {
                trace(jit, &c);
            }
            engine.jit.compiled.fetch_add(1, Ordering::Relaxed);
            if engine.config.perf_map {
                perf_map_note(&c, "");
            }
            tb.jit.install(Arc::new(c));
        }
        Err(JitError::CacheFull) => {
            let flushed = jit.flush();
            drop(guard);
            engine.jit.flushes.fetch_add(1, Ordering::Relaxed);
            engine.flush();
            if let Err(e) = flushed {
                eprintln!("blockscope: jit code cache flush failed ({e})");
            }
            tb.jit.state.store(FAILED, Ordering::Relaxed);
        }
        Err(e) => {
            // Cranelift rejecting what we generated is a lowering bug: loud in test and
            // debug builds; in release the block just stays interpreted.
            debug_assert!(!matches!(e, JitError::Codegen { .. }), "{e}");
            if engine.config.trace_translate {
                eprintln!("---- JIT {:#x}: not compiled: {e}", tb.block.pc);
            }
            engine.jit.failed.fetch_add(1, Ordering::Relaxed);
            tb.jit.state.store(FAILED, Ordering::Relaxed);
        }
    }
}

/// `--perf-map`: append `HOSTADDR SIZE bs_GUESTPC[SUFFIX]` to `/tmp/perf-PID.map`, the
/// file `perf report` reads for JIT code. Opened per call so a forked child writes its own.
fn perf_map_note(c: &CompiledTb, suffix: &str) {
    use std::io::Write;
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let line = format!("{:x} {:x} bs_{:#x}{suffix}\n", c.host_addr(), c.code_len(), c.pc());
    let f = std::fs::OpenOptions::new().create(true).append(true).open(&path);
    if let Err(e) = f.and_then(|mut f| f.write_all(line.as_bytes())) {
        eprintln!("blockscope: --perf-map: cannot write {path} ({e})");
    }
}

/// `--trace-translate` for compiled blocks: the optimised Cranelift IR and the host code.
fn trace(jit: &Jit, c: &CompiledTb) {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut out = format!(
        "---- JIT {:#x}: {} bytes at {:#x}\n{}",
        c.pc(),
        c.code_len(),
        c.host_addr(),
        jit.last_clif()
    );
    let mut dec = Decoder::with_ip(64, c.code(), c.host_addr() as u64, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut s = String::new();
    while dec.can_decode() {
        let i = dec.decode();
        s.clear();
        f.format(&i, &mut s);
        out.push_str(&format!("  {:#014x}  {s}\n", i.ip()));
    }
    eprint!("{out}");
}
