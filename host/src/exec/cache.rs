//! The shared TB cache and invalidation.

use crate::config::Config;
use crate::cpu::Fault;
use crate::frontend::{translate_with, LiftOpts, Translated};
use crate::ir::Block;
use crate::mem::{page_floor, GuestMemory, PAGE_SIZE};
use crate::plugin::Plugins;
use iced_x86::Instruction;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A translation block as cached.
pub struct Tb {
    /// The IR (after plugin injection).
    pub block: Arc<Block>,
    /// The decoded guest instructions (for plugin views and tracing).
    pub insns: Vec<Instruction>,
    /// Set when the block is a #UD raised because no lifter handles the instruction.
    pub unimplemented: Option<u64>,
    /// Executions so far (tier-up heuristics).
    pub execs: AtomicU32,
    /// Compiled code, once the JIT has produced it (`tier.rs`).
    pub jit: super::tier::TbJit,
}

/// A hasher for guest addresses: one multiply (Fibonacci hashing) instead of SipHash.
/// Keys are pcs and page addresses chosen by the guest, not by an adversary who could
/// make the map degrade, and a miss in a vCPU's jump cache lands here.
#[derive(Default, Clone, Copy)]
pub struct PcHasher(u64);

impl Hasher for PcHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        // The high bits of the product mix every input bit; hashbrown takes its control
        // byte from the top 7 bits and its bucket from the low ones, so fold them.
        let m = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = m ^ (m >> 32);
    }
}

/// A map keyed by guest address.
pub type PcMap<V> = HashMap<u64, V, BuildHasherDefault<PcHasher>>;

/// Engine state shared by all vCPUs.
pub struct Engine {
    /// Configuration.
    pub config: Config,
    /// The run's plugins (see `plugin`): they see and instrument every translated block.
    pub plugins: Arc<Plugins>,
    tbs: RwLock<PcMap<Arc<Tb>>>,
    /// page → pcs of TBs overlapping it.
    pages: Mutex<PcMap<Vec<u64>>>,
    generation: AtomicU64,
    translations: AtomicU64,
    invalidated: AtomicU64,
    /// The JIT tier's compiler, compile queue and counters (`tier.rs`).
    pub jit: super::tier::EngineJit,
    /// How blocks are lifted (REP strings expanded when a plugin asked: settled before
    /// the engine exists, since plugins are installed first).
    lift_opts: LiftOpts,
}

impl Engine {
    /// A new engine.
    pub fn new(config: Config) -> Arc<Engine> {
        Engine::with_plugins(config, Arc::new(Plugins::none()))
    }

    /// A new engine whose blocks are instrumented by `plugins`.
    pub fn with_plugins(config: Config, plugins: Arc<Plugins>) -> Arc<Engine> {
        let lift_opts = LiftOpts { rep_each: config.expand_rep || plugins.rep_strings_expanded() };
        Arc::new(Engine {
            lift_opts,
            config,
            plugins,
            tbs: RwLock::new(PcMap::default()),
            pages: Mutex::new(PcMap::default()),
            generation: AtomicU64::new(0),
            translations: AtomicU64::new(0),
            invalidated: AtomicU64::new(0),
            jit: Default::default(),
        })
    }

    /// The invalidation generation (changes whenever TBs are removed).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of blocks translated so far.
    pub fn translations(&self) -> u64 {
        self.translations.load(Ordering::Relaxed)
    }

    /// The cached TB at `pc`, if any.
    pub fn get(&self, pc: u64) -> Option<Arc<Tb>> {
        self.tbs.read().unwrap_or_else(|e| e.into_inner()).get(&pc).cloned()
    }

