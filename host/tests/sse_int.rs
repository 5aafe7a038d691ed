//! Differential tests of the SSE data-movement, integer SIMD and SSE4.2 string lifters
//! (`sse_mov`, `sse_int`, `sse_str`) against the host CPU.
//!
//! Every legacy-encoded 64-bit-mode form (`Code`) of the mnemonics below is assembled with
//! iced's encoder over random operand choices (register aliasing, memory at `[rbx+disp]`,
//! every imm8 for forms with an immediate), run natively through `support/native_sse.rs`
//! and through `run_snippet` in the interpreter (every fourth case in the JIT too), and all
//! GPRs, the defined status flags, xmm0..15 and the data pages are compared. Inputs mix
//! random values with edge lanes (0, 1, -1, MIN, MAX of every lane width). PCMPxSTRx get
//! string-shaped inputs over every imm8. Faults (#GP on misaligned m128, #PF on a page
//! crossing) and the #UD of the MMX forms are checked against the SDM.

#[path = "support/native_sse.rs"]
mod native_sse;

use blockscope::config::Tier;
use blockscope::cpu::{CpuState, Fault, Width};
use blockscope::exec::{run_snippet, SnippetExit};
use blockscope::frontend::{full_rflags, set_full_rflags};
use blockscope::mem::{install_fault_handler, Direct, DirectShared, GuestMemory, Prot};
use iced_x86::{Code, Encoder, EncodingKind, Instruction, Mnemonic, OpCodeOperandKind as K};
use iced_x86::{OpKind, Register, RflagsBits};
use native_sse::NativeCtx;

/// The mnemonics the three families lift.
const MNEMONICS: &[Mnemonic] = {
    use Mnemonic::*;
    &[
        Movd,
        Movq,
        Movdqa,
        Movaps,
        Movapd,
        Movntdqa,
        Movntdq,
        Movntps,
        Movntpd,
        Movdqu,
        Movups,
        Movupd,
        Lddqu,
        Movnti,
        Pmovmskb,
        Maskmovdqu,
        Paddb,
        Paddw,
        Paddd,
        Paddq,
        Paddsb,
        Paddsw,
        Paddusb,
        Paddusw,
        Psubb,
        Psubw,
        Psubd,
        Psubq,
        Psubsb,
        Psubsw,
        Psubusb,
        Psubusw,
        Pmullw,
        Pmulhw,
        Pmulhuw,
        Pmulhrsw,
        Pmulld,
        Pmuludq,
        Pmuldq,
        Pmaddwd,
        Pmaddubsw,
        Pavgb,
        Pavgw,
        Pminub,
        Pminuw,
        Pminud,
        Pminsb,
        Pminsw,
        Pminsd,
        Pmaxub,
        Pmaxuw,
        Pmaxud,
        Pmaxsb,
        Pmaxsw,
        Pmaxsd,
        Pcmpeqb,
        Pcmpeqw,
        Pcmpeqd,
        Pcmpeqq,
        Pcmpgtb,
        Pcmpgtw,
        Pcmpgtd,
        Pcmpgtq,
        Psadbw,
        Psignb,
        Psignw,
        Psignd,
        Pabsb,
        Pabsw,
        Pabsd,
        Pand,
        Pandn,
        Por,
        Pxor,
        Psllw,
        Pslld,
        Psllq,
        Psrlw,
        Psrld,
        Psrlq,
        Psraw,
        Psrad,
        Pslldq,
        Psrldq,
        Palignr,
        Packsswb,
        Packssdw,
        Packuswb,
        Packusdw,
        Phaddw,
        Phaddd,
        Phaddsw,
        Phsubw,
        Phsubd,
        Phsubsw,
        Punpcklbw,
        Punpcklwd,
        Punpckldq,
        Punpcklqdq,
        Punpckhbw,
        Punpckhwd,
        Punpckhdq,
        Punpckhqdq,
        Pshufd,
        Pshuflw,
        Pshufhw,
        Pshufb,
        Pblendw,
        Pblendvb,
        Pinsrb,
        Pinsrw,
        Pinsrd,
        Pinsrq,
        Pextrb,
        Pextrw,
        Pextrd,
        Pextrq,
        Pmovsxbw,
        Pmovsxbd,
        Pmovsxbq,
        Pmovsxwd,
        Pmovsxwq,
        Pmovsxdq,
        Pmovzxbw,
        Pmovzxbd,
        Pmovzxbq,
        Pmovzxwd,
        Pmovzxwq,
        Pmovzxdq,
        Ptest,
        Phminposuw,
        Mpsadbw,
        Pcmpestri,
        Pcmpestri64,
        Pcmpestrm,
        Pcmpestrm64,
        Pcmpistri,
        Pcmpistrm,
        Crc32,
    ]
};

