//! `memtrace`: every load and store (pc, address, size, value, thread) into a compact binary
//! file (format: `blockscope_plugin_api::trace`; read it with `blockscope memtrace`), with
//! address-range and pc-range filters; or, with `cache=on`, a cachegrind-like simulation of
//! I1/D1/LL caches that prints accesses and misses per level.
//!
//! Accesses are the emulator's own memory operations of each instruction, reported right
//! after they complete; accesses made inside helpers (REP string instructions, FXSAVE) are
//! not seen. An atomic read-modify-write is one record of kind RMW with the old value.
//!
//! Tracing costs no call per access: each vCPU has a buffer of 64-bit words in a
//! scoreboard, and the injected code right after an access stores its record (pc, size
//! and kind packed in one constant word, then address and value) at the buffer position and
//! advances the position. At block entry, a block whose records might not fit calls
//! `flush` (which writes the buffered records to the file in one write) and resets the
//! position. The address filter is a compare that advances the position only for accesses
//! inside the range; the pc filter is applied at translation. With `cache=on`, each access
//! calls the cache simulator instead.
#![forbid(unsafe_code)]

mod cache;

use blockscope_plugin_api::abi::{ArgSpec, ACCESS_LOAD, ACCESS_RMW, ACCESS_STORE};
use blockscope_plugin_api::trace;
use blockscope_plugin_api::{
    declare_plugin, Args, BinOp, Call, CmpOp, Host, Injector, Plugin, Scoreboard, TbView,
};
pub use cache::{Geometry, Hierarchy, Stats};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// Words in each vCPU's trace buffer (3 per record).
const BUF_WORDS: u32 = 1 << 16;
/// Words per buffered record.
const REC_WORDS: u32 = 3;

/// The plugin.
pub struct MemTrace {
    host: Host,
    file: Option<Mutex<File>>,
    buf: Scoreboard,
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

/// A block's records might not fit: write out the buffer (`args[0]` words; the injected
/// code then restarts at 0).
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
    /// Write the first `words` words of `vcpu`'s buffer as records; `last` marks the
    /// vCPU drained (its later records, if any, are dropped: the process is ending).
    fn drain(&self, vcpu: u32, words: u64, last: bool) {
        {
            let mut d = self.drained.lock().unwrap_or_else(|e| e.into_inner());
            if d.len() <= vcpu as usize {
                d.resize(vcpu as usize + 1, false);
            }
            if d[vcpu as usize] {
                return;
            }
            d[vcpu as usize] |= last;
        }
        let Some(f) = &self.file else { return };
        let buf = self.buf.read_all(vcpu);
        let n = (words as usize).min(buf.len()) / REC_WORDS as usize;
        let mut out = Vec::with_capacity(trace::CHUNK_HEADER_BYTES + n * 12);
        let mut chunk = trace::ChunkWriter::new(&mut out, vcpu);
        for w in buf.chunks_exact(REC_WORDS as usize).take(n) {
            let (pc, size, kind) = unpack(w[0]);
            // The format's value is zero-extended from the access size.
            let value = if size < 8 { w[2] & ((1u64 << (size * 8)) - 1) } else { w[2] };
            chunk.push(pc, w[1], value, size, kind);
        }
        chunk.finish();
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(&out) {
            self.host.error(&format!("cannot write the trace: {e}"));
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
        ArgSpec::new("i1", "32768,8,64", "I1 cache SIZE,ASSOC,LINE"),
        ArgSpec::new("d1", "32768,8,64", "D1 cache SIZE,ASSOC,LINE"),
        ArgSpec::new("ll", "8388608,16,64", "LL cache SIZE,ASSOC,LINE"),
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
                g("i1", "32768,8,64")?,
                g("d1", "32768,8,64")?,
                g("ll", "8388608,16,64")?,
            );
            Some(Mutex::new(h))
        } else {
            None
        };
        let out = match args.get("out") {
            Some(p) => Some(p.to_string()),
            None if cache_on => None,
            None => Some("memtrace.bin".to_string()),
        };
        let file = match out {
            Some(p) => {
                let mut f = File::create(&p).map_err(|e| format!("cannot create {p}: {e}"))?;
                f.write_all(&trace::header()).map_err(|e| format!("cannot write {p}: {e}"))?;
                Some(Mutex::new(f))
            }
            None => None,
        };
        Ok(MemTrace {
            host,
            file,
            buf: host.scoreboard(8, if cache_on { 1 } else { BUF_WORDS })?,
            pos: host.scoreboard(8, 1)?,
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
            let limit = e.constant((BUF_WORDS as u64).saturating_sub(records * REC_WORDS as u64));
            let full = e.cmp(CmpOp::Ugt, pos, limit);
            e.call_if(full, on_flush, 0, &[pos]);
            let zero = e.constant(0);
            let start = e.select(full, zero, pos);
            e.sb_store(&self.pos, 0, None, start);
        }
        for insn in tb.insns().filter(traced) {
            for (m, a) in insn.accesses().iter().enumerate() {
                let Some(kind) = kind_of(a.kind) else { continue };
                let udata = pack(insn.pc(), a.size, kind);
                let mut e = inj.after_access(insn.index(), m);
                let addr = e.mem_addr();
                let inside = self.addr.map(|(lo, hi)| {
                    let (l, h) = (e.constant(lo), e.constant(hi));
                    let ge = e.cmp(CmpOp::Uge, addr, l);
                    let lt = e.cmp(CmpOp::Ult, addr, h);
                    e.bin(BinOp::And, ge, lt)
                });
                if self.cache.is_some() {
                    match inside {
                        None => e.call(on_access, udata, &[addr]),
                        Some(c) => e.call_if(c, on_access, udata, &[addr]),
                    }
                    continue;
                }
                let value = e.mem_value();
                let pos = e.sb_load(&self.pos, 0, None);
                let head = e.constant(udata);
                e.sb_store(&self.buf, 0, Some(pos), head);
                e.sb_store(&self.buf, 1, Some(pos), addr);
                e.sb_store(&self.buf, 2, Some(pos), value);
                let step = e.constant(REC_WORDS as u64);
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
        if let Some(f) = &self.file {
            let _ = f.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
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

declare_plugin!(MemTrace);
