//! Scoreboards: per-vCPU plugin memory. All scoreboards of all plugins of one run live in
//! one block of 64-bit words per vCPU (`CpuState::plugin_mem`), each at a fixed byte
//! offset, so an injected counter is a load, an add and a store at `base + constant`.
//! A scoreboard's capacity is its entry count rounded up to a power of two, so a dynamic
//! index is masked into bounds (one `and`, no check). Scoreboards are created during
//! install only; the block size is fixed before the first vCPU starts. A vCPU's block
//! lives until the process ends (plugins read every vCPU's counters at exit).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

thread_local! {
    /// The vCPU whose guest code runs on this thread (the last one started here), as
    /// (`Scoreboards::run`, vCPU index), if any: only that code writes its plugin memory.
    /// Keyed by run as well, since vCPU indices restart with each `Scoreboards`.
    static OWN_VCPU: Cell<Option<(u64, u32)>> = const { Cell::new(None) };
}

/// Numbers the `Scoreboards` of the process (see `OWN_VCPU`).
static RUNS: AtomicU64 = AtomicU64::new(0);

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
pub struct Scoreboards {
    descs: RwLock<Vec<Desc>>,
    frozen: std::sync::atomic::AtomicBool,
    bytes: AtomicU64,
    vcpus: Mutex<Vec<&'static [AtomicU64]>>,
    /// This run's number, unique in the process.
    run: u64,
}

impl Default for Scoreboards {
    fn default() -> Self {
        Scoreboards {
            descs: Default::default(),
            frozen: Default::default(),
            bytes: Default::default(),
            vcpus: Default::default(),
            run: RUNS.fetch_add(1, Ordering::Relaxed),
        }
    }
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
        let index = v.len() as u32 - 1;
        // `vcpu_init` runs on the thread that will run the vCPU.
        OWN_VCPU.with(|o| o.set(Some((self.run, index))));
        (index, block)
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
    #[allow(unsafe_code)] // the owning thread's plain copy; see the SAFETY comment
    pub fn read_all(&self, d: &Desc, vcpu: u32, out: &mut [u64]) -> u32 {
        let Some(b) = self.block(vcpu) else { return 0 };
        let n = out.len().min(d.entries as usize);
        if d.entry_bytes == 8 {
            // Whole words: a straight copy (memtrace drains its buffer this way, 16 K
            // words per column at a time).
            let src = &b[d.off as usize / 8..][..n];
            if OWN_VCPU.with(Cell::get) == Some((self.run, vcpu)) {
                // SAFETY: `AtomicU64` has the size, alignment and bit validity of `u64`,
                // and the ranges cannot overlap (`out` is a `&mut` the caller owns, `src`
                // is leaked plugin memory). A non-atomic read of an atomic is sound when
                // no access races with it. Only the vCPU's own guest code writes `src`,
                // and it runs on this thread, which is here now (in a callback from that
                // code, or after it stopped); other threads only read. Relaxed loads
                // word by word compile to one `mov` pair per word (LLVM does not
                // vectorize atomics), which took 13% of a `memtrace` run.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr().cast::<u64>(), out.as_mut_ptr(), n);
                }
            } else {
                for (o, w) in out[..n].iter_mut().zip(src) {
                    *o = w.load(Ordering::Relaxed);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The owning thread's plain copy and another thread's word-by-word copy read the same
    /// words, from the scoreboard's own offset (a second scoreboard sits before it).
    #[test]
    fn read_all_copies_the_same_words_on_and_off_the_vcpu_thread() {
        let sb = Scoreboards::default();
        let before = sb.create(0, 8, 3).unwrap();
        let id = sb.create(0, 8, 100).unwrap();
        let (vcpu, block) = sb.new_vcpu();
        let (d0, d) = (sb.get(before).unwrap(), sb.get(id).unwrap());
        for (i, w) in block.iter().enumerate() {
            w.store(i as u64 * 0x1_0001 + 7, Ordering::Relaxed);
        }
        let want: Vec<u64> = (0..100).map(|i| (d.off as u64 / 8 + i) * 0x1_0001 + 7).collect();
        let mut here = vec![0u64; 100];
        assert_eq!(sb.read_all(&d, vcpu, &mut here), 100);
        assert_eq!(here, want);
        let there = std::thread::scope(|s| {
            s.spawn(|| {
                let mut out = vec![0u64; 100];
                sb.read_all(&d, vcpu, &mut out);
                out
            })
            .join()
            .unwrap()
        });
        assert_eq!(there, want);
        let mut first = vec![0u64; 3];
        sb.read_all(&d0, vcpu, &mut first);
        assert_eq!(first, vec![7, 0x1_0001 + 7, 2 * 0x1_0001 + 7]);
    }
}
