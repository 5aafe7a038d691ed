//! Differential-test support for the integer-op families (shift, muldiv, bit): every
//! 64-bit-mode form (`iced_x86::Code`) of a mnemonic is encoded with iced, run on the host
//! CPU and in blockscope (`run_snippet_on`, interpreter and JIT tiers) over the same guest
//! memory, and the GPRs, the defined arithmetic flags (undefined ones masked with iced's
//! `rflags_undefined()`) and the data memory are compared.
//!
//! A form is tried in several *variants*: random register choices drawn from a small pool
//! (so operands alias often), immediates from an edge-heavy list, and a random flag
//! producer before (prefix: nothing, CMP, ADD, INC, NEG or STC) and flag consumer after
//! (suffix: nothing, SETcc on a defined flag, or SUB r,r that kills every flag), so the
//! lazy-flag paths of the lifters (pending state in, fused conditions out, dead flags) are
//! exercised in one block. Prefix and suffix use registers the tested instruction does not
//! touch. Inputs are edge values plus seeded random values; the seed is fixed.
//!
//! Memory operands are `[rdi + disp8]` with RDI pointing into the middle of a 64 KiB data
//! area (guest address == host address: the emulator uses `mem::Direct`).
//!
//! Safety contract. `intops_native_call` (below) is a sysv64 function that loads all GPRs
//! but RSP and RFLAGS from a 17-word state block, calls the snippet, and stores them back;
//! it saves and restores the callee-saved registers and clears DF on return. Snippets are
//! generated here from one instruction plus harmless prefix/suffix instructions and end
//! with RET; their memory operands stay inside the data area (hooks bound register bit
//! offsets and inputs that would fault natively, e.g. a #DE, are never run natively).
//! Guest memory is accessed raw only in `write_data`/`read_data`, on pages this harness
//! mapped itself and that hold no translated code.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use blockscope::config::{Config, Tier};
use blockscope::cpu::{rflags, CpuState};
use blockscope::exec::{run_snippet_on, Engine, SnippetExit};
use blockscope::frontend::{full_rflags, set_full_rflags};
use blockscope::mem::{Direct, DirectShared, Prot};
use iced_x86::{
    Code, CpuidFeature, Encoder, Formatter, Instruction, IntelFormatter, Mnemonic,
    OpCodeOperandKind as K, OpKind, Register, RflagsBits,
};
use std::sync::Arc;

std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl intops_native_call",
    "intops_native_call:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rdi",
    "    push rsi",
    "    push qword ptr [rdi + 128]",
    "    popfq",
    "    mov rax, [rdi + 0]",
    "    mov rcx, [rdi + 8]",
    "    mov rdx, [rdi + 16]",
    "    mov rbx, [rdi + 24]",
    "    mov rbp, [rdi + 40]",
    "    mov rsi, [rdi + 48]",
    "    mov r8, [rdi + 64]",
    "    mov r9, [rdi + 72]",
    "    mov r10, [rdi + 80]",
    "    mov r11, [rdi + 88]",
    "    mov r12, [rdi + 96]",
    "    mov r13, [rdi + 104]",
    "    mov r14, [rdi + 112]",
    "    mov r15, [rdi + 120]",
    "    mov rdi, [rdi + 56]",
    "    call qword ptr [rsp]",
    "    push rdi",
    "    mov rdi, [rsp + 16]",
    "    mov [rdi + 0], rax",
    "    mov [rdi + 8], rcx",
    "    mov [rdi + 16], rdx",
    "    mov [rdi + 24], rbx",
    "    mov [rdi + 40], rbp",
    "    mov [rdi + 48], rsi",
    "    mov [rdi + 64], r8",
    "    mov [rdi + 72], r9",
    "    mov [rdi + 80], r10",
    "    mov [rdi + 88], r11",
    "    mov [rdi + 96], r12",
    "    mov [rdi + 104], r13",
    "    mov [rdi + 112], r14",
    "    mov [rdi + 120], r15",
    "    pop rax",
    "    mov [rdi + 56], rax",
    "    pushfq",
    "    pop rax",
    "    mov [rdi + 128], rax",
    "    add rsp, 16",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    cld",
    "    ret",
);

extern "sysv64" {
    /// `state`: 16 GPRs (RSP ignored) then RFLAGS; `code`: the snippet's address.
    fn intops_native_call(state: *mut u64, code: u64);
}

