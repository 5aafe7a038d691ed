//! `coverage`: edge coverage in an AFL-style byte map, block coverage as a drcov (version 2)
//! file, and line coverage as an lcov `.info` file for programs with DWARF line info.
//!
//! Everything is inline (no callbacks): at block entry, the AFL edge update
//! `map[prev ^ cur]++; prev = cur >> 1` (AFL's scheme; `cur` hashes the block's
//! module-relative address, so it is stable under ASLR) and, only when drcov or lcov
//! output is asked for, a per-block hit counter.
//! Maps and counters are per-thread scoreboards, summed at exit.
//!
//! Outputs: the map goes to the SysV segment in `__AFL_SHM_ID` when set (so afl-fuzz and
//! `afl-showmap` read it), and to `map=FILE` if given; `drcov=FILE` writes the drcov file
//! with a module table of the guest's ELF mappings (Lighthouse, bncov); `lcov=FILE` maps
//! executed instructions to source lines with addr2line (a line's count is the sum of the
//! executions of the blocks holding it; lines of the line table never executed get 0).
#![forbid(unsafe_code)]

use blockscope_plugin_api::{
    abi::ArgSpec, declare_plugin, Args, BinOp, Host, Injector, Plugin, Scoreboard, TbView,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::Mutex;

/// One translated block, by id.
struct BlockInfo {
    pc: u64,
    /// Its contiguous runs of code `(start, size)`: more than one when the block goes on
    /// at the target of a `jmp` (drcov entries are ranges, one per run).
    runs: Vec<(u64, u32)>,
    insn_pcs: Vec<u64>,
}

#[derive(Default)]
struct Blocks {
    by_pc: HashMap<u64, u32>,
    list: Vec<BlockInfo>,
}

/// The plugin.
pub struct Coverage {
    host: Host,
    map: Scoreboard,
    prev: Scoreboard,
    hits: Scoreboard,
    map_size: u32,
    map_file: Option<String>,
    drcov: Option<String>,
    lcov: Option<String>,
    shm_id: Option<i32>,
    blocks: Mutex<Blocks>,
    overflow: std::sync::atomic::AtomicBool,
}

/// AFL's location of a block: a hash of its module-relative address.
fn location(off: u64, module: u64, size: u32) -> u64 {
    let x = (off ^ module.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) & (size as u64 - 1)
}

impl Coverage {
    fn block_id(&self, tb: &TbView<'_>) -> u32 {
        let mut b = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = b.by_pc.get(&tb.pc()) {
            return id;
        }
        let id = b.list.len() as u32;
        b.list.push(BlockInfo {
            pc: tb.pc(),
            runs: tb.runs(),
            insn_pcs: tb.insns().map(|i| i.pc()).collect(),
        });
        b.by_pc.insert(tb.pc(), id);
        id
    }

    /// The map summed over threads (saturating, as AFL counters).
    fn merged_map(&self) -> Vec<u8> {
        let mut m = vec![0u8; self.map_size as usize];
        for v in 0..self.host.vcpu_count() {
            for (o, x) in m.iter_mut().zip(self.map.read_all(v)) {
                *o = o.saturating_add(x as u8);
            }
        }
        m
    }

    /// Executions of each block id, summed over threads.
    fn block_counts(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.hits.entries() as usize];
        for v in 0..self.host.vcpu_count() {
            for (o, x) in c.iter_mut().zip(self.hits.read_all(v)) {
                *o += x;
            }
        }
        c
    }

    fn write_drcov(&self, path: &str, counts: &[u64]) -> std::io::Result<()> {
        let modules = self.host.modules();
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let mut bbs: Vec<(u32, u16, u16)> = Vec::new();
        for (id, b) in blocks.list.iter().enumerate() {
            if counts.get(id).copied().unwrap_or(0) == 0 {
                continue;
            }
            for &(pc, size) in &b.runs {
                let m = modules.iter().enumerate().rev().find(|(_, m)| m.start <= pc && pc < m.end);
                if let Some((mi, m)) = m {
                    bbs.push(((pc - m.start) as u32, size.min(u16::MAX as u32) as u16, mi as u16));
                }
            }
        }
        let mut out = Vec::new();
        writeln!(out, "DRCOV VERSION: 2\nDRCOV FLAVOR: blockscope")?;
        writeln!(out, "Module Table: version 2, count {}", modules.len())?;
        writeln!(out, "Columns: id, base, end, entry, checksum, timestamp, path")?;
        for (i, m) in modules.iter().enumerate() {
            writeln!(
                out,
                "{i:3}, {:#018x}, {:#018x}, {:#018x}, 0x00000000, 0x00000000, {}",
                m.start, m.end, m.entry, m.path
            )?;
        }
        writeln!(out, "BB Table: {} bbs", bbs.len())?;
        for (start, size, module) in bbs {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&module.to_le_bytes());
        }
        std::fs::write(path, out)
    }

    fn write_lcov(&self, path: &str, counts: &[u64]) -> std::io::Result<()> {
        // file → line → count
        let mut lines: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        for m in self.host.modules() {
            let Ok(loader) = addr2line::Loader::new(m.path) else { continue };
            // Every line of the line table, not executed yet.
            if let Ok(iter) = loader.find_location_range(0, u64::MAX) {
                for (_, _, loc) in iter {
                    if let (Some(f), Some(l)) = (loc.file, loc.line) {
                        lines.entry(f.to_string()).or_default().entry(l).or_insert(0);
                    }
                }
            }
            for (id, b) in blocks.list.iter().enumerate() {
                let n = counts.get(id).copied().unwrap_or(0);
                if n == 0 || b.pc < m.start || b.pc >= m.end {
                    continue;
                }
                let mut seen = BTreeSet::new();
                for &pc in &b.insn_pcs {
                    if let Ok(Some(loc)) = loader.find_location(pc.wrapping_sub(m.bias)) {
                        if let (Some(f), Some(l)) = (loc.file, loc.line) {
                            seen.insert((f.to_string(), l));
                        }
                    }
                }
                for (f, l) in seen {
                    *lines.entry(f).or_default().entry(l).or_insert(0) += n;
                }
            }
        }
        let mut out = String::from("TN:\n");
        for (file, ls) in &lines {
            out.push_str(&format!("SF:{file}\n"));
            for (l, n) in ls {
                out.push_str(&format!("DA:{l},{n}\n"));
            }
            let hit = ls.values().filter(|&&n| n > 0).count();
            out.push_str(&format!("LF:{}\nLH:{hit}\nend_of_record\n", ls.len()));
        }
        std::fs::write(path, out)
    }
}

