//! Shared support for the `strsys_*` differential tests: run a snippet of machine code on
//! the host CPU and in blockscope (interpreter and JIT tiers) from the same register and
//! memory inputs, and compare the results.
//!
//! Native side. A private RWX page holds a trampoline generated per run: it saves the
//! host's callee-saved registers and RFLAGS, loads RFLAGS and all 16 GPRs (rsp too) from a
//! control block, runs the snippet, then stores the GPRs and RFLAGS back and restores the
//! host. The snippet's rsp must point into valid memory with 16 bytes free below it (the
//! exit sequence pushes two words there).
//!
//! Safety contract. The page is private to one `Native`, written only between runs, and
//! never aliased by Rust references. Snippets come from the tests themselves and touch only
//! the buffers the test allocated (whose addresses it put in the registers).
#![allow(unsafe_code)]
#![allow(dead_code)] // Each test file uses a different subset.

use blockscope::config::Tier;
use blockscope::cpu::{CpuState, Fault, Width};
use blockscope::exec::{run_snippet_with, SnippetExit};
use blockscope::frontend::{full_rflags, set_full_rflags};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};
use iced_x86::code_asm::*;
use std::sync::Arc;

/// Register file of a test case: the 16 GPRs in encoding order and RFLAGS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regs {
    /// rax rcx rdx rbx rsp rbp rsi rdi r8..r15.
    pub gpr: [u64; 16],
    /// Full RFLAGS.
    pub rflags: u64,
}

/// RFLAGS bits that are always set in user mode (bit 1 and IF).
pub const FLAGS_BASE: u64 = 0x202;
/// CF PF AF ZF SF OF.
pub const ARITH: u64 = 0x8d5;
/// DF.
pub const DF: u64 = 0x400;

impl Regs {
    /// All GPRs zero, flags `FLAGS_BASE`.
    pub fn new() -> Regs {
        Regs { gpr: [0; 16], rflags: FLAGS_BASE }
    }
}

impl Default for Regs {
    fn default() -> Self {
        Regs::new()
    }
}

/// GPR names for messages.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

const CTL_RFLAGS: i32 = 128;
const CTL_HOST_RSP: i32 = 136;

/// Runs snippets on the host CPU.
pub struct Native {
    page: *mut u8,
}

const NATIVE_LEN: usize = 8192;

impl Native {
    /// Map the private code + control pages.
    pub fn new() -> Native {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                NATIVE_LEN,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap for the native runner failed");
        Native { page: p as *mut u8 }
    }

    fn ctl(&self) -> u64 {
        self.page as u64 + 4096
    }

    /// Run `snippet` natively from `inp`; returns the registers after it.
    pub fn run(&mut self, snippet: &[u8], inp: &Regs) -> Regs {
        let ctl = self.ctl();
        let code = trampoline(ctl, snippet, self.page as u64);
        assert!(code.len() <= 4096, "snippet too long");
        // SAFETY: the code page belongs to this runner (module header); the control block
        // is the second page; both are written only here, between runs.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.page, code.len());
            let c = ctl as *mut u64;
            for (k, v) in inp.gpr.iter().enumerate() {
                c.add(k).write(*v);
            }
            c.add(CTL_RFLAGS as usize / 8).write(inp.rflags);
        }
        // SAFETY: the page now holds the trampoline, which follows the sysv64 ABI
        // (callee-saved registers, RFLAGS incl. DF and AC restored) and runs the test's
        // snippet against the test's own buffers.
        unsafe {
            let f: extern "sysv64" fn() = std::mem::transmute(self.page);
            f();
        }
        let mut out = Regs::new();
        // SAFETY: as above; the trampoline has written the control block.
        unsafe {
            let c = ctl as *const u64;
            for (k, v) in out.gpr.iter_mut().enumerate() {
                *v = c.add(k).read();
            }
            out.rflags = c.add(CTL_RFLAGS as usize / 8).read();
        }
        out
    }
}

impl Default for Native {
    fn default() -> Self {
        Native::new()
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: unmaps the runner's own mapping; no references into it remain.
        unsafe {
            libc::munmap(self.page as *mut libc::c_void, NATIVE_LEN);
        }
    }
}

fn trampoline(ctl: u64, snippet: &[u8], ip: u64) -> Vec<u8> {
    let build = || -> Result<Vec<u8>, IcedError> {
        let mut a = CodeAssembler::new(64)?;
        for r in [rbx, rbp, r12, r13, r14, r15] {
            a.push(r)?;
        }
        a.pushfq()?;
        a.mov(rax, ctl)?;
        a.mov(qword_ptr(rax + CTL_HOST_RSP), rsp)?;
        a.push(qword_ptr(rax + CTL_RFLAGS))?;
        a.popfq()?;
        let regs = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
        for (k, r) in regs.iter().enumerate() {
            if k != 0 && k != 4 {
                a.mov(*r, qword_ptr(rax + 8 * k as i32))?;
            }
        }
        a.mov(rsp, qword_ptr(rax + 32))?;
        a.mov(rax, qword_ptr(rax))?;
        a.db(snippet)?;
        a.pushfq()?;
        a.push(rax)?;
        a.mov(rax, ctl)?;
        a.pop(qword_ptr(rax))?;
        a.pop(qword_ptr(rax + CTL_RFLAGS))?;
        for (k, r) in regs.iter().enumerate() {
            if k != 0 {
                a.mov(qword_ptr(rax + 8 * k as i32), *r)?;
            }
        }
        a.mov(rsp, qword_ptr(rax + CTL_HOST_RSP))?;
        a.popfq()?;
        for r in [r15, r14, r13, r12, rbp, rbx] {
            a.pop(r)?;
        }
        a.ret()?;
        a.assemble(ip)
    };
    build().expect("assemble trampoline")
}