/// Size of the data area memory operands point into.
pub const DATA_LEN: usize = 64 * 1024;
const CODE_LEN: u64 = 16 * 1024;
const SLOT: u64 = 64;
const RSP: usize = 4;
const RDI: usize = 7;

/// The 64-bit GPRs in encoding order.
pub const GPR64: [Register; 16] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSP,
    Register::RBP,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

const GPR32: [Register; 16] = [
    Register::EAX,
    Register::ECX,
    Register::EDX,
    Register::EBX,
    Register::ESP,
    Register::EBP,
    Register::ESI,
    Register::EDI,
    Register::R8D,
    Register::R9D,
    Register::R10D,
    Register::R11D,
    Register::R12D,
    Register::R13D,
    Register::R14D,
    Register::R15D,
];
const GPR16: [Register; 16] = [
    Register::AX,
    Register::CX,
    Register::DX,
    Register::BX,
    Register::SP,
    Register::BP,
    Register::SI,
    Register::DI,
    Register::R8W,
    Register::R9W,
    Register::R10W,
    Register::R11W,
    Register::R12W,
    Register::R13W,
    Register::R14W,
    Register::R15W,
];
const GPR8: [Register; 16] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::SPL,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R11L,
    Register::R12L,
    Register::R13L,
    Register::R14L,
    Register::R15L,
];

/// The GPR number `n` at `bits` width (the low byte for 8 bits).
pub fn gpr(n: usize, bits: u32) -> Register {
    match bits {
        64 => GPR64[n],
        32 => GPR32[n],
        16 => GPR16[n],
        _ => GPR8[n],
    }
}

/// Deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// One element of `xs`.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// An operand value: edge values, small numbers, single bits and random bits.
    pub fn value(&mut self) -> u64 {
        const EDGE: [u64; 20] = [
            0,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x100,
            0x7fff,
            0x8000,
            0xffff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
            u64::MAX - 1,
            0xffff_ffff_8000_0000,
            0xffff_ffff_ffff_ff80,
        ];
        match self.below(10) {
            0 | 1 => self.pick(&EDGE),
            2 => self.below(70),
            3 => 1 << self.below(64),
            4 => (self.below(300) as i64 - 150) as u64,
            5 => self.next() & 0xff,
            6 => self.next() & 0xffff_ffff,
            _ => self.next(),
        }
    }
}

/// The initial contents of the data area for one case.
#[derive(Clone)]
pub struct MemImage {
    /// Guest (= host) address of the first byte.
    pub base: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl MemImage {
    /// Little-endian read of `n` bytes at `addr` (must lie in the area).
    pub fn read(&self, addr: u64, n: usize) -> u64 {
        let o = (addr - self.base) as usize;
        let mut v = 0u64;
        for k in (0..n).rev() {
            v = v << 8 | self.bytes[o + k] as u64;
        }
        v
    }
    /// Little-endian write of `n` bytes at `addr`.
    pub fn write(&mut self, addr: u64, n: usize, v: u64) {
        let o = (addr - self.base) as usize;
        for k in 0..n {
            self.bytes[o + k] = (v >> (8 * k)) as u8;
        }
    }
}

/// One test case's inputs.
#[derive(Clone)]
pub struct Case {
    /// GPRs (RSP is not used).
    pub regs: [u64; 16],
    /// Arithmetic flags in (RFLAGS bit positions).
    pub flags: u64,
    /// Data area contents (memory forms only).
    pub mem: Option<MemImage>,
}

impl Case {
    /// The value of register or memory operand `n` of `i` (memory through `mem`).
    pub fn operand(&self, i: &Instruction, n: u32) -> u64 {
        match i.op_kind(n) {
            OpKind::Register => {
                let r = i.op_register(n);
                let full = self.regs[GPR64.iter().position(|g| *g == r.full_register()).unwrap()];
                if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
                    return (full >> 8) & 0xff;
                }
                let bits = r.size() * 8;
                if bits == 64 {
                    full
                } else {
                    full & ((1u64 << bits) - 1)
                }
            }
            OpKind::Memory => {
                let m = self.mem.as_ref().expect("memory form has an image");
                let base = self.regs[RDI];
                let a = base.wrapping_add(i.memory_displacement64());
                m.read(a, i.memory_size().size())
            }
            _ => i.immediate(n),
        }
    }
}

