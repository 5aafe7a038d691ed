//! x87 and FXSAVE/FXRSTOR against the host CPU: every legacy form the `x87` family lifts
//! runs natively and in the emulator (interpreter and JIT tiers) from random states built
//! of `long double` edge values (±0, ±inf, QNaN, SNaN, denormals, pseudo-denormals,
//! unnormals, extremes), with every precision and rounding control, masked and unmasked
//! exceptions and random stack depths; the x87 registers, control/status/tag words,
//! GPRs, flags and memory must match (FIP/FDP/FOP are not compared).

mod fpnative;

use blockscope::config::Tier;
use blockscope::cpu::Fault;
use blockscope::frontend::lift_probe;
use fpnative::*;
use iced_x86::{Code, EncodingKind, Instruction, MemoryOperand, OpCodeOperandKind as K, Register};

/// Interesting 80-bit values: (sign|exponent, mantissa).
const F80_EDGE: &[(u16, u64)] = &[
    (0x0000, 0),                     // +0
    (0x8000, 0),                     // -0
    (0x3fff, 1 << 63),               // 1
    (0xbfff, 1 << 63),               // -1
    (0x7fff, 1 << 63),               // +inf
    (0xffff, 1 << 63),               // -inf
    (0x7fff, 0xc000_0000_0000_0000), // QNaN
    (0xffff, 0xc000_0000_0000_0000), // indefinite
    (0x7fff, 0xa000_0000_0000_0001), // SNaN
    (0x0000, 1),                     // denormal
    (0x8000, 0x7fff_ffff_ffff_ffff), // -denormal
    (0x0000, 0x8000_0000_0000_0000), // pseudo-denormal
    (0x4000, 0x4000_0000_0000_0000), // unnormal
    (0x7ffe, u64::MAX),              // max
    (0x0001, 1 << 63),               // min normal
    (0x4000, 0xc90f_daa2_2168_c235), // pi
    (0x3ffd, 0xaaaa_aaaa_aaaa_aaab), // 1/3
    (0x403e, 1 << 63),               // 2^63
    (0xc03e, 1 << 63),               // -2^63
    (0x401d, 0xffff_fffe_0000_0000), // 2^31 - 1
    (0x3ffe, 1 << 63),               // 0.5
    (0x4002, 0xa000_0000_0000_0000), // 10
    (0x43ff, 1 << 63),               // 2^1024 (overflows double)
    (0x3bcd, 1 << 63),               // tiny for double
];

fn f80(r: &mut Rng) -> [u8; 10] {
    let (se, m) = match r.next() % 4 {
        0 | 1 => F80_EDGE[(r.next() % F80_EDGE.len() as u64) as usize],
        2 => ((0x3fc0 + r.next() % 0x80) as u16 | ((r.next() as u16) & 0x8000), r.next() | 1 << 63),
        _ => (r.next() as u16, r.next()),
    };
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&m.to_le_bytes());
    b[8..].copy_from_slice(&se.to_le_bytes());
    b
}

/// A random x87 state (no exception pending) in an FXSAVE image, plus random SSE state.
fn random_state(r: &mut Rng, rig: &Rig) -> State {
    let mut st = State::default();
    let pc = [0u16, 2, 3, 3][(r.next() % 4) as usize];
    let rc = (r.next() % 4) as u16;
    let masks = if r.next().is_multiple_of(3) { (r.next() & 0x3f) as u16 } else { 0x3f };
    let cw = 0x0040 | masks | pc << 8 | rc << 10;
    let top = (r.next() % 8) as u16;
    let flags = (r.next() & 0x3f) as u16 & masks;
    let cc = (r.next() as u16) & 0x4700;
    let sw = flags | cc | top << 11;
    let depth = (r.next() % 9) as usize;
    let mut ftw = 0u8;
    for k in 0..depth {
        ftw |= 1 << ((top as usize + k) & 7);
    }
    if r.next().is_multiple_of(4) {
        ftw = r.next() as u8;
    }
    st.fx[0..2].copy_from_slice(&cw.to_le_bytes());
    st.fx[2..4].copy_from_slice(&sw.to_le_bytes());
    st.fx[4] = ftw;
    for k in 0..8 {
        let v = f80(r);
        st.fx[32 + 16 * k..42 + 16 * k].copy_from_slice(&v);
    }
    for (i, g) in st.gpr.iter_mut().enumerate() {
        *g = r.next() >> (i * 4);
    }
    st.gpr[6] = rig.scratch;
    st.rflags = 0x202 | (r.next() & 0x8d5);
    st
}

