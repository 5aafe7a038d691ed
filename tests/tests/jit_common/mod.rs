//! Shared pieces of the JIT tests: a scratch guest memory that logs every access, test
//! helpers with every combination of `HelperDesc` flags, a deterministic PRNG, and the
//! interpreter-vs-JIT comparison.
#![allow(dead_code, reason = "each test file uses a different subset")]

use blockscope::backend::interp::run_block;
use blockscope::backend::jit::{CompiledTb, Jit};
use blockscope::backend::BlockExit;
use blockscope::cpu::{CpuState, Fault, Width, GUEST_SLOTS};
use blockscope::ir::{Block, HelperCx, HelperDesc, PluginCall, PluginSite};
use blockscope::mem::{GuestMemory, RmwOp};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Guest address of the scratch buffer.
pub const MEM_BASE: u64 = 0x10_0000;
/// Size of the scratch buffer.
pub const MEM_LEN: u64 = 256;
/// The watched ("translated code") part of the buffer: stores here set `code_written`.
pub const CODE_LO: u64 = MEM_BASE + 192;
/// End of the watched part.
pub const CODE_HI: u64 = MEM_BASE + 224;

/// One logged memory access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Load(u64, Width),
    Store(u64, Width, u64),
    Rmw(RmwOp, u64, Width, u64),
    Cas(u64, Width, u64, u64),
}

/// A flat guest memory at `MEM_BASE..MEM_BASE+MEM_LEN`; anything else page-faults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScratchMem {
    pub bytes: Vec<u8>,
    pub written: bool,
    pub code_pages: Vec<u64>,
    pub log: Vec<Access>,
}

impl ScratchMem {
    pub fn new(bytes: Vec<u8>) -> ScratchMem {
        assert_eq!(bytes.len() as u64, MEM_LEN);
        ScratchMem { bytes, written: false, code_pages: Vec::new(), log: Vec::new() }
    }

    fn range(&self, addr: u64, w: Width, write: bool) -> Result<usize, Fault> {
        let n = w.bytes() as u64;
        if addr < MEM_BASE || addr.checked_add(n).is_none_or(|e| e > MEM_BASE + MEM_LEN) {
            return Err(Fault::PageFault { addr, code: if write { 2 } else { 0 } });
        }
        Ok((addr - MEM_BASE) as usize)
    }

    fn get(&self, off: usize, w: Width) -> u64 {
        let mut v = [0u8; 8];
        v[..w.bytes()].copy_from_slice(&self.bytes[off..off + w.bytes()]);
        u64::from_le_bytes(v)
    }

    fn put(&mut self, addr: u64, off: usize, w: Width, val: u64) {
        self.bytes[off..off + w.bytes()].copy_from_slice(&val.to_le_bytes()[..w.bytes()]);
        if addr < CODE_HI && addr + w.bytes() as u64 > CODE_LO {
            self.written = true;
            self.code_pages.push(addr & !0xfff);
        }
    }
}

impl GuestMemory for ScratchMem {
    fn load(&mut self, addr: u64, w: Width) -> Result<u64, Fault> {
        self.log.push(Access::Load(addr, w));
        let off = self.range(addr, w, false)?;
        Ok(self.get(off, w))
    }
    fn store(&mut self, addr: u64, w: Width, val: u64) -> Result<(), Fault> {
        self.log.push(Access::Store(addr, w, val));
        let off = self.range(addr, w, true)?;
        self.put(addr, off, w, val);
        Ok(())
    }
    fn atomic_rmw(&mut self, op: RmwOp, addr: u64, w: Width, val: u64) -> Result<u64, Fault> {
        self.log.push(Access::Rmw(op, addr, w, val));
        let off = self.range(addr, w, true)?;
        let old = self.get(off, w);
        let new = match op {
            RmwOp::Xchg => val,
            RmwOp::Add => old.wrapping_add(val),
            RmwOp::And => old & val,
            RmwOp::Or => old | val,
            RmwOp::Xor => old ^ val,
        };
        self.put(addr, off, w, new);
        Ok(old)
    }
    fn atomic_cas(&mut self, addr: u64, w: Width, expected: u64, new: u64) -> Result<u64, Fault> {
        self.log.push(Access::Cas(addr, w, expected, new));
        let off = self.range(addr, w, true)?;
        let old = self.get(off, w);
        if old == expected & w.mask() {
            self.put(addr, off, w, new);
        }
        Ok(old)
    }
    fn atomic_cas128(&mut self, _addr: u64, _e: u128, _n: u128) -> Result<u128, Fault> {
        Err(Fault::GeneralProtection(0))
    }
    fn fetch_code(&mut self, addr: u64, _buf: &mut [u8]) -> Result<usize, Fault> {
        Err(Fault::PageFault { addr, code: 16 })
    }
    fn watch_code(&mut self, _start: u64, _end: u64) {}
    fn code_written(&self) -> bool {
        self.written
    }
    fn take_code_writes(&mut self) -> Vec<u64> {
        self.written = false;
        std::mem::take(&mut self.code_pages)
    }
}

