//! Shifts and rotates against the host CPU: SHL SAL SHR SAR ROL ROR RCL RCR SHLD SHRD
//! SHLX SHRX SARX RORX, every 64-bit form (register and memory), ≥ 500 cases per form,
//! interpreter and JIT tiers. See `intops_native` for how cases are built and compared.

mod intops_native;

use iced_x86::{Instruction, Mnemonic, OpKind};
use intops_native::{Bench, Case, Opts, Rng};

fn run(m: Mnemonic, opts: &Opts<'_>) {
    let mut b = Bench::new(0x5417 ^ m as u64);
    let forms = b.check(m, opts);
    assert!(forms > 0, "{m:?}: no form ran");
    eprintln!("{m:?}: {} forms, {} cases x 2 tiers", b.stats.0, b.stats.2);
}

/// Counts come mostly from 0..70 (every boundary after masking), sometimes random.
fn count_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    let uses_cl = (0..i.op_count())
        .any(|n| i.op_kind(n) == OpKind::Register && i.op_register(n) == iced_x86::Register::CL);
    if uses_cl && rng.below(4) != 0 {
        c.regs[1] = (c.regs[1] & !0xff) | rng.below(70);
    }
}

#[test]
fn shl() {
    run(Mnemonic::Shl, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn sal() {
    run(Mnemonic::Sal, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn shr() {
    run(Mnemonic::Shr, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn sar() {
    run(Mnemonic::Sar, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn rol() {
    run(Mnemonic::Rol, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn ror() {
    run(Mnemonic::Ror, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn rcl() {
    run(Mnemonic::Rcl, &Opts { hook: &count_hook, ..Opts::default() });
}

#[test]
fn rcr() {
    run(Mnemonic::Rcr, &Opts { hook: &count_hook, ..Opts::default() });
}

/// 16-bit SHLD/SHRD with a count above 16 are undefined (result and flags): keep the
/// masked count at or below 16 there.
fn is16(i: &Instruction) -> bool {
    i.op_kind(1) == OpKind::Register && i.op_register(1).size() == 2
}

fn double_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    count_hook(i, rng, c);
    if is16(i) && i.op_kind(2) == OpKind::Register {
        let k = c.regs[1] & 0x1f;
        if k > 16 {
            c.regs[1] = (c.regs[1] & !0x1f) | rng.below(17);
        }
    }
}

fn double_imm(rng: &mut Rng, i: &Instruction, _n: u32) -> Option<u64> {
    is16(i).then(|| rng.below(17) | rng.below(8) << 5)
}

#[test]
fn shld() {
    run(Mnemonic::Shld, &Opts { hook: &double_hook, imm: &double_imm, ..Opts::default() });
}

#[test]
fn shrd() {
    run(Mnemonic::Shrd, &Opts { hook: &double_hook, imm: &double_imm, ..Opts::default() });
}

/// SHLX/SHRX/SARX take the count from the third operand (any register).
fn x_hook(i: &Instruction, rng: &mut Rng, c: &mut Case) {
    if i.op_kind(2) == OpKind::Register && rng.below(4) != 0 {
        let r = i.op_register(2).full_register();
        let n = intops_native::GPR64.iter().position(|g| *g == r).expect("gpr");
        c.regs[n] = (c.regs[n] & !0xff) | rng.below(70);
    }
}

#[test]
fn shlx() {
    run(Mnemonic::Shlx, &Opts { hook: &x_hook, ..Opts::default() });
}

#[test]
fn shrx() {
    run(Mnemonic::Shrx, &Opts { hook: &x_hook, ..Opts::default() });
}

#[test]
fn sarx() {
    run(Mnemonic::Sarx, &Opts { hook: &x_hook, ..Opts::default() });
}

#[test]
fn rorx() {
    run(Mnemonic::Rorx, &Opts::default());
}

/// A shift by CL = 0 at the start of a block keeps the flags of the previous block: the
/// previous block must produce them (successor lookahead must not count the shift as a
/// flag writer).
#[test]
fn cl_shift_by_zero_keeps_flags_across_blocks() {
    use iced_x86::{Code, Register as Rg};
    let seq = [
        Instruction::with2(Code::Cmp_rm64_r64, Rg::R8, Rg::R9).unwrap(),
        Instruction::with_branch(Code::Jmp_rel8_64, 0).unwrap(),
        Instruction::with2(Code::Shl_rm64_CL, Rg::RDX, Rg::CL).unwrap(),
        Instruction::with1(Code::Sete_rm8, Rg::AL).unwrap(),
        Instruction::with1(Code::Setb_rm8, Rg::BL).unwrap(),
        Instruction::with1(Code::Sets_rm8, Rg::SIL).unwrap(),
    ];
    let mut b = Bench::new(0xc1);
    let f = blockscope::cpu::rflags::ARITH
        & !(blockscope::cpu::rflags::OF | blockscope::cpu::rflags::AF);
    b.check_sequence(&seq, None, f, 600, &|rng, c| {
        if rng.below(2) == 0 {
            c.regs[1] &= !0x3f;
        }
        if rng.below(3) == 0 {
            c.regs[9] = c.regs[8];
        }
    });
}