/// What one run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// GPRs after.
    pub regs: [u64; 16],
    /// Arithmetic flags after.
    pub flags: u64,
    /// Data area after (memory forms only).
    pub mem: Option<Vec<u8>>,
    /// How the emulator stopped (`None` for native runs).
    pub exit: Option<SnippetExit>,
}

/// A snippet in the code area.
#[derive(Clone)]
pub struct Snippet {
    /// Address of the first instruction.
    pub start: u64,
    /// Address of the tested instruction.
    pub insn_pc: u64,
    /// Address of the final RET (the emulator stops here).
    pub stop: u64,
    /// Disassembly, for messages.
    pub text: String,
}

/// One variant of a form: the instruction, its snippet and the prefix-only snippet.
pub struct Variant {
    /// The tested instruction.
    pub insn: Instruction,
    /// prefix; insn; suffix; ret.
    pub full: Snippet,
    /// prefix; ret (the state the tested instruction starts from).
    pub pre: Snippet,
    /// Arithmetic flags (RFLAGS positions) to compare after the snippet.
    pub flag_mask: u64,
}

/// Predicts whether a case faults natively (see `Opts::faults`).
pub type FaultFn = dyn Fn(&Instruction, &Case) -> bool;

/// Per-mnemonic knobs.
pub struct Opts<'a> {
    /// Cases per form (at least 500 in the tests).
    pub inputs: usize,
    /// Variants per form.
    pub variants: usize,
    /// Adjust a case's inputs (bound bit offsets, shape dividends, ...).
    pub hook: &'a dyn Fn(&Instruction, &mut Rng, &mut Case),
    /// Pick an immediate for operand `n` of `code` (None: the default picker).
    pub imm: &'a dyn Fn(&mut Rng, &Instruction, u32) -> Option<u64>,
    /// Whether the instruction faults on these inputs (run natively only when not); the
    /// emulator must then report the fault with the state before the instruction.
    pub faults: Option<&'a FaultFn>,
    /// Also run every memory form with a LOCK prefix.
    pub lock: bool,
}

/// The JIT tier really ran compiled code for every case (no silent interpreter fallback).
fn check_jit_ran(engines: &[(Tier, Arc<Engine>); 2], cases: usize, what: &str) {
    use std::sync::atomic::Ordering::Relaxed;
    let j = &engines[1].1.jit;
    let (entries, failed) = (j.entries.load(Relaxed), j.failed.load(Relaxed));
    assert!(
        failed == 0 && entries >= cases as u64,
        "{what}: JIT tier compiled-code entries {entries} for {cases} cases, {failed} blocks failed to compile"
    );
}

/// A fresh engine per tier.
fn engines() -> [(Tier, Arc<Engine>); 2] {
    [Tier::Interp, Tier::Jit]
        .map(|tier| (tier, Engine::new(Config { tier, stats: true, ..Config::default() })))
}

fn no_hook(_: &Instruction, _: &mut Rng, _: &mut Case) {}
fn no_imm(_: &mut Rng, _: &Instruction, _: u32) -> Option<u64> {
    None
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts { inputs: 512, variants: 32, hook: &no_hook, imm: &no_imm, faults: None, lock: false }
    }
}

/// The test bench: a guest address space with a data area.
pub struct Bench {
    shared: Arc<DirectShared>,
    mem: Direct,
    /// Start of the data area.
    pub data: u64,
    /// Random source.
    pub rng: Rng,
    failures: Vec<String>,
    /// Forms run, forms skipped (CPU lacks the feature), cases run.
    pub stats: (usize, usize, usize),
    /// Cases that fault (checked against the state before the instruction).
    pub faulted: usize,
}

fn iced_to_rflags(b: u32) -> u64 {
    let mut f = 0;
    for (ib, rb) in [
        (RflagsBits::OF, rflags::OF),
        (RflagsBits::SF, rflags::SF),
        (RflagsBits::ZF, rflags::ZF),
        (RflagsBits::AF, rflags::AF),
        (RflagsBits::CF, rflags::CF),
        (RflagsBits::PF, rflags::PF),
    ] {
        if b & ib != 0 {
            f |= rb;
        }
    }
    f
}

