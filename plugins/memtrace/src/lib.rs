//! `memtrace`: every load and store (pc, address, size, value, thread) into a compact binary
//! file (format: `blockscope_plugin_api::trace`; read it with `blockscope memtrace`), with
//! address-range and pc-range filters; or, with `cache=on`, a cachegrind-like simulation of
//! I1/D1/LL caches that prints accesses and misses per level.
//!
//! Accesses are the emulator's own memory operations of each instruction, reported right
//! after they complete. REP string instructions are expanded (`Host::expand_rep_strings`),
//! so each element is an access of its own, as under Valgrind; accesses made inside other
//! helpers (FXSAVE/FXRSTOR, XSAVE) are not seen. An atomic read-modify-write is one record
//! of kind RMW with the old value.
//! A forked child's accesses are not traced (the parent owns the file).
//!
//! Tracing costs no call per access: each vCPU has a buffer of records in three
//! scoreboards of 64-bit words (columns: site ids, addresses, values), and the injected
//! code right after an access stores its record (a constant *site* id, the address, the
//! value) at the buffer position and advances the position by one. The three stores share
//! one index, masked once (interleaved words needed an add and a mask per store).
//! A site is one access of one instruction — (pc, size, kind) in a table filled at
//! translation, deduplicated so a retranslated block reuses its ids. At block entry, a
//! block whose records might not fit calls `flush` and resets the position. `flush` only
//! copies the buffer's used part into a recycled vector and queues it (a bounded queue:
//! a slow disk holds the guest back instead of filling memory). One writer thread encodes
//! the queued buffers in order (format: see `trace`'s module doc; about 1.7 bytes a
//! record on the `bytecode` benchmark) and hands the bytes to an I/O thread that writes
//! them in 4 MiB pieces (`O_DIRECT` for a regular file: see `writer`). The address filter
//! is a compare that advances the position only for accesses inside the range; the pc
//! filter is applied at translation. With `cache=on`, each access calls the cache
//! simulator instead.
#![forbid(unsafe_code)]

mod cache;
mod queue;
mod writer;

use blockscope_plugin_api::abi::{ArgSpec, ACCESS_LOAD, ACCESS_RMW, ACCESS_STORE};
use blockscope_plugin_api::trace::{self, Site};
use blockscope_plugin_api::{
    declare_plugin, Args, BinOp, Call, CmpOp, Host, Injector, Plugin, Scoreboard, TbView,
};
pub use cache::{Geometry, Hierarchy, Stats};
use queue::Queue;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use writer::Batch;

/// Records in each vCPU's trace buffer.
const BUF_RECS: u32 = 1 << 14;
/// Buffers queued for the writer thread at most (then `flush` waits until half are
/// taken).
const QUEUE: usize = 8;
/// Free buffers kept before one is reused.
const ROTATION: usize = 4;

/// Buffers the writer is done with, oldest first.
type Pool = Arc<Mutex<VecDeque<[Vec<u64>; 3]>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The site table: ids in order of first translation.
#[derive(Default)]
pub(crate) struct Sites {
    /// (pc, access index in the instruction, size, kind) → id.
    ids: HashMap<(u64, u32, u8, u8), u32>,
    pub(crate) list: Vec<Site>,
}

impl Sites {
    fn id(&mut self, pc: u64, access: u32, size: u8, kind: u8) -> u32 {
        let next = self.list.len() as u32;
        let id = *self.ids.entry((pc, access, size, kind)).or_insert(next);
        if id == next {
            self.list.push(Site { pc, size, kind });
        }
        id
    }
}

/// The writer thread and the way to it.
struct Writer {
    queue: Arc<Queue<Batch>>,
    /// Buffers the writer is done with, for `drain` to reuse.
    pool: Pool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The plugin.
pub struct MemTrace {
    host: Host,
    /// The process that installed the plugin (a forked child does not trace).
    pid: u32,
    writer: Option<Writer>,
    sites: Arc<Mutex<Sites>>,
    /// The trace buffer: three columns (site ids, addresses, values) indexed by record,
    /// so a record's three stores share one masked index.
    buf: [Scoreboard; 3],
    pos: Scoreboard,
    /// vCPUs whose buffer was written out for the last time.
    drained: Mutex<Vec<bool>>,
    addr: Option<(u64, u64)>,
    pc: Option<(u64, u64)>,
    cache: Option<Mutex<Hierarchy>>,
    report: Option<String>,
    blocks: Mutex<Vec<Vec<(u64, u64)>>>,
}

fn range(args: &Args, key: &str) -> Result<Option<(u64, u64)>, String> {
    let Some(v) = args.get(key) else { return Ok(None) };
    let bad = || format!("{key} must be LO-HI in hex (e.g. 0x1000-0x2000), not `{v}`");
    let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
    let num =
        |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).map_err(|_| bad());
    let (lo, hi) = (num(lo)?, num(hi)?);
    if lo >= hi {
        return Err(bad());
    }
    Ok(Some((lo, hi)))
}

