//! XCHG XADD CMPXCHG CMPXCHG8B CMPXCHG16B against the host CPU: every register pair of
//! every width (high-byte registers, the same register twice, the accumulator as
//! destination), memory forms with and without LOCK, compare-exchange success and failure
//! with garbage in the upper register halves. CMPXCHG16B's alignment #GP is checked against
//! the SDM (natively it would be a host SIGSEGV).

mod strsys_support;

use blockscope::cpu::{CpuState, Fault};
use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};
use strsys_support::*;

fn encode(i: &Instruction) -> Option<Vec<u8>> {
    let mut e = Encoder::new(64);
    e.encode(i, 0x1000).ok()?;
    Some(e.take_buffer())
}

fn regs_of(width: usize) -> Vec<Register> {
    use Register::*;
    match width {
        1 => vec![
            AL, CL, DL, BL, AH, CH, DH, BH, BPL, SIL, DIL, R8L, R9L, R10L, R11L, R12L, R13L, R14L,
            R15L,
        ],
        2 => vec![AX, CX, DX, BX, BP, SI, DI, R8W, R9W, R10W, R11W, R12W, R13W, R14W, R15W],
        4 => vec![EAX, ECX, EDX, EBX, EBP, ESI, EDI, R8D, R9D, R10D, R11D, R12D, R13D, R14D, R15D],
        _ => vec![RAX, RCX, RDX, RBX, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15],
    }
}

fn gpr_index(r: Register) -> usize {
    let f = r.full_register();
    (f as u32 - Register::RAX as u32) as usize
}

/// Register value of `r` (its low bits; AH..BH are bits 8..16).
fn reg_val(regs: &Regs, r: Register) -> u64 {
    let v = regs.gpr[gpr_index(r)];
    match r {
        Register::AH | Register::CH | Register::DH | Register::BH => (v >> 8) & 0xff,
        _ => v,
    }
}

/// Set the low `width` bytes of `r` to `v`.
fn set_reg_low(regs: &mut Regs, r: Register, width: usize, v: u64) {
    let k = gpr_index(r);
    let m = if width == 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
    let (sh, m) = match r {
        Register::AH | Register::CH | Register::DH | Register::BH => (8, m << 8),
        _ => (0, m),
    };
    regs.gpr[k] = (regs.gpr[k] & !m) | ((v << sh) & m);
}

struct Setup {
    nat: Native,
    emu: Emu,
    buf: u64,
    stack: u64,
    rng: Rng,
}

impl Setup {
    fn new(seed: u64) -> Setup {
        let emu = Emu::new();
        let buf = emu.alloc(4096);
        let stack = emu.alloc(4096) + 2048;
        Setup { nat: Native::new(), emu, buf, stack, rng: Rng::new(seed) }
    }
    fn random_regs(&mut self) -> Regs {
        let mut r = Regs::new();
        for g in r.gpr.iter_mut() {
            *g = self.rng.edgy();
        }
        r.gpr[4] = self.stack;
        r.rflags = FLAGS_BASE | (self.rng.next() & ARITH);
        r
    }
    fn region(&self) -> Region {
        Region { addr: self.buf, len: 256 }
    }
    fn run(&mut self, what: &str, code: &[u8], r: &Regs, mem: Vec<u8>, mask: u64) -> Regs {
        let reg = self.region();
        diff(&mut self.nat, &mut self.emu, what, code, r, &[(reg, mem)], mask)
    }
}

const XCHG: [Code; 4] =
    [Code::Xchg_rm8_r8, Code::Xchg_rm16_r16, Code::Xchg_rm32_r32, Code::Xchg_rm64_r64];
const XADD: [Code; 4] =
    [Code::Xadd_rm8_r8, Code::Xadd_rm16_r16, Code::Xadd_rm32_r32, Code::Xadd_rm64_r64];
const CMPXCHG: [Code; 4] =
    [Code::Cmpxchg_rm8_r8, Code::Cmpxchg_rm16_r16, Code::Cmpxchg_rm32_r32, Code::Cmpxchg_rm64_r64];
const WIDTHS: [usize; 4] = [1, 2, 4, 8];

