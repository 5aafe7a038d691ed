//! The x87 FPU: loads and stores (FLD FST FSTP FILD FIST FISTP FISTTP FBLD FBSTP, the
//! constants), arithmetic (FADD FSUB FSUBR FMUL FDIV FDIVR with their P and I forms,
//! FCHS FABS FSQRT FRNDINT FSCALE FXTRACT FPREM FPREM1, the transcendentals F2XM1 FYL2X
//! FYL2XP1 FSIN FCOS FSINCOS FPTAN FPATAN), comparisons (FCOM FCOMP FCOMPP FUCOM FUCOMP
//! FUCOMPP FICOM FICOMP FCOMI FCOMIP FUCOMI FUCOMIP FTST FXAM), FXCH, FCMOVcc, FFREE
//! FFREEP FINCSTP FDECSTP FNOP, and control: FLDCW FNSTCW FNSTSW (AX, m16) FNINIT FNCLEX
//! FWAIT FNSTENV FLDENV FNSAVE FRSTOR (32-bit operand-size formats), and EMMS (run on the
//! host too: CPUs differ in what it does to TOP).
//!
//! Exactness strategy (a deliberate design decision): the guest's whole x87 state is kept
//! in `CpuState::x87` and every computing instruction is executed by the host's own x87
//! unit (`hostfp::x87_run`): the state is converted to an FNSAVE image, restored into the
//! host FPU, the very same opcode runs (register forms by their two opcode bytes, memory
//! forms on a buffer holding the guest operand), and the state is saved back. Precision
//! and rounding control, 80-bit arithmetic, denormals, NaN handling, stack overflow and
//! underflow, condition codes, TOP/tag handling and the transcendental approximations
//! are therefore those of the CPU. Only the instructions that store control state
//! (FNSTSW, FNSTCW, FNSTENV, FNSAVE) and FWAIT are written out here.
//!
//! Exceptions: a masked exception just sets its status bit (the Linux default control word
//! masks all). An unmasked one sets ES in the status word as on the CPU (with the host
//! computing the result it leaves in registers); the guest's #MF (`Fault::X87`) is raised
//! by the next waiting x87 instruction or FWAIT, before it does anything. A store to
//! memory that raised an unmasked exception other than precision is suppressed.
//!
//! Not modelled: FOP of memory forms holds the ModRM reg field only (mod and r/m are 0);
//! the FCS/FDS selectors are stored as 0 (as CPUs that deprecate them do); the 16-bit environment formats
//! (operand-size prefix) are not lifted; CR0.EM/TS checks (system mode) are not made.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::hostfp::{self, X87Frame, X87Insn, X87Refused};
use crate::cpu::{CpuState, Fault, Width, X87State};
use crate::ir::{HelperCx, HelperDesc, Slot};
use iced_x86::{ConditionCode, Mnemonic, OpKind, Register};

lifts! {
    Fld => lift_x87, Fst => lift_x87, Fstp => lift_x87, Fild => lift_x87, Fist => lift_x87,
    Fistp => lift_x87, Fisttp => lift_x87, Fbld => lift_x87, Fbstp => lift_x87,
    Fld1 => lift_x87, Fldz => lift_x87, Fldl2e => lift_x87, Fldl2t => lift_x87,
    Fldlg2 => lift_x87, Fldln2 => lift_x87, Fldpi => lift_x87, Fxch => lift_x87,
    Fadd => lift_x87, Faddp => lift_x87, Fiadd => lift_x87, Fsub => lift_x87,
    Fsubp => lift_x87, Fisub => lift_x87, Fsubr => lift_x87, Fsubrp => lift_x87,
    Fisubr => lift_x87, Fmul => lift_x87, Fmulp => lift_x87, Fimul => lift_x87,
    Fdiv => lift_x87, Fdivp => lift_x87, Fidiv => lift_x87, Fdivr => lift_x87,
    Fdivrp => lift_x87, Fidivr => lift_x87, Fchs => lift_x87, Fabs => lift_x87,
    Fsqrt => lift_x87, Frndint => lift_x87, Fscale => lift_x87, Fxtract => lift_x87,
    Fprem => lift_x87, Fprem1 => lift_x87, F2xm1 => lift_x87, Fyl2x => lift_x87,
    Fyl2xp1 => lift_x87, Fsin => lift_x87, Fcos => lift_x87, Fsincos => lift_x87,
    Fptan => lift_x87, Fpatan => lift_x87,
    Fcom => lift_x87, Fcomp => lift_x87, Fcompp => lift_x87, Fucom => lift_x87,
    Fucomp => lift_x87, Fucompp => lift_x87, Ficom => lift_x87, Ficomp => lift_x87,
    Ftst => lift_x87, Fxam => lift_x87,
    Fcomi => lift_fcomi, Fcomip => lift_fcomi, Fucomi => lift_fcomi, Fucomip => lift_fcomi,
    Fcmovb => lift_fcmov, Fcmove => lift_fcmov, Fcmovbe => lift_fcmov, Fcmovu => lift_fcmov,
    Fcmovnb => lift_fcmov, Fcmovne => lift_fcmov, Fcmovnbe => lift_fcmov,
    Fcmovnu => lift_fcmov,
    Ffree => lift_x87, Ffreep => lift_x87, Fincstp => lift_x87, Fdecstp => lift_x87,
    Fnop => lift_x87, Fldcw => lift_x87, Fldenv => lift_x87, Frstor => lift_x87,
    Fninit => lift_x87, Fnclex => lift_x87,
    Fnstsw => lift_fnstsw, Fnstcw => lift_fnstcw, Fnstenv => lift_fnstenv,
    Fnsave => lift_fnsave, Wait => lift_wait, Emms => lift_emms,
}

