//! Multiplication and division against the host CPU: MUL IMUL (1/2/3 operands) DIV IDIV
//! MULX ADCX ADOX, every 64-bit form (register and memory), ≥ 500 cases per form,
//! interpreter and JIT tiers. Division cases that fault (#DE: zero divisor or quotient
//! overflow, predicted from the SDM definition below) are not run natively: the emulator
//! must report #DE at the DIV with every register and flag as before it.

mod intops_native;

use iced_x86::{Instruction, Mnemonic, OpKind};
use intops_native::{Bench, Case, Opts, Rng};

fn run(m: Mnemonic, opts: &Opts<'_>) -> Bench {
    let mut b = Bench::new(0xd1f ^ (m as u64) << 20);
    let forms = b.check(m, opts);
    assert!(forms > 0, "{m:?}: no form ran");
    eprintln!("{m:?}: {} forms, {} cases x 2 tiers ({} fault)", b.stats.0, b.stats.2, b.faulted);
    b
}

/// Operand width in bits of operand 0.
fn bits0(i: &Instruction) -> u32 {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() as u32 * 8,
        _ => i.memory_size().size() as u32 * 8,
    }
}

fn mask(bits: u32) -> u64 {
    u64::MAX >> (64 - bits)
}

fn sext(v: u64, bits: u32) -> i128 {
    ((v << (64 - bits)) as i64 >> (64 - bits)) as i128
}

/// The dividend of DIV/IDIV r/m of `bits` width as an unsigned 2*bits-bit number.
fn dividend(c: &Case, bits: u32) -> u128 {
    let (rax, rdx) = (c.regs[0], c.regs[2]);
    match bits {
        8 => (rax & 0xffff) as u128,
        64 => (rdx as u128) << 64 | rax as u128,
        _ => ((rdx & mask(bits)) as u128) << bits | (rax & mask(bits)) as u128,
    }
}

/// Whether DIV/IDIV faults (#DE) on this case (SDM: divisor 0, or the quotient does not
/// fit the destination).
fn div_faults(i: &Instruction, c: &Case) -> bool {
    let bits = bits0(i);
    let d = c.operand(i, 0) & mask(bits);
    if d == 0 {
        return true;
    }
    let n = dividend(c, bits);
    if i.mnemonic() == Mnemonic::Div {
        n / d as u128 > mask(bits) as u128
    } else {
        // The dividend is a signed 2*bits-bit number.
        let sn = if bits == 64 { n as i128 } else { sext(n as u64, 2 * bits) };
        let sd = sext(d, bits);
        if sn == i128::MIN && sd == -1 {
            return true;
        }
        let q = sn / sd;
        let lim = 1i128 << (bits - 1);
        q < -lim || q >= lim
    }
}

/// Shape most dividends so the quotient fits (high half below the divisor, or the sign
/// extension of the low half for IDIV); the rest stay random and mostly fault.
fn div_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    if rng.below(5) == 0 {
        return;
    }
    let bits = bits0(i);
    let d = c.operand(i, 0) & mask(bits);
    let signed = i.mnemonic() == Mnemonic::Idiv;
    let lo = if bits == 8 { c.regs[0] & 0xff } else { c.regs[0] & mask(bits) };
    let hi = if signed {
        if rng.below(4) == 0 {
            rng.below(3)
        } else if sext(lo, bits) < 0 {
            mask(bits)
        } else {
            0
        }
    } else if d != 0 {
        rng.next() % d
    } else {
        0
    };
    match bits {
        8 => c.regs[0] = (c.regs[0] & !0xff00) | (hi & 0xff) << 8,
        16 => c.regs[2] = (c.regs[2] & !0xffff) | (hi & 0xffff),
        32 => c.regs[2] = (c.regs[2] & !0xffff_ffff) | (hi & 0xffff_ffff),
        _ => c.regs[2] = hi,
    }
}

#[test]
fn mul() {
    run(Mnemonic::Mul, &Opts::default());
}

#[test]
fn imul() {
    run(Mnemonic::Imul, &Opts::default());
}

#[test]
fn div() {
    let b =
        run(Mnemonic::Div, &Opts { hook: &div_hook, faults: Some(&div_faults), ..Opts::default() });
    // Both paths must be exercised a lot.
    assert!(b.faulted > 200 && b.stats.2 - b.faulted > 2000, "{} of {}", b.faulted, b.stats.2);
}

#[test]
fn idiv() {
    let b = run(
        Mnemonic::Idiv,
        &Opts { hook: &div_hook, faults: Some(&div_faults), ..Opts::default() },
    );
    assert!(b.faulted > 200 && b.stats.2 - b.faulted > 2000, "{} of {}", b.faulted, b.stats.2);
}

#[test]
fn mulx() {
    run(Mnemonic::Mulx, &Opts::default());
}

#[test]
fn adcx() {
    run(Mnemonic::Adcx, &Opts::default());
}

#[test]
fn adox() {
    run(Mnemonic::Adox, &Opts::default());
}

/// The fault predictor itself, on hand-checked SDM cases.
#[test]
fn div_fault_predictor_matches_the_sdm() {
    let mut c = Case { regs: [0; 16], flags: 0, mem: None };
    let div_cl = Instruction::with1(iced_x86::Code::Div_rm8, iced_x86::Register::CL).unwrap();
    let idiv_ecx = Instruction::with1(iced_x86::Code::Idiv_rm32, iced_x86::Register::ECX).unwrap();
    // AX = 0x1ff / 2 = 0xff: fits.
    c.regs[0] = 0x1ff;
    c.regs[1] = 2;
    assert!(!div_faults(&div_cl, &c));
    // AX = 0x200 / 2 = 0x100: overflow.
    c.regs[0] = 0x200;
    assert!(div_faults(&div_cl, &c));
    // divisor 0.
    c.regs[1] = 0x100;
    assert!(div_faults(&div_cl, &c));
    // EDX:EAX = -2^31 / -1: overflow; -2^31 / 1 fits.
    c.regs[0] = 0x8000_0000;
    c.regs[2] = 0xffff_ffff;
    c.regs[1] = 0xffff_ffff;
    assert!(div_faults(&idiv_ecx, &c));
    c.regs[1] = 1;
    assert!(!div_faults(&idiv_ecx, &c));
}

/// A #DE sees the flags of the previous block even though a later instruction would
/// overwrite them (successor lookahead must count DIV as reading every flag).
#[test]
fn divide_error_sees_flags_from_the_previous_block() {
    use iced_x86::{Code, Register as Rg};
    let seq = [
        Instruction::with2(Code::Cmp_rm64_r64, Rg::R8, Rg::R9).unwrap(),
        Instruction::with_branch(Code::Jmp_rel8_64, 0).unwrap(),
        Instruction::with1(Code::Div_rm64, Rg::RCX).unwrap(),
        Instruction::with2(Code::Sub_rm32_r32, Rg::EBX, Rg::EBX).unwrap(),
    ];
    let mut b = Bench::new(0xde);
    b.check_sequence(&seq, Some(2), blockscope::cpu::rflags::ARITH, 600, &|_, c| c.regs[1] = 0);
}