/// `pc | size << 56 | kind << 52` (user-space pcs fit 52 bits).
fn pack(pc: u64, size: u32, kind: u8) -> u64 {
    pc & ((1 << 52) - 1) | (size as u64) << 56 | (kind as u64) << 52
}

/// Inverse of `pack`: (pc, size, kind).
fn unpack(w: u64) -> (u64, u8, u8) {
    (w & ((1 << 52) - 1), (w >> 56) as u8, (w >> 52 & 3) as u8)
}

/// `cache=on`: one access (udata from `pack`; args: address).
fn on_access(p: &MemTrace, c: &Call) {
    let (_, size, kind) = unpack(c.udata);
    if let Some(h) = &p.cache {
        let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
        match kind {
            trace::KIND_LOAD => h.read(c.args[0], size as u64),
            trace::KIND_STORE => h.write(c.args[0], size as u64),
            _ => {
                h.read(c.args[0], size as u64);
                h.write(c.args[0], size as u64)
            }
        }
    }
}

/// A block's records might not fit: write out the buffer (`args[0]` records; the
/// injected code then restarts at 0).
fn on_flush(p: &MemTrace, c: &Call) {
    p.drain(c.vcpu, c.args[0], false);
}

fn on_block(p: &MemTrace, c: &Call) {
    let blocks = p.blocks.lock().unwrap_or_else(|e| e.into_inner());
    let Some(insns) = blocks.get(c.udata as usize) else { return };
    if let Some(h) = &p.cache {
        let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
        for &(pc, len) in insns {
            h.fetch(pc, len);
        }
    }
}

impl MemTrace {
    /// Queue the first `recs` records of `vcpu`'s buffer for the writer; `last` marks the
    /// vCPU drained (its later records, if any, are dropped: the process is ending).
    fn drain(&self, vcpu: u32, recs: u64, last: bool) {
        // In a forked child the writer thread does not exist (and other threads' locks may
        // be held forever): drop the records before touching anything.
        let Some(w) = self.writer.as_ref().filter(|_| std::process::id() == self.pid) else {
            return;
        };
        {
            let mut d = lock(&self.drained);
            if d.len() <= vcpu as usize {
                d.resize(vcpu as usize + 1, false);
            }
            if d[vcpu as usize] {
                return;
            }
            d[vcpu as usize] |= last;
        }
        let n = (recs as usize).min(BUF_RECS as usize);
        if n == 0 {
            return;
        }
        // The buffer released longest ago (its memory is no longer in the writer's cache,
        // which makes the copy into it cheaper), once enough are in rotation.
        let mut v = {
            let mut pool = lock(&w.pool);
            if pool.len() >= ROTATION {
                pool.pop_front().unwrap_or_default()
            } else {
                Default::default()
            }
        };
        // Vectors keep their full length, so reusing one writes nothing but the copy.
        for c in &mut v {
            c.resize(BUF_RECS as usize, 0);
        }
        let len = (0..3).map(|k| self.buf[k].read_into(vcpu, &mut v[k][..n])).min().unwrap_or(0);
        // Fails only once the writer is closed (the process is ending).
        let _ = w.queue.push(Batch { vcpu, cols: v, len });
    }

    /// Close the queue and wait for the writer to write everything.
    fn finish(&self) {
        let Some(w) = self.writer.as_ref().filter(|_| std::process::id() == self.pid) else {
            return;
        };
        w.queue.close();
        let t = lock(&w.thread).take();
        if let Some(t) = t {
            if t.join().is_err() {
                self.host.error("the trace writer failed; the trace is incomplete");
            }
        }
    }

    fn report(&self, s: &Stats) -> String {
        let pct = |a: u64, b: u64| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        let d = s.dr + s.dw;
        let (d1m, llm) = (s.d1mr + s.d1mw, s.dlmr + s.dlmw);
        let ll_refs = s.i1mr + d1m;
        let ll_misses = s.ilmr + llm;
        format!(
            "I refs:        {}\nI1  misses:    {}\nLLi misses:    {}\nI1  miss rate: {:.2}%\n\
             LLi miss rate: {:.2}%\n\nD refs:        {} ({} rd + {} wr)\n\
             D1  misses:    {} ({} rd + {} wr)\nLLd misses:    {} ({} rd + {} wr)\n\
             D1  miss rate: {:.1}%\nLLd miss rate: {:.1}%\n\nLL refs:       {}\n\
             LL misses:     {} ({} rd + {} wr)\nLL miss rate:  {:.1}%\n",
            s.ir,
            s.i1mr,
            s.ilmr,
            pct(s.i1mr, s.ir),
            pct(s.ilmr, s.ir),
            d,
            s.dr,
            s.dw,
            d1m,
            s.d1mr,
            s.d1mw,
            llm,
            s.dlmr,
            s.dlmw,
            pct(d1m, d),
            pct(llm, d),
            ll_refs,
            ll_misses,
            s.ilmr + s.dlmr,
            s.dlmw,
            pct(ll_misses, s.ir + d),
        )
    }
}

