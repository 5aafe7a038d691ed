//! Floating point executed on the host's own SSE and x87 units.
//!
//! Design decision (exactness by construction). Host and guest are both x86-64, so the
//! floating-point helpers of `sse_fp`, `sse_cvt` and `x87` do not model IEEE arithmetic in
//! software: they load the guest's operands and control state (MXCSR, or the whole x87
//! state) into the host unit, execute the very same instruction there, and store the
//! results and status bits back. Rounding modes, DAZ/FTZ, NaN propagation and payloads,
//! exception flags, x87 precision control, 80-bit arithmetic, stack faults and the
//! approximations of RCPPS/RSQRTPS or FSIN are therefore bit-identical to the hardware we
//! run on. The module is the only place in the frontend with inline assembly; everything
//! around it (operand plumbing, unmasked-exception policy, state layout) is safe Rust.
//!
//! SSE: `sse_run` executes one `SseOp` as `op xmm0, xmm1` (or with `rax` for the
//! GPR forms) with the MXCSR given by the caller, which must have every exception masked
//! (`sse_run` forces the mask bits, so a host #XM cannot happen). Unmasked guest
//! exceptions are resolved by the caller from the flags the masked run reports.
//!
//! x87: `x87_run` restores a 108-byte FNSAVE image of the guest state into the host FPU
//! (FRSTOR), executes one x87 instruction given by its opcode bytes (register forms, or a
//! memory form whose operand is a 112-byte buffer), and saves the state back (FNSAVE).
//! Only opcodes on a fixed whitelist are executed, and a waiting instruction is refused
//! while the image has an unmasked exception pending (it would trap on the host); the
//! caller raises the guest's #MF instead.
//!
//! `inexact_unbounded` runs one add/sub/mul/div on the host x87 unit at 64-bit precision to
//! tell whether a result is exact with an unbounded exponent (the precision flag of an
//! unmasked SSE overflow or underflow).
//!
//! Safety contract. Each asm block (1) reads and writes only the memory of the frame
//! passed to it by `&mut` (and, for x87 memory forms, the frame's `mem` buffer through
//! `rdi`), and the registers it declares (rax, rdi, xmm0, xmm1, x87/MMX registers, flags);
//! (2) saves the host's MXCSR (SSE) or x87 state first and restores it last (for x87 the
//! control word over an initialized unit: all the SysV ABI asks of a callee, see
//! `x87_asm`), so no Rust code ever runs with guest control state loaded (an SSE block whose
//! guest MXCSR has the host's control bits skips the reload and may leave status flags set
//! in the host MXCSR: sticky flags never change what Rust code computes); (3) never unmasks a
//! host SIMD exception, and never runs a waiting x87 instruction over a pending unmasked
//! exception, so it cannot trap; (4) uses no stack. Opcode bytes come from compile-time
//! tables filtered by `x87_reg_ok`/`x87_mem_ok` (plus EMMS), so no undefined opcode is
//! executed.
#![allow(unsafe_code)]

use std::arch::asm;
use std::mem::offset_of;

/// Operands and results of one SSE execution.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
pub struct SseFrame {
    /// xmm0: the destination (and first source), low half first.
    pub dst: [u64; 2],
    /// xmm1: the second source.
    pub src: [u64; 2],
    /// MXCSR in (exceptions are forced masked) and out.
    pub mxcsr: u32,
    host_mxcsr: u32,
    /// 1: the host MXCSR already suits the guest (see `sse_run`); run without reloading it.
    keep_host: u32,
    /// rax in and out (CVTSI2SS source, CVTSS2SI result).
    pub gpr: u64,
    /// Arithmetic RFLAGS after the instruction, as `lahf` (bits 8..16) and `seto` (bit 0).
    flags_raw: u64,
}

impl SseFrame {
    /// The arithmetic RFLAGS bits after the instruction (COMISS & co.).
    pub fn flags(&self) -> u64 {
        lahf_flags(self.flags_raw as u16)
    }
}

/// RFLAGS arithmetic bits from `lahf` in bits 8..16 and `seto` in bit 0.
fn lahf_flags(raw: u16) -> u64 {
    let ah = (raw >> 8) as u64 & 0xd5;
    let of = (raw & 1) as u64;
    ah | (of << 11)
}

