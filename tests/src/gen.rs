//! Instruction instances for one `iced_x86::Code`: operand choices over aliasing sets,
//! memory forms and immediates, assembled with iced's `Encoder` at the runner's address.
//!
//! For a form, `instances` walks iced's `OpCodeInfo` operand kinds and builds a list of
//! *shapes*: registers all distinct, all the same register (dst = src), high-byte
//! registers, REX registers, rsp as a plain operand, and for every r/m operand the memory
//! forms `[base]`, `[base+disp8]`, `[base+index*scale+disp32]`, `[rip+disp32]` and a base
//! register that is also a register operand. Immediates that act as selectors or counts
//! (plain `imm8`) are enumerated over all 256 values; other immediates take edge values
//! and seeded random values. Branches are aimed at the snippet's taken landing
//! (`Placement`). A form the harness cannot run natively is refused with a reason
//! (`Skip`), which the caller counts and prints.

use crate::native::{Layout, GPR64};
use crate::rng::Rng;
use crate::state::SCRATCH_LEN;
use iced_x86::{
    Code, CpuidFeature, EncodingKind, FlowControl, Instruction, Mnemonic, OpCodeOperandKind as K,
    OpKind, Register,
};

/// Why a form is not run.
pub type Skip = String;

/// Where a snippet's pieces go inside the test page.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// Address of the instruction under test.
    pub insn: u64,
    /// The taken landing of a branch (within rel8 reach of `insn`).
    pub taken: u64,
    /// The join point both landings jump to; the emulator stops here for branches.
    pub join: u64,
}

impl Placement {
    /// The placement used by every generated case.
    pub fn new(l: &Layout) -> Placement {
        let insn = l.test_page + 0x100;
        Placement { insn, taken: insn + 0x60, join: insn + 0x100 }
    }
}

const R8: [Register; 16] = [
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
const HIGH8: [Register; 4] = [Register::AH, Register::CH, Register::DH, Register::BH];

/// The GPR of `size` bytes with encoding number `n` (8-bit: REX forms).
pub fn gpr(size: u32, n: usize) -> Register {
    match size {
        1 => R8[n],
        2 => reg_add(Register::AX, n),
        4 => reg_add(Register::EAX, n),
        _ => GPR64[n],
    }
}

fn xmm(n: usize) -> Register {
    reg_add(Register::XMM0, n)
}

fn reg_add(first: Register, n: usize) -> Register {
    Register::try_from(first as usize + n).unwrap_or(Register::None)
}

/// The class of an operand kind the generator supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// A GPR of this many bytes; `bool` = may also be memory.
    Gpr(u32, bool),
    /// An XMM register; `bool` = may also be memory.
    Xmm(bool),
    /// Memory only.
    Mem,
    /// A 64-bit absolute moffs.
    Moffs,
    /// A fixed register.
    Fixed(Register),
    /// An immediate with iced's op kind and its width in bits.
    Imm(OpKind, u32),
    /// Constant 1 (shift-by-one forms).
    One,
    /// A near branch target.
    Branch,
}