/// The emulator side: guest memory plus a code page for snippets.
pub struct Emu {
    /// The shared address space.
    pub shared: Arc<DirectShared>,
    /// A memory handle.
    pub mem: Direct,
    /// FS base given to the emulated CPU (tests of FS overrides set the host's).
    pub fs_base: u64,
    /// Run with REP string instructions expanded, one element per run
    /// (`Config::expand_rep`, what a plugin that instruments accesses asks for).
    pub expand_rep: bool,
    code: u64,
}

/// How an emulated run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmuEnd {
    /// Reached the end of the snippet.
    Done,
    /// Faulted at snippet offset `off`.
    Fault {
        /// The fault.
        fault: Fault,
        /// Offset of the faulting instruction in the snippet.
        off: u64,
    },
}

impl Emu {
    /// A fresh address space with one code page.
    pub fn new() -> Emu {
        let shared = DirectShared::new();
        let mem = Direct::new(shared.clone());
        let code = shared.mmap_anon(0, 4096, Prot(7), false).expect("mmap code page");
        Emu { shared, mem, fs_base: 0, expand_rep: false, code }
    }

    /// Map `len` bytes read-write-execute.
    pub fn alloc_rwx(&self, len: usize) -> u64 {
        self.shared.mmap_anon(0, len as u64, Prot(7), false).expect("mmap rwx")
    }

    /// Map `len` bytes read-write (guest and host see the same address).
    pub fn alloc(&self, len: usize) -> u64 {
        self.shared.mmap_anon(0, len as u64, Prot(3), false).expect("mmap data")
    }

    /// Map `len` bytes read-write below 4 GiB (for address-size-prefix tests).
    pub fn alloc_low(&self, len: usize) -> u64 {
        // SAFETY: a fresh anonymous mapping, recorded in the guest address space below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        self.shared.map(p as u64, len as u64, Prot(3));
        p as u64
    }

    /// Change the protection of guest pages (host and guest view).
    pub fn protect(&self, addr: u64, len: usize, prot: u32) {
        // SAFETY: changes the protection of pages this test mapped; no Rust references
        // point into them.
        let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot as i32) };
        assert_eq!(r, 0);
        self.shared.map(addr, len as u64, Prot(prot));
    }

    /// Write bytes into guest memory (as the test, not the guest: code-page writes this
    /// causes are not reported to the next run).
    pub fn poke(&mut self, addr: u64, bytes: &[u8]) {
        self.mem.write_bytes(addr, bytes).expect("poke");
        self.mem.take_code_writes();
    }

    /// Write a snippet followed by PUSHFQ, which the run stops before: the translator's
    /// flag lookahead past the snippet then sees every flag read, as the native harness's
    /// exit sequence does (otherwise whatever bytes follow could make the flags dead).
    fn place(&mut self, code: u64, snippet: &[u8]) {
        let mut v = snippet.to_vec();
        v.push(0x9c);
        self.poke(code, &v);
    }

    /// Read bytes from guest memory.
    pub fn peek(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_bytes(addr, &mut v).expect("peek");
        v
    }

    /// Run `snippet` in blockscope at `tier` from `inp`. Returns the registers after it
    /// and how it ended.
    pub fn run(&mut self, snippet: &[u8], inp: &Regs, tier: Tier) -> (Regs, EmuEnd) {
        let code = self.code;
        self.place(code, snippet);
        let mut cpu = CpuState::new_user();
        for (k, v) in inp.gpr.iter().enumerate() {
            cpu.set_gpr(k, *v);
        }
        set_full_rflags(&mut cpu, inp.rflags);
        cpu.set_fs_base(self.fs_base);
        cpu.set_rip(code);
        let end = code + snippet.len() as u64;
        let config = self.config(tier);
        let r = run_snippet_with(&mut cpu, &mut self.mem, end, config);
        let mut out = Regs::new();
        for (k, v) in out.gpr.iter_mut().enumerate() {
            *v = cpu.gpr(k);
        }
        out.rflags = full_rflags(&cpu);
        let how = match r {
            SnippetExit::Reached => EmuEnd::Done,
            SnippetExit::Fault { fault, pc } => EmuEnd::Fault { fault, off: pc - code },
            SnippetExit::Syscall => panic!("unexpected syscall"),
        };
        (out, how)
    }

    fn config(&self, tier: Tier) -> blockscope::config::Config {
        blockscope::config::Config { tier, expand_rep: self.expand_rep, ..Default::default() }
    }

    /// Run and return the whole CPU state (for tests that look beyond the GPRs).
    pub fn run_cpu(&mut self, snippet: &[u8], cpu: &mut CpuState, tier: Tier) -> EmuEnd {
        let code = self.code;
        self.run_cpu_at(code, snippet, cpu, tier)
    }

    /// Like `run_cpu` with the snippet placed at `code` (an executable guest mapping).
    pub fn run_cpu_at(
        &mut self,
        code: u64,
        snippet: &[u8],
        cpu: &mut CpuState,
        tier: Tier,
    ) -> EmuEnd {
        self.place(code, snippet);
        cpu.set_rip(code);
        let end = code + snippet.len() as u64;
        let config = self.config(tier);
        match run_snippet_with(cpu, &mut self.mem, end, config) {
            SnippetExit::Reached => EmuEnd::Done,
            SnippetExit::Fault { fault, pc } => EmuEnd::Fault { fault, off: pc - code },
            SnippetExit::Syscall => panic!("unexpected syscall"),
        }
    }
}