type R = Result<(), Unsupported>;

// ---------------------------------------------------------------------------------------
// State <-> FNSAVE image.

/// Status-word exception flags (IE DE ZE OE UE PE).
const FSW_EXC: u16 = 0x3f;

/// Whether an unmasked exception is pending (the next waiting instruction raises #MF).
fn pending(x: &X87State) -> bool {
    x.fsw & !x.fcw & FSW_EXC != 0
}

/// Recompute the status word's ES and B bits from the exception flags and masks, as the
/// CPU does when it loads a status or control word (FXRSTOR, and masking all exceptions
/// after FNSTENV).
pub(super) fn normalize_es(x: &mut X87State) {
    x.fsw &= !0x8080;
    if pending(x) {
        x.fsw |= 0x8080;
    }
}

/// The 2-bit tag of physical register `i` (00 valid, 01 zero, 10 special, 11 empty).
fn full_tag(x: &X87State, i: usize) -> u16 {
    if x.ftw >> i & 1 == 0 {
        return 3;
    }
    let r = &x.st[i];
    let exp = u16::from_le_bytes([r[8], r[9]]) & 0x7fff;
    let mant = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
    match exp {
        0x7fff => 2,
        0 if mant == 0 => 1,
        0 => 2,
        _ if mant >> 63 == 0 => 2,
        _ => 0,
    }
}

/// The full tag word.
fn tag_word(x: &X87State) -> u16 {
    (0..8).fold(0, |acc, i| acc | full_tag(x, i) << (2 * i))
}

/// The status word as FNSTSW shows it (TOP included).
fn status_word(x: &X87State) -> u16 {
    (x.fsw & !0x3800) | ((x.top as u16 & 7) << 11)
}

/// The 28-byte environment (32-bit protected-mode format) followed by the registers in
/// stack order: the FNSAVE image.
fn save_image(x: &X87State) -> [u8; 108] {
    let mut img = [0u8; 108];
    let put16 = |img: &mut [u8; 108], o: usize, v: u16| {
        img[o..o + 2].copy_from_slice(&v.to_le_bytes());
        img[o + 2..o + 4].copy_from_slice(&[0xff, 0xff]);
    };
    put16(&mut img, 0, x.fcw);
    put16(&mut img, 4, status_word(x));
    put16(&mut img, 8, tag_word(x));
    img[12..16].copy_from_slice(&(x.fip as u32).to_le_bytes());
    img[18..20].copy_from_slice(&(x.fop & 0x7ff).to_le_bytes());
    img[20..24].copy_from_slice(&(x.fdp as u32).to_le_bytes());
    put16(&mut img, 24, 0);
    for k in 0..8 {
        let phys = (x.top as usize + k) & 7;
        img[28 + 10 * k..38 + 10 * k].copy_from_slice(&x.st[phys][..10]);
    }
    img
}