fn random_mem(r: &mut Rng, code: Code) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    while m.len() < 128 {
        match code.op_code().op_code() {
            0xd8 | 0xd9 => m.extend_from_slice(&lane32(r).to_le_bytes()),
            0xdc | 0xdd => m.extend_from_slice(&lane64(r).to_le_bytes()),
            0xdb if matches!(code, Code::Fld_m80fp) => {
                m.extend_from_slice(&f80(r));
                m.extend_from_slice(&[0; 6]);
            }
            _ => m.extend_from_slice(&r.next().to_le_bytes()),
        }
    }
    m
}

const ST: [Register; 8] = [
    Register::ST0,
    Register::ST1,
    Register::ST2,
    Register::ST3,
    Register::ST4,
    Register::ST5,
    Register::ST6,
    Register::ST7,
];

/// An instance of `code` with ST(i) operand `i` and memory at [rsi + disp].
fn instance(code: Code, i: usize, disp: i64) -> Option<Instruction> {
    let o = code.op_code();
    let mem = MemoryOperand::with_base_displ(Register::RSI, disp);
    let kinds: Vec<K> = (0..o.op_count()).map(|n| o.op_kind(n)).collect();
    let r = match kinds.as_slice() {
        [] => Ok(Instruction::with(code)),
        [K::mem] => Instruction::with1(code, mem),
        [K::sti_opcode] => Instruction::with1(code, ST[i]),
        [K::st0, K::sti_opcode] => Instruction::with2(code, Register::ST0, ST[i]),
        [K::sti_opcode, K::st0] => Instruction::with2(code, ST[i], Register::ST0),
        [K::ax] => Instruction::with1(code, Register::AX),
        _ => return None,
    };
    r.ok()
}

fn x87_codes() -> Vec<Code> {
    Code::values()
        .filter(|c| {
            let o = c.op_code();
            o.encoding() == EncodingKind::Legacy
                && o.mode64()
                && (0xd8..=0xdf)
                    .contains(&(if o.op_code_len() == 2 { o.op_code() >> 8 } else { o.op_code() }))
                && !o.fwait()
        })
        .collect()
}

#[test]
fn every_x87_form_matches_the_cpu() {
    let mut rig = Rig::new();
    let mut r = Rng(0x5151_7373_9191_2323);
    let mut tested = 0;
    let mut mnemonics = std::collections::BTreeSet::new();
    for code in x87_codes() {
        let Some(probe) = instance(code, 1, 0) else { continue };
        // The control-state stores hold FIP/FDP: compared with those masked, below.
        if !lift_probe(&probe)
            || matches!(code.mnemonic(), iced_x86::Mnemonic::Fnstenv | iced_x86::Mnemonic::Fnsave)
        {
            continue;
        }
        mnemonics.insert(format!("{:?}", code.mnemonic()));
        tested += 1;
        for k in 0..64 {
            let i = instance(code, (r.next() % 8) as usize, 8 * (r.next() % 8) as i64)
                .expect("instance");
            let bytes = enc(&i);
            let st = random_state(&mut r, &rig);
            let mem = random_mem(&mut r, code);
            rig.check(&format!("{i} [{code:?}] case {k}"), &bytes, &st, &mem, 0, true);
        }
    }
    // FNSTSW/FNSTCW/FNSTENV/FNSAVE and FWAIT are covered below.
    assert!(tested >= 120, "only {tested} forms tested: {mnemonics:?}");
    for m in [
        "Fadd", "Fsubrp", "Fcomip", "Fcmovnbe", "Fisttp", "Fbstp", "Fldenv", "Frstor", "Fsincos",
        "Fxam", "Fninit",
    ] {
        assert!(mnemonics.contains(m), "{m} not tested");
    }
}