impl Default for Emu {
    fn default() -> Self {
        Emu::new()
    }
}

/// Both tiers.
pub const TIERS: [Tier; 2] = [Tier::Interp, Tier::Jit];

/// A memory region compared between runs: address and length.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// Start.
    pub addr: u64,
    /// Length in bytes.
    pub len: usize,
}

/// One differential case: the snippet runs natively and in every tier from the same
/// registers and the same initial contents of `regions`; registers (flags masked with
/// `flag_mask`) and region contents must match. Returns the native result.
pub fn diff(
    nat: &mut Native,
    emu: &mut Emu,
    what: &str,
    snippet: &[u8],
    inp: &Regs,
    regions: &[(Region, Vec<u8>)],
    flag_mask: u64,
) -> Regs {
    let init: Vec<(u64, Vec<u8>)> = regions.iter().map(|(r, v)| (r.addr, v.clone())).collect();
    let cmp: Vec<Region> = regions.iter().map(|(r, _)| *r).collect();
    diff_init(nat, emu, what, snippet, inp, &init, &cmp, flag_mask)
}

/// Like `diff`, with separate memory to initialise (`init`: address, bytes) and memory to
/// compare (`cmp`), for snippets whose harness exit pushes land in initialised memory.
#[allow(clippy::too_many_arguments)] // reason: one flat call per test case reads best
pub fn diff_init(
    nat: &mut Native,
    emu: &mut Emu,
    what: &str,
    snippet: &[u8],
    inp: &Regs,
    init: &[(u64, Vec<u8>)],
    cmp: &[Region],
    flag_mask: u64,
) -> Regs {
    for (a, bytes) in init {
        emu.poke(*a, bytes);
    }
    let want = nat.run(snippet, inp);
    let want_mem: Vec<Vec<u8>> = cmp.iter().map(|r| emu.peek(r.addr, r.len)).collect();
    for tier in TIERS {
        for (a, bytes) in init {
            emu.poke(*a, bytes);
        }
        let (got, end) = emu.run(snippet, inp, tier);
        assert_eq!(end, EmuEnd::Done, "{what} ({tier:?}): ended with {end:?}");
        for (k, name) in GPR_NAMES.iter().enumerate() {
            assert_eq!(
                got.gpr[k], want.gpr[k],
                "{what} ({tier:?}): {name} = {:#x}, native {:#x}\ninput {inp:x?}",
                got.gpr[k], want.gpr[k]
            );
        }
        assert_eq!(
            got.rflags & flag_mask,
            want.rflags & flag_mask,
            "{what} ({tier:?}): rflags {:#x}, native {:#x}\ninput {inp:x?}",
            got.rflags,
            want.rflags
        );
        for (r, w) in cmp.iter().zip(&want_mem) {
            let g = emu.peek(r.addr, r.len);
            if &g != w {
                let k = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
                panic!(
                    "{what} ({tier:?}): memory at {:#x}+{k:#x} differs: {:#x} vs native {:#x}",
                    r.addr, g[k], w[k]
                );
            }
        }
    }
    want
}

/// Flags compared by default: the arithmetic ones and DF.
pub const CMP_FLAGS: u64 = ARITH | DF;

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// Next 64-bit value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// An edge or random value.
    pub fn edgy(&mut self) -> u64 {
        const EDGE: [u64; 10] = [
            0,
            1,
            u64::MAX,
            0x7f,
            0x80,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
        ];
        if self.below(3) == 0 {
            EDGE[self.below(EDGE.len() as u64) as usize]
        } else {
            self.next()
        }
    }
}

/// Width of an operation from a byte count.
pub fn width(bytes: usize) -> Width {
    Width::from_bytes(bytes)
}

/// The host thread's FS base (so FS-override snippets address the same bytes natively
/// and emulated).
pub fn host_fs_base() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: ARCH_GET_FS writes one u64 through the pointer we pass.
    let r = unsafe {
        libc::syscall(libc::SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &mut v as *mut u64)
    };
    assert_eq!(r, 0, "arch_prctl(ARCH_GET_FS)");
    v
}