/// Whether the host CPU can run a form with these CPUID features.
pub fn host_supports(features: &[CpuidFeature]) -> bool {
    features.iter().all(|f| match f {
        CpuidFeature::INTEL8086
        | CpuidFeature::INTEL186
        | CpuidFeature::INTEL286
        | CpuidFeature::INTEL386
        | CpuidFeature::INTEL486
        | CpuidFeature::X64 => true,
        CpuidFeature::BMI1 => std::arch::is_x86_feature_detected!("bmi1"),
        CpuidFeature::BMI2 => std::arch::is_x86_feature_detected!("bmi2"),
        CpuidFeature::ADX => std::arch::is_x86_feature_detected!("adx"),
        CpuidFeature::LZCNT => std::arch::is_x86_feature_detected!("lzcnt"),
        CpuidFeature::POPCNT => std::arch::is_x86_feature_detected!("popcnt"),
        _ => false,
    })
}

fn disasm(i: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(i, &mut s);
    s
}

/// Registers an operand kind names (`bits`, or 0 when not a register).
fn reg_bits(k: K) -> u32 {
    match k {
        K::r8_or_mem | K::r8_reg | K::r8_opcode => 8,
        K::r16_or_mem | K::r16_reg | K::r16_rm | K::r16_opcode => 16,
        K::r32_or_mem | K::r32_reg | K::r32_rm | K::r32_opcode | K::r32_vvvv => 32,
        K::r64_or_mem | K::r64_reg | K::r64_rm | K::r64_opcode | K::r64_vvvv => 64,
        _ => 0,
    }
}

fn has_rm(code: Code) -> bool {
    let oc = code.op_code();
    (0..oc.op_count()).any(|n| {
        matches!(oc.op_kind(n), K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem)
    })
}

/// Default immediate picker: shift counts and bit numbers around every boundary.
fn default_imm(rng: &mut Rng, k: K) -> u64 {
    const IMM8: [u64; 24] = [
        0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 31, 32, 33, 47, 63, 64, 65, 0x7f, 0x80, 0x81, 0xfe,
        0xff, 0x40,
    ];
    match k {
        K::imm8_const_1 => 1,
        K::imm8 => {
            if rng.below(3) == 0 {
                rng.next() & 0xff
            } else {
                rng.pick(&IMM8)
            }
        }
        K::imm8sex16 | K::imm8sex32 | K::imm8sex64 => rng.next() as i8 as i64 as u64,
        K::imm16 => rng.value() & 0xffff,
        _ => rng.value() as i32 as i64 as u64,
    }
}

fn op_kind_of_imm(k: K) -> Option<OpKind> {
    Some(match k {
        K::imm8 | K::imm8_const_1 => OpKind::Immediate8,
        K::imm8sex16 => OpKind::Immediate8to16,
        K::imm8sex32 => OpKind::Immediate8to32,
        K::imm8sex64 => OpKind::Immediate8to64,
        K::imm16 => OpKind::Immediate16,
        K::imm32 => OpKind::Immediate32,
        K::imm32sex64 => OpKind::Immediate32to64,
        _ => return None,
    })
}

/// Registers a mnemonic uses implicitly.
fn implicit_regs(m: Mnemonic) -> &'static [usize] {
    match m {
        Mnemonic::Mul | Mnemonic::Imul | Mnemonic::Div | Mnemonic::Idiv => &[0, 2],
        Mnemonic::Mulx => &[2],
        _ => &[],
    }
}

const SETCC: [(Code, u64); 10] = [
    (Code::Setb_rm8, rflags::CF),
    (Code::Sete_rm8, rflags::ZF),
    (Code::Sets_rm8, rflags::SF),
    (Code::Seto_rm8, rflags::OF),
    (Code::Setp_rm8, rflags::PF),
    (Code::Setl_rm8, rflags::SF | rflags::OF),
    (Code::Setle_rm8, rflags::ZF | rflags::SF | rflags::OF),
    (Code::Setbe_rm8, rflags::CF | rflags::ZF),
    (Code::Seta_rm8, rflags::CF | rflags::ZF),
    (Code::Setge_rm8, rflags::SF | rflags::OF),
];