/// Register-register forms of `codes`, every pair, two random inputs each; for CMPXCHG one
/// input makes the accumulator equal to the destination.
fn reg_reg(codes: [Code; 4], seed: u64) -> usize {
    let mut s = Setup::new(seed);
    let mut n = 0;
    for (code, width) in codes.iter().zip(WIDTHS) {
        let regs = regs_of(width);
        for &a in &regs {
            for &b in &regs {
                let Ok(i) = Instruction::with2(*code, a, b) else { continue };
                let Some(bytes) = encode(&i) else { continue }; // AH with REX etc.
                for round in 0..2 {
                    let mut r = s.random_regs();
                    if code.mnemonic() == iced_x86::Mnemonic::Cmpxchg && round == 0 {
                        let d = reg_val(&r, a);
                        set_reg_low(&mut r, Register::AL, width.min(8), d);
                        if width == 4 {
                            set_reg_low(&mut r, Register::EAX, 4, d);
                        }
                    }
                    let what = format!("{i} round {round}");
                    s.run(&what, &bytes, &r, vec![0; 256], CMP_FLAGS);
                    n += 1;
                }
            }
        }
    }
    n
}

/// Memory forms of `codes` with and without LOCK; for CMPXCHG half the cases succeed.
fn reg_mem(codes: [Code; 4], seed: u64) -> usize {
    let mut s = Setup::new(seed);
    let mut n = 0;
    for (code, width) in codes.iter().zip(WIDTHS) {
        for &reg in &regs_of(width) {
            if reg.full_register() == Register::RDI {
                continue; // the base register
            }
            for lock in [false, true] {
                for round in 0..3 {
                    let disp = s.rng.below(200) as i64;
                    let m = MemoryOperand::with_base_displ(Register::RDI, disp);
                    let Ok(mut i) = Instruction::with2(*code, m, reg) else { continue };
                    i.set_has_lock_prefix(lock);
                    let Some(bytes) = encode(&i) else { continue };
                    let mut r = s.random_regs();
                    r.gpr[7] = s.buf;
                    let mut mem = s.rng.bytes(256);
                    if code.mnemonic() == iced_x86::Mnemonic::Cmpxchg && round != 0 {
                        // Success: memory holds the accumulator's value.
                        let v = r.gpr[0].to_le_bytes();
                        let o = disp as usize;
                        mem[o..o + width].copy_from_slice(&v[..width]);
                    }
                    let what = format!("{i} lock={lock} round {round}");
                    s.run(&what, &bytes, &r, mem, CMP_FLAGS);
                    n += 1;
                }
            }
        }
    }
    n
}

#[test]
fn xchg_register_forms_match_the_cpu() {
    assert!(reg_reg(XCHG, 1) > 1000);
    // The short forms 90+r (XCHG r, rAX), including 87 C0 (xchg eax, eax: zero-extends).
    let mut s = Setup::new(11);
    for code in [Code::Xchg_r16_AX, Code::Xchg_r32_EAX, Code::Xchg_r64_RAX] {
        let width = match code {
            Code::Xchg_r16_AX => 2,
            Code::Xchg_r32_EAX => 4,
            _ => 8,
        };
        let acc = regs_of(width)[0];
        for &r in &regs_of(width)[1..] {
            let i = Instruction::with2(code, r, acc).expect("xchg r, acc");
            let bytes = encode(&i).expect("encode");
            let inp = s.random_regs();
            s.run(&format!("{i}"), &bytes, &inp, vec![0; 256], CMP_FLAGS);
        }
    }
    let inp = s.random_regs();
    let out = s.run("xchg eax,eax (87 c0)", &[0x87, 0xc0], &inp, vec![0; 256], CMP_FLAGS);
    assert_eq!(out.gpr[0], inp.gpr[0] & 0xffff_ffff, "87 c0 zero-extends rax");
}

#[test]
fn xchg_memory_forms_match_the_cpu() {
    assert!(reg_mem(XCHG, 2) > 100);
}

#[test]
fn xadd_matches_the_cpu() {
    assert!(reg_reg(XADD, 4) > 1000);
    assert!(reg_mem(XADD, 5) > 100);
}

#[test]
fn cmpxchg_matches_the_cpu() {
    assert!(reg_reg(CMPXCHG, 6) > 1000);
    assert!(reg_mem(CMPXCHG, 7) > 100);
}