impl Plugin for Coverage {
    const NAME: &'static str = "coverage";
    const DESCRIPTION: &'static str =
        "edge coverage (AFL map, __AFL_SHM_ID), drcov block coverage, lcov line coverage";
    const ARGS: &'static [ArgSpec] = &[
        ArgSpec::new("map_size", "65536", "AFL map size in bytes (a power of two)"),
        ArgSpec::new("map", "", "write the raw AFL map to this file"),
        ArgSpec::new("drcov", "", "write drcov (version 2) block coverage to this file"),
        ArgSpec::new("lcov", "", "write lcov line coverage (.info) to this file"),
        ArgSpec::new("max_blocks", "262144", "distinct blocks tracked for drcov/lcov"),
    ];

    fn install(host: Host, args: &Args) -> Result<Self, String> {
        let map_size: u32 = args.parse("map_size", 65536)?;
        if !map_size.is_power_of_two() || !(256..=1 << 24).contains(&map_size) {
            return Err(format!("map_size must be a power of two in 256..16M, not {map_size}"));
        }
        let max_blocks: u32 = args.parse("max_blocks", 1 << 18)?;
        let shm_id = match std::env::var("__AFL_SHM_ID") {
            Ok(v) => Some(v.trim().parse::<i32>().map_err(|_| format!("bad __AFL_SHM_ID `{v}`"))?),
            Err(_) => None,
        };
        let per_block = args.get("drcov").is_some() || args.get("lcov").is_some();
        Ok(Coverage {
            host,
            map: host.scoreboard(1, map_size)?,
            prev: host.scoreboard(8, 1)?,
            hits: host.scoreboard(4, if per_block { max_blocks } else { 1 })?,
            map_size,
            map_file: args.get("map").map(str::to_string),
            drcov: args.get("drcov").map(str::to_string),
            lcov: args.get("lcov").map(str::to_string),
            shm_id,
            blocks: Mutex::new(Blocks::default()),
            overflow: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn translate(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        let (off, module) = match self.host.symbolize(tb.pc()) {
            Some(s) => (tb.pc() - s.module_base, s.module_base),
            None => (tb.pc(), 0),
        };
        let cur = location(off, module, self.map_size);
        let mut e = inj.block_entry();
        let prev = e.sb_load(&self.prev, 0, None);
        let c = e.constant(cur);
        let idx = e.bin(BinOp::Xor, prev, c);
        e.sb_add(&self.map, 0, Some(idx), 1);
        let shifted = e.constant(cur >> 1);
        e.sb_store(&self.prev, 0, None, shifted);
        // Block hit counts feed only drcov and lcov: without them, no counter and no table.
        if self.drcov.is_none() && self.lcov.is_none() {
            return;
        }
        let id = self.block_id(tb);
        if id < self.hits.entries() {
            e.sb_add(&self.hits, id, None, 1);
        } else if !self.overflow.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.host.warn("more blocks than max_blocks: drcov/lcov output will be partial");
        }
    }

    fn exit(&self) {
        let map = self.merged_map();
        if let Some(id) = self.shm_id {
            if let Err(e) = blockscope_plugin_api::shm::write_sysv(id, &map) {
                self.host.error(&e);
            }
        }
        if let Some(p) = &self.map_file {
            if let Err(e) = std::fs::write(p, &map) {
                self.host.error(&format!("cannot write {p}: {e}"));
            }
        }
        if self.drcov.is_none() && self.lcov.is_none() {
            return;
        }
        let counts = self.block_counts();
        if let Some(p) = &self.drcov {
            if let Err(e) = self.write_drcov(p, &counts) {
                self.host.error(&format!("cannot write {p}: {e}"));
            }
        }
        if let Some(p) = &self.lcov {
            if let Err(e) = self.write_lcov(p, &counts) {
                self.host.error(&format!("cannot write {p}: {e}"));
            }
        }
    }
}

declare_plugin!(Coverage);