fn h_pure(_: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    Ok(a[0].wrapping_mul(31) ^ a[1].rotate_left(7) ^ a[2] ^ (a[3] << 3))
}

/// A guest slot a state-reading helper may read: any but `%rip`, which compiled code
/// keeps up to date only at exits to the run loop (`HelperDesc::reads_state`).
fn readable(x: u64) -> usize {
    let s = (x & 63) as usize;
    if s == blockscope::cpu::slot::RIP as usize {
        s + 1
    } else {
        s
    }
}

fn h_reads(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let s = cx.cpu.slots[readable(a[0])];
    Ok(s.wrapping_add(a[1]) ^ cx.cpu.slots[readable(a[1])])
}

fn h_writes(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    // Reads and writes arbitrary guest slots, then may fault after writing (the JIT must
    // reload what the helper wrote before running fix-ups and writing back).
    let i = (a[0] & 63) as usize;
    let j = readable(a[0] >> 8);
    cx.cpu.slots[i] = a[1];
    cx.cpu.slots[j] ^= a[2].wrapping_add(cx.cpu.slots[readable(a[2])]);
    if a[3] & 7 == 0 {
        return Err(Fault::GeneralProtection(a[3] as u32 & 0xffff));
    }
    Ok(a[1] ^ a[2])
}

fn h_blind_write(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    cx.cpu.slots[(a[0] & 63) as usize] = a[1];
    Ok(a[0].wrapping_sub(a[1]))
}

fn h_mem(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    // Stores through the memory interface (may fault, may write watched code).
    cx.mem.store(a[0], Width::W32, a[1])?;
    cx.mem.load(a[2], Width::W16)
}

fn h_panic(_: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    if a[0] == 0xdead {
        panic!("helper panicked on purpose");
    }
    Ok(a[0])
}

pub static H_PURE: HelperDesc = HelperDesc {
    name: "pure",
    func: h_pure,
    reads_state: false,
    writes_state: false,
    may_fault: false,
};
pub static H_READS: HelperDesc = HelperDesc {
    name: "reads",
    func: h_reads,
    reads_state: true,
    writes_state: false,
    may_fault: false,
};
pub static H_WRITES: HelperDesc = HelperDesc {
    name: "writes",
    func: h_writes,
    reads_state: true,
    writes_state: true,
    may_fault: true,
};
pub static H_BLIND_WRITE: HelperDesc = HelperDesc {
    name: "blind_write",
    func: h_blind_write,
    reads_state: false,
    writes_state: true,
    may_fault: false,
};
pub static H_MEM: HelperDesc = HelperDesc {
    name: "mem",
    func: h_mem,
    reads_state: false,
    writes_state: false,
    may_fault: true,
};
pub static H_PANIC: HelperDesc = HelperDesc {
    name: "panics",
    func: h_panic,
    reads_state: false,
    writes_state: false,
    may_fault: false,
};

/// Every test helper the random generator may call.
pub static HELPERS: [&HelperDesc; 5] = [&H_PURE, &H_READS, &H_WRITES, &H_BLIND_WRITE, &H_MEM];

thread_local! {
    /// Calls made by `plugin_cb` on this thread: (udata, vcpu, args).
    pub static PLUGIN_LOG: RefCell<Vec<(u64, u32, [u64; 4])>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn plugin_cb(site: &PluginSite, vcpu: u32, a0: u64, a1: u64, a2: u64, a3: u64) {
    PLUGIN_LOG.with(|l| l.borrow_mut().push((site.udata, vcpu, [a0, a1, a2, a3])));
}

/// Two plugin call sites (distinguished by `udata`).
pub static PLUGIN_CALLS: [PluginCall; 2] = [
    PluginCall {
        plugin: "test",
        func: plugin_cb,
        site: PluginSite { instance: 1, fdata: 2, udata: 10 },
    },
    PluginCall {
        plugin: "test",
        func: plugin_cb,
        site: PluginSite { instance: 1, fdata: 2, udata: 20 },
    },
];

/// Words of plugin memory the generator addresses.
pub const PLUGIN_WORDS: usize = 16;

/// Give `cpu` its own copy of plugin memory holding `words` (leaked: tests only).
pub fn set_plugin_mem(cpu: &mut CpuState, words: &[u64]) {
    let m: Vec<AtomicU64> = words.iter().map(|&w| AtomicU64::new(w)).collect();
    let m: &'static [AtomicU64] = Box::leak(m.into_boxed_slice());
    cpu.plugin_mem = m;
    cpu.plugin_mem_base = m.as_ptr() as u64;
}

/// The plugin memory of `cpu`.
pub fn plugin_words(cpu: &CpuState) -> Vec<u64> {
    cpu.plugin_mem.iter().map(|w| w.load(Ordering::Relaxed)).collect()
}

/// splitmix64: small, fast, deterministic.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Edge values for constants, immediates and initial state.
pub const EDGES: [u64; 20] = [
    0,
    1,
    2,
    7,
    8,
    63,
    64,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

/// An edge value or a random one.
pub fn value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 | 1 => rng.pick(&EDGES),
        2 => rng.next(),
        _ => rng.below(300),
    }
}