/// Execute the instruction text `$insn` (xmm0 = dst, xmm1 = src, rax = gpr) on `$f`,
/// under the frame's MXCSR (or the host's, with `keep_host`).
macro_rules! sse_asm {
    ($f:expr, $insn:expr $(, $($extra:tt)*)?) => {{
        let f: &mut SseFrame = $f;
        // SAFETY: the module's safety contract: only `*f` (by offset) and the declared
        // registers are touched; the host MXCSR is saved first and restored last; the
        // MXCSR loaded has every exception masked (checked by `sse_run`).
        unsafe {
            asm!(
                "test dword ptr [{f} + {kh}], 1",
                "jnz 2f",
                "stmxcsr [{f} + {hm}]",
                "ldmxcsr [{f} + {mx}]",
                "2:",
                "movdqu xmm0, [{f} + {d}]",
                "movdqu xmm1, [{f} + {s}]",
                "mov rax, [{f} + {g}]",
                $insn,
                "mov [{f} + {g}], rax",
                "lahf",
                "seto al",
                "mov [{f} + {fl}], ax",
                "movdqu [{f} + {d}], xmm0",
                "stmxcsr [{f} + {mx}]",
                "test dword ptr [{f} + {kh}], 1",
                "jnz 3f",
                "ldmxcsr [{f} + {hm}]",
                "3:",
                f = in(reg) f as *mut SseFrame,
                kh = const offset_of!(SseFrame, keep_host),
                hm = const offset_of!(SseFrame, host_mxcsr),
                mx = const offset_of!(SseFrame, mxcsr),
                d = const offset_of!(SseFrame, dst),
                s = const offset_of!(SseFrame, src),
                g = const offset_of!(SseFrame, gpr),
                fl = const offset_of!(SseFrame, flags_raw),
                out("rax") _,
                out("xmm0") _,
                out("xmm1") _,
                $($($extra)*,)?
                options(nostack),
            );
        }
    }};
}

macro_rules! sse_ops {
    ($($name:ident => $insn:literal,)*) => {
        /// The SSE instructions the host executes for the guest. Immediate forms take their
        /// immediate separately (`sse_run`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum SseOp {
            $(
                #[doc = $insn]
                $name,
            )*
            /// cmpps xmm0, xmm1, imm (predicate imm & 7)
            Cmpps,
            /// cmppd xmm0, xmm1, imm
            Cmppd,
            /// cmpss xmm0, xmm1, imm
            Cmpss,
            /// cmpsd xmm0, xmm1, imm
            Cmpsd,
            /// roundps xmm0, xmm1, imm (imm & 15)
            Roundps,
            /// roundpd xmm0, xmm1, imm
            Roundpd,
            /// roundss xmm0, xmm1, imm
            Roundss,
            /// roundsd xmm0, xmm1, imm
            Roundsd,
            /// dpps xmm0, xmm1, imm
            Dpps,
            /// dppd xmm0, xmm1, imm
            Dppd,
        }

        impl SseOp {
            const ALL: &'static [SseOp] = &[
                $(SseOp::$name,)*
                SseOp::Cmpps, SseOp::Cmppd, SseOp::Cmpss, SseOp::Cmpsd,
                SseOp::Roundps, SseOp::Roundpd, SseOp::Roundss, SseOp::Roundsd,
                SseOp::Dpps, SseOp::Dppd,
            ];
            /// The op with this number (`op as u16`), if any.
            pub fn from_u16(n: u16) -> Option<SseOp> {
                SseOp::ALL.get(n as usize).copied()
            }
        }

        fn run_op(op: SseOp, imm: u8, f: &mut SseFrame) {
            match op {
                $(SseOp::$name => sse_asm!(f, $insn),)*
                SseOp::Cmpps => CMPPS[(imm & 7) as usize](f),
                SseOp::Cmppd => CMPPD[(imm & 7) as usize](f),
                SseOp::Cmpss => CMPSS[(imm & 7) as usize](f),
                SseOp::Cmpsd => CMPSD[(imm & 7) as usize](f),
                SseOp::Roundps => ROUNDPS[(imm & 15) as usize](f),
                SseOp::Roundpd => ROUNDPD[(imm & 15) as usize](f),
                SseOp::Roundss => ROUNDSS[(imm & 15) as usize](f),
                SseOp::Roundsd => ROUNDSD[(imm & 15) as usize](f),
                SseOp::Dpps => DPPS[(imm >> 4) as usize](f),
                SseOp::Dppd => DPPD[((imm >> 4) & 3) as usize](f),
            }
        }
    };
}