impl Bench {
    /// A bench with a fresh address space and a fixed seed.
    pub fn new(seed: u64) -> Bench {
        let shared = DirectShared::new();
        let mem = Direct::new(shared.clone());
        let data = shared.mmap_anon(0, DATA_LEN as u64, Prot(3), false).expect("map data area");
        Bench {
            shared,
            mem,
            data,
            rng: Rng::new(seed),
            failures: vec![],
            stats: (0, 0, 0),
            faulted: 0,
        }
    }

    /// The address memory operands are based on (RDI's value in memory forms).
    pub fn data_mid(&self) -> u64 {
        self.data + DATA_LEN as u64 / 2
    }

    fn write_data(&self, img: &MemImage) {
        assert_eq!(img.base, self.data);
        // SAFETY: the data area is a private RW mapping of DATA_LEN bytes made by this
        // bench; it holds no translated code and no Rust reference points into it.
        unsafe {
            std::ptr::copy_nonoverlapping(img.bytes.as_ptr(), self.data as *mut u8, DATA_LEN)
        };
    }

    fn read_data(&self) -> Vec<u8> {
        let mut v = vec![0u8; DATA_LEN];
        // SAFETY: as in `write_data`; reading the whole mapped area.
        unsafe { std::ptr::copy_nonoverlapping(self.data as *const u8, v.as_mut_ptr(), DATA_LEN) };
        v
    }

    /// Run a snippet on the host CPU.
    pub fn run_native(&self, s: &Snippet, c: &Case) -> Outcome {
        if let Some(m) = &c.mem {
            self.write_data(m);
        }
        let mut st = [0u64; 17];
        st[..16].copy_from_slice(&c.regs);
        st[16] = (c.flags & rflags::ARITH) | rflags::FIXED1 | rflags::IF;
        // SAFETY: see the module's safety contract: the snippet was generated by this
        // bench, ends with RET and only touches the data area and its own registers.
        unsafe { intops_native_call(st.as_mut_ptr(), s.start) };
        let mut regs = [0u64; 16];
        regs.copy_from_slice(&st[..16]);
        regs[RSP] = c.regs[RSP];
        Outcome {
            regs,
            flags: st[16] & rflags::ARITH,
            mem: c.mem.as_ref().map(|_| self.read_data()),
            exit: None,
        }
    }

    /// Run a snippet in blockscope on `engine` (one per form and tier: translations and
    /// compiled code are reused across the form's cases).
    pub fn run_emu(&mut self, s: &Snippet, c: &Case, engine: &Arc<Engine>) -> Outcome {
        if let Some(m) = &c.mem {
            self.write_data(m);
        }
        let mut cpu: Box<CpuState> = CpuState::new_user();
        for (n, v) in c.regs.iter().enumerate() {
            cpu.set_gpr(n, *v);
        }
        set_full_rflags(&mut cpu, (c.flags & rflags::ARITH) | rflags::FIXED1 | rflags::IF);
        cpu.set_rip(s.start);
        let exit = run_snippet_on(engine, &mut cpu, &mut self.mem, s.stop);
        let mut regs = [0u64; 16];
        for (n, r) in regs.iter_mut().enumerate() {
            *r = cpu.gpr(n);
        }
        Outcome {
            regs,
            flags: full_rflags(&cpu) & rflags::ARITH,
            mem: c.mem.as_ref().map(|_| self.read_data()),
            exit: Some(exit),
        }
    }

    /// Encode `insns` (then RET) at `at`; returns the snippet and the tested insn's pc.
    fn place(&self, at: u64, insns: &[Instruction], tested: Option<usize>) -> Option<Snippet> {
        let mut enc = Encoder::new(64);
        let mut pc = at;
        let mut bytes = Vec::new();
        let mut insn_pc = at;
        let mut text = Vec::new();
        for (k, i) in insns.iter().enumerate() {
            if tested == Some(k) {
                insn_pc = pc;
            }
            let mut i = *i;
            if i.code() == Code::Jmp_rel8_64 {
                // A jump to the next instruction: ends the block, falls through.
                i.set_near_branch64(pc + 2);
            }
            let n = enc.encode(&i, pc).ok()?;
            bytes.extend_from_slice(&enc.take_buffer());
            pc += n as u64;
            text.push(disasm(&i));
        }
        bytes.push(0xc3);
        assert!(bytes.len() as u64 <= SLOT, "snippet too long");
        // SAFETY: `at` is inside a code area this bench mapped RWX for this form and has
        // not translated yet; no Rust reference points into it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
        Some(Snippet { start: at, insn_pc, stop: pc, text: text.join("; ") })
    }

