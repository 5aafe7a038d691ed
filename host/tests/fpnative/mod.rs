//! Test support for the floating-point families: run one instruction natively and in the
//! emulator from the same machine state, and compare.
//!
//! State = 16 GPRs, RFLAGS and a 512-byte FXSAVE image (x87, MXCSR, XMM). Natively, a
//! generated routine on an RWX page saves the host (callee-saved GPRs, FXSAVE), loads the
//! state (FXRSTOR64, POPFQ, GPRs except rsp and rdi, which holds the frame), runs the
//! instruction bytes, and stores everything back. In the emulator the same bytes run with
//! `run_snippet` from a state built with `fxrstor_image`. Memory operands go through rsi,
//! which points into a scratch page shared by both runs (guest address == host address).
//!
//! Safety contract: the RWX page and the frame are owned by `Native`; the generated code
//! follows the SysV ABI (callee-saved registers and the host FP state are restored) and
//! test instructions touch only the scratch page and registers. Instructions that would
//! fault natively (unmasked exceptions, misaligned operands) are not run here.
#![allow(unsafe_code, dead_code)]

use blockscope::config::Tier;
use blockscope::cpu::{CpuState, Fault, Width};
use blockscope::exec::{run_snippet, SnippetExit};
use blockscope::frontend::{full_rflags, fxrstor_image, fxsave_image, set_full_rflags};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};
use iced_x86::code_asm::*;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU64, Ordering};

/// Registers and FP state.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct State {
    /// FXSAVE image (FXSAVE64 layout).
    pub fx: [u8; 512],
    /// GPRs in encoding order.
    pub gpr: [u64; 16],
    /// RFLAGS.
    pub rflags: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "gpr {:x?}", self.gpr)?;
        writeln!(f, "rflags {:#x} mxcsr {:#x}", self.rflags, self.mxcsr())?;
        writeln!(
            f,
            "fcw {:#x} fsw {:#x} ftw {:#x}",
            u16le(&self.fx, 0),
            u16le(&self.fx, 2),
            self.fx[4]
        )?;
        for i in 0..8 {
            writeln!(f, "st{i} {:02x?}", &self.fx[32 + 16 * i..42 + 16 * i])?;
        }
        for n in 0..16 {
            writeln!(f, "xmm{n} {:032x}", self.xmm(n))?;
        }
        Ok(())
    }
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

impl Default for State {
    fn default() -> Self {
        let mut s = State { fx: [0; 512], gpr: [0; 16], rflags: 0x202 };
        s.fx[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        s.set_mxcsr(0x1f80);
        s
    }
}

impl State {
    /// xmm n.
    pub fn xmm(&self, n: usize) -> u128 {
        u128::from_le_bytes(self.fx[160 + 16 * n..176 + 16 * n].try_into().unwrap())
    }
    /// Set xmm n.
    pub fn set_xmm(&mut self, n: usize, v: u128) {
        self.fx[160 + 16 * n..176 + 16 * n].copy_from_slice(&v.to_le_bytes());
    }
    /// MXCSR.
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes(self.fx[24..28].try_into().unwrap())
    }
    /// Set MXCSR.
    pub fn set_mxcsr(&mut self, v: u32) {
        self.fx[24..28].copy_from_slice(&v.to_le_bytes());
    }
}

#[repr(C, align(64))]
struct Frame {
    input: State,
    output: State,
    host_fx: [u8; 512],
    /// Where the SIGFPE handler resumes (the epilogue after the instruction).
    resume: u64,
    /// Signal number that interrupted the instruction, or 0.
    faulted: u64,
}

/// Runner pages and their frames, for the SIGFPE handler: (page, frame) pairs, 0 = free.
static RUNNERS: [(AtomicU64, AtomicU64); 64] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 64];

extern "C" fn on_sigfpe(sig: i32, _info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler. A frame pointer
    // is only used if the faulting rip lies in the runner page registered with it, and
    // that runner is executing (the frame is live) on this thread.
    unsafe {
        let uc = &mut *(uctx as *mut libc::ucontext_t);
        let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
        for (page, frame) in RUNNERS.iter() {
            let p = page.load(Ordering::Acquire);
            if p != 0 && (p..p + PAGE as u64).contains(&rip) {
                let f = frame.load(Ordering::Acquire) as *mut Frame;
                (*f).faulted = sig as u64;
                uc.uc_mcontext.gregs[libc::REG_RIP as usize] = (*f).resume as i64;
                return;
            }
        }
        // Not ours: die with the default action.
        libc::signal(sig, libc::SIG_DFL);
    }
}