/// A random guest state; the interpreter's temporaries area is zero, matching the JIT's
/// zero for a temporary read before any write.
pub fn random_cpu(rng: &mut Rng) -> Box<CpuState> {
    let mut cpu = Box::<CpuState>::default();
    for s in 0..GUEST_SLOTS {
        cpu.slots[s] = value(rng);
    }
    cpu.vcpu_index = rng.below(4) as u32;
    let words: Vec<u64> = (0..PLUGIN_WORDS).map(|_| value(rng)).collect();
    set_plugin_mem(&mut cpu, &words);
    cpu
}

/// Everything one run produced.
#[derive(Debug)]
pub struct Outcome {
    pub exit: BlockExit,
    pub slots: Vec<u64>,
    pub mem: ScratchMem,
}

/// Run `b` in the interpreter and in the JIT from the same state; return a description of
/// every difference (empty when they agree) and both outcomes.
pub fn compare(
    tb: &CompiledTb,
    b: &Block,
    cpu: &CpuState,
    mem: &ScratchMem,
) -> (Vec<String>, Outcome, Outcome) {
    let (mut ci, mut mi) = (Box::new(cpu.clone()), mem.clone());
    set_plugin_mem(&mut ci, &plugin_words(cpu));
    PLUGIN_LOG.with(|l| l.borrow_mut().clear());
    let ei = run_block(b, &mut ci, &mut mi);
    let log_i = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
    let (mut cj, mut mj) = (Box::new(cpu.clone()), mem.clone());
    set_plugin_mem(&mut cj, &plugin_words(cpu));
    let ej = tb.run(&mut cj, &mut mj);
    let log_j = PLUGIN_LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
    let mut diffs = Vec::new();
    if log_i != log_j {
        diffs.push(format!("plugin calls: interp {log_i:?}\n  jit {log_j:?}"));
    }
    if plugin_words(&ci) != plugin_words(&cj) {
        diffs.push(format!(
            "plugin memory: interp {:x?}\n  jit {:x?}",
            plugin_words(&ci),
            plugin_words(&cj)
        ));
    }
    if ei != ej {
        diffs.push(format!("exit: interp {ei:?}, jit {ej:?}"));
    }
    for s in 0..GUEST_SLOTS {
        if ci.slots[s] != cj.slots[s] {
            diffs.push(format!(
                "slot {}: interp {:#x}, jit {:#x} (initial {:#x})",
                blockscope::cpu::slot::name(s as u16),
                ci.slots[s],
                cj.slots[s],
                cpu.slots[s]
            ));
        }
    }
    if mi.log != mj.log {
        diffs.push(format!("memory accesses: interp {:?}\n  jit {:?}", mi.log, mj.log));
    }
    if mi.bytes != mj.bytes {
        diffs.push("memory bytes differ".into());
    }
    if mi.written != mj.written {
        diffs.push(format!("code_written: interp {}, jit {}", mi.written, mj.written));
    }
    let oi = Outcome { exit: ei, slots: ci.slots[..GUEST_SLOTS].to_vec(), mem: mi };
    let oj = Outcome { exit: ej, slots: cj.slots[..GUEST_SLOTS].to_vec(), mem: mj };
    (diffs, oi, oj)
}

/// Compile `b`, panicking with the block and its CLIF on failure.
pub fn compile(jit: &mut Jit, b: &Block) -> CompiledTb {
    match jit.compile(&Arc::new(b.clone())) {
        Ok(tb) => tb,
        Err(e) => {
            panic!(
                "compile failed: {e}\n{b}\n{}",
                jit.clif(&Arc::new(b.clone())).unwrap_or_else(|e| e.to_string())
            )
        }
    }
}

/// Compile `b` and `assert_tb`.
pub fn assert_same(
    jit: &mut Jit,
    b: &Block,
    cpu: &CpuState,
    mem: &ScratchMem,
    what: &str,
) -> Outcome {
    let tb = compile(jit, b);
    assert_tb(jit, &tb, b, cpu, mem, what)
}

/// `compare`, panicking with the block, the CLIF and the differences on any mismatch.
/// Returns the interpreter's outcome (equal to the JIT's).
pub fn assert_tb(
    jit: &mut Jit,
    tb: &CompiledTb,
    b: &Block,
    cpu: &CpuState,
    mem: &ScratchMem,
    what: &str,
) -> Outcome {
    let (diffs, oi, _) = compare(tb, b, cpu, mem);
    if !diffs.is_empty() {
        panic!(
            "interpreter and JIT disagree ({what}):\n  {}\n{b}\nfixups: {:?}\nCLIF:\n{}",
            diffs.join("\n  "),
            b.fixups,
            jit.clif(&Arc::new(b.clone())).unwrap_or_else(|e| e.to_string())
        );
    }
    oi
}
