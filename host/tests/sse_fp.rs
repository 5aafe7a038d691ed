//! SSE floating point, conversions and MXCSR against the host CPU: every legacy-encoded
//! form of the `sse_fp` and `sse_cvt` mnemonics runs natively and in the emulator
//! (interpreter and JIT tiers) from random and edge-value states with several MXCSR
//! settings (rounding modes, DAZ, FTZ, sticky flags); registers, flags, MXCSR and memory
//! must match. Faulting cases (#GP alignment, LDMXCSR reserved bits, unmasked exceptions)
//! are checked against the SDM rules.

mod fpnative;

use blockscope::config::Tier;
use blockscope::cpu::Fault;
use fpnative::*;
use iced_x86::{
    Code, EncodingKind, Instruction, MemoryOperand, Mnemonic, OpCodeOperandKind as K, Register,
};

const MNEMONICS: &[Mnemonic] = {
    use Mnemonic::*;
    &[
        Addps, Addpd, Addss, Addsd, Subps, Subpd, Subss, Subsd, Mulps, Mulpd, Mulss, Mulsd, Divps,
        Divpd, Divss, Divsd, Minps, Minpd, Minss, Minsd, Maxps, Maxpd, Maxss, Maxsd, Sqrtps,
        Sqrtpd, Sqrtss, Sqrtsd, Rcpps, Rcpss, Rsqrtps, Rsqrtss, Addsubps, Addsubpd, Haddps, Haddpd,
        Hsubps, Hsubpd, Cmpps, Cmppd, Cmpss, Cmpsd, Roundps, Roundpd, Roundss, Roundsd, Dpps, Dppd,
        Comiss, Comisd, Ucomiss, Ucomisd, Andps, Andpd, Andnps, Andnpd, Orps, Orpd, Xorps, Xorpd,
        Shufps, Shufpd, Unpcklps, Unpckhps, Unpcklpd, Unpckhpd, Movss, Movsd, Movhps, Movhpd,
        Movlps, Movlpd, Movhlps, Movlhps, Movmskps, Movmskpd, Movddup, Movshdup, Movsldup, Blendps,
        Blendpd, Blendvps, Blendvpd, Insertps, Extractps, // sse_cvt
        Cvtsi2ss, Cvtsi2sd, Cvtss2si, Cvttss2si, Cvtsd2si, Cvttsd2si, Cvtss2sd, Cvtsd2ss, Cvtdq2ps,
        Cvtdq2pd, Cvtps2dq, Cvttps2dq, Cvtpd2dq, Cvttpd2dq, Cvtps2pd, Cvtpd2ps, Ldmxcsr, Stmxcsr,
    ]
};