#[test]
fn cmpxchg8b_matches_the_cpu() {
    let mut s = Setup::new(8);
    for lock in [false, true] {
        for round in 0..40 {
            let disp = 8 * s.rng.below(24) as i64 + if round % 5 == 4 { 3 } else { 0 };
            let m = MemoryOperand::with_base_displ(Register::RDI, disp);
            let mut i = Instruction::with1(Code::Cmpxchg8b_m64, m).expect("cmpxchg8b");
            i.set_has_lock_prefix(lock);
            let bytes = encode(&i).expect("encode");
            let mut r = s.random_regs();
            r.gpr[7] = s.buf;
            let mut mem = s.rng.bytes(256);
            if round % 2 == 0 {
                let v = (r.gpr[2] << 32) | (r.gpr[0] & 0xffff_ffff);
                let o = disp as usize;
                mem[o..o + 8].copy_from_slice(&v.to_le_bytes());
            }
            // Only ZF changes: every other arithmetic flag must be preserved.
            s.run(&format!("{i} lock={lock} round {round}"), &bytes, &r, mem, CMP_FLAGS);
        }
    }
}

#[test]
fn cmpxchg16b_matches_the_cpu() {
    let mut s = Setup::new(16);
    for lock in [false, true] {
        for round in 0..40 {
            let disp = 16 * s.rng.below(12) as i64;
            let m = MemoryOperand::with_base_displ(Register::RDI, disp);
            let mut i = Instruction::with1(Code::Cmpxchg16b_m128, m).expect("cmpxchg16b");
            i.set_has_lock_prefix(lock);
            let bytes = encode(&i).expect("encode");
            let mut r = s.random_regs();
            r.gpr[7] = s.buf;
            let mut mem = s.rng.bytes(256);
            let o = disp as usize;
            if round % 2 == 0 {
                mem[o..o + 8].copy_from_slice(&r.gpr[0].to_le_bytes());
                mem[o + 8..o + 16].copy_from_slice(&r.gpr[2].to_le_bytes());
            } else if round % 4 == 1 {
                // Low half equal, high half different: still a failure.
                mem[o..o + 8].copy_from_slice(&r.gpr[0].to_le_bytes());
            }
            s.run(&format!("{i} lock={lock} round {round}"), &bytes, &r, mem, CMP_FLAGS);
        }
    }
}

#[test]
fn cmpxchg16b_misaligned_is_gp0_with_state_intact() {
    // SDM CMPXCHG16B: "#GP(0) if the memory operand is not aligned on a 16-byte boundary".
    let mut emu = Emu::new();
    let buf = emu.alloc(4096);
    let code = [0xf0, 0x48, 0x0f, 0xc7, 0x0f]; // lock cmpxchg16b [rdi]
    for tier in TIERS {
        for off in [8u64, 1, 4] {
            let mut cpu = CpuState::new_user();
            cpu.set_gpr(0, 1);
            cpu.set_gpr(2, 2);
            cpu.set_gpr(7, buf + off);
            let before = cpu.clone();
            let end = emu.run_cpu(&code, &mut cpu, tier);
            assert_eq!(
                end,
                EmuEnd::Fault { fault: Fault::GeneralProtection(0), off: 0 },
                "{tier:?} off {off}"
            );
            for k in 0..16 {
                assert_eq!(cpu.gpr(k), before.gpr(k), "{tier:?}: gpr {k}");
            }
        }
    }
}

#[test]
fn cmpxchg16b_non_canonical_is_gp() {
    // A non-canonical address is #GP(0) (natively too), even when 16-byte aligned.
    let mut emu = Emu::new();
    let mut nat_fault = None;
    for tier in TIERS {
        for addr in [0x9264_808e_519d_95e0u64, 0x8000_0000_0000_0000] {
            let mut cpu = CpuState::new_user();
            cpu.set_gpr(2, addr);
            let end = emu.run_cpu(&[0x48, 0x0f, 0xc7, 0x0a], &mut cpu, tier); // cmpxchg16b [rdx]
            assert_eq!(
                end,
                EmuEnd::Fault { fault: Fault::GeneralProtection(0), off: 0 },
                "{tier:?} {addr:#x}"
            );
            nat_fault = Some(end);
        }
    }
    assert!(nat_fault.is_some());
}