    /// Build an instruction for `code` with random operands, or None if iced refuses.
    fn build(
        &mut self,
        code: Code,
        mem: bool,
        opts: &Opts<'_>,
    ) -> Option<(Instruction, Vec<usize>)> {
        let oc = code.op_code();
        let mut i = Instruction::default();
        i.set_code(code);
        let mut pool: Vec<usize> = (0..16).filter(|&n| n != RSP && !(mem && n == RDI)).collect();
        // A small pool makes operands alias often.
        let mut small = Vec::new();
        for _ in 0..3 {
            let k = self.rng.below(pool.len() as u64) as usize;
            small.push(pool.swap_remove(k));
        }
        let mut used = implicit_regs(code.mnemonic()).to_vec();
        for n in 0..oc.op_count() {
            let k = oc.op_kind(n);
            let bits = reg_bits(k);
            if mem && matches!(k, K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem) {
                i.set_op_kind(n, OpKind::Memory);
                i.set_memory_base(Register::RDI);
                i.set_memory_index(Register::None);
                i.set_memory_index_scale(1);
                let d = self.rng.below(128) as i64 - 64;
                i.set_memory_displacement64(d as u64);
                i.set_memory_displ_size(1);
                used.push(RDI);
            } else if bits != 0 {
                let g = self.rng.pick(&small);
                let r = if bits == 8 && g < 4 && self.rng.below(4) == 0 {
                    [Register::AH, Register::CH, Register::DH, Register::BH][g]
                } else {
                    gpr(g, bits)
                };
                i.set_op_kind(n, OpKind::Register);
                i.set_op_register(n, r);
                used.push(g);
            } else if let Some(ok) = op_kind_of_imm(k) {
                i.set_op_kind(n, ok);
                let v = (opts.imm)(&mut self.rng, &i, n)
                    .unwrap_or_else(|| default_imm(&mut self.rng, k));
                i.set_immediate_u64(n, v);
            } else {
                let r = match k {
                    K::cl => {
                        used.push(1);
                        Register::CL
                    }
                    K::al => Register::AL,
                    K::ax => Register::AX,
                    K::eax => Register::EAX,
                    K::rax => Register::RAX,
                    K::dx => Register::DX,
                    _ => return None,
                };
                used.push(GPR64.iter().position(|g| *g == r.full_register()).unwrap());
                i.set_op_kind(n, OpKind::Register);
                i.set_op_register(n, r);
            }
        }
        Some((i, used))
    }

    fn variant(
        &mut self,
        code: Code,
        mem: bool,
        lock: bool,
        opts: &Opts<'_>,
        at: u64,
    ) -> Option<Variant> {
        for _ in 0..50 {
            let Some((mut insn, used)) = self.build(code, mem, opts) else { continue };
            insn.set_has_lock_prefix(lock);
            // Check that it encodes (AH with a REX prefix does not).
            if Encoder::new(64).encode(&insn, at).is_err() {
                continue;
            }
            let undefined = iced_to_rflags(insn.rflags_undefined());
            let free: Vec<usize> =
                (0..16).filter(|n| ![0, 1, 2, RSP, RDI].contains(n) && !used.contains(n)).collect();
            let (ra, rb, rc) = (self.rng.pick(&free), self.rng.pick(&free), self.rng.pick(&free));
            let pre = match self.rng.below(6) {
                0 => None,
                1 => Instruction::with2(Code::Cmp_rm64_r64, GPR64[ra], GPR64[rb]).ok(),
                2 => Instruction::with2(Code::Add_rm32_r32, gpr(ra, 32), gpr(rb, 32)).ok(),
                3 => Instruction::with1(Code::Inc_rm64, GPR64[ra]).ok(),
                4 => Instruction::with1(Code::Neg_rm64, GPR64[ra]).ok(),
                _ => Some(Instruction::with(Code::Stc)),
            };
            let usable: Vec<Code> =
                SETCC.iter().filter(|(_, f)| f & undefined == 0).map(|(c, _)| *c).collect();
            let suf = match self.rng.below(4) {
                0 => None,
                1 => Instruction::with2(Code::Sub_rm32_r32, gpr(rc, 32), gpr(rc, 32)).ok(),
                _ if usable.is_empty() => None,
                _ => Instruction::with1(self.rng.pick(&usable), gpr(rc, 8)).ok(),
            };
            let mut seq: Vec<Instruction> = pre.into_iter().collect();
            let tested = seq.len();
            seq.push(insn);
            seq.extend(suf);
            let full = self.place(at, &seq, Some(tested))?;
            let pre_snip = self.place(at + SLOT, &seq[..tested], None)?;
            let flag_mask = if suf.is_some_and(|s| s.code() == Code::Sub_rm32_r32) {
                rflags::ARITH
            } else {
                rflags::ARITH & !undefined
            };
            return Some(Variant { insn, full, pre: pre_snip, flag_mask });
        }
        None
    }