#[test]
fn control_stores_match_the_cpu_except_pointers() {
    let mut rig = Rig::new();
    let mut r = Rng(99);
    let forms = [
        (Code::Fnstenv_m28byte, 28),
        (Code::Fnsave_m108byte, 108),
        (Code::Fnstcw_m2byte, 2),
        (Code::Fnstsw_m2byte, 2),
        (Code::Fnstsw_AX, 0),
        (Code::Fnclex, 0),
        (Code::Emms, 0),
    ];
    for (code, len) in forms {
        for k in 0..64 {
            let i = instance(code, 0, 0).expect("instance");
            let st = random_state(&mut r, &rig);
            let mem = vec![0x5au8; 128];
            rig.write_scratch(0, &mem);
            let bytes = enc(&i);
            let want = rig.native(&bytes, &st);
            let mut want_mem = rig.read_scratch(0, 128);
            for tier in [Tier::Interp, Tier::Jit] {
                rig.write_scratch(0, &mem);
                let got = rig.emulate(&bytes, &st, tier).expect("no fault");
                let mut got_mem = rig.read_scratch(0, 128);
                if len >= 28 {
                    // FIP, FCS, FOP, FDP, FDS: where the last instruction was.
                    for m in [&mut want_mem, &mut got_mem] {
                        m[12..26].fill(0);
                    }
                }
                let ctx = format!("{i} case {k} ({tier:?})\n{st:?}");
                assert_eq!(got_mem, want_mem, "memory: {ctx}");
                assert_eq!(got.fx[0..6], want.fx[0..6], "fcw/fsw/ftw: {ctx}");
                assert_eq!(got.fx[32..160], want.fx[32..160], "registers: {ctx}");
                assert_eq!(got.gpr[0] & 0xffff, want.gpr[0] & 0xffff, "ax: {ctx}");
                assert_eq!(got.gpr[0] >> 16, st.gpr[0] >> 16, "rax upper: {ctx}");
            }
        }
    }
}