/// The legacy 64-bit codes of the mnemonics above (xmm forms only).
fn codes() -> Vec<Code> {
    Code::values()
        .filter(|c| {
            let o = c.op_code();
            MNEMONICS.contains(&c.mnemonic())
                && o.encoding() == EncodingKind::Legacy
                && o.mode64()
                && !(0..o.op_count())
                    .any(|n| matches!(o.op_kind(n), K::mm_reg | K::mm_rm | K::mm_or_mem))
                && (matches!(c.mnemonic(), Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr)
                    || (0..o.op_count())
                        .any(|n| matches!(o.op_kind(n), K::xmm_reg | K::xmm_rm | K::xmm_or_mem)))
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Opnd {
    R(Register),
    M(i64),
    I(u8),
}

const GPR64: [Register; 13] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RBP,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

fn xmm(n: u64) -> Register {
    const X: [Register; 16] = [
        Register::XMM0,
        Register::XMM1,
        Register::XMM2,
        Register::XMM3,
        Register::XMM4,
        Register::XMM5,
        Register::XMM6,
        Register::XMM7,
        Register::XMM8,
        Register::XMM9,
        Register::XMM10,
        Register::XMM11,
        Register::XMM12,
        Register::XMM13,
        Register::XMM14,
        Register::XMM15,
    ];
    X[(n % 16) as usize]
}

/// Build an instruction from operands.
fn build(code: Code, ops: &[Opnd]) -> Instruction {
    let mem = |d: i64| MemoryOperand::with_base_displ(Register::RSI, d);
    use Opnd::*;
    match *ops {
        [R(a)] => Instruction::with1(code, a),
        [M(a)] => Instruction::with1(code, mem(a)),
        [R(a), R(b)] => Instruction::with2(code, a, b),
        [R(a), M(b)] => Instruction::with2(code, a, mem(b)),
        [M(a), R(b)] => Instruction::with2(code, mem(a), b),
        [R(a), R(b), I(c)] => Instruction::with3(code, a, b, c as u32),
        [R(a), M(b), I(c)] => Instruction::with3(code, a, mem(b), c as u32),
        [M(a), R(b), I(c)] => Instruction::with3(code, mem(a), b, c as u32),
        [R(a), R(b), R(c)] => Instruction::with3(code, a, b, c),
        [R(a), M(b), R(c)] => Instruction::with3(code, a, mem(b), c),
        _ => panic!("operand shape {ops:?}"),
    }
    .unwrap_or_else(|e| panic!("{code:?} {ops:?}: {e}"))
}

/// Random operands for `code`; `imm` overrides the immediate.
fn operands(code: Code, r: &mut Rng, imm: Option<u8>) -> Vec<Opnd> {
    let o = code.op_code();
    let mut v = Vec::new();
    for n in 0..o.op_count() {
        let mem_disp = |r: &mut Rng| -> i64 {
            // 16-byte operands aligned; smaller ones anywhere in the first 64 bytes.
            if code_mem_size(code) >= 16 {
                16 * (r.next() % 3) as i64
            } else {
                4 * (r.next() % 12) as i64
            }
        };
        let k = o.op_kind(n);
        let op = match k {
            K::xmm_reg | K::xmm_rm => Opnd::R(xmm(r.next())),
            K::xmm_or_mem => {
                if r.next().is_multiple_of(3) {
                    Opnd::M(mem_disp(r))
                } else {
                    Opnd::R(xmm(r.next()))
                }
            }
            K::mem => Opnd::M(mem_disp(r)),
            K::r32_or_mem | K::r64_or_mem => {
                if r.next().is_multiple_of(3) {
                    Opnd::M(mem_disp(r))
                } else {
                    let g = GPR64[(r.next() % 13) as usize];
                    Opnd::R(if k == K::r32_or_mem { g.full_register32() } else { g })
                }
            }
            K::r32_reg | K::r32_rm => Opnd::R(GPR64[(r.next() % 13) as usize].full_register32()),
            K::r64_reg | K::r64_rm => Opnd::R(GPR64[(r.next() % 13) as usize]),
            K::imm8 => Opnd::I(imm.unwrap_or(r.next() as u8)),
            other => panic!("{code:?}: operand kind {other:?}"),
        };
        v.push(op);
    }
    v
}

fn code_mem_size(code: Code) -> usize {
    // Memory operand size of the form, from a dummy instance.
    let o = code.op_code();
    let mut ops = Vec::new();
    for n in 0..o.op_count() {
        ops.push(match o.op_kind(n) {
            K::xmm_reg | K::xmm_rm => Opnd::R(Register::XMM1),
            K::xmm_or_mem | K::mem | K::r32_or_mem | K::r64_or_mem => Opnd::M(0),
            K::r32_reg | K::r32_rm => Opnd::R(Register::EAX),
            K::r64_reg | K::r64_rm => Opnd::R(Register::RAX),
            K::imm8 => Opnd::I(0),
            _ => return 0,
        });
    }
    if !ops.iter().any(|o| matches!(o, Opnd::M(_))) {
        return 0;
    }
    build(code, &ops).memory_size().size()
}

fn is_pd(m: Mnemonic) -> bool {
    let s = format!("{m:?}").to_lowercase();
    s.ends_with("pd")
        || s.ends_with("sd")
        || s.contains("sd2")
        || s.contains("pd2")
        || s.ends_with("dup")
}

fn random_state(r: &mut Rng, rig: &Rig, pd: bool) -> (State, Vec<u8>) {
    let mut st = State::default();
    for n in 0..16 {
        let v = if pd ^ (r.next().is_multiple_of(5)) { xmm_pd(r) } else { xmm_ps(r) };
        st.set_xmm(n, v);
    }
    for (i, g) in st.gpr.iter_mut().enumerate() {
        *g = match r.next() % 4 {
            0 => r.next(),
            1 => r.next() % 1000,
            2 => [0, 1, u64::MAX, 1 << 63, 1 << 31, i32::MAX as u64, 0x7fff_ffff_ffff_ffff]
                [(r.next() % 7) as usize],
            _ => (r.next() as i64 >> (r.next() % 60)) as u64,
        };
        let _ = i;
    }
    st.gpr[6] = rig.scratch;
    st.rflags = 0x202 | (r.next() & 0x8d5);
    st.set_mxcsr(mxcsr_masked(r));
    let mut mem = Vec::with_capacity(64);
    for _ in 0..8 {
        let v = if pd { lane64(r) } else { lane32(r) as u64 | (lane32(r) as u64) << 32 };
        mem.extend_from_slice(&v.to_le_bytes());
    }
    (st, mem)
}

fn check_code(rig: &mut Rig, code: Code, r: &mut Rng, cases: usize, imm: Option<u8>) {
    let pd = is_pd(code.mnemonic());
    for k in 0..cases {
        let ops = operands(code, r, imm);
        let i = build(code, &ops);
        let bytes = enc(&i);
        let (st, mem) = random_state(r, rig, pd);
        let what = format!("{i} [{code:?}] case {k}");
        rig.check(&what, &bytes, &st, &mem, 0, false);
    }
}

#[test]
fn every_form_matches_the_cpu() {
    let mut rig = Rig::new();
    let mut r = Rng(0x1234_5678_9abc_def1);
    let codes = codes();
    assert!(codes.len() > 100, "only {} codes", codes.len());
    for code in codes {
        // LDMXCSR with random values would fault; it has its own test.
        if code.mnemonic() == Mnemonic::Ldmxcsr {
            continue;
        }
        check_code(&mut rig, code, &mut r, 48, None);
    }
}

#[test]
fn every_immediate_matches_the_cpu() {
    let mut rig = Rig::new();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for code in codes() {
        let o = code.op_code();
        if !(0..o.op_count()).any(|n| o.op_kind(n) == K::imm8) {
            continue;
        }
        for imm in 0..=255u8 {
            check_code(&mut rig, code, &mut r, 2, Some(imm));
        }
    }
}

/// Emulate in both tiers (which must agree); the fault, if any, and the state after.
fn emu_full(rig: &mut Rig, i: Instruction, st: &State, mem: &[u8]) -> (Option<Fault>, State) {
    rig.write_scratch(0, mem);
    let bytes = enc(&i);
    let a = rig.emulate_full(&bytes, st, Tier::Interp);
    rig.write_scratch(0, mem);
    let b = rig.emulate_full(&bytes, st, Tier::Jit);
    assert_eq!(a, b, "tiers differ for {i}");
    a
}

fn emu(rig: &mut Rig, i: Instruction, st: &State, mem: &[u8]) -> Result<State, Fault> {
    match emu_full(rig, i, st, mem) {
        (None, s) => Ok(s),
        (Some(f), _) => Err(f),
    }
}

#[test]
fn ldmxcsr_loads_and_checks_reserved_bits() {
    let mut rig = Rig::new();
    let mut st = State::default();
    st.gpr[6] = rig.scratch;
    let i = Instruction::with1(Code::Ldmxcsr_m32, MemoryOperand::with_base(Register::RSI)).unwrap();
    // Every valid value round-trips natively and in the emulator.
    let mut r = Rng(77);
    for _ in 0..64 {
        let v = (r.next() & 0xffff) as u32;
        let got = rig.check("ldmxcsr", &enc(&i), &st, &v.to_le_bytes(), 0, false);
        assert_eq!(got.mxcsr(), v);
    }
    // Reserved bits: #GP(0), MXCSR unchanged.
    for v in [0x1_0000u32, 0x8000_1f80, 0x0004_0000] {
        let e = emu(&mut rig, i, &st, &v.to_le_bytes());
        assert_eq!(e, Err(Fault::GeneralProtection(0)), "{v:#x}");
    }
}

#[test]
fn misaligned_16_byte_operands_fault() {
    let mut rig = Rig::new();
    let mut st = State::default();
    st.gpr[6] = rig.scratch + 8;
    for code in [
        Code::Addps_xmm_xmmm128,
        Code::Andpd_xmm_xmmm128,
        Code::Unpcklps_xmm_xmmm128,
        Code::Cvtdq2ps_xmm_xmmm128,
        Code::Movshdup_xmm_xmmm128,
    ] {
        let i = Instruction::with2(code, Register::XMM1, MemoryOperand::with_base(Register::RSI))
            .unwrap();
        assert_eq!(emu(&mut rig, i, &st, &[0; 32]), Err(Fault::GeneralProtection(0)), "{i}");
    }
    // Scalar and 64-bit operands need no alignment (checked against the CPU).
    for code in [
        Code::Addss_xmm_xmmm32,
        Code::Movsd_xmm_xmmm64,
        Code::Cvtps2pd_xmm_xmmm64,
        Code::Movhps_xmm_m64,
        Code::Movddup_xmm_xmmm64,
    ] {
        let i = Instruction::with2(code, Register::XMM1, MemoryOperand::with_base(Register::RSI))
            .unwrap();
        rig.check(&format!("{i}"), &enc(&i), &st, &[0x3f; 32], 0, false);
    }
}

#[test]
fn unmasked_exceptions_raise_xm_without_writing() {
    let mut rig = Rig::new();
    let mut st = State::default();
    let one_and_junk = 1.0f64.to_bits() as u128 | 0xdead << 64;
    st.set_xmm(1, one_and_junk);
    st.set_xmm(2, 0);
    let div = Instruction::with2(Code::Divsd_xmm_xmmm64, Register::XMM1, Register::XMM2).unwrap();
    // ZE unmasked: #XM, ZE flag set, xmm1 unchanged.
    st.set_mxcsr(0x1f80 & !(1 << 9));
    let (f, after) = emu_full(&mut rig, div, &st, &[]);
    assert_eq!(f, Some(Fault::SimdFp));
    assert_eq!(after.mxcsr(), 0x1d80 | 0x04);
    assert_eq!(after.xmm(1), one_and_junk);
    // ZE masked, PE unmasked, division by zero is exact: no fault, ZE set, +inf.
    st.set_mxcsr(0x1f80 & !(1 << 12));
    let got = emu(&mut rig, div, &st, &[]).expect("no fault");
    assert_eq!(got.mxcsr() & 0x3f, 0x04);
    assert_eq!(got.xmm(1) as u64, f64::INFINITY.to_bits());
    // PE unmasked and 1/3 inexact: #XM with PE.
    st.set_xmm(2, 3.0f64.to_bits() as u128);
    let (f, after) = emu_full(&mut rig, div, &st, &[]);
    assert_eq!(f, Some(Fault::SimdFp));
    assert_eq!(after.mxcsr() & 0x3f, 0x20);
    assert_eq!(after.xmm(1), one_and_junk);
    // UE unmasked: an exact tiny result faults on tininess alone (a masked run sets nothing).
    st.set_mxcsr(0x1f80 & !(1 << 11));
    st.set_xmm(1, f64::MIN_POSITIVE.to_bits() as u128);
    st.set_xmm(2, 2.0f64.to_bits() as u128);
    let (f, after) = emu_full(&mut rig, div, &st, &[]);
    assert_eq!(f, Some(Fault::SimdFp));
    assert_eq!(after.mxcsr() & 0x3f, 0x10);
    // IE unmasked, SNaN in lane 0 and an inexact lane 1: only the pre-computation flag.
    st.set_mxcsr(0x1f80 & !(1 << 7));
    st.set_xmm(1, 0x7ff4_0000_0000_0000u128 | (1.0f64.to_bits() as u128) << 64);
    st.set_xmm(2, 1.0f64.to_bits() as u128 | (3.0f64.to_bits() as u128) << 64);
    let divpd =
        Instruction::with2(Code::Divpd_xmm_xmmm128, Register::XMM1, Register::XMM2).unwrap();
    let (f, after) = emu_full(&mut rig, divpd, &st, &[]);
    assert_eq!(f, Some(Fault::SimdFp));
    assert_eq!(after.mxcsr() & 0x3f, 0x01);
    // All masked again: the same operation completes with IE and PE set.
    st.set_mxcsr(0x1f80);
    let got = emu(&mut rig, divpd, &st, &[]).expect("no fault");
    assert_eq!(got.mxcsr() & 0x3f, 0x21);
}

#[test]
fn unmasked_exceptions_match_the_cpu() {
    // Random MXCSR masks: whether #XM is raised, and MXCSR and the registers at the fault
    // (as the kernel's signal frame shows them natively), must match.
    let mut rig = Rig::new();
    let mut r = Rng(0xfee1_dead_beef_cafe);
    let mut faults = 0;
    for code in codes() {
        if matches!(code.mnemonic(), Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr) {
            continue;
        }
        let pd = is_pd(code.mnemonic());
        let cases =
            if matches!(code.mnemonic(), Mnemonic::Dpps | Mnemonic::Dppd) { 400 } else { 96 };
        for k in 0..cases {
            let ops = operands(code, &mut r, None);
            let i = build(code, &ops);
            let bytes = enc(&i);
            let (mut st, mem) = random_state(&mut r, &rig, pd);
            let masks = (r.next() & 0x3f) as u32;
            st.set_mxcsr((st.mxcsr() & !0x1f80) | masks << 7);
            rig.write_scratch(0, &mem);
            let (sig, want) = rig.native_full(&bytes, &st);
            let want_mem = rig.read_scratch(0, mem.len());
            for tier in [Tier::Interp, Tier::Jit] {
                rig.write_scratch(0, &mem);
                let (fault, got) = rig.emulate_full(&bytes, &st, tier);
                let ctx = format!("{i} case {k} ({tier:?})\ninput:\n{st:?}\nnative ({sig:?}):\n{want:?}\nemulated ({fault:?}):\n{got:?}");
                match (sig, fault) {
                    (None, None) => {}
                    (Some(libc::SIGFPE), Some(Fault::SimdFp)) => faults += 1,
                    _ => panic!("fault mismatch: {ctx}"),
                }
                assert_eq!(got.mxcsr(), want.mxcsr(), "mxcsr: {ctx}");
                for n in 0..16 {
                    assert_eq!(got.xmm(n), want.xmm(n), "xmm{n}: {ctx}");
                }
                for g in [0, 1, 2, 3, 5, 8, 9, 10, 11, 12, 13, 14, 15] {
                    assert_eq!(got.gpr[g], want.gpr[g], "gpr{g}: {ctx}");
                }
                assert_eq!(rig.read_scratch(0, mem.len()), want_mem, "memory: {ctx}");
            }
        }
    }
    assert!(faults > 2000, "only {faults} #XM cases");
}