    /// Look up or translate the TB at `pc`.
    pub fn lookup(
        &self,
        pc: u64,
        mem: &mut dyn GuestMemory,
        end_limit: u64,
    ) -> Result<Arc<Tb>, Fault> {
        if let Some(tb) = self.get(pc) {
            return Ok(tb);
        }
        let Translated { mut block, insns, unimplemented, depends_on } =
            translate_with(pc, mem, self.config.max_block_insns, end_limit, self.lift_opts)?;
        if !self.plugins.is_empty() {
            // The instructions' bytes in block order (a block may continue through an
            // elided `jmp`, so its code is not one range).
            let mut code = Vec::new();
            for (s, e) in crate::frontend::runs(&block.insns) {
                let at = code.len();
                code.resize(at + e.saturating_sub(s) as usize, 0);
                let n = mem.fetch_code(s, &mut code[at..]).unwrap_or(0);
                code.truncate(at + n);
            }
            self.plugins.on_translate(&mut block, &insns, &code);
        }
        if self.config.trace_translate {
            trace(&block, &insns);
        }
        let mut ranges = vec![(block.pc, block.end.max(block.pc + 1))];
        ranges.extend(depends_on);
        for &(s, e) in &ranges {
            mem.watch_code(s, e);
        }
        let tb = Arc::new(Tb {
            block: Arc::new(block),
            insns,
            unimplemented,
            execs: AtomicU32::new(0),
            jit: Default::default(),
        });
        self.translations.fetch_add(1, Ordering::Relaxed);
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        for (s, e) in ranges {
            let mut p = page_floor(s);
            while p < e {
                let v = pages.entry(p).or_default();
                if v.last() != Some(&pc) {
                    v.push(pc);
                }
                p += PAGE_SIZE;
            }
        }
        self.tbs.write().unwrap_or_else(|e| e.into_inner()).insert(pc, tb.clone());
        Ok(tb)
    }

    /// Run `f` (user mode: `fork`) with the engine quiescent: no compilation in progress
    /// and no TB-cache lock held by another thread, so a forked child inherits every
    /// engine lock unlocked. Locks are taken in the usual order (compiler, queue, pages,
    /// TBs).
    pub fn quiesced<R>(&self, f: impl FnOnce() -> R) -> R {
        self.jit.quiesced(|| {
            let _pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
            let _tbs = self.tbs.write().unwrap_or_else(|e| e.into_inner());
            f()
        })
    }

    /// Drop every TB overlapping one of `pages` (page-aligned addresses).
    pub fn invalidate_pages(&self, pages_to_drop: &[u64]) {
        if pages_to_drop.is_empty() {
            return;
        }
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let mut tbs = self.tbs.write().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        for p in pages_to_drop {
            if let Some(pcs) = pages.remove(p) {
                for pc in pcs {
                    if let Some(tb) = tbs.remove(&pc) {
                        // Unlink every compiled chain into the dead block.
                        tb.jit.kill();
                        self.invalidated.fetch_add(1, Ordering::Relaxed);
                        any = true;
                    }
                }
            }
        }
        if any {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The engine's counters, one `name value` pair per line (`--stats`).
    pub fn stats(&self) -> String {
        let j = &self.jit;
        let rows: [(&str, u64); 10] = [
            ("blocks translated", self.translations()),
            ("blocks invalidated", self.invalidated.load(Ordering::Relaxed)),
            ("invalidation events", self.generation()),
            ("interpreted block runs", j.interpreted.load(Ordering::Relaxed)), // --stats only
            ("blocks compiled", j.compiled.load(Ordering::Relaxed)),
            ("hot regions compiled", j.regions.load(Ordering::Relaxed)),
            ("blocks the jit refused", j.failed.load(Ordering::Relaxed)),
            ("entries into compiled code", j.entries.load(Ordering::Relaxed)),
            ("code cache flushes", j.flushes.load(Ordering::Relaxed)),
            ("slow accesses in jit code", crate::backend::jit::slow_accesses()),
        ];
        let exits = super::tier::ExitReason::ALL
            .iter()
            .map(|&r| (r.label(), j.exits[r as usize].load(Ordering::Relaxed)));
        rows.into_iter().chain(exits).map(|(k, v)| format!("{k:<28}{v:>14}\n")).collect()
    }

    /// Drop every TB overlapping `[start, end)`.
    pub fn invalidate_range(&self, start: u64, end: u64) {
        let mut v = Vec::new();
        let mut p = page_floor(start);
        while p < end {
            v.push(p);
            p += PAGE_SIZE;
        }
        self.invalidate_pages(&v);
    }

    /// Drop every TB.
    pub fn flush(&self) {
        self.pages.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let mut tbs = self.tbs.write().unwrap_or_else(|e| e.into_inner());
        tbs.values().for_each(|tb| tb.jit.kill());
        tbs.clear();
        drop(tbs);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

fn trace(block: &Block, insns: &[Instruction]) {
    use iced_x86::Formatter;
    let mut f = iced_x86::IntelFormatter::new();
    let mut s = String::new();
    let mut out = format!("---- TB {:#x} ({} insns)\n", block.pc, insns.len());
    for i in insns {
        s.clear();
        f.format(i, &mut s);
        out.push_str(&format!("  {:#014x}  {s}\n", i.ip()));
    }
    out.push_str(&block.to_string());
    eprint!("{out}");
}
