//! Scoreboards: per-vCPU plugin memory. All scoreboards of all plugins of one run live in
//! one block of 64-bit words per vCPU (`CpuState::plugin_mem`), each at a fixed byte
//! offset, so an injected counter is a load, an add and a store at `base + constant`.
//! A scoreboard's capacity is its entry count rounded up to a power of two, so a dynamic
//! index is masked into bounds (one `and`, no check). Scoreboards are created during
//! install only; the block size is fixed before the first vCPU starts. A vCPU's block
//! lives until the process ends (plugins read every vCPU's counters at exit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// One scoreboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Global id of the owning plugin.
    pub owner: u32,
    /// Byte offset in the per-vCPU block.
    pub off: u32,
    /// Entry size in bytes (1, 2, 4, 8).
    pub entry_bytes: u32,
    /// Entries the plugin asked for.
    pub entries: u32,
    /// Capacity minus one (a power of two minus one).
    pub mask: u32,
}

/// Largest per-vCPU block (all scoreboards together), in bytes.
pub const MAX_BYTES: u64 = 1 << 30;

/// The scoreboards of one run and every vCPU's memory.
#[derive(Default)]
pub struct Scoreboards {
    descs: RwLock<Vec<Desc>>,
    frozen: std::sync::atomic::AtomicBool,
    bytes: AtomicU64,
    vcpus: Mutex<Vec<&'static [AtomicU64]>>,
}

impl Scoreboards {
    /// Allocate a scoreboard; returns its index in this run.
    pub fn create(&self, owner: u32, entry_bytes: u32, entries: u32) -> Result<u32, String> {
        if self.frozen.load(Ordering::Acquire) {
            return Err("scoreboards can only be created during install".into());
        }
        if !matches!(entry_bytes, 1 | 2 | 4 | 8) {
            return Err(format!(
                "scoreboard entries must be 1, 2, 4 or 8 bytes, not {entry_bytes}"
            ));
        }
        if entries == 0 || entries > 1 << 28 {
            return Err(format!("a scoreboard needs 1..2^28 entries, not {entries}"));
        }
        let cap = (entries as u64).next_power_of_two();
        let mut descs = self.descs.write().unwrap_or_else(|e| e.into_inner());
        let off = self.bytes.load(Ordering::Relaxed);
        let size = (cap * entry_bytes as u64).next_multiple_of(8);
        if off + size > MAX_BYTES {
            return Err("plugin memory exhausted".into());
        }
        self.bytes.store(off + size, Ordering::Relaxed);
        descs.push(Desc { owner, off: off as u32, entry_bytes, entries, mask: (cap - 1) as u32 });
        Ok(descs.len() as u32 - 1)
    }
    /// Scoreboard `id`, if it exists.
    pub fn get(&self, id: u32) -> Option<Desc> {
        self.descs.read().unwrap_or_else(|e| e.into_inner()).get(id as usize).copied()
    }
    /// No more scoreboards from now on.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }
    /// Allocate the memory of a new vCPU; returns its index and block.
    pub fn new_vcpu(&self) -> (u32, &'static [AtomicU64]) {
        self.freeze();
        let words = (self.bytes.load(Ordering::Relaxed) / 8) as usize;
        let block: &'static [AtomicU64] = if words == 0 {
            &[]
        } else {
            Box::leak((0..words).map(|_| AtomicU64::new(0)).collect::<Vec<_>>().into_boxed_slice())
        };
        let mut v = self.vcpus.lock().unwrap_or_else(|e| e.into_inner());
        v.push(block);
        (v.len() as u32 - 1, block)
    }
    /// Number of vCPUs started.
    pub fn vcpu_count(&self) -> u32 {
        self.vcpus.lock().unwrap_or_else(|e| e.into_inner()).len() as u32
    }
    fn block(&self, vcpu: u32) -> Option<&'static [AtomicU64]> {
        self.vcpus.lock().unwrap_or_else(|e| e.into_inner()).get(vcpu as usize).copied()
    }
    /// Entry `entry` of scoreboard `d` for `vcpu` (0 if out of range).
    pub fn read(&self, d: &Desc, vcpu: u32, entry: u32) -> u64 {
        match self.block(vcpu) {
            Some(b) if entry < d.entries => read_entry(b, d, entry),
            _ => 0,
        }
    }
    /// Copy the first `out.len()` entries of scoreboard `d` for `vcpu`.
    pub fn read_all(&self, d: &Desc, vcpu: u32, out: &mut [u64]) -> u32 {
        let Some(b) = self.block(vcpu) else { return 0 };
        let n = out.len().min(d.entries as usize);
        if d.entry_bytes == 8 {
            // Whole words: a straight copy (trace buffers drain this way, 64 K words at a
            // time).
            let first = d.off as usize / 8;
            for (o, w) in out[..n].iter_mut().zip(&b[first..first + n]) {
                *o = w.load(Ordering::Relaxed);
            }
            return n as u32;
        }
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = read_entry(b, d, i as u32);
        }
        n as u32
    }
}

fn read_entry(b: &[AtomicU64], d: &Desc, entry: u32) -> u64 {
    let at = d.off as usize + entry as usize * d.entry_bytes as usize;
    let word = b.get(at / 8).map_or(0, |w| w.load(Ordering::Relaxed));
    let bits = d.entry_bytes * 8;
    let v = word >> ((at % 8) * 8);
    if bits == 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}