fn install_sigfpe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs a handler for SIGFPE that only touches registered runner frames.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigfpe as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGFPE, &sa, std::ptr::null_mut());
        }
    });
}

/// A native runner plus an emulator environment sharing one scratch area.
pub struct Rig {
    page: *mut u8,
    frame: Box<Frame>,
    /// Guest memory (code and scratch pages are mapped here).
    pub mem: Direct,
    code: u64,
    /// Scratch area address (4 pages); rsi points here in tests.
    pub scratch: u64,
}

const PAGE: usize = 4096;
/// Scratch length.
pub const SCRATCH_LEN: usize = 4 * PAGE;

impl Rig {
    /// A new rig.
    pub fn new() -> Rig {
        // SAFETY: a fresh private anonymous mapping, owned by the Rig.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let shared = DirectShared::new();
        let mem = Direct::new(shared.clone());
        let code = shared.mmap_anon(0, PAGE as u64, Prot(7), false).expect("mmap code");
        let scratch = shared.mmap_anon(0, SCRATCH_LEN as u64, Prot(3), false).expect("mmap");
        let mut frame = Box::new(Frame {
            input: State::default(),
            output: State::default(),
            host_fx: [0; 512],
            resume: 0,
            faulted: 0,
        });
        install_sigfpe();
        let fp = &mut *frame as *mut Frame as u64;
        let slot = RUNNERS
            .iter()
            .find(|(p, _)| {
                p.compare_exchange(0, page as u64, Ordering::AcqRel, Ordering::Acquire).is_ok()
            })
            .expect("too many rigs");
        slot.1.store(fp, Ordering::Release);
        Rig { page: page as *mut u8, frame, mem, code, scratch }
    }

    /// Write scratch memory.
    pub fn write_scratch(&mut self, off: usize, bytes: &[u8]) {
        self.mem.write_bytes(self.scratch + off as u64, bytes).expect("scratch write");
    }
    /// Read scratch memory.
    pub fn read_scratch(&mut self, off: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_bytes(self.scratch + off as u64, &mut v).expect("scratch read");
        v
    }

    /// Run `insn` natively from `st`.
    pub fn native(&mut self, insn: &[u8], st: &State) -> State {
        match self.native_full(insn, st) {
            (None, s) => s,
            (Some(sig), _) => panic!("native run raised signal {sig}"),
        }
    }

    /// Run `insn` natively from `st`; a SIGFPE (#XM, #MF) is caught: the signal and the
    /// state at the fault (FP state as the kernel saved it) are returned.
    pub fn native_full(&mut self, insn: &[u8], st: &State) -> (Option<i32>, State) {
        let (code, resume) = build_native(self.page as u64, insn);
        assert!(code.len() <= PAGE);
        // SAFETY: the page is ours and not executing; we copy code into it.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.page, code.len()) };
        self.frame.input = *st;
        self.frame.resume = self.page as u64 + resume as u64;
        self.frame.faulted = 0;
        let f: extern "sysv64" fn(*mut Frame) =
            // SAFETY: the page holds a complete sysv64 function taking the frame pointer.
            unsafe { std::mem::transmute::<*mut u8, extern "sysv64" fn(*mut Frame)>(self.page) };
        f(&mut *self.frame);
        let sig = (self.frame.faulted != 0).then_some(self.frame.faulted as i32);
        (sig, self.frame.output)
    }

    /// Run `insn` in the emulator from `st`.
    pub fn emulate(&mut self, insn: &[u8], st: &State, tier: Tier) -> Result<State, Fault> {
        match self.emulate_full(insn, st, tier) {
            (None, s) => Ok(s),
            (Some(f), _) => Err(f),
        }
    }

    /// Run `insn` in the emulator from `st`: the fault, if any, and the state after
    /// (at the fault: the state the fault handler would see).
    pub fn emulate_full(&mut self, insn: &[u8], st: &State, tier: Tier) -> (Option<Fault>, State) {
        // Fresh code bytes each time (and a fresh engine in run_snippet), followed by INT3
        // so the translator's flag lookahead past the end keeps every flag live.
        let mut bytes = insn.to_vec();
        bytes.push(0xcc);
        self.mem.write_bytes(self.code, &bytes).expect("code write");
        let mut cpu = CpuState::new_user();
        for (i, v) in st.gpr.iter().enumerate() {
            cpu.set_gpr(i, *v);
        }
        set_full_rflags(&mut cpu, st.rflags);
        fxrstor_image(&mut cpu, &st.fx, true).expect("fxrstor of test state");
        cpu.set_rip(self.code);
        let end = self.code + insn.len() as u64;
        let fault = match run_snippet(&mut cpu, &mut self.mem, end, tier) {
            SnippetExit::Reached => None,
            SnippetExit::Fault { fault, .. } => Some(fault),
            SnippetExit::Syscall => panic!("syscall?"),
        };
        let mut out =
            State { fx: fxsave_image(&cpu, true), gpr: [0; 16], rflags: full_rflags(&cpu) };
        for i in 0..16 {
            out.gpr[i] = cpu.gpr(i);
        }
        (fault, out)
    }