impl Plugin for MemTrace {
    const NAME: &'static str = "memtrace";
    const DESCRIPTION: &'static str =
        "every load and store to a binary trace (see `blockscope memtrace`), or a cache simulation";
    const ARGS: &'static [ArgSpec] = &[
        ArgSpec::new("out", "memtrace.bin", "trace file (not written with cache=on unless given)"),
        ArgSpec::new("addr", "", "only accesses to LO-HI (hex, end exclusive)"),
        ArgSpec::new("pc", "", "only accesses by instructions in LO-HI (hex)"),
        ArgSpec::new("cache", "off", "simulate I1/D1/LL caches instead of tracing"),
        ArgSpec::new("i1", "32768:8:64", "I1 cache SIZE:ASSOC:LINE"),
        ArgSpec::new("d1", "32768:8:64", "D1 cache SIZE:ASSOC:LINE"),
        ArgSpec::new("ll", "8388608:16:64", "LL cache SIZE:ASSOC:LINE"),
        ArgSpec::new("report", "", "write the cache report to this file (default: stderr)"),
    ];

    fn install(host: Host, args: &Args) -> Result<Self, String> {
        // Every argument is checked before the trace file is created: bad input leaves
        // no file behind.
        let (addr, pc) = (range(args, "addr")?, range(args, "pc")?);
        let cache_on = args.flag("cache", false)?;
        let cache = if cache_on {
            let g = |k: &str, d: &str| Geometry::parse(args.get(k).unwrap_or(d));
            let h = Hierarchy::new(
                g("i1", "32768:8:64")?,
                g("d1", "32768:8:64")?,
                g("ll", "8388608:16:64")?,
            );
            Some(Mutex::new(h))
        } else {
            None
        };
        // Each element of a REP string instruction is then an access of its own (a
        // `rep movsb` copy is most of some programs' memory traffic).
        if !host.expand_rep_strings() {
            return Err("the host refused to expand REP string instructions".into());
        }
        let recs = if cache_on { 1 } else { BUF_RECS };
        let buf = [host.scoreboard(8, recs)?, host.scoreboard(8, recs)?, host.scoreboard(8, recs)?];
        let pos = host.scoreboard(8, 1)?;
        let out = match args.get("out") {
            Some(p) => Some(p.to_string()),
            None if cache_on => None,
            None => Some("memtrace.bin".to_string()),
        };
        let file = match &out {
            Some(p) => {
                let mut f = File::create(p).map_err(|e| format!("cannot create {p}: {e}"))?;
                f.write_all(&trace::header()).map_err(|e| format!("cannot write {p}: {e}"))?;
                Some(f)
            }
            None => None,
        };
        let sites = Arc::new(Mutex::new(Sites::default()));
        let writer = match (file, out) {
            (Some(f), Some(path)) => {
                let queue = Arc::new(Queue::new(QUEUE));
                let q = queue.clone();
                let pool = Pool::default();
                let (s, p) = (sites.clone(), pool.clone());
                let t = std::thread::Builder::new()
                    .name("memtrace-writer".into())
                    .spawn(move || writer::encode_loop(&q, f, path, s, p, host))
                    .map_err(|e| format!("cannot start the trace writer: {e}"))?;
                Some(Writer { queue, pool, thread: Mutex::new(Some(t)) })
            }
            _ => None,
        };
        Ok(MemTrace {
            host,
            pid: std::process::id(),
            writer,
            sites,
            buf,
            pos,
            drained: Mutex::new(Vec::new()),
            addr,
            pc,
            cache,
            report: args.get("report").map(str::to_string),
            blocks: Mutex::new(Vec::new()),
        })
    }

    fn translate(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        if self.cache.is_some() {
            let mut b = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
            b.push(tb.insns().map(|i| (i.pc(), i.len() as u64)).collect());
            let id = b.len() as u64 - 1;
            drop(b);
            inj.block_entry().call(on_block, id, &[]);
        }
        let traced = |insn: &blockscope_plugin_api::InsnView<'_>| {
            !self.pc.is_some_and(|(lo, hi)| insn.pc() < lo || insn.pc() >= hi)
        };
        let kind_of = |k: u32| match k {
            ACCESS_LOAD => Some(trace::KIND_LOAD),
            ACCESS_STORE => Some(trace::KIND_STORE),
            ACCESS_RMW => Some(trace::KIND_RMW),
            _ => None,
        };
        let records: u64 = tb
            .insns()
            .filter(traced)
            .map(|i| i.accesses().iter().filter(|a| kind_of(a.kind).is_some()).count() as u64)
            .sum();
        if records == 0 {
            return;
        }
        if self.cache.is_none() {
            // Room for every record of the block, or flush first.
            let mut e = inj.block_entry();
            let pos = e.sb_load(&self.pos, 0, None);
            let limit = e.constant((BUF_RECS as u64).saturating_sub(records));
            let full = e.cmp(CmpOp::Ugt, pos, limit);
            e.call_if(full, on_flush, 0, &[pos]);
            let zero = e.constant(0);
            let start = e.select(full, zero, pos);
            e.sb_store(&self.pos, 0, None, start);
        }
        // Site ids of the traced accesses, in block order.
        let mut ids = Vec::new();
        if self.cache.is_none() {
            let mut sites = lock(&self.sites);
            for insn in tb.insns().filter(traced) {
                for (m, a) in insn.accesses().iter().enumerate() {
                    if let Some(kind) = kind_of(a.kind) {
                        ids.push(sites.id(insn.pc(), m as u32, a.size as u8, kind));
                    }
                }
            }
        }
        let mut ids = ids.into_iter();
        for insn in tb.insns().filter(traced) {
            for (m, a) in insn.accesses().iter().enumerate() {
                let Some(kind) = kind_of(a.kind) else { continue };
                let mut e = inj.after_access(insn.index(), m);
                let addr = e.mem_addr();
                let inside = self.addr.map(|(lo, hi)| {
                    let (l, h) = (e.constant(lo), e.constant(hi));
                    let ge = e.cmp(CmpOp::Uge, addr, l);
                    let lt = e.cmp(CmpOp::Ult, addr, h);
                    e.bin(BinOp::And, ge, lt)
                });
                if self.cache.is_some() {
                    let udata = pack(insn.pc(), a.size, kind);
                    match inside {
                        None => e.call(on_access, udata, &[addr]),
                        Some(c) => e.call_if(c, on_access, udata, &[addr]),
                    }
                    continue;
                }
                let site = ids.next().expect("one id per traced access") as u64;
                let value = e.mem_value();
                let pos = e.sb_load(&self.pos, 0, None);
                let head = e.constant(site);
                e.sb_store(&self.buf[0], 0, Some(pos), head);
                e.sb_store(&self.buf[1], 0, Some(pos), addr);
                e.sb_store(&self.buf[2], 0, Some(pos), value);
                let step = e.constant(1);
                let step = match inside {
                    None => step,
                    Some(c) => {
                        let zero = e.constant(0);
                        e.select(c, step, zero)
                    }
                };
                let next = e.add(pos, step);
                e.sb_store(&self.pos, 0, None, next);
            }
        }
    }

    fn vcpu_exit(&self, vcpu: u32) {
        self.drain(vcpu, self.pos.read(vcpu, 0), true);
    }

    fn exit(&self) {
        for v in 0..self.host.vcpu_count() {
            self.drain(v, self.pos.read(v, 0), true);
        }
        self.finish();
        if let Some(h) = &self.cache {
            let text = self.report(&h.lock().unwrap_or_else(|e| e.into_inner()).stats);
            match &self.report {
                Some(p) => {
                    if let Err(e) = std::fs::write(p, &text) {
                        self.host.error(&format!("cannot write {p}: {e}"));
                    }
                }
                None => eprint!("{text}"),
            }
        }
    }
}

impl Drop for MemTrace {
    fn drop(&mut self) {
        // Never leave the writer thread running code of an unloaded library.
        self.finish();
    }
}

declare_plugin!(MemTrace);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_numbered_once() {
        let mut s = Sites::default();
        // A block's accesses get consecutive ids; translating it again reuses them.
        let block = [(0x1000, 0, 8, trace::KIND_LOAD), (0x1004, 0, 4, trace::KIND_STORE)];
        for _ in 0..2 {
            let ids: Vec<u32> = block.iter().map(|&(pc, m, sz, k)| s.id(pc, m, sz, k)).collect();
            assert_eq!(ids, [0, 1]);
        }
        // Another access of the same instruction is another site.
        assert_eq!(s.id(0x1004, 1, 4, trace::KIND_STORE), 2);
        assert_eq!(s.list.len(), 3);
        assert_eq!(s.list[1], Site { pc: 0x1004, size: 4, kind: trace::KIND_STORE });
    }
}
