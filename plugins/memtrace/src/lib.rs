//! `memtrace`: every load and store (pc, address, size, value, thread) into a compact binary
//! file (format: `blockscope_plugin_api::trace`; read it with `blockscope memtrace`), with
//! address-range and pc-range filters; or, with `cache=on`, a cachegrind-like simulation of
//! I1/D1/LL caches that prints accesses and misses per level.
//!
//! Accesses are the emulator's own memory operations of each instruction, reported right
//! after they complete; accesses made inside helpers (REP string instructions, FXSAVE) are
//! not seen. An atomic read-modify-write is one record of kind RMW with the old value.
//! The address filter is injected as a compare in front of a conditional call, so filtered
//! accesses cost no call; the pc filter is applied at translation.
#![forbid(unsafe_code)]

mod cache;

use blockscope_plugin_api::abi::{ArgSpec, ACCESS_LOAD, ACCESS_RMW, ACCESS_STORE};
use blockscope_plugin_api::trace::{self, Record};
use blockscope_plugin_api::{
    declare_plugin, Args, BinOp, Call, CmpOp, Host, Injector, Plugin, TbView,
};
pub use cache::{Geometry, Hierarchy, Stats};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

const SHARDS: usize = 64;
const FLUSH_BYTES: usize = 1 << 20;

/// The plugin.
pub struct MemTrace {
    host: Host,
    file: Option<Mutex<File>>,
    shards: Vec<Mutex<Vec<u8>>>,
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

fn on_access(p: &MemTrace, c: &Call) {
    let (pc, size, kind) =
        (c.udata & ((1 << 52) - 1), (c.udata >> 56) as u8, (c.udata >> 52 & 3) as u8);
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
        return;
    }
    let r = Record { pc, addr: c.args[0], value: c.args[1], size, kind, thread: c.vcpu };
    let mut shard = p.shards[c.vcpu as usize % SHARDS].lock().unwrap_or_else(|e| e.into_inner());
    shard.extend_from_slice(&r.to_bytes());
    if shard.len() >= FLUSH_BYTES {
        p.write_out(&mut shard);
    }
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
    fn write_out(&self, buf: &mut Vec<u8>) {
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = f.write_all(buf) {
                self.host.error(&format!("cannot write the trace: {e}"));
            }
        }
        buf.clear();
    }

    fn flush_all(&self) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            self.write_out(&mut s);
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
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            addr: range(args, "addr")?,
            pc: range(args, "pc")?,
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
        for insn in tb.insns() {
            if self.pc.is_some_and(|(lo, hi)| insn.pc() < lo || insn.pc() >= hi) {
                continue;
            }
            for (m, a) in insn.accesses().iter().enumerate() {
                let kind = match a.kind {
                    ACCESS_LOAD => trace::KIND_LOAD,
                    ACCESS_STORE => trace::KIND_STORE,
                    ACCESS_RMW => trace::KIND_RMW,
                    _ => continue,
                };
                let udata = pack(insn.pc(), a.size, kind);
                let mut e = inj.after_access(insn.index(), m);
                let addr = e.mem_addr();
                let value = e.mem_value();
                match self.addr {
                    None => e.call(on_access, udata, &[addr, value]),
                    Some((lo, hi)) => {
                        let (l, h) = (e.constant(lo), e.constant(hi));
                        let ge = e.cmp(CmpOp::Uge, addr, l);
                        let lt = e.cmp(CmpOp::Ult, addr, h);
                        let inside = e.bin(BinOp::And, ge, lt);
                        e.call_if(inside, on_access, udata, &[addr, value]);
                    }
                }
            }
        }
    }

    fn vcpu_exit(&self, vcpu: u32) {
        let mut s = self.shards[vcpu as usize % SHARDS].lock().unwrap_or_else(|e| e.into_inner());
        self.write_out(&mut s);
    }

    fn exit(&self) {
        self.flush_all();
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