fn classify(k: K) -> Result<Slot, Skip> {
    Ok(match k {
        K::r8_reg | K::r8_opcode => Slot::Gpr(1, false),
        K::r8_or_mem => Slot::Gpr(1, true),
        K::r16_reg | K::r16_reg_mem | K::r16_rm | K::r16_opcode => Slot::Gpr(2, false),
        K::r16_or_mem => Slot::Gpr(2, true),
        K::r32_reg | K::r32_reg_mem | K::r32_rm | K::r32_opcode | K::r32_vvvv => {
            Slot::Gpr(4, false)
        }
        K::r32_or_mem => Slot::Gpr(4, true),
        K::r64_reg | K::r64_reg_mem | K::r64_rm | K::r64_opcode | K::r64_vvvv => {
            Slot::Gpr(8, false)
        }
        K::r64_or_mem => Slot::Gpr(8, true),
        K::xmm_reg | K::xmm_rm | K::xmm_vvvv | K::xmm_is4 => Slot::Xmm(false),
        K::xmm_or_mem => Slot::Xmm(true),
        K::mem => Slot::Mem,
        K::mem_offs => Slot::Moffs,
        K::al => Slot::Fixed(Register::AL),
        K::cl => Slot::Fixed(Register::CL),
        K::ax => Slot::Fixed(Register::AX),
        K::eax => Slot::Fixed(Register::EAX),
        K::rax => Slot::Fixed(Register::RAX),
        K::imm8 => Slot::Imm(OpKind::Immediate8, 8),
        K::imm8sex16 => Slot::Imm(OpKind::Immediate8to16, 8),
        K::imm8sex32 => Slot::Imm(OpKind::Immediate8to32, 8),
        K::imm8sex64 => Slot::Imm(OpKind::Immediate8to64, 8),
        K::imm16 => Slot::Imm(OpKind::Immediate16, 16),
        K::imm32 => Slot::Imm(OpKind::Immediate32, 32),
        K::imm32sex64 => Slot::Imm(OpKind::Immediate32to64, 32),
        K::imm64 => Slot::Imm(OpKind::Immediate64, 64),
        K::imm8_const_1 => Slot::One,
        K::br64_1 | K::br64_4 => Slot::Branch,
        other => return Err(format!("operand kind {other:?}")),
    })
}

/// Mnemonics never run natively here, with the reason.
fn skipped_mnemonic(m: Mnemonic) -> Option<&'static str> {
    use Mnemonic::*;
    Some(match m {
        Syscall | Sysenter | Sysexit | Sysret | Int | Int1 | Into | Iret | Iretd | Iretq => {
            "system call / interrupt"
        }
        Hlt | In | Out | Insb | Insw | Insd | Outsb | Outsw | Outsd | Cli | Sti => "privileged",
        Cpuid | Rdtsc | Rdtscp | Rdrand | Rdseed | Rdpid | Rdpmc | Xgetbv => {
            "host-dependent result"
        }
        Xbegin | Xend | Xabort | Xtest => "transactional memory",
        Fxsave | Fxsave64 | Fxrstor | Fxrstor64 | Xsave | Xsave64 | Xrstor | Xrstor64
        | Xsaveopt | Xsaveopt64 | Xsavec | Xsavec64 | Xsaves | Xsaves64 | Xrstors | Xrstors64 => {
            "x87/extended state not modelled by the harness"
        }
        Emms | Femms => "x87/MMX state not modelled by the harness",
        Rdfsbase | Rdgsbase | Wrfsbase | Wrgsbase => "segment base (host TLS)",
        _ => return None,
    })
}

/// Whether the host CPU supports a CPUID feature iced lists for an instruction.
fn host_has(f: CpuidFeature) -> bool {
    use CpuidFeature as F;
    macro_rules! d {
        ($s:tt) => {
            std::arch::is_x86_feature_detected!($s)
        };
    }
    match f {
        F::INTEL8086 | F::INTEL186 | F::INTEL286 | F::INTEL386 | F::INTEL486 | F::X64 => true,
        F::CMOV | F::CPUID | F::TSC | F::MULTIBYTENOP | F::PAUSE | F::FXSR => true,
        // Hint encodings that execute as NOPs where the feature is absent.
        F::CET_IBT | F::PREFETCHW => true,
        F::CX8 => true,
        F::CMPXCHG16B => d!("cmpxchg16b"),
        F::SSE => d!("sse"),
        F::SSE2 => d!("sse2"),
        F::SSE3 => d!("sse3"),
        F::SSSE3 => d!("ssse3"),
        F::SSE4_1 => d!("sse4.1"),
        F::SSE4_2 => d!("sse4.2"),
        F::SSE4A => d!("sse4a"),
        F::POPCNT => d!("popcnt"),
        F::LZCNT => d!("lzcnt"),
        F::BMI1 => d!("bmi1"),
        F::BMI2 => d!("bmi2"),
        F::ADX => d!("adx"),
        F::MOVBE => d!("movbe"),
        F::AVX => d!("avx"),
        F::AVX2 => d!("avx2"),
        F::FMA => d!("fma"),
        F::F16C => d!("f16c"),
        F::AES => d!("aes"),
        F::PCLMULQDQ => d!("pclmulqdq"),
        F::SHA => d!("sha"),
        _ => false,
    }
}

