//! FXSAVE/FXRSTOR (and their REX.W forms FXSAVE64/FXRSTOR64): the 512-byte image of the
//! x87, MXCSR and XMM state (Intel SDM vol. 1 §10.5.1, vol. 2 FXSAVE).
//!
//! Image layout: FCW(0) FSW(2, with TOP) abridged FTW(4) FOP(6); FIP and FDP at 8 and 16
//! as 64-bit offsets (REX.W) or as 32-bit offset + 16-bit selector (no REX.W; selectors
//! are stored as 0); MXCSR(24) MXCSR_MASK(28); ST0..ST7 in stack order at 32 + 16·i
//! (10 bytes each, the other 6 written as 0); XMM0..15 at 160. Bytes 416..512 are not
//! written (reserved and software-available areas). XSAVE/XRSTOR/XGETBV are not lifted:
//! the CPUID model does not advertise XSAVE.
//!
//! FXRSTOR recomputes the status word's ES and B bits from its exception flags and masks,
//! as the CPU does.
//!
//! Faults: a memory operand that is not 16-byte aligned raises #GP(0); FXRSTOR of an
//! image whose MXCSR has bits outside MXCSR_MASK raises #GP(0). The whole image is read
//! (or the fault taken) before any state changes. The fast-FXSAVE mode of AMD (EFER.FFXSR
//! at CPL 0) is not modelled.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::sse_cvt::MXCSR_MASK;
use crate::cpu::{slot, CpuState, Fault};
use crate::ir::{HelperCx, HelperDesc};
use iced_x86::Mnemonic;

lifts! {
    Fxsave => lift_fx, Fxsave64 => lift_fx, Fxrstor => lift_fx, Fxrstor64 => lift_fx,
}

/// The FXSAVE image of `cpu`'s x87/SSE state; `wide` is the REX.W (FXSAVE64) layout.
/// Bytes 416..512 are zero.
pub fn fxsave_image(cpu: &CpuState, wide: bool) -> [u8; 512] {
    let x = &cpu.x87;
    let mut img = [0u8; 512];
    img[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    let fsw = (x.fsw & !0x3800) | ((x.top as u16 & 7) << 11);
    img[2..4].copy_from_slice(&fsw.to_le_bytes());
    img[4] = x.ftw;
    img[6..8].copy_from_slice(&(x.fop & 0x7ff).to_le_bytes());
    if wide {
        img[8..16].copy_from_slice(&x.fip.to_le_bytes());
        img[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    } else {
        img[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        img[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
    }
    img[24..28].copy_from_slice(&(cpu.mxcsr()).to_le_bytes());
    img[28..32].copy_from_slice(&(MXCSR_MASK as u32).to_le_bytes());
    for i in 0..8 {
        let phys = (x.top as usize + i) & 7;
        img[32 + 16 * i..42 + 16 * i].copy_from_slice(&x.st[phys][..10]);
    }
    for n in 0..16 {
        let lo = cpu.slot(slot::xmm_lo(n as u8));
        let hi = cpu.slot(slot::xmm_hi(n as u8));
        img[160 + 16 * n..168 + 16 * n].copy_from_slice(&lo.to_le_bytes());
        img[168 + 16 * n..176 + 16 * n].copy_from_slice(&hi.to_le_bytes());
    }
    img
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u32_at(b, o) as u64 | (u32_at(b, o + 4) as u64) << 32
}

/// Load `cpu`'s x87/SSE state from an FXSAVE image (FXRSTOR). #GP(0) if the image's
/// MXCSR has reserved bits set; nothing changes then.
pub fn fxrstor_image(cpu: &mut CpuState, img: &[u8; 512], wide: bool) -> Result<(), Fault> {
    let mxcsr = u32_at(img, 24) as u64;
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(Fault::GeneralProtection(0));
    }
    let x = &mut cpu.x87;
    x.fcw = u16_at(img, 0);
    let fsw = u16_at(img, 2);
    x.top = ((fsw >> 11) & 7) as u8;
    x.fsw = fsw & !0x3800;
    super::x87::normalize_es(x);
    x.ftw = img[4];
    x.fop = u16_at(img, 6) & 0x7ff;
    if wide {
        x.fip = u64_at(img, 8);
        x.fdp = u64_at(img, 16);
    } else {
        x.fip = u32_at(img, 8) as u64;
        x.fdp = u32_at(img, 16) as u64;
    }
    for i in 0..8 {
        let phys = (x.top as usize + i) & 7;
        let mut cell = [0u8; 16];
        cell[..10].copy_from_slice(&img[32 + 16 * i..42 + 16 * i]);
        x.st[phys] = cell;
    }
    cpu.set_slot(slot::MXCSR, mxcsr);
    for n in 0..16u8 {
        let o = 160 + 16 * n as usize;
        cpu.set_slot(slot::xmm_lo(n), u64_at(img, o));
        cpu.set_slot(slot::xmm_hi(n), u64_at(img, o + 8));
    }
    Ok(())
}

const OP_SAVE: u64 = 1;
const OP_WIDE: u64 = 2;

/// args: [address, OP_* bits]
fn helper_fx(cx: &mut HelperCx<'_>, a: [u64; 4]) -> Result<u64, Fault> {
    let addr = a[0];
    let wide = a[1] & OP_WIDE != 0;
    if !addr.is_multiple_of(16) {
        return Err(Fault::GeneralProtection(0));
    }
    if a[1] & OP_SAVE != 0 {
        let img = fxsave_image(cx.cpu, wide);
        cx.mem.write_bytes(addr, &img[..416])?;
    } else {
        let mut img = [0u8; 512];
        cx.mem.read_bytes(addr, &mut img)?;
        fxrstor_image(cx.cpu, &img, wide)?;
    }
    Ok(0)
}

static FXSAVE: HelperDesc = HelperDesc {
    name: "fxsave",
    func: helper_fx,
    reads_state: true,
    writes_state: false,
    may_fault: true,
};

static FXRSTOR: HelperDesc = HelperDesc {
    name: "fxrstor",
    func: helper_fx,
    reads_state: false,
    writes_state: true,
    may_fault: true,
};

fn lift_fx(cx: &mut LiftCx<'_>) -> Result<(), Unsupported> {
    if !cx.is_mem(0) {
        return Err(Unsupported);
    }
    let m = cx.i.mnemonic();
    let save = matches!(m, Mnemonic::Fxsave | Mnemonic::Fxsave64);
    let wide = matches!(m, Mnemonic::Fxsave64 | Mnemonic::Fxrstor64);
    let a = cx.addr()?;
    let k = cx.konst(if save { OP_SAVE } else { 0 } | if wide { OP_WIDE } else { 0 });
    cx.helper_void(if save { &FXSAVE } else { &FXRSTOR }, &[a, k]);
    Ok(())
}