/// m128 forms that do not require 16-byte alignment.
const UNALIGNED_OK: &[Mnemonic] = {
    use Mnemonic::*;
    &[
        Movdqu,
        Movups,
        Movupd,
        Lddqu,
        Pcmpestri,
        Pcmpestri64,
        Pcmpestrm,
        Pcmpestrm64,
        Pcmpistri,
        Pcmpistrm,
    ]
};

const DATA_SIZE: usize = 8192;
/// `rbx` points here inside the data area; memory operands are `[rbx + disp]`.
const BASE_OFF: u64 = 2048;

// ---------------------------------------------------------------------------------------
// Random inputs.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A lane of `bits` bits: an edge value or a random one.
    fn lane(&mut self, bits: u32) -> u64 {
        let m = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let v = match self.below(10) {
            0 => 0,
            1 => 1,
            2 => m,
            3 => 1 << (bits - 1),
            4 => (1 << (bits - 1)) - 1,
            5 => self.below(4),
            _ => self.next(),
        };
        v & m
    }
    /// A 128-bit value built from lanes of one random width.
    fn v128(&mut self) -> u128 {
        let bits = [8u32, 16, 32, 64][self.below(4) as usize];
        let mut v = 0u128;
        for i in 0..128 / bits {
            v |= (self.lane(bits) as u128) << (i * bits);
        }
        v
    }
    /// `v` with some of its `bits`-lanes replaced (to make equal lanes likely).
    fn tweak(&mut self, v: u128) -> u128 {
        let bits = [8u32, 16, 32, 64][self.below(4) as usize];
        let mut r = v;
        for i in 0..128 / bits {
            if self.below(3) == 0 {
                let m = ((1u128 << bits) - 1) << (i * bits);
                r = (r & !m) | ((self.lane(bits) as u128) << (i * bits));
            }
        }
        r
    }
}

// ---------------------------------------------------------------------------------------
// Machine state, and running it natively and emulated.

#[derive(Clone, PartialEq, Eq)]
struct St {
    gpr: [u64; 16],
    flags: u64,
    xmm: [u128; 16],
    data: Vec<u8>,
}

struct Env {
    mem: Direct,
    code: u64,
    data: u64,
    /// Cases checked so far (the JIT tier, which compiles every snippet, runs on every
    /// `JIT_EVERY`-th case).
    cases: u64,
}

const JIT_EVERY: u64 = 4;

impl Env {
    fn new() -> Env {
        install_fault_handler();
        let shared = DirectShared::new();
        let mem = Direct::new(shared.clone());
        let code = shared.mmap_anon(0, 4096, Prot(7), false).expect("mmap code page");
        // Data pages followed by one inaccessible page (for page-crossing tests).
        let data = shared.mmap_anon(0, DATA_SIZE as u64 + 4096, Prot(3), false).expect("mmap data");
        shared.mmap_anon(data + DATA_SIZE as u64, 4096, Prot(0), true).expect("guard page");
        Env { mem, code, data, cases: 0 }
    }

    fn put_code(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().chain(&[0xc3]).enumerate() {
            self.mem.store(self.code + i as u64, Width::W8, *b as u64).expect("write code");
        }
        // Writing a page that held translations is recorded as a code write; a new engine
        // runs the snippet, so forget it (else the first helper or store of the snippet
        // would see a stale code-write flag).
        self.mem.take_code_writes();
    }

    fn put_data(&mut self, d: &[u8]) {
        for (i, c) in d.chunks(8).enumerate() {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.mem.store(self.data + 8 * i as u64, Width::W64, v).expect("write data");
        }
    }