    /// Run `insn` natively and in the interpreter and the JIT tier from `st`, with the
    /// scratch area reset to `mem` each time, and compare: GPRs (not rsp, rdi), the
    /// arithmetic flags outside `undef_flags`, MXCSR, XMM, and (with `x87`) the x87 part of
    /// the image (FOP/FIP/FDP excluded), plus the scratch bytes. Returns the native state.
    pub fn check(
        &mut self,
        what: &str,
        insn: &[u8],
        st: &State,
        mem: &[u8],
        undef_flags: u64,
        x87: bool,
    ) -> State {
        self.write_scratch(0, mem);
        let want = self.native(insn, st);
        let want_mem = self.read_scratch(0, mem.len());
        for tier in [Tier::Interp, Tier::Jit] {
            self.write_scratch(0, mem);
            let got = match self.emulate(insn, st, tier) {
                Ok(g) => g,
                Err(f) => panic!("{what} ({tier:?}): fault {f:?}\ninput:\n{st:?}"),
            };
            let got_mem = self.read_scratch(0, mem.len());
            let ctx = || {
                format!("{what} ({tier:?})\ninput:\n{st:?}\nnative:\n{want:?}\nemulated:\n{got:?}")
            };
            for i in 0..16 {
                if i == 4 || i == 7 {
                    continue;
                }
                assert_eq!(got.gpr[i], want.gpr[i], "gpr {i}: {}", ctx());
            }
            let m = 0x8d5 & !undef_flags;
            assert_eq!(got.rflags & m, want.rflags & m, "flags: {}", ctx());
            assert_eq!(got.mxcsr(), want.mxcsr(), "mxcsr: {}", ctx());
            for n in 0..16 {
                assert_eq!(got.xmm(n), want.xmm(n), "xmm{n}: {}", ctx());
            }
            if x87 {
                assert_eq!(got.fx[0..6], want.fx[0..6], "fcw/fsw/ftw: {}", ctx());
                assert_eq!(got.fx[32..160], want.fx[32..160], "st regs: {}", ctx());
            }
            assert_eq!(got_mem, want_mem, "memory: {}", ctx());
        }
        want
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for (p, _) in RUNNERS.iter() {
            let _ = p.compare_exchange(self.page as u64, 0, Ordering::AcqRel, Ordering::Acquire);
        }
        // SAFETY: unmaps the page we mapped in `new`.
        unsafe { libc::munmap(self.page as *mut libc::c_void, PAGE) };
    }
}

const GPRS: [AsmRegister64; 16] =
    [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];

/// The runner code and the offset of its epilogue (just after `insn`).
fn build_native(at: u64, insn: &[u8]) -> (Vec<u8>, usize) {
    let inp = offset_of!(Frame, input) as i32;
    let out = offset_of!(Frame, output) as i32;
    let hfx = offset_of!(Frame, host_fx) as i32;
    let sfx = offset_of!(State, fx) as i32;
    let sgpr = offset_of!(State, gpr) as i32;
    let sfl = offset_of!(State, rflags) as i32;
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).unwrap();
    }
    a.fxsave64(ptr(rdi + hfx)).unwrap();
    a.fxrstor64(ptr(rdi + inp + sfx)).unwrap();
    a.push(qword_ptr(rdi + inp + sfl)).unwrap();
    a.popfq().unwrap();
    for (i, r) in GPRS.iter().enumerate() {
        if i == 4 || i == 7 {
            continue;
        }
        a.mov(*r, qword_ptr(rdi + inp + sgpr + 8 * i as i32)).unwrap();
    }
    let mut code = a.assemble(at).unwrap();
    code.extend_from_slice(insn);
    let resume = code.len();
    let mut a = CodeAssembler::new(64).unwrap();
    for (i, r) in GPRS.iter().enumerate() {
        if i == 4 || i == 7 {
            continue;
        }
        a.mov(qword_ptr(rdi + out + sgpr + 8 * i as i32), *r).unwrap();
    }
    a.pushfq().unwrap();
    a.pop(qword_ptr(rdi + out + sfl)).unwrap();
    a.fxsave64(ptr(rdi + out + sfx)).unwrap();
    a.fxrstor64(ptr(rdi + hfx)).unwrap();
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.cld().unwrap();
    a.ret().unwrap();
    code.extend(a.assemble(at + resume as u64).unwrap());
    (code, resume)
}