    fn case(&mut self, v: &Variant, mem: bool, opts: &Opts<'_>) -> Case {
        let mut regs = [0u64; 16];
        for r in regs.iter_mut() {
            *r = self.rng.value();
        }
        if mem {
            regs[RDI] = self.data_mid();
        }
        let flags = self.rng.next() & rflags::ARITH;
        let image = mem.then(|| {
            let mut bytes = vec![0u8; DATA_LEN];
            for ch in bytes.chunks_mut(8) {
                let v = self.rng.value().to_le_bytes();
                ch.copy_from_slice(&v);
            }
            MemImage { base: self.data, bytes }
        });
        let mut c = Case { regs, flags, mem: image };
        (opts.hook)(&v.insn, &mut self.rng, &mut c);
        c
    }

    fn fail(&mut self, msg: String) {
        if self.failures.len() < 12 {
            self.failures.push(msg);
        }
    }

    /// Run a fixed instruction sequence on `cases` random inputs (shaped by `hook`) and
    /// compare GPRs and the flags in `flag_mask`. With `fault_at = Some(k)`, instruction
    /// `k` must raise #DE in the emulator, with the state the host reaches after the
    /// instructions before it.
    pub fn check_sequence(
        &mut self,
        seq: &[Instruction],
        fault_at: Option<usize>,
        flag_mask: u64,
        cases: usize,
        hook: &dyn Fn(&mut Rng, &mut Case),
    ) {
        let area = self.shared.mmap_anon(0, CODE_LEN, Prot(7), false).expect("map code area");
        let full = self.place(area, seq, fault_at).expect("encode sequence");
        let pre = self.place(area + SLOT, &seq[..fault_at.unwrap_or(0)], None).expect("encode");
        let v = Variant { insn: seq[fault_at.unwrap_or(0)], full, pre, flag_mask };
        let engines = engines();
        for _ in 0..cases {
            let mut regs = [0u64; 16];
            for r in regs.iter_mut() {
                *r = self.rng.value();
            }
            let mut c = Case { regs, flags: self.rng.next() & rflags::ARITH, mem: None };
            hook(&mut self.rng, &mut c);
            let want = self.run_native(if fault_at.is_some() { &v.pre } else { &v.full }, &c);
            for (tier, engine) in &engines {
                let got = self.run_emu(&v.full, &c, engine);
                if let Some(msg) = compare(&want, &got, &v, &c, fault_at.is_some(), *tier) {
                    self.fail(msg);
                }
            }
            self.stats.2 += 1;
        }
        check_jit_ran(&engines, cases, "sequence");
        if !self.failures.is_empty() {
            panic!("{} mismatch(es):\n{}", self.failures.len(), self.failures.join("\n"));
        }
    }

    /// Run every 64-bit form of `m` the host supports; returns the forms run.
    pub fn check(&mut self, m: Mnemonic, opts: &Opts<'_>) -> usize {
        let codes: Vec<Code> = Code::values()
            .filter(|c| c.mnemonic() == m && c.op_code().mode64() && c.op_code().is_instruction())
            .collect();
        assert!(!codes.is_empty(), "no forms for {m:?}");
        let mut forms = 0;
        for code in codes {
            if !host_supports(code.cpuid_features()) {
                eprintln!("skip {code:?}: the host CPU lacks {:?}", code.cpuid_features());
                self.stats.1 += 1;
                continue;
            }
            for (mem, lock) in [(false, false), (true, false), (true, true)] {
                if mem && !has_rm(code) || lock && !opts.lock {
                    continue;
                }
                self.check_form(code, mem, lock, opts);
                forms += 1;
                self.stats.0 += 1;
            }
        }
        if !self.failures.is_empty() {
            panic!("{} mismatch(es) for {m:?}:\n{}", self.failures.len(), self.failures.join("\n"));
        }
        forms
    }