    fn get_data(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DATA_SIZE);
        for i in 0..DATA_SIZE / 8 {
            let v = self.mem.load(self.data + 8 * i as u64, Width::W64).expect("read data");
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn native(&mut self, bytes: &[u8], s: &St) -> St {
        self.put_code(bytes);
        self.put_data(&s.data);
        let mut ctx =
            NativeCtx { gpr: s.gpr, rflags: s.flags, code: self.code, ..Default::default() };
        for (n, x) in s.xmm.iter().enumerate() {
            ctx.xmm[n] = [*x as u64, (*x >> 64) as u64];
        }
        native_sse::run(&mut ctx);
        let mut out = s.clone();
        out.gpr = ctx.gpr;
        out.gpr[4] = s.gpr[4];
        out.flags = ctx.rflags;
        for n in 0..16 {
            out.xmm[n] = ctx.xmm[n][0] as u128 | (ctx.xmm[n][1] as u128) << 64;
        }
        out.data = self.get_data();
        out
    }

    fn emulate(&mut self, bytes: &[u8], s: &St, tier: Tier) -> Result<St, SnippetExit> {
        self.put_code(bytes);
        self.put_data(&s.data);
        let mut cpu = CpuState::new_user();
        for n in 0..16 {
            cpu.set_gpr(n, s.gpr[n]);
            cpu.set_xmm(n, s.xmm[n]);
        }
        set_full_rflags(&mut cpu, s.flags);
        cpu.set_rip(self.code);
        let r = run_snippet(&mut cpu, &mut self.mem, self.code + bytes.len() as u64, tier);
        let mut out = s.clone();
        for n in 0..16 {
            out.gpr[n] = cpu.gpr(n);
            out.xmm[n] = cpu.xmm(n);
        }
        out.flags = full_rflags(&cpu);
        out.data = self.get_data();
        match r {
            SnippetExit::Reached => Ok(out),
            other => Err(other),
        }
    }
}

/// iced `RflagsBits` → RFLAGS bit positions.
fn rflags_of(b: u32) -> u64 {
    let map = [
        (RflagsBits::CF, 1u64 << 0),
        (RflagsBits::PF, 1 << 2),
        (RflagsBits::AF, 1 << 4),
        (RflagsBits::ZF, 1 << 6),
        (RflagsBits::SF, 1 << 7),
        (RflagsBits::OF, 1 << 11),
    ];
    map.iter().filter(|(i, _)| b & i != 0).fold(0, |r, (_, x)| r | x)
}

fn diff(a: &St, b: &St, flag_mask: u64) -> Vec<String> {
    let mut d = Vec::new();
    for n in 0..16 {
        if a.gpr[n] != b.gpr[n] {
            d.push(format!("gpr{n}: host {:#x}, emulator {:#x}", a.gpr[n], b.gpr[n]));
        }
        if a.xmm[n] != b.xmm[n] {
            d.push(format!("xmm{n}: host {:032x}, emulator {:032x}", a.xmm[n], b.xmm[n]));
        }
    }
    if (a.flags ^ b.flags) & flag_mask != 0 {
        d.push(format!(
            "flags: host {:#x}, emulator {:#x}",
            a.flags & flag_mask,
            b.flags & flag_mask
        ));
    }
    if let Some(i) = (0..DATA_SIZE).find(|&i| a.data[i] != b.data[i]) {
        d.push(format!("data byte {i:#x}: host {:#x}, emulator {:#x}", a.data[i], b.data[i]));
    }
    d
}

/// Run `ins` natively and in both tiers from state `s`; returns a description of each
/// mismatch.
fn check(env: &mut Env, ins: &Instruction, s: &St) -> Vec<String> {
    let mut enc = Encoder::new(64);
    let len = match enc.encode(ins, env.code) {
        Ok(n) => n,
        Err(e) => return vec![format!("{ins}: cannot encode: {e}")],
    };
    let bytes = enc.take_buffer();
    assert_eq!(bytes.len(), len);
    let host = env.native(&bytes, s);
    let status = 0x8d5u64; // CF PF AF ZF SF OF
    let mask = status & !rflags_of(ins.rflags_undefined());
    let mut out = Vec::new();
    let jit = env.cases.is_multiple_of(JIT_EVERY);
    env.cases += 1;
    let tiers: &[Tier] = if jit { &[Tier::Interp, Tier::Jit] } else { &[Tier::Interp] };
    for &tier in tiers {
        match env.emulate(&bytes, s, tier) {
            Ok(emu) => {
                let d = diff(&host, &emu, mask);
                if !d.is_empty() {
                    out.push(format!(
                        "{ins} ({tier:?}) bytes {bytes:02x?}\n  inputs: {}\n  {}",
                        describe(ins, s),
                        d.join("\n  ")
                    ));
                }
            }
            Err(e) => out.push(format!("{ins} ({tier:?}): emulator stopped with {e:?}")),
        }
    }
    out
}

/// The input registers an instruction reads, for failure messages.
fn describe(ins: &Instruction, s: &St) -> String {
    let mut parts = vec![format!("flags={:#x}", s.flags)];
    for n in 0..ins.op_count() {
        if ins.op_kind(n) == OpKind::Register {
            let r = ins.op_register(n);
            if r.is_xmm() {
                let k = r as usize - Register::XMM0 as usize;
                parts.push(format!("{r:?}={:032x}", s.xmm[k]));
            } else if r.is_gpr() {
                let k = r.full_register() as usize - Register::RAX as usize;
                parts.push(format!("{r:?}={:#x}", s.gpr[k]));
            }
        }
    }
    parts.push(format!("xmm0={:032x} rax={:#x} rdx={:#x}", s.xmm[0], s.gpr[0], s.gpr[2]));
    parts.join(" ")
}

// ---------------------------------------------------------------------------------------
// Forms and operands.

/// The codes under test: legacy-encoded, valid in 64-bit mode, without MMX operands.
fn forms() -> Vec<Code> {
    Code::values()
        .filter(|c| {
            let oc = c.op_code();
            oc.mode64()
                && oc.encoding() == EncodingKind::Legacy
                && MNEMONICS.contains(&c.mnemonic())
                && !oc.op_kinds().iter().any(|k| matches!(k, K::mm_reg | K::mm_rm | K::mm_or_mem))
        })
        .collect()
}

/// GPRs usable as operands: not rsp, not rbx (the memory base).
const GPRS: [u8; 14] = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn gpr(n: u8, bytes: u32) -> Register {
    let base = match bytes {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    };
    // SPL/BPL/SIL/DIL follow AL..BL in iced's numbering (r8 forms need REX anyway).
    let r = base as u32 + n as u32;
    let r = if bytes == 1 && n >= 4 { r + 4 } else { r };
    Register::values().nth(r as usize).expect("register")
}

/// Build one instance of `code`: `mem` chooses the memory form of an r/m operand; `disp`
/// is its displacement from rbx; `imm` the immediate.
fn build(code: Code, rng: &mut Rng, mem: bool, disp: i32, imm: u8) -> Instruction {
    if code == Code::Maskmovdqu_rDI_xmm_xmm {
        let r1 = Register::values().nth(Register::XMM0 as usize + rng.below(16) as usize);
        let r2 = Register::values().nth(Register::XMM0 as usize + rng.below(16) as usize);
        return Instruction::with_maskmovdqu(
            64,
            r1.expect("xmm"),
            r2.expect("xmm"),
            Register::None,
        )
        .expect("maskmovdqu");
    }
    let mut ins = Instruction::default();
    ins.set_code(code);
    let kinds = code.op_code().op_kinds();
    let xmm = |rng: &mut Rng| -> Register {
        Register::values().nth(Register::XMM0 as usize + rng.below(16) as usize).expect("xmm")
    };
    for (n, k) in kinds.iter().enumerate() {
        let n = n as u32;
        let reg_bytes = match k {
            K::r8_or_mem => Some(1),
            K::r16_or_mem => Some(2),
            K::r32_or_mem | K::r32_reg | K::r32_rm => Some(4),
            K::r64_or_mem | K::r64_reg | K::r64_rm => Some(8),
            _ => None,
        };
        let memory = match k {
            K::mem => true,
            K::xmm_or_mem | K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem => mem,
            _ => false,
        };
        if memory {
            ins.set_op_kind(n, OpKind::Memory);
            ins.set_memory_base(Register::RBX);
            ins.set_memory_index(Register::None);
            ins.set_memory_index_scale(1);
            ins.set_memory_displacement64(disp as i64 as u64);
            ins.set_memory_displ_size(if disp == 0 {
                0
            } else if (-128..128).contains(&disp) {
                1
            } else {
                8
            });
            ins.set_segment_prefix(Register::None);
        } else if let Some(b) = reg_bytes {
            ins.set_op_kind(n, OpKind::Register);
            ins.set_op_register(n, gpr(GPRS[rng.below(14) as usize], b));
        } else if matches!(k, K::xmm_reg | K::xmm_rm | K::xmm_or_mem) {
            ins.set_op_kind(n, OpKind::Register);
            ins.set_op_register(n, xmm(rng));
        } else if *k == K::imm8 {
            ins.set_op_kind(n, OpKind::Immediate8);
            ins.set_immediate8(imm);
        } else {
            panic!("{code:?}: unhandled operand kind {k:?}");
        }
    }
    ins
}

fn has_imm(code: Code) -> bool {
    code.op_code().op_kinds().contains(&K::imm8)
}

fn has_mem_form(code: Code) -> bool {
    code.op_code().op_kinds().iter().any(|k| {
        matches!(
            k,
            K::mem | K::xmm_or_mem | K::r8_or_mem | K::r16_or_mem | K::r32_or_mem | K::r64_or_mem
        )
    })
}

/// Whether the memory form needs 16-byte alignment (legacy SSE m128 operands).
fn needs_align(ins: &Instruction) -> bool {
    ins.memory_size().size() == 16 && !UNALIGNED_OK.contains(&ins.mnemonic())
}

fn random_state(rng: &mut Rng, env: &Env) -> St {
    let mut gpr = [0u64; 16];
    for g in gpr.iter_mut() {
        *g = rng.lane(64);
    }
    gpr[3] = env.data + BASE_OFF;
    // MASKMOVDQU stores at [rdi].
    gpr[7] = env.data + 64 + rng.below(256);
    // Explicit string lengths are mostly small.
    if rng.below(2) == 0 {
        gpr[0] = (rng.below(41) as i64 - 20) as u64;
        gpr[2] = (rng.below(41) as i64 - 20) as u64;
    }
    let mut xmm = [0u128; 16];
    for x in xmm.iter_mut() {
        *x = rng.v128();
    }
    // Related registers make equal lanes likely.
    for _ in 0..4 {
        let a = rng.below(16) as usize;
        let b = rng.below(16) as usize;
        xmm[a] = rng.tweak(xmm[b]);
    }
    let mut data = vec![0u8; DATA_SIZE];
    for c in data.chunks_mut(8) {
        c.copy_from_slice(&rng.lane(64).to_le_bytes());
    }
    let flags = 0x2 | (rng.next() & 0x8d5);
    St { gpr, flags, xmm, data }
}

/// Put the bytes of two xmm registers into the memory operand's location too, so memory
/// forms see related values.
fn mirror_to_mem(s: &mut St, disp: i32, rng: &mut Rng) {
    let off = (BASE_OFF as i64 + disp as i64) as usize;
    let k = rng.below(16) as usize;
    let v = rng.tweak(s.xmm[k]);
    s.data[off..off + 16].copy_from_slice(&v.to_le_bytes());
}

fn run_form(env: &mut Env, code: Code, rng: &mut Rng, cases: usize, fails: &mut Vec<String>) {
    let imms: Vec<u8> = if has_imm(code) { (0..=255).collect() } else { vec![0] };
    let per_imm = if has_imm(code) { (cases / 64).max(2) } else { cases };
    for &imm in &imms {
        for k in 0..per_imm {
            let mem = has_mem_form(code) && k % 2 == 1;
            let probe = build(code, rng, mem, 0, imm);
            let disp = if mem {
                let d = rng.below(1024) as i32 - 512;
                if needs_align(&probe) {
                    d & !15
                } else {
                    d
                }
            } else {
                0
            };
            let ins = build(code, rng, mem, disp, imm);
            let mut s = random_state(rng, env);
            if mem {
                mirror_to_mem(&mut s, disp, rng);
            }
            fails.extend(check(env, &ins, &s));
            if fails.len() > 20 {
                return;
            }
        }
    }
}

fn report(fails: &[String]) {
    if !fails.is_empty() {
        panic!("{} mismatches:\n{}", fails.len(), fails.join("\n"));
    }
}

fn run_mnemonics(filter: impl Fn(Mnemonic) -> bool, cases: usize, seed: u64) {
    let mut env = Env::new();
    let mut rng = Rng(seed);
    let mut fails = Vec::new();
    let mut n = 0;
    for code in forms() {
        if !filter(code.mnemonic()) {
            continue;
        }
        n += 1;
        run_form(&mut env, code, &mut rng, cases, &mut fails);
        if fails.len() > 20 {
            break;
        }
    }
    assert!(n > 0, "no forms matched");
    report(&fails);
}

fn is_str(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(m, Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm)
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn every_form_is_tested() {
    // Each mnemonic has at least one legacy 64-bit form in the list.
    let f = forms();
    for m in MNEMONICS {
        assert!(f.iter().any(|c| c.mnemonic() == *m), "no form of {m:?}");
    }
}

#[test]
fn moves_match_host() {
    use Mnemonic::*;
    let movs = [
        Movd, Movq, Movdqa, Movaps, Movapd, Movntdqa, Movntdq, Movntps, Movntpd, Movdqu, Movups,
        Movupd, Lddqu, Movnti, Pmovmskb, Maskmovdqu,
    ];
    run_mnemonics(|m| movs.contains(&m), 200, 1);
}

#[test]
fn arithmetic_matches_host() {
    let s = |m: Mnemonic| format!("{m:?}");
    run_mnemonics(
        |m| {
            let n = s(m);
            [
                "Padd", "Psub", "Pmul", "Pmadd", "Pavg", "Pmin", "Pmax", "Psad", "Psign", "Pabs",
                "Phadd", "Phsub", "Phmin", "Mpsad",
            ]
            .iter()
            .any(|p| n.starts_with(p))
        },
        300,
        2,
    );
}

#[test]
fn compares_logic_shifts_match_host() {
    let s = |m: Mnemonic| format!("{m:?}");
    run_mnemonics(
        |m| {
            let n = s(m);
            ["Pcmpeq", "Pcmpgt", "Pand", "Por", "Pxor", "Psll", "Psrl", "Psra", "Ptest"]
                .iter()
                .any(|p| n.starts_with(p))
        },
        300,
        3,
    );
}

#[test]
fn shuffles_packs_inserts_match_host() {
    let s = |m: Mnemonic| format!("{m:?}");
    run_mnemonics(
        |m| {
            let n = s(m);
            ["Pack", "Punpck", "Pshuf", "Palignr", "Pblend", "Pinsr", "Pextr", "Pmovsx", "Pmovzx"]
                .iter()
                .any(|p| n.starts_with(p))
        },
        300,
        4,
    );
}

#[test]
fn crc32_matches_host() {
    run_mnemonics(|m| m == Mnemonic::Crc32, 400, 5);
}

/// A string-shaped 128-bit value: characters from a small alphabet, sometimes a NUL.
fn string_v128(rng: &mut Rng, words: bool) -> u128 {
    let alphabet: [u64; 8] =
        [b'a' as u64, b'b' as u64, b'c' as u64, b'z' as u64, 0x80, 0xff, 0x7f, 0x8000];
    let (n, bits) = if words { (8, 16) } else { (16, 8) };
    let mut v = 0u128;
    let nul = if rng.below(3) == 0 { n } else { rng.below(n as u64 + 1) as u32 };
    for i in 0..n {
        let c = if i == nul { 0 } else { alphabet[rng.below(8) as usize] & ((1u64 << bits) - 1) };
        v |= (c as u128) << (i * bits);
    }
    v
}

#[test]
fn string_compares_match_host_for_every_imm8() {
    let mut env = Env::new();
    let mut rng = Rng(6);
    let mut fails = Vec::new();
    for code in forms().into_iter().filter(|c| is_str(c.mnemonic())) {
        for imm in 0..=255u8 {
            for k in 0..8 {
                let mem = k % 3 == 2;
                let disp = if mem { rng.below(512) as i32 - 256 } else { 0 };
                let ins = build(code, &mut rng, mem, disp, imm);
                let mut s = random_state(&mut rng, &env);
                let words = imm & 1 != 0;
                // Needle in the first operand, haystack in the second (or memory).
                let a = ins.op0_register() as usize - Register::XMM0 as usize;
                let hay = string_v128(&mut rng, words);
                s.xmm[a] = if k % 4 == 0 { rng.tweak(hay) } else { string_v128(&mut rng, words) };
                if mem {
                    let off = (BASE_OFF as i64 + disp as i64) as usize;
                    s.data[off..off + 16].copy_from_slice(&hay.to_le_bytes());
                } else {
                    let b = ins.op1_register() as usize - Register::XMM0 as usize;
                    if b != a {
                        s.xmm[b] = hay;
                    }
                }
                // Explicit lengths around the element count, some negative or huge.
                let n = if words { 8 } else { 16 };
                let len = |rng: &mut Rng| -> u64 {
                    match rng.below(6) {
                        0 => rng.next(),
                        1 => (-(rng.below(n + 4) as i64)) as u64,
                        _ => rng.below(n + 4),
                    }
                };
                s.gpr[0] = len(&mut rng);
                s.gpr[2] = len(&mut rng);
                if rng.below(4) == 0 {
                    // Upper halves that the 32-bit forms must ignore.
                    s.gpr[0] |= 0x1_0000_0000;
                    s.gpr[2] ^= 0xffff_ffff_0000_0000;
                }
                fails.extend(check(&mut env, &ins, &s));
                if fails.len() > 20 {
                    report(&fails);
                }
            }
        }
    }
    report(&fails);
}

// ---------------------------------------------------------------------------------------
// Faults and refusals (the host would deliver SIGSEGV/SIGILL; checked against the SDM).

fn emulate_bytes(
    env: &mut Env,
    ins: &Instruction,
    s: &St,
    tier: Tier,
) -> (Result<St, SnippetExit>, Vec<u8>) {
    let mut enc = Encoder::new(64);
    enc.encode(ins, env.code).expect("encode");
    let bytes = enc.take_buffer();
    (env.emulate(&bytes, s, tier), bytes)
}

#[test]
fn misaligned_m128_raises_gp_and_changes_nothing() {
    let mut env = Env::new();
    let mut rng = Rng(7);
    let mut tested = 0;
    for code in forms() {
        let probe = build(code, &mut rng, true, 0, 0);
        if !has_mem_form(code) || !probe.op_kinds().any(|k| k == OpKind::Memory) {
            continue;
        }
        let disp = 8 + rng.below(8) as i32;
        let ins = build(code, &mut rng, true, disp, 0x1b);
        let s = random_state(&mut rng, &env);
        for tier in [Tier::Interp, Tier::Jit] {
            let (r, _) = emulate_bytes(&mut env, &ins, &s, tier);
            if needs_align(&ins) {
                match r {
                    Err(SnippetExit::Fault { fault: Fault::GeneralProtection(0), pc }) => {
                        assert_eq!(pc, env.code, "{ins}");
                    }
                    other => panic!("{ins}: expected #GP(0), got {:?}", other.map(|_| ())),
                }
                tested += 1;
            } else {
                assert!(r.is_ok(), "{ins}: unaligned form faulted: {:?}", r.err());
            }
        }
    }
    assert!(tested > 50, "only {tested} aligned forms tested");
}

#[test]
fn fault_leaves_registers_intact() {
    // movdqa xmm3, [rbx+1] faults with #GP; paddb xmm3, [rbx+1] too; movdqu xmm3, [rbx+off]
    // crossing into the unmapped page faults with #PF; registers stay as they were.
    let mut env = Env::new();
    let mut rng = Rng(8);
    let mut s = random_state(&mut rng, &env);
    let edge = (DATA_SIZE as u64 - BASE_OFF - 8) as i32;
    s.gpr[3] = env.data + BASE_OFF;
    let cases = [
        (Code::Movdqa_xmm_xmmm128, 1, Fault::GeneralProtection(0)),
        (Code::Paddb_xmm_xmmm128, 1, Fault::GeneralProtection(0)),
        (Code::Pshufb_xmm_xmmm128, 3, Fault::GeneralProtection(0)),
    ];
    for (code, disp, want) in cases {
        let mut ins = build(code, &mut rng, true, disp, 0);
        ins.set_op0_register(Register::XMM3);
        for tier in [Tier::Interp, Tier::Jit] {
            let (r, _) = emulate_bytes(&mut env, &ins, &s, tier);
            assert_eq!(r.err(), Some(SnippetExit::Fault { fault: want, pc: env.code }), "{ins}");
        }
    }
    for code in
        [Code::Movdqu_xmm_xmmm128, Code::Pcmpistri_xmm_xmmm128_imm8, Code::Movdqu_xmmm128_xmm]
    {
        let mut ins = build(code, &mut rng, true, edge, 0x0c);
        if ins.op0_kind() == OpKind::Register {
            ins.set_op0_register(Register::XMM3);
        }
        for tier in [Tier::Interp, Tier::Jit] {
            let (r, _) = emulate_bytes(&mut env, &ins, &s, tier);
            match r {
                Err(SnippetExit::Fault { fault: Fault::PageFault { addr, .. }, pc }) => {
                    assert_eq!(pc, env.code);
                    assert!(addr >= env.data + DATA_SIZE as u64 - 8, "{ins}: fault at {addr:#x}");
                }
                other => panic!("{ins}: expected #PF, got {:?}", other.map(|_| ())),
            }
        }
    }
    // A fault changes no register: check after a faulting PCMPESTRI (would write ECX).
    let mut cpu = CpuState::new_user();
    for n in 0..16 {
        cpu.set_gpr(n, s.gpr[n]);
        cpu.set_xmm(n, s.xmm[n]);
    }
    let ins = build(Code::Pcmpestri_xmm_xmmm128_imm8, &mut rng, true, edge, 0);
    let mut enc = Encoder::new(64);
    enc.encode(&ins, env.code).expect("encode");
    let bytes = enc.take_buffer();
    env.put_code(&bytes);
    cpu.set_rip(env.code);
    let r = run_snippet(&mut cpu, &mut env.mem, env.code + bytes.len() as u64, Tier::Interp);
    assert!(matches!(r, SnippetExit::Fault { fault: Fault::PageFault { .. }, .. }), "{r:?}");
    for n in 0..16 {
        assert_eq!(cpu.gpr(n), s.gpr[n], "gpr{n}");
        assert_eq!(cpu.xmm(n), s.xmm[n], "xmm{n}");
    }
}

#[test]
fn mmx_forms_are_refused_with_ud() {
    let mut env = Env::new();
    let mut rng = Rng(9);
    let s = random_state(&mut rng, &env);
    let mut n = 0;
    for code in Code::values() {
        let oc = code.op_code();
        if !oc.mode64()
            || oc.encoding() != EncodingKind::Legacy
            || !MNEMONICS.contains(&code.mnemonic())
            || !oc.op_kinds().iter().any(|k| matches!(k, K::mm_reg | K::mm_rm))
        {
            continue;
        }
        // Register-only MMX form: mm operands get mm registers, others as usual.
        let mut ins = Instruction::default();
        ins.set_code(code);
        let mut ok = true;
        for (i, k) in oc.op_kinds().iter().enumerate() {
            let i = i as u32;
            match k {
                K::mm_reg | K::mm_rm | K::mm_or_mem => {
                    ins.set_op_kind(i, OpKind::Register);
                    ins.set_op_register(i, Register::MM1);
                }
                K::xmm_reg | K::xmm_rm | K::xmm_or_mem => {
                    ins.set_op_kind(i, OpKind::Register);
                    ins.set_op_register(i, Register::XMM2);
                }
                K::r32_reg | K::r32_rm | K::r32_or_mem => {
                    ins.set_op_kind(i, OpKind::Register);
                    ins.set_op_register(i, Register::ECX);
                }
                K::r64_reg | K::r64_rm | K::r64_or_mem => {
                    ins.set_op_kind(i, OpKind::Register);
                    ins.set_op_register(i, Register::RCX);
                }
                K::imm8 => {
                    ins.set_op_kind(i, OpKind::Immediate8);
                    ins.set_immediate8(1);
                }
                _ => ok = false,
            }
        }
        if !ok {
            continue;
        }
        let (r, _) = emulate_bytes(&mut env, &ins, &s, Tier::Interp);
        assert_eq!(
            r.err(),
            Some(SnippetExit::Fault { fault: Fault::InvalidOpcode, pc: env.code }),
            "{ins}"
        );
        n += 1;
    }
    assert!(n > 40, "only {n} MMX forms");
}