sse_ops! {
    Addps => "addps xmm0, xmm1",
    Addpd => "addpd xmm0, xmm1",
    Addss => "addss xmm0, xmm1",
    Addsd => "addsd xmm0, xmm1",
    Subps => "subps xmm0, xmm1",
    Subpd => "subpd xmm0, xmm1",
    Subss => "subss xmm0, xmm1",
    Subsd => "subsd xmm0, xmm1",
    Mulps => "mulps xmm0, xmm1",
    Mulpd => "mulpd xmm0, xmm1",
    Mulss => "mulss xmm0, xmm1",
    Mulsd => "mulsd xmm0, xmm1",
    Divps => "divps xmm0, xmm1",
    Divpd => "divpd xmm0, xmm1",
    Divss => "divss xmm0, xmm1",
    Divsd => "divsd xmm0, xmm1",
    Minps => "minps xmm0, xmm1",
    Minpd => "minpd xmm0, xmm1",
    Minss => "minss xmm0, xmm1",
    Minsd => "minsd xmm0, xmm1",
    Maxps => "maxps xmm0, xmm1",
    Maxpd => "maxpd xmm0, xmm1",
    Maxss => "maxss xmm0, xmm1",
    Maxsd => "maxsd xmm0, xmm1",
    Sqrtps => "sqrtps xmm0, xmm1",
    Sqrtpd => "sqrtpd xmm0, xmm1",
    Sqrtss => "sqrtss xmm0, xmm1",
    Sqrtsd => "sqrtsd xmm0, xmm1",
    Rcpps => "rcpps xmm0, xmm1",
    Rcpss => "rcpss xmm0, xmm1",
    Rsqrtps => "rsqrtps xmm0, xmm1",
    Rsqrtss => "rsqrtss xmm0, xmm1",
    Addsubps => "addsubps xmm0, xmm1",
    Addsubpd => "addsubpd xmm0, xmm1",
    Haddps => "haddps xmm0, xmm1",
    Haddpd => "haddpd xmm0, xmm1",
    Hsubps => "hsubps xmm0, xmm1",
    Hsubpd => "hsubpd xmm0, xmm1",
    Comiss => "comiss xmm0, xmm1",
    Comisd => "comisd xmm0, xmm1",
    Ucomiss => "ucomiss xmm0, xmm1",
    Ucomisd => "ucomisd xmm0, xmm1",
    Cvtsi2ss32 => "cvtsi2ss xmm0, eax",
    Cvtsi2ss64 => "cvtsi2ss xmm0, rax",
    Cvtsi2sd32 => "cvtsi2sd xmm0, eax",
    Cvtsi2sd64 => "cvtsi2sd xmm0, rax",
    Cvtss2si32 => "cvtss2si eax, xmm1",
    Cvtss2si64 => "cvtss2si rax, xmm1",
    Cvttss2si32 => "cvttss2si eax, xmm1",
    Cvttss2si64 => "cvttss2si rax, xmm1",
    Cvtsd2si32 => "cvtsd2si eax, xmm1",
    Cvtsd2si64 => "cvtsd2si rax, xmm1",
    Cvttsd2si32 => "cvttsd2si eax, xmm1",
    Cvttsd2si64 => "cvttsd2si rax, xmm1",
    Cvtss2sd => "cvtss2sd xmm0, xmm1",
    Cvtsd2ss => "cvtsd2ss xmm0, xmm1",
    Cvtdq2ps => "cvtdq2ps xmm0, xmm1",
    Cvtdq2pd => "cvtdq2pd xmm0, xmm1",
    Cvtps2dq => "cvtps2dq xmm0, xmm1",
    Cvttps2dq => "cvttps2dq xmm0, xmm1",
    Cvtpd2dq => "cvtpd2dq xmm0, xmm1",
    Cvttpd2dq => "cvttpd2dq xmm0, xmm1",
    Cvtps2pd => "cvtps2pd xmm0, xmm1",
    Cvtpd2ps => "cvtpd2ps xmm0, xmm1",
}