#[test]
fn unmasked_exception_faults_at_the_next_waiting_instruction() {
    let mut rig = Rig::new();
    // FLD1; FLDZ; FDIVP with ZE unmasked: ES set, no fault yet; then FWAIT faults.
    let mut st = State::default();
    st.fx[0..2].copy_from_slice(&0x037bu16.to_le_bytes()); // ZM clear
    st.fx[4] = 0;
    let seq: Vec<Instruction> = vec![
        Instruction::with(Code::Fld1),
        Instruction::with(Code::Fldz),
        Instruction::with2(Code::Fdivp_sti_st0, Register::ST1, Register::ST0).unwrap(),
    ];
    let bytes: Vec<u8> = seq.iter().flat_map(enc).collect();
    let want = rig.native(&bytes, &st);
    let got = rig.emulate(&bytes, &st, Tier::Interp).expect("no fault before a waiting insn");
    assert_eq!(got.fx[0..6], want.fx[0..6]);
    assert_eq!(got.fx[32..160], want.fx[32..160]);
    let sw = u16::from_le_bytes([got.fx[2], got.fx[3]]);
    assert_eq!(sw & 0x80ff, 0x8084, "ES, B and ZE set: {sw:#x}");
    // The pending exception is raised by FWAIT (or any waiting x87 instruction).
    for next in [Instruction::with(Code::Wait), Instruction::with(Code::Fld1)] {
        let mut seq2 = bytes.clone();
        seq2.extend(enc(&next));
        let (f, after) = rig.emulate_full(&seq2, &st, Tier::Interp);
        assert_eq!(f, Some(Fault::X87), "{next}");
        assert_eq!(after.fx[0..6], want.fx[0..6], "state unchanged by the faulting {next}");
    }
    // FNSTENV over a pending exception stores it, then masks everything (ES clears).
    let mut st4 = st;
    st4.gpr[6] = rig.scratch;
    let mut seq4 = bytes.clone();
    seq4.extend(enc(&Instruction::with1(
        Code::Fnstenv_m28byte,
        MemoryOperand::with_base(Register::RSI),
    )
    .unwrap()));
    seq4.extend(enc(&Instruction::with1(Code::Fnstsw_AX, Register::AX).unwrap()));
    rig.write_scratch(0, &[0; 32]);
    let want4 = rig.native(&seq4, &st4);
    let mut env_want = rig.read_scratch(0, 28);
    rig.write_scratch(0, &[0; 32]);
    let got4 = rig.emulate(&seq4, &st4, Tier::Interp).expect("FNSTENV does not wait");
    let mut env_got = rig.read_scratch(0, 28);
    for e in [&mut env_want, &mut env_got] {
        e[12..26].fill(0);
    }
    assert_eq!(env_got, env_want);
    assert_eq!(got4.gpr[0] & 0xffff, want4.gpr[0] & 0xffff);
    assert_eq!(got4.fx[0..6], want4.fx[0..6]);
    // Non-waiting instructions go ahead: FNSTSW AX; FNCLEX clears the flags.
    let mut seq3 = bytes.clone();
    seq3.extend(enc(&Instruction::with1(Code::Fnstsw_AX, Register::AX).unwrap()));
    seq3.extend(enc(&Instruction::with(Code::Fnclex)));
    seq3.extend(enc(&Instruction::with(Code::Wait)));
    let want3 = rig.native(&seq3, &st);
    let got3 = rig.emulate(&seq3, &st, Tier::Interp).expect("no fault after FNCLEX");
    assert_eq!(got3.gpr[0] & 0xffff, want3.gpr[0] & 0xffff);
    assert_eq!(got3.fx[0..6], want3.fx[0..6]);
}

#[test]
fn fxsave_matches_the_cpu() {
    let mut rig = Rig::new();
    let mut r = Rng(4242);
    for code in [Code::Fxsave64_m512byte, Code::Fxsave_m512byte] {
        for k in 0..32 {
            let mut st = random_state(&mut r, &rig);
            for n in 0..16 {
                st.set_xmm(n, xmm_pd(&mut r));
            }
            st.set_mxcsr(mxcsr_masked(&mut r));
            let i = Instruction::with1(code, MemoryOperand::with_base_displ(Register::RSI, 64))
                .unwrap();
            let bytes = enc(&i);
            let fill = vec![0xa5u8; 1024];
            rig.write_scratch(0, &fill);
            rig.native(&bytes, &st);
            let mut want = rig.read_scratch(0, 1024);
            for tier in [Tier::Interp, Tier::Jit] {
                rig.write_scratch(0, &fill);
                rig.emulate(&bytes, &st, tier).expect("no fault");
                let mut got = rig.read_scratch(0, 1024);
                // FOP, FIP, FDP (and selectors): the last x87 instruction, not modelled.
                // Bytes 416..464 are reserved: a CPU may write them, we don't (464..512,
                // the software-available area, must stay untouched on both).
                for m in [&mut want, &mut got] {
                    m[64 + 6..64 + 24].fill(0);
                    m[64 + 416..64 + 464].fill(0xa5);
                }
                // MXCSR_MASK: the host may support more (AMD: MM); ours is 0xffff.
                assert_eq!(u32::from_le_bytes(got[64 + 28..64 + 32].try_into().unwrap()), 0xffff);
                for m in [&mut want, &mut got] {
                    m[64 + 28..64 + 32].fill(0);
                }
                assert_eq!(got, want, "{i} case {k} ({tier:?})");
            }
        }
    }
}