/// Encode one instruction (no RIP-relative operands).
pub fn enc(i: &iced_x86::Instruction) -> Vec<u8> {
    let mut e = iced_x86::Encoder::new(64);
    e.encode(i, 0).expect("encode");
    e.take_buffer()
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);
impl Rng {
    /// Next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Interesting f32 bit patterns.
pub const F32_EDGE: &[u32] = &[
    0x0000_0000,
    0x8000_0000,
    0x3f80_0000,
    0xbf80_0000,
    0x7f80_0000,
    0xff80_0000, // ±0 ±1 ±inf
    0x7fc0_0000,
    0xffc0_0000,
    0x7fa0_0001,
    0xff80_0001, // QNaN, -QNaN, SNaN, -SNaN
    0x0000_0001,
    0x807f_ffff,
    0x0080_0000,
    0x7f7f_ffff,
    0xff7f_ffff, // denormals, min, max
    0x4049_0fdb,
    0x3eaa_aaab,
    0x4f00_0000,
    0xcf00_0000,
    0x5f00_0000,
    0x3f00_0000,
    0x3fc0_0000,
];

/// Interesting f64 bit patterns.
pub const F64_EDGE: &[u64] = &[
    0,
    0x8000_0000_0000_0000,
    0x3ff0_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0xfff8_0000_0000_0000,
    0x7ff4_0000_0000_0001,
    0xfff0_0000_0000_0001,
    1,
    0x800f_ffff_ffff_ffff,
    0x0010_0000_0000_0000,
    0x7fef_ffff_ffff_ffff,
    0xffef_ffff_ffff_ffff,
    0x4009_21fb_5444_2d18,
    0x3fd5_5555_5555_5555,
    0x41e0_0000_0000_0000,
    0xc1e0_0000_0000_0000,
    0x43e0_0000_0000_0000,
    0x3fe0_0000_0000_0000,
    0x3ff8_0000_0000_0000,
    0x4330_0000_0000_0001,
];

/// A random f32 lane: an edge value half the time, else random bits (with a random but
/// moderate exponent half the time so arithmetic gives ordinary results).
pub fn lane32(r: &mut Rng) -> u32 {
    let x = r.next();
    match x % 4 {
        0 | 1 => F32_EDGE[(x >> 8) as usize % F32_EDGE.len()],
        2 => (x >> 32) as u32,
        _ => ((x >> 32) as u32 & 0x807f_ffff) | ((0x70 + (x >> 8) % 0x20) as u32) << 23,
    }
}

/// A random f64 lane, as `lane32`.
pub fn lane64(r: &mut Rng) -> u64 {
    let x = r.next();
    match x % 4 {
        0 | 1 => F64_EDGE[(x >> 8) as usize % F64_EDGE.len()],
        2 => r.next(),
        _ => (r.next() & 0x800f_ffff_ffff_ffff) | (0x3e0 + (x >> 8) % 0x40) << 52,
    }
}

/// A random xmm value of f32 lanes.
pub fn xmm_ps(r: &mut Rng) -> u128 {
    (0..4).fold(0u128, |acc, k| acc | (lane32(r) as u128) << (32 * k))
}

/// A random xmm value of f64 lanes.
pub fn xmm_pd(r: &mut Rng) -> u128 {
    lane64(r) as u128 | (lane64(r) as u128) << 64
}

/// MXCSR values to test: all masked, with each rounding mode, DAZ and FTZ; sticky flags.
pub fn mxcsr_masked(r: &mut Rng) -> u32 {
    let rc = (r.next() % 4) as u32;
    let daz = (r.next().is_multiple_of(4)) as u32;
    let ftz = (r.next().is_multiple_of(4)) as u32;
    let flags = if r.next().is_multiple_of(8) { (r.next() % 64) as u32 } else { 0 };
    0x1f80 | rc << 13 | daz << 6 | ftz << 15 | flags
}

/// Read a guest u64 (tests).
pub fn load64(mem: &mut Direct, a: u64) -> u64 {
    mem.load(a, Width::W64).unwrap()
}