    fn check_form(&mut self, code: Code, mem: bool, lock: bool, opts: &Opts<'_>) {
        let area = self.shared.mmap_anon(0, CODE_LEN, Prot(7), false).expect("map code area");
        let engines = engines();
        let nv = opts.variants.min((CODE_LEN / (2 * SLOT)) as usize);
        let mut vars = Vec::new();
        for k in 0..nv {
            match self.variant(code, mem, lock, opts, area + 2 * SLOT * k as u64) {
                Some(v) => vars.push(v),
                None => panic!("cannot build {code:?} (mem={mem}, lock={lock})"),
            }
        }
        for n in 0..opts.inputs {
            let v = &vars[n % vars.len()];
            let c = self.case(v, mem, opts);
            self.stats.2 += 1;
            let faults = opts.faults.is_some_and(|f| f(&v.insn, &c));
            self.faulted += faults as usize;
            // A case that faults is compared with the state before the instruction.
            let want = self.run_native(if faults { &v.pre } else { &v.full }, &c);
            for (tier, engine) in &engines {
                let got = self.run_emu(&v.full, &c, engine);
                if let Some(msg) = compare(&want, &got, v, &c, faults, *tier) {
                    self.fail(msg);
                }
            }
        }
        check_jit_ran(&engines, opts.inputs, &format!("{code:?} (mem={mem}, lock={lock})"));
        // The code area is left mapped: later forms use fresh areas, so no stale
        // translation can be reused.
    }
}

fn compare(
    want: &Outcome,
    got: &Outcome,
    v: &Variant,
    c: &Case,
    faults: bool,
    tier: Tier,
) -> Option<String> {
    let mut diffs = Vec::new();
    let exit = got.exit.expect("emulator exit");
    if faults {
        let ok = matches!(exit, SnippetExit::Fault { fault: blockscope::cpu::Fault::DivideError, pc } if pc == v.full.insn_pc);
        if !ok {
            diffs.push(format!("exit: want #DE at {:#x}, got {exit:?}", v.full.insn_pc));
        }
    } else if exit != SnippetExit::Reached {
        diffs.push(format!("exit: {exit:?}"));
    }
    for (n, r) in GPR64.iter().enumerate() {
        if n != RSP && want.regs[n] != got.regs[n] {
            diffs.push(format!("{r:?}: cpu {:#x} emu {:#x}", want.regs[n], got.regs[n]));
        }
    }
    let mask = if faults { rflags::ARITH } else { v.flag_mask };
    if (want.flags ^ got.flags) & mask != 0 {
        diffs.push(format!(
            "flags (mask {mask:#x}): cpu {} emu {}",
            flag_str(want.flags & mask),
            flag_str(got.flags & mask)
        ));
    }
    if let (Some(a), Some(b)) = (&want.mem, &got.mem) {
        if let Some(k) = (0..a.len()).find(|&k| a[k] != b[k]) {
            diffs.push(format!("memory at data+{k:#x}: cpu {:#04x} emu {:#04x}", a[k], b[k]));
        }
    }
    if diffs.is_empty() {
        return None;
    }
    let regs: Vec<String> =
        (0..16).filter(|&n| n != RSP).map(|n| format!("{:?}={:#x}", GPR64[n], c.regs[n])).collect();
    Some(format!(
        "[{tier:?}] `{}` (tested: `{}`)\n  inputs: {} flags={}\n  {}",
        v.full.text,
        disasm(&v.insn),
        regs.join(" "),
        flag_str(c.flags),
        diffs.join("\n  ")
    ))
}

/// Flags as letters: `CPAZSO`, lower case when clear.
pub fn flag_str(f: u64) -> String {
    [
        (rflags::CF, 'C'),
        (rflags::PF, 'P'),
        (rflags::AF, 'A'),
        (rflags::ZF, 'Z'),
        (rflags::SF, 'S'),
        (rflags::OF, 'O'),
    ]
    .iter()
    .map(|&(b, ch)| if f & b != 0 { ch } else { ch.to_ascii_lowercase() })
    .collect()
}