/// One function per immediate value, `name::<I>`, collected in a table.
macro_rules! imm_table {
    ($table:ident, $fn:ident, $insn:literal, $base:expr, [$($i:literal)*]) => {
        fn $fn<const I: u8>(f: &mut SseFrame) {
            sse_asm!(f, $insn, i = const I);
        }
        const $table: &[fn(&mut SseFrame)] = &[$($fn::<{ $base + $i }>,)*];
    };
}

imm_table!(CMPPS, cmpps, "cmpps xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7]);
imm_table!(CMPPD, cmppd, "cmppd xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7]);
imm_table!(CMPSS, cmpss, "cmpss xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7]);
imm_table!(CMPSD, cmpsd, "cmpsd xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7]);
imm_table!(ROUNDPS, roundps, "roundps xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
imm_table!(ROUNDPD, roundpd, "roundpd xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
imm_table!(ROUNDSS, roundss, "roundss xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
imm_table!(ROUNDSD, roundsd, "roundsd xmm0, xmm1, {i}", 0, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
// DPPS/DPPD: the high nibble selects the products; the low bits only choose which result
// lanes receive the sum (the others get +0.0), so the host always broadcasts to every lane
// and the caller applies the lane mask.
imm_table!(DPPS, dpps, "dpps xmm0, xmm1, {i}", 0x0f, [0x00 0x10 0x20 0x30 0x40 0x50 0x60 0x70 0x80 0x90 0xa0 0xb0 0xc0 0xd0 0xe0 0xf0]);
imm_table!(DPPD, dppd, "dppd xmm0, xmm1, {i}", 0x03, [0x00 0x10 0x20 0x30]);

/// MXCSR exception mask bits (IM DM ZM OM UM PM).
pub const MXCSR_MASKS: u32 = 0x1f80;

/// Execute `op` (with immediate `imm` where it has one) on the host with `f.mxcsr`, all
/// exceptions forced masked. Returns the frame with results, the MXCSR after the
/// instruction (flags accumulated) and the arithmetic flags.
pub fn sse_run(op: SseOp, imm: u8, mut f: SseFrame) -> SseFrame {
    f.mxcsr |= MXCSR_MASKS;
    // Only bits the host accepts (a reserved bit would make LDMXCSR fault): the guest's
    // MXCSR never has any (LDMXCSR/FXRSTOR check), but stay safe.
    f.mxcsr &= 0xffff;
    // LDMXCSR is slow. When the host's MXCSR has the same control bits and no status flag
    // the guest lacks (the usual case: both 0x1f80 plus flags the guest raised before),
    // run the instruction under the host's MXCSR as it is: the flags it then holds are
    // exactly guest flags | new flags once OR-ed with the guest's.
    let host = host_mxcsr();
    let guest_flags = f.mxcsr & 0x3f;
    f.keep_host = (host & !0x3f == f.mxcsr & !0x3f && host & 0x3f & !guest_flags == 0) as u32;
    run_op(op, imm, &mut f);
    if f.keep_host != 0 {
        f.mxcsr |= guest_flags;
    }
    f
}

/// The host's MXCSR.
fn host_mxcsr() -> u32 {
    let mut m = 0u32;
    // SAFETY: stores MXCSR into a local; no other effect.
    unsafe { asm!("stmxcsr [{p}]", p = in(reg) &mut m, options(nostack, preserves_flags)) };
    m
}

/// Operands and results of one x87 execution.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug)]
pub struct X87Frame {
    /// The FNSAVE image (32-bit protected-mode format) loaded before and saved after.
    pub img: [u8; 108],
    /// Padding so `mem` is 16-byte aligned.
    _pad: [u8; 4],
    /// The memory operand of memory forms.
    pub mem: [u8; 112],
    /// The host's x87 control word while the guest's state is loaded.
    host: u16,
    /// CF as seen by the instruction (FCMOVcc): bit 0.
    pub cf_in: u16,
    /// Arithmetic RFLAGS after the instruction (FCOMI & co.): lahf in bits 8..16, OF in 0.
    flags_raw: u16,
}

impl Default for X87Frame {
    fn default() -> Self {
        X87Frame { img: [0; 108], _pad: [0; 4], mem: [0; 112], host: 0, cf_in: 0, flags_raw: 0 }
    }
}

impl X87Frame {
    /// The arithmetic RFLAGS bits after the instruction.
    pub fn flags(&self) -> u64 {
        lahf_flags(self.flags_raw)
    }
}

/// Execute the x87 instruction `.byte $b1, $b2` with rdi = the frame's `mem`.
///
/// The host's x87 state needs no full save: at a call boundary the SysV ABI guarantees an
/// empty x87 stack and makes only the control word callee-saved (the status word is
/// scratch). So the block saves the control word, loads the guest image (FRSTOR), runs the
/// instruction, saves the guest image (FNSAVE, which also re-initializes the unit: empty
/// stack, no pending exception) and reloads the host control word.
macro_rules! x87_asm {
    ($f:expr, $b1:expr, $b2:expr) => {{
        let f: &mut X87Frame = $f;
        let mem = f.mem.as_mut_ptr();
        // SAFETY: the module's safety contract: the host control word is saved first and
        // reloaded last over an initialized unit (see above); the instruction is
        // whitelisted, reads/writes at most the 112-byte `mem` buffer through rdi and
        // cannot trap (`x87_run` refuses waiting instructions over pending exceptions);
        // the declared registers are the only ones touched.
        unsafe {
            asm!(
                "fnstcw [{f} + {host}]",
                "frstor [{f} + {img}]",
                "bt word ptr [{f} + {cf}], 0",
                ".byte {b1}, {b2}",
                "lahf",
                "seto al",
                "mov [{f} + {fl}], ax",
                "fnsave [{f} + {img}]",
                "fldcw [{f} + {host}]",
                f = in(reg) f as *mut X87Frame,
                host = const offset_of!(X87Frame, host),
                img = const offset_of!(X87Frame, img),
                cf = const offset_of!(X87Frame, cf_in),
                fl = const offset_of!(X87Frame, flags_raw),
                b1 = const $b1,
                b2 = const $b2,
                in("rdi") mem,
                out("rax") _,
                out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                out("mm0") _, out("mm1") _, out("mm2") _, out("mm3") _,
                out("mm4") _, out("mm5") _, out("mm6") _, out("mm7") _,
                options(nostack),
            );
        }
    }};
}

fn x87_op<const OP: u16>(f: &mut X87Frame) {
    x87_asm!(f, OP >> 8, OP & 0xff);
}

macro_rules! x87_row {
    ($b1:literal; $($b2:literal)*) => {
        [$(x87_op::<{ ($b1 << 8) | $b2 }>,)*]
    };
}
macro_rules! x87_reg_row {
    ($b1:literal) => {
        x87_row!($b1; 0xc0 0xc1 0xc2 0xc3 0xc4 0xc5 0xc6 0xc7 0xc8 0xc9 0xca 0xcb 0xcc 0xcd
            0xce 0xcf 0xd0 0xd1 0xd2 0xd3 0xd4 0xd5 0xd6 0xd7 0xd8 0xd9 0xda 0xdb 0xdc 0xdd 0xde
            0xdf 0xe0 0xe1 0xe2 0xe3 0xe4 0xe5 0xe6 0xe7 0xe8 0xe9 0xea 0xeb 0xec 0xed 0xee 0xef
            0xf0 0xf1 0xf2 0xf3 0xf4 0xf5 0xf6 0xf7 0xf8 0xf9 0xfa 0xfb 0xfc 0xfd 0xfe 0xff)
    };
}
// Memory forms: ModRM mod=00, rm=111 ([rdi]), reg = the /digit.
macro_rules! x87_mem_row {
    ($b1:literal) => {
        x87_row!($b1; 0x07 0x0f 0x17 0x1f 0x27 0x2f 0x37 0x3f)
    };
}

type X87Fn = fn(&mut X87Frame);
static X87_REG: [[X87Fn; 64]; 8] = [
    x87_reg_row!(0xd8),
    x87_reg_row!(0xd9),
    x87_reg_row!(0xda),
    x87_reg_row!(0xdb),
    x87_reg_row!(0xdc),
    x87_reg_row!(0xdd),
    x87_reg_row!(0xde),
    x87_reg_row!(0xdf),
];
static X87_MEM: [[X87Fn; 8]; 8] = [
    x87_mem_row!(0xd8),
    x87_mem_row!(0xd9),
    x87_mem_row!(0xda),
    x87_mem_row!(0xdb),
    x87_mem_row!(0xdc),
    x87_mem_row!(0xdd),
    x87_mem_row!(0xde),
    x87_mem_row!(0xdf),
];

/// Whether the register form `b1 b2` (b2 >= 0xc0) is one the host may execute: the
/// documented x87 register instructions except FNSTSW AX (it writes a GPR) and the
/// undocumented aliases.
pub const fn x87_reg_ok(b1: u8, b2: u8) -> bool {
    matches!(
        (b1, b2),
        (0xd8, 0xc0..=0xff)
            | (0xd9, 0xc0..=0xd0 | 0xe0 | 0xe1 | 0xe4 | 0xe5 | 0xe8..=0xee | 0xf0..=0xff)
            | (0xda, 0xc0..=0xdf | 0xe9)
            | (0xdb, 0xc0..=0xdf | 0xe2 | 0xe3 | 0xe8..=0xf7)
            | (0xdc, 0xc0..=0xcf | 0xe0..=0xff)
            | (0xdd, 0xc0..=0xc7 | 0xd0..=0xef)
            | (0xde, 0xc0..=0xcf | 0xd9 | 0xe0..=0xff)
            | (0xdf, 0xc0..=0xc7 | 0xe8..=0xf7)
    )
}

/// Whether the memory form `b1 /reg` is one the host may execute on the `mem` buffer:
/// every documented x87 memory instruction except the stores of control state (FNSTENV,
/// FNSTCW, FNSAVE, FNSTSW), which the caller builds itself.
pub const fn x87_mem_ok(b1: u8, reg: u8) -> bool {
    matches!(
        (b1, reg),
        (0xd8 | 0xda | 0xdc | 0xde | 0xdf, 0..=7)
            | (0xd9, 0 | 2..=5)
            | (0xdb, 0..=3 | 5 | 7)
            | (0xdd, 0..=4)
    )
}

/// Whether an x87 register-form instruction is a non-waiting one (FNCLEX, FNINIT).
pub const fn x87_no_wait(b1: u8, b2: u8) -> bool {
    b1 == 0xdb && (b2 == 0xe2 || b2 == 0xe3)
}

/// An x87 instruction for `x87_run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X87Insn {
    /// Register form: the two opcode bytes.
    Reg(u8, u8),
    /// Memory form: the opcode byte and the ModRM /digit; the operand is `mem`.
    Mem(u8, u8),
    /// EMMS (0F 77): what it does to TOP differs between CPUs, so the host decides.
    Emms,
}

/// Why `x87_run` did not execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X87Refused {
    /// The opcode is not on the whitelist.
    Opcode,
    /// A waiting instruction over a pending unmasked exception (the guest's #MF).
    Pending,
}

/// Status-word bits ES (error summary) and B (busy).
const FSW_ES_B: u16 = 0x8080;

/// Execute `insn` over the FNSAVE image in `f.img`. The image's ES/B bits are normalized
/// from its exception flags and masks first.
pub fn x87_run(insn: X87Insn, f: &mut X87Frame) -> Result<(), X87Refused> {
    let cw = u16::from_le_bytes([f.img[0], f.img[1]]);
    let mut sw = u16::from_le_bytes([f.img[4], f.img[5]]) & !FSW_ES_B;
    let pending = sw & !cw & 0x3f != 0;
    if pending {
        sw |= FSW_ES_B;
    }
    f.img[4..6].copy_from_slice(&sw.to_le_bytes());
    let (b1, b2) = match insn {
        X87Insn::Emms => (0x0f, 0x77),
        X87Insn::Reg(b1, b2) => {
            if !(0xd8..=0xdf).contains(&b1) || b2 < 0xc0 || !x87_reg_ok(b1, b2) {
                return Err(X87Refused::Opcode);
            }
            (b1, b2)
        }
        X87Insn::Mem(b1, reg) => {
            if !(0xd8..=0xdf).contains(&b1) || reg > 7 || !x87_mem_ok(b1, reg) {
                return Err(X87Refused::Opcode);
            }
            (b1, reg)
        }
    };
    let waits = !matches!(insn, X87Insn::Reg(b1, b2) if x87_no_wait(b1, b2));
    if waits && pending {
        return Err(X87Refused::Pending);
    }
    match insn {
        X87Insn::Emms => x87_op::<0x0f77>(f),
        X87Insn::Reg(..) => X87_REG[(b1 - 0xd8) as usize][(b2 - 0xc0) as usize](f),
        X87Insn::Mem(..) => X87_MEM[(b1 - 0xd8) as usize][b2 as usize](f),
    }
    Ok(())
}

/// An arithmetic operation for `inexact_unbounded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WideOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
}

#[repr(C, align(16))]
struct WideFrame {
    a: f64,
    b: f64,
    out: [u8; 16],
    host: [u8; 108],
    cw: u16,
    sw: u16,
}

/// Execute `fld a; fld b; <op>p st(1), st(0); fstp m80` with 64-bit precision and every
/// exception masked.
macro_rules! wide_asm {
    ($f:expr, $b2:expr) => {{
        let f: &mut WideFrame = $f;
        // SAFETY: the module's safety contract: the host x87 state is saved (FNSAVE) first
        // and restored (FRSTOR) last; all exceptions are masked (control word 0x037f), so
        // nothing traps; only `*f` and the declared registers are touched.
        unsafe {
            asm!(
                "fnsave [{f} + {host}]",
                "fldcw [{f} + {cw}]",
                "fld qword ptr [{f} + {a}]",
                "fld qword ptr [{f} + {b}]",
                ".byte 0xde, {b2}",
                "fstp tbyte ptr [{f} + {out}]",
                "fnstsw ax",
                "mov [{f} + {sw}], ax",
                "frstor [{f} + {host}]",
                f = in(reg) f as *mut WideFrame,
                host = const offset_of!(WideFrame, host),
                cw = const offset_of!(WideFrame, cw),
                a = const offset_of!(WideFrame, a),
                b = const offset_of!(WideFrame, b),
                out = const offset_of!(WideFrame, out),
                sw = const offset_of!(WideFrame, sw),
                b2 = const $b2,
                out("rax") _,
                out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                out("mm0") _, out("mm1") _, out("mm2") _, out("mm3") _,
                out("mm4") _, out("mm5") _, out("mm6") _, out("mm7") _,
                options(nostack),
            );
        }
    }};
}

/// Whether `a op b` (finite, non-NaN) is inexact when rounded to a `mant_bits`-bit
/// significand with an unbounded exponent: the precision flag an unmasked overflow or
/// underflow reports. Computed on the host x87 unit: its 64-bit significand and 15-bit
/// exponent hold any f32/f64 sum, difference or product exactly when one exists, and its
/// precision flag says when not (a quotient too).
pub fn inexact_unbounded(op: WideOp, a: f64, b: f64, mant_bits: u32) -> bool {
    let mut f = WideFrame { a, b, out: [0; 16], host: [0; 108], cw: 0x037f, sw: 0 };
    match op {
        WideOp::Add => wide_asm!(&mut f, 0xc1),
        WideOp::Sub => wide_asm!(&mut f, 0xe9),
        WideOp::Mul => wide_asm!(&mut f, 0xc9),
        WideOp::Div => wide_asm!(&mut f, 0xf9),
    }
    let mant = u64::from_le_bytes([
        f.out[0], f.out[1], f.out[2], f.out[3], f.out[4], f.out[5], f.out[6], f.out[7],
    ]);
    let low = mant & ((1u64 << (64 - mant_bits.clamp(1, 64))) - 1);
    f.sw & 0x20 != 0 || low != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addsd_rounds_with_guest_mode_and_restores_host_mxcsr() {
        let mut f = SseFrame {
            dst: [1.0f64.to_bits(), 7],
            src: [(1e-30f64).to_bits(), 9],
            ..Default::default()
        };
        f.mxcsr = 0x1f80 | (2 << 13); // round up
        let out = sse_run(SseOp::Addsd, 0, f);
        assert_eq!(out.dst, [1.0f64.to_bits() + 1, 7]);
        assert_eq!(out.mxcsr & 0x3f, 0x20, "precision flag");
        // The host's own rounding is unaffected.
        let x = std::hint::black_box(1.0f64) + std::hint::black_box(1e-30f64);
        assert_eq!(x, 1.0);
        f.mxcsr = 0x1f80;
        let out = sse_run(SseOp::Addsd, 0, f);
        assert_eq!(out.dst, [1.0f64.to_bits(), 7]);
    }

    #[test]
    fn unbounded_inexactness() {
        assert!(!inexact_unbounded(WideOp::Add, 1.5, 1.5, 24));
        assert!(inexact_unbounded(WideOp::Div, 1.0, 3.0, 53));
        // 2^1000 * 2^1000 overflows a double but is exact with an unbounded exponent.
        assert!(!inexact_unbounded(WideOp::Mul, 2f64.powi(1000), 2f64.powi(1000), 53));
        assert!(inexact_unbounded(WideOp::Mul, 1.0 + f64::EPSILON, 1.0 + f64::EPSILON, 53));
        // 1 + 2^-30 fits 53 bits, not 24.
        assert!(!inexact_unbounded(WideOp::Add, 1.0, 2f64.powi(-30), 53));
        assert!(inexact_unbounded(WideOp::Add, 1.0, 2f64.powi(-30), 24));
        assert!(!inexact_unbounded(WideOp::Sub, 1.0, 0.25, 24));
    }

    #[test]
    fn comisd_flags() {
        let f = SseFrame {
            dst: [1.0f64.to_bits(), 0],
            src: [2.0f64.to_bits(), 0],
            mxcsr: 0x1f80,
            ..Default::default()
        };
        assert_eq!(sse_run(SseOp::Comisd, 0, f).flags(), 1); // CF: less
        let f = SseFrame { src: [f64::NAN.to_bits(), 0], ..f };
        assert_eq!(sse_run(SseOp::Comisd, 0, f).flags(), 0x45); // unordered: ZF PF CF
    }

    #[test]
    fn x87_fld1_fadd_through_image() {
        let mut f = X87Frame::default();
        // FNINIT state: cw 0x37f, all tags empty.
        f.img[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        f.img[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
        x87_run(X87Insn::Reg(0xd9, 0xe8), &mut f).unwrap(); // fld1
        x87_run(X87Insn::Reg(0xd8, 0xc0), &mut f).unwrap(); // fadd st0, st0
        let sw = u16::from_le_bytes([f.img[4], f.img[5]]);
        assert_eq!((sw >> 11) & 7, 7, "TOP after one push");
        // ST(0) = 2.0: exponent 0x4000, mantissa 0x8000...
        assert_eq!(&f.img[28..38], &[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0x40]);
        // fstp qword [mem]
        x87_run(X87Insn::Mem(0xdd, 3), &mut f).unwrap();
        assert_eq!(u64::from_le_bytes(f.mem[..8].try_into().unwrap()), 2.0f64.to_bits());
        assert_eq!(x87_run(X87Insn::Reg(0xdf, 0xe0), &mut f), Err(X87Refused::Opcode));
    }

    #[test]
    fn x87_pending_exception_refuses_waiting_insns() {
        let mut f = X87Frame::default();
        f.img[0..2].copy_from_slice(&0x037eu16.to_le_bytes()); // IE unmasked
        f.img[4..6].copy_from_slice(&0x0001u16.to_le_bytes()); // IE set
        f.img[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(x87_run(X87Insn::Reg(0xd9, 0xe8), &mut f), Err(X87Refused::Pending));
        x87_run(X87Insn::Reg(0xdb, 0xe2), &mut f).unwrap(); // fnclex
        let sw = u16::from_le_bytes([f.img[4], f.img[5]]);
        assert_eq!(sw & 0x80ff, 0);
    }
}