/// Load the state from an FNSAVE image; `pointers`: also FIP, FDP and FOP.
fn load_image(x: &mut X87State, img: &[u8; 108], pointers: bool) {
    let u16_at = |o: usize| u16::from_le_bytes([img[o], img[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([img[o], img[o + 1], img[o + 2], img[o + 3]]);
    x.fcw = u16_at(0);
    let sw = u16_at(4);
    x.top = ((sw >> 11) & 7) as u8;
    x.fsw = sw & !0x3800;
    let tw = u16_at(8);
    x.ftw = (0..8).fold(0u8, |acc, i| acc | (((tw >> (2 * i)) & 3 != 3) as u8) << i);
    for k in 0..8 {
        let phys = (x.top as usize + k) & 7;
        let mut cell = [0u8; 16];
        cell[..10].copy_from_slice(&img[28 + 10 * k..38 + 10 * k]);
        x.st[phys] = cell;
    }
    if pointers {
        x.fip = u32_at(12) as u64;
        x.fop = u16_at(18) & 0x7ff;
        x.fdp = u32_at(20) as u64;
    }
}

/// FNINIT.
fn init(x: &mut X87State) {
    let st = x.st;
    *x = X87State::default();
    x.st = st;
}

// ---------------------------------------------------------------------------------------
// The helper.

const KIND_HOST_REG: u64 = 0;
const KIND_HOST_MEM: u64 = 1;
const KIND_WAIT: u64 = 2;
const KIND_FNSTSW: u64 = 3;
const KIND_FNSTCW: u64 = 4;
const KIND_FNSTENV: u64 = 5;
const KIND_FNSAVE: u64 = 6;
const KIND_EMMS: u64 = 7;

/// Operand flags (bits 32..).
const F_LOAD: u64 = 1 << 32;
const F_STORE: u64 = 1 << 33;
/// A control instruction: FIP/FDP/FOP are not updated.
const F_CONTROL: u64 = 1 << 34;
/// The instruction loads FIP/FDP/FOP from its image (FLDENV, FRSTOR, FNINIT).
const F_LOADS_PTRS: u64 = 1 << 35;

fn code(kind: u64, b1: u8, b2: u8, size: usize, flags: u64) -> u64 {
    kind | (b1 as u64) << 8 | (b2 as u64) << 16 | (size as u64 & 0xff) << 24 | flags
}

/// args: [code, memory address, guest pc, CF for FCMOV]
fn helper_x87(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let c = a[0];
    let kind = c & 0xff;
    let (b1, b2) = ((c >> 8) as u8, (c >> 16) as u8);
    let size = ((c >> 24) & 0xff) as usize;
    let addr = a[1];
    match kind {
        KIND_WAIT => {
            if pending(&cx.cpu.x87) {
                return Err(Fault::X87);
            }
            Ok(0)
        }
        KIND_FNSTSW => Ok(status_word(&cx.cpu.x87) as u64),
        KIND_FNSTCW => Ok(cx.cpu.x87.fcw as u64),
        KIND_FNSTENV => {
            let img = save_image(&cx.cpu.x87);
            cx.mem.write_bytes(addr, &img[..28])?;
            cx.cpu.x87.fcw |= FSW_EXC;
            normalize_es(&mut cx.cpu.x87);
            Ok(0)
        }
        KIND_FNSAVE => {
            let img = save_image(&cx.cpu.x87);
            cx.mem.write_bytes(addr, &img)?;
            init(&mut cx.cpu.x87);
            Ok(0)
        }
        _ => host_x87(cx.cpu, cx.mem, c, b1, b2, size, addr, a[2], a[3]),
    }
}

#[allow(clippy::too_many_arguments, reason = "the unpacked helper arguments")]
fn host_x87(
    cpu: &mut CpuState,
    mem: &mut dyn crate::mem::GuestMemory,
    c: u64,
    b1: u8,
    b2: u8,
    size: usize,
    addr: u64,
    pc: u64,
    cf: u64,
) -> Result<u64, Fault> {
    let is_mem = c & 0xff == KIND_HOST_MEM;
    let insn = match c & 0xff {
        KIND_EMMS => X87Insn::Emms,
        KIND_HOST_MEM => X87Insn::Mem(b1, b2),
        _ => X87Insn::Reg(b1, b2),
    };
    let waits = !(b1 == 0xdb && (b2 == 0xe2 || b2 == 0xe3) && c & 0xff == KIND_HOST_REG);
    if waits && pending(&cpu.x87) {
        return Err(Fault::X87);
    }
    let mut f = X87Frame::default();
    f.img = save_image(&cpu.x87);
    f.cf_in = (cf & 1) as u16;
    let size = size.min(f.mem.len());
    if c & F_LOAD != 0 {
        mem.read_bytes(addr, &mut f.mem[..size])?;
    }
    match hostfp::x87_run(insn, &mut f) {
        Ok(()) => {}
        Err(X87Refused::Pending) => return Err(Fault::X87),
        Err(X87Refused::Opcode) => return Err(Fault::InvalidOpcode),
    }
    if c & F_STORE != 0 {
        let cw = u16::from_le_bytes([f.img[0], f.img[1]]);
        let sw = u16::from_le_bytes([f.img[4], f.img[5]]);
        // Not pending before, so any unmasked flag now was raised by this instruction.
        let suppressed = sw & !cw & 0x1f != 0;
        if !suppressed {
            mem.write_bytes(addr, &f.mem[..size])?;
        }
    }
    let x = &mut cpu.x87;
    load_image(x, &f.img, c & F_LOADS_PTRS != 0);
    if c & F_CONTROL == 0 {
        x.fip = pc;
        if is_mem {
            x.fdp = addr;
            x.fop = ((b1 as u16 & 7) << 8) | ((b2 as u16) << 3);
        } else {
            x.fop = ((b1 as u16 & 7) << 8) | b2 as u16;
        }
    }
    Ok(f.flags())
}

/// x87 instructions run on the host. They read and write `CpuState::x87` and guest
/// memory, never the guest slots (so no slot reads/writes for the JIT to sync).
static X87: HelperDesc = HelperDesc {
    name: "x87",
    func: helper_x87,
    reads_state: false,
    writes_state: false,
    may_fault: true,
};

// ---------------------------------------------------------------------------------------
// Lifters.

/// Index of the ST(i) operand (0 when there is none or it is ST(0)).
fn sti(cx: &LiftCx<'_>) -> u8 {
    (0..cx.i.op_count())
        .filter(|&n| cx.i.op_kind(n) == OpKind::Register)
        .map(|n| cx.i.op_register(n))
        .filter(|r| (Register::ST0 as u32..=Register::ST7 as u32).contains(&(*r as u32)))
        .map(|r| (r as u32 - Register::ST0 as u32) as u8)
        .max()
        .unwrap_or(0)
}

/// Whether memory form `b1 /reg` stores to memory.
fn mem_stores(b1: u8, reg: u8) -> bool {
    matches!(
        (b1, reg),
        (0xd9, 2 | 3) | (0xdb, 1 | 2 | 3 | 7) | (0xdd, 1..=3) | (0xdf, 1 | 2 | 3 | 6 | 7)
    )
}

/// Build the helper code and memory address for the instruction as the host runs it.
fn host_code(cx: &mut LiftCx<'_>) -> Result<(u64, Slot), Unsupported> {
    let oc = cx.i.op_code();
    let opc = oc.op_code();
    if oc.op_code_len() == 2 {
        let b1 = (opc >> 8) as u8;
        let b2 = (opc as u8).wrapping_add(sti(cx));
        if !hostfp::x87_reg_ok(b1, b2) {
            return Err(Unsupported);
        }
        let mut flags = 0;
        if b1 == 0xdb && (b2 == 0xe2 || b2 == 0xe3) {
            flags |= F_CONTROL;
            if b2 == 0xe3 {
                flags |= F_LOADS_PTRS;
            }
        }
        let z = cx.konst(0);
        return Ok((code(KIND_HOST_REG, b1, b2, 0, flags), z));
    }
    if !cx.is_mem(0) || oc.op_code_len() != 1 || oc.group_index() < 0 {
        return Err(Unsupported);
    }
    let b1 = opc as u8;
    let reg = oc.group_index() as u8;
    if !hostfp::x87_mem_ok(b1, reg) {
        return Err(Unsupported);
    }
    let size = cx.i.memory_size().size();
    // FLDENV m28 / FRSTOR m108 only: the 16-bit formats are not lifted.
    match (b1, reg) {
        (0xd9, 4) if size != 28 => return Err(Unsupported),
        (0xdd, 4) if size != 108 => return Err(Unsupported),
        _ => {}
    }
    let mut flags = if mem_stores(b1, reg) { F_STORE } else { F_LOAD };
    if matches!((b1, reg), (0xd9, 4 | 5) | (0xdd, 4)) {
        flags |= F_CONTROL;
        if reg == 4 {
            flags |= F_LOADS_PTRS;
        }
    }
    let a = cx.addr()?;
    Ok((code(KIND_HOST_MEM, b1, reg, size, flags), a))
}

fn pc_const(cx: &mut LiftCx<'_>) -> Slot {
    let pc = cx.pc;
    cx.konst(pc)
}

fn lift_x87(cx: &mut LiftCx<'_>) -> R {
    let (c, a) = host_code(cx)?;
    let k = cx.konst(c);
    let pc = pc_const(cx);
    cx.helper_void(&X87, &[k, a, pc]);
    Ok(())
}

fn lift_fcomi(cx: &mut LiftCx<'_>) -> R {
    let (c, a) = host_code(cx)?;
    let k = cx.konst(c);
    let pc = pc_const(cx);
    let f = cx.helper(&X87, &[k, a, pc]);
    cx.set_flags_raw(f);
    Ok(())
}

fn lift_fcmov(cx: &mut LiftCx<'_>) -> R {
    use ConditionCode as C;
    let cc = match cx.i.mnemonic() {
        Mnemonic::Fcmovb => C::b,
        Mnemonic::Fcmove => C::e,
        Mnemonic::Fcmovbe => C::be,
        Mnemonic::Fcmovu => C::p,
        Mnemonic::Fcmovnb => C::ae,
        Mnemonic::Fcmovne => C::ne,
        Mnemonic::Fcmovnbe => C::a,
        _ => C::np,
    };
    // Every FCMOVcc runs as FCMOVB ST(0), ST(i) with the host CF set to the condition.
    let i = sti(cx);
    let b2 = 0xc0 + i;
    if !hostfp::x87_reg_ok(0xda, b2) {
        return Err(Unsupported);
    }
    let cond = cx.cond(cc);
    let k = cx.konst(code(KIND_HOST_REG, 0xda, b2, 0, 0));
    let z = cx.konst(0);
    let pc = pc_const(cx);
    cx.helper_void(&X87, &[k, z, pc, cond]);
    Ok(())
}

fn lift_fnstsw(cx: &mut LiftCx<'_>) -> R {
    let k = cx.konst(code(KIND_FNSTSW, 0, 0, 0, 0));
    let v = cx.helper(&X87, &[k]);
    if cx.is_mem(0) {
        let a = cx.addr()?;
        cx.store(Width::W16, a, v);
        Ok(())
    } else if cx.i.op0_register() == Register::AX {
        cx.write_reg(Register::AX, v)
    } else {
        Err(Unsupported)
    }
}

fn lift_fnstcw(cx: &mut LiftCx<'_>) -> R {
    let a = cx.addr()?;
    let k = cx.konst(code(KIND_FNSTCW, 0, 0, 0, 0));
    let v = cx.helper(&X87, &[k]);
    cx.store(Width::W16, a, v);
    Ok(())
}

fn lift_fnstenv(cx: &mut LiftCx<'_>) -> R {
    if cx.i.memory_size().size() != 28 {
        return Err(Unsupported);
    }
    let a = cx.addr()?;
    let k = cx.konst(code(KIND_FNSTENV, 0, 0, 0, 0));
    cx.helper_void(&X87, &[k, a]);
    Ok(())
}

fn lift_fnsave(cx: &mut LiftCx<'_>) -> R {
    if cx.i.memory_size().size() != 108 {
        return Err(Unsupported);
    }
    let a = cx.addr()?;
    let k = cx.konst(code(KIND_FNSAVE, 0, 0, 0, 0));
    cx.helper_void(&X87, &[k, a]);
    Ok(())
}

fn lift_emms(cx: &mut LiftCx<'_>) -> R {
    // Not an x87 arithmetic instruction: FIP/FDP/FOP stay.
    let k = cx.konst(code(KIND_EMMS, 0x0f, 0x77, 0, F_CONTROL));
    let z = cx.konst(0);
    cx.helper_void(&X87, &[k, z, z]);
    Ok(())
}

fn lift_wait(cx: &mut LiftCx<'_>) -> R {
    let k = cx.konst(code(KIND_WAIT, 0, 0, 0, 0));
    cx.helper_void(&X87, &[k]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trip_keeps_state() {
        let mut x =
            X87State { top: 5, ftw: 0b1010_0001, fcw: 0x027f, fsw: 0x4123, ..X87State::default() };
        x.st[5][..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 0x80, 0xff, 0x3f]);
        x.st[0][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        x.st[7][..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x40, 0x01, 0x40]);
        let img = save_image(&x);
        // Tags: reg0 zero (01), reg5 valid (00), reg7 unnormal -> special (10), rest empty.
        assert_eq!(u16::from_le_bytes([img[8], img[9]]), 0b1011_0011_1111_1101);
        let mut y = X87State::default();
        load_image(&mut y, &img, false);
        assert_eq!((y.top, y.ftw, y.fcw, y.fsw), (5, 0b1010_0001, 0x027f, 0x4123));
        assert_eq!(y.st[5], x.st[5]);
        assert_eq!(y.st[7], x.st[7]);
    }
}