#[test]
fn fxrstor_matches_the_cpu_and_checks_its_operand() {
    let mut rig = Rig::new();
    let mut r = Rng(777);
    for code in [Code::Fxrstor64_m512byte, Code::Fxrstor_m512byte] {
        for k in 0..32 {
            let st = random_state(&mut r, &rig);
            let mut img = random_state(&mut r, &rig).fx;
            // Status bits FXRSTOR must take as they are: ES, B (without an unmasked flag).
            img[3] |= (r.next() as u8) & 0x80;
            img[2] |= (r.next() as u8) & 0x80;
            for n in 0..16 {
                img[160 + 16 * n..176 + 16 * n].copy_from_slice(&xmm_ps(&mut r).to_le_bytes());
            }
            img[24..28].copy_from_slice(&mxcsr_masked(&mut r).to_le_bytes());
            let i = Instruction::with1(code, MemoryOperand::with_base_displ(Register::RSI, 32))
                .unwrap();
            let mut mem = vec![0u8; 32];
            mem.extend_from_slice(&img);
            rig.check(&format!("{i} case {k}"), &enc(&i), &st, &mem, 0, true);
        }
        // Misaligned: #GP(0); MXCSR reserved bits: #GP(0); the state is unchanged.
        let st = State {
            gpr: {
                let mut g = [0u64; 16];
                g[6] = rig.scratch;
                g
            },
            ..State::default()
        };
        let i = Instruction::with1(code, MemoryOperand::with_base_displ(Register::RSI, 8)).unwrap();
        let mut img = State::default().fx;
        rig.write_scratch(8, &img);
        assert_eq!(rig.emulate(&enc(&i), &st, Tier::Interp), Err(Fault::GeneralProtection(0)));
        img[24..28].copy_from_slice(&0x0002_1f80u32.to_le_bytes());
        rig.write_scratch(0, &img);
        let i = Instruction::with1(code, MemoryOperand::with_base(Register::RSI)).unwrap();
        let (f, after) = rig.emulate_full(&enc(&i), &st, Tier::Interp);
        assert_eq!(f, Some(Fault::GeneralProtection(0)));
        assert_eq!(after.fx[..28], st.fx[..28]);
        assert_eq!(after.fx[32..416], st.fx[32..416]);
    }
}

#[test]
fn stores_with_each_exception_unmasked_match_the_cpu() {
    // Memory destinations: with an unmasked exception other than precision the store is
    // suppressed; with precision unmasked it happens. Every store form, edge values, and
    // each single exception unmasked (plus all masked), in every rounding mode.
    let mut rig = Rig::new();
    let stores = [
        Code::Fst_m32fp,
        Code::Fstp_m32fp,
        Code::Fst_m64fp,
        Code::Fstp_m64fp,
        Code::Fstp_m80fp,
        Code::Fist_m16int,
        Code::Fist_m32int,
        Code::Fistp_m16int,
        Code::Fistp_m32int,
        Code::Fistp_m64int,
        Code::Fisttp_m16int,
        Code::Fisttp_m32int,
        Code::Fisttp_m64int,
        Code::Fbstp_m80bcd,
    ];
    let mut n = 0;
    for code in stores {
        let i = instance(code, 0, 16).expect("instance");
        let bytes = enc(&i);
        for &(se, m) in F80_EDGE {
            for unmask in [None, Some(0), Some(1), Some(3), Some(4), Some(5)] {
                for rc in 0..4u16 {
                    let mut st = State::default();
                    st.gpr[6] = rig.scratch;
                    let masks = 0x3f & !unmask.map_or(0, |b| 1u16 << b);
                    let cw = 0x0340 | masks | rc << 10;
                    st.fx[0..2].copy_from_slice(&cw.to_le_bytes());
                    st.fx[2..4].copy_from_slice(&(7u16 << 11).to_le_bytes());
                    st.fx[4] = 0x80; // ST(0) = physical 7 valid
                    st.fx[32..40].copy_from_slice(&m.to_le_bytes());
                    st.fx[40..42].copy_from_slice(&se.to_le_bytes());
                    rig.check(
                        &format!("{i} {se:04x}:{m:016x} unmask {unmask:?} rc {rc}"),
                        &bytes,
                        &st,
                        &[0x77; 64],
                        0,
                        true,
                    );
                    n += 1;
                }
            }
        }
    }
    assert!(n > 5000);
}