/// A register/memory assignment pattern for one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Distinct,
    Same,
    High8,
    Rex,
    RspOperand,
    MemBase,
    MemDisp8,
    MemSib,
    MemRip,
    MemAliasBase,
}

/// Everything the generator decided about a form.
pub struct Form {
    /// The form.
    pub code: Code,
    /// Encoded instances (ip set to the placement), each run with several states.
    pub instances: Vec<Instruction>,
}

/// Check that `code` can be run by this harness.
pub fn check_form(code: Code) -> Result<(), Skip> {
    let oc = code.op_code();
    if !oc.mode64() || !oc.is_instruction() {
        return Err("not a 64-bit mode instruction".into());
    }
    if !matches!(oc.encoding(), EncodingKind::Legacy | EncodingKind::VEX) {
        return Err(format!("{:?} encoding", oc.encoding()));
    }
    if matches!(
        oc.memory_size(),
        iced_x86::MemorySize::SegPtr16
            | iced_x86::MemorySize::SegPtr32
            | iced_x86::MemorySize::SegPtr64
    ) {
        return Err("far pointer (loads a segment selector)".into());
    }
    if oc.is_privileged() || oc.must_be_cpl0() {
        return Err("privileged".into());
    }
    if let Some(r) = skipped_mnemonic(code.mnemonic()) {
        return Err(r.into());
    }
    if oc.operand_size() == 16 && with_code(code).flow_control() != FlowControl::Next {
        // AMD honours a 66h prefix on near branches (16-bit ip); Intel ignores it.
        return Err("16-bit operand-size branch (vendor-dependent)".into());
    }
    // String forms have implicit operands (`es:[rdi]`, `ds:[rsi]`) that `classify` does
    // not know; `string_instance` builds them.
    if string_instance(code).is_none() {
        for k in oc.op_kinds() {
            classify(*k)?;
        }
    }
    let probe = with_code(code);
    if probe
        .cpuid_features()
        .iter()
        .any(|f| matches!(f, CpuidFeature::FPU | CpuidFeature::FPU287 | CpuidFeature::FPU387))
    {
        return Err("x87 state not modelled by the harness".into());
    }
    for f in probe.cpuid_features() {
        if !host_has(*f) {
            return Err(format!("host lacks {f:?}"));
        }
    }
    Ok(())
}

fn shapes(slots: &[Slot], has_high8: bool) -> Vec<Shape> {
    let regs = slots.iter().filter(|s| matches!(s, Slot::Gpr(..) | Slot::Xmm(_))).count();
    let rm = slots.iter().any(|s| matches!(s, Slot::Gpr(_, true) | Slot::Xmm(true) | Slot::Mem));
    let mut v = vec![Shape::Distinct, Shape::Rex];
    if regs >= 2 {
        v.push(Shape::Same);
    }
    if has_high8 {
        v.push(Shape::High8);
    }
    if slots.iter().any(|s| matches!(s, Slot::Gpr(..))) {
        v.push(Shape::RspOperand);
    }
    if rm {
        v.extend([Shape::MemBase, Shape::MemDisp8, Shape::MemSib, Shape::MemRip]);
        if slots.iter().any(|s| matches!(s, Slot::Gpr(..))) {
            v.push(Shape::MemAliasBase);
        }
    }
    if slots.iter().all(|s| matches!(s, Slot::Mem)) && !slots.is_empty() {
        v.retain(|s| !matches!(s, Shape::Distinct | Shape::Rex | Shape::RspOperand));
    }
    v
}

/// A value for an immediate of `bits` bits: edge values first, then random.
fn imm_value(rng: &mut Rng, bits: u32, k: usize) -> u64 {
    let edges: [u64; 8] = [0, 1, u64::MAX, 0x7f, 0x80, 2, 0x7fff_ffff, 0x8000_0000];
    let v = if k < edges.len() { edges[k] } else { rng.next_u64() };
    if bits >= 64 {
        v
    } else {
        let m = (1u64 << bits) - 1;
        v & m
    }
}

/// Build the instances of `code` (ip set to `place.insn`, branches aimed at `place.taken`).
pub fn instances(code: Code, l: &Layout, place: &Placement, rng: &mut Rng) -> Result<Form, Skip> {
    check_form(code)?;
    // Before the operand kinds are classified: the string forms' implicit operands
    // (`es:[rdi]`, `ds:[rsi]`) are not kinds `classify` knows.
    if let Some(i) = string_instance(code) {
        return string_instances(code, i, place);
    }
    let oc = code.op_code();
    let slots: Vec<Slot> = oc.op_kinds().iter().map(|k| classify(*k)).collect::<Result<_, _>>()?;
    let has_high8 = slots.iter().any(|s| matches!(s, Slot::Gpr(1, _)));
    let shapes = shapes(&slots, has_high8);
    let selector = slots.iter().any(|s| matches!(s, Slot::Imm(OpKind::Immediate8, _)));
    let per_shape = if selector { 256usize.div_ceil(shapes.len()) } else { 3 };
    let mut out = Vec::new();
    let mut last_err = String::new();
    for (si, shape) in shapes.iter().enumerate() {
        for k in 0..per_shape {
            let imm_idx = if selector { (k * shapes.len() + si) as u64 } else { k as u64 };
            if selector && imm_idx > 255 {
                continue;
            }
            match build(code, &slots, *shape, imm_idx, selector, l, place, rng) {
                Ok(i) => out.push(i),
                Err(e) => last_err = e,
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no encodable instance ({last_err})"));
    }
    Ok(Form { code, instances: out })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the instance recipe"
)]
fn build(
    code: Code,
    slots: &[Slot],
    shape: Shape,
    imm_idx: u64,
    selector: bool,
    l: &Layout,
    place: &Placement,
    rng: &mut Rng,
) -> Result<Instruction, Skip> {
    let mut ins = with_code(code);
    // Register numbers: distinct by default, never rsp unless the shape asks for it.
    let mut pool: Vec<usize> = (0..16).filter(|n| *n != 4).collect();
    for i in (1..pool.len()).rev() {
        pool.swap(i, rng.below(i as u64 + 1) as usize);
    }
    if shape == Shape::Rex {
        pool.sort_by_key(|n| std::cmp::Reverse(*n >= 8));
    }
    let mut next_reg = 0usize;
    let same = pool[0];
    let mut first_gpr: Option<usize> = None;
    let mut mem_done = false;
    let mut rsp_used = false;
    for (i, s) in slots.iter().enumerate() {
        let op = i as u32;
        let want_mem = matches!(s, Slot::Mem)
            || (matches!(s, Slot::Gpr(_, true) | Slot::Xmm(true))
                && matches!(
                    shape,
                    Shape::MemBase
                        | Shape::MemDisp8
                        | Shape::MemSib
                        | Shape::MemRip
                        | Shape::MemAliasBase
                )
                && !mem_done);
        match *s {
            _ if want_mem => {
                mem_done = true;
                ins.set_op_kind(op, OpKind::Memory);
                set_mem(&mut ins, shape, first_gpr, &pool, l, rng);
            }
            Slot::Gpr(..) | Slot::Xmm(_) => {
                let n = match shape {
                    Shape::Same => same,
                    Shape::RspOperand if !rsp_used => {
                        rsp_used = true;
                        4
                    }
                    _ => {
                        next_reg += 1;
                        pool[(next_reg - 1) % pool.len()]
                    }
                };
                let reg = match *s {
                    Slot::Xmm(_) => xmm(n),
                    Slot::Gpr(1, _) if shape == Shape::High8 => HIGH8[n % 4],
                    Slot::Gpr(size2, _) => gpr(size2, n),
                    _ => unreachable!(),
                };
                if matches!(s, Slot::Gpr(..)) && first_gpr.is_none() {
                    first_gpr = Some(n);
                }
                ins.set_op_kind(op, OpKind::Register);
                ins.set_op_register(op, reg);
            }
            Slot::Fixed(r) => {
                ins.set_op_kind(op, OpKind::Register);
                ins.set_op_register(op, r);
            }
            Slot::Imm(kind, bits) => {
                ins.set_op_kind(op, kind);
                let v = if selector && kind == OpKind::Immediate8 {
                    let m = code.mnemonic();
                    if matches!(m, Mnemonic::Shld | Mnemonic::Shrd)
                        && code.op_code().operand_size() == 16
                    {
                        // Counts above 16 leave a 16-bit result undefined.
                        (imm_idx & 0xe0) | ((imm_idx & 0x1f) % 17)
                    } else {
                        imm_idx
                    }
                } else {
                    imm_value(rng, bits, imm_idx as usize)
                };
                match kind {
                    OpKind::Immediate8
                    | OpKind::Immediate8to16
                    | OpKind::Immediate8to32
                    | OpKind::Immediate8to64 => ins.set_immediate8(v as u8),
                    OpKind::Immediate16 => ins.set_immediate16(v as u16),
                    OpKind::Immediate32 | OpKind::Immediate32to64 => ins.set_immediate32(v as u32),
                    _ => ins.set_immediate64(v),
                }
            }
            Slot::One => {
                ins.set_op_kind(op, OpKind::Immediate8);
                ins.set_immediate8(1);
            }
            Slot::Branch => {
                ins.set_op_kind(op, OpKind::NearBranch64);
                ins.set_near_branch64(place.taken);
            }
            Slot::Moffs => {
                ins.set_op_kind(op, OpKind::Memory);
                ins.set_memory_displ_size(8);
                ins.set_memory_displacement64(l.scratch + 0x1000 + rng.below(64) * 8);
            }
            _ => return Err("unsupported slot".into()),
        }
    }
    // Enter's second immediate is the nesting level (op kind Immediate8_2nd).
    if code.mnemonic() == Mnemonic::Enter {
        ins.set_op_kind(1, OpKind::Immediate8_2nd);
        ins.set_immediate8_2nd((imm_idx % 32) as u8);
    }
    if shape == Shape::MemBase && code.op_code().can_use_lock_prefix() && imm_idx % 2 == 1 {
        ins.set_has_lock_prefix(true);
    }
    encode_check(&mut ins, place.insn)?;
    Ok(ins)
}

fn set_mem(
    ins: &mut Instruction,
    shape: Shape,
    alias: Option<usize>,
    pool: &[usize],
    l: &Layout,
    rng: &mut Rng,
) {
    // Memory base and index come from the end of the pool so they differ from the
    // register operands (taken from the front), except for `MemAliasBase`.
    let base = match (shape, alias) {
        (Shape::MemAliasBase, Some(n)) => n,
        _ => pool[pool.len() - 1],
    };
    let index = pool[pool.len() - 2];
    ins.set_memory_index(Register::None);
    ins.set_memory_index_scale(1);
    match shape {
        Shape::MemRip => {
            ins.set_memory_base(Register::RIP);
            ins.set_memory_displ_size(1);
            let off = 0x800 + rng.below((SCRATCH_LEN as u64 - 0x1000) / 16) * 16;
            ins.set_memory_displacement64(l.scratch + off);
        }
        Shape::MemDisp8 => {
            ins.set_memory_base(GPR64[base]);
            ins.set_memory_displ_size(1);
            ins.set_memory_displacement64((rng.below(256) as i8) as i64 as u64);
        }
        Shape::MemSib => {
            ins.set_memory_base(GPR64[base]);
            ins.set_memory_index(GPR64[index]);
            ins.set_memory_index_scale(*rng.pick(&[1, 2, 4, 8]));
            ins.set_memory_displ_size(4);
            let d = (rng.next_u64() as i32) as i64;
            ins.set_memory_displacement64(d as u64);
        }
        _ => {
            ins.set_memory_base(GPR64[base]);
            ins.set_memory_displ_size(0);
            ins.set_memory_displacement64(0);
        }
    }
}

/// Encode `ins` at `ip` (checks that iced accepts the operand combination).
pub fn encode_check(ins: &mut Instruction, ip: u64) -> Result<Vec<u8>, Skip> {
    ins.set_ip(ip);
    let mut enc = iced_x86::Encoder::new(64);
    enc.encode(ins, ip).map_err(|e| format!("encode: {e}"))?;
    Ok(enc.take_buffer())
}

/// String instructions are built with iced's dedicated constructors.
fn string_instance(code: Code) -> Option<Instruction> {
    use Code::*;
    let r = iced_x86::RepPrefixKind::None;
    let s = Register::None;
    let i = match code {
        Movsb_m8_m8 => Instruction::with_movsb(64, s, r),
        Movsw_m16_m16 => Instruction::with_movsw(64, s, r),
        Movsd_m32_m32 => Instruction::with_movsd(64, s, r),
        Movsq_m64_m64 => Instruction::with_movsq(64, s, r),
        Cmpsb_m8_m8 => Instruction::with_cmpsb(64, s, r),
        Cmpsw_m16_m16 => Instruction::with_cmpsw(64, s, r),
        Cmpsd_m32_m32 => Instruction::with_cmpsd(64, s, r),
        Cmpsq_m64_m64 => Instruction::with_cmpsq(64, s, r),
        Stosb_m8_AL => Instruction::with_stosb(64, r),
        Stosw_m16_AX => Instruction::with_stosw(64, r),
        Stosd_m32_EAX => Instruction::with_stosd(64, r),
        Stosq_m64_RAX => Instruction::with_stosq(64, r),
        Lodsb_AL_m8 => Instruction::with_lodsb(64, s, r),
        Lodsw_AX_m16 => Instruction::with_lodsw(64, s, r),
        Lodsd_EAX_m32 => Instruction::with_lodsd(64, s, r),
        Lodsq_RAX_m64 => Instruction::with_lodsq(64, s, r),
        Scasb_AL_m8 => Instruction::with_scasb(64, r),
        Scasw_AX_m16 => Instruction::with_scasw(64, r),
        Scasd_EAX_m32 => Instruction::with_scasd(64, r),
        Scasq_RAX_m64 => Instruction::with_scasq(64, r),
        Xlat_m8 => return Some(iced_x86::Decoder::new(64, &[0xd7], 0).decode()),
        _ => return None,
    };
    i.ok()
}

/// Plain, REP and (for CMPS/SCAS) REPNE variants of a string instruction.
fn string_instances(code: Code, base: Instruction, place: &Placement) -> Result<Form, Skip> {
    let mut out = Vec::new();
    let cmp = matches!(
        code.mnemonic(),
        Mnemonic::Cmpsb
            | Mnemonic::Cmpsw
            | Mnemonic::Cmpsd
            | Mnemonic::Cmpsq
            | Mnemonic::Scasb
            | Mnemonic::Scasw
            | Mnemonic::Scasd
            | Mnemonic::Scasq
    );
    let xlat = code == Code::Xlat_m8;
    for variant in 0..if xlat {
        1
    } else if cmp {
        3
    } else {
        2
    } {
        let mut i = base;
        match variant {
            1 => i.set_has_rep_prefix(true),
            2 => i.set_has_repne_prefix(true),
            _ => {}
        }
        encode_check(&mut i, place.insn)?;
        out.push(i);
    }
    Ok(Form { code, instances: out })
}

/// An instruction with only its `Code` set (operands still to be filled in).
pub fn with_code(code: Code) -> Instruction {
    let mut i = Instruction::default();
    i.set_code(code);
    i
}

/// Whether an instance is a control transfer (its snippet needs landing stubs).
pub fn is_branch(i: &Instruction) -> bool {
    !matches!(i.flow_control(), FlowControl::Next)
}
