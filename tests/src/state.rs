//! The test-visible machine state: what a case puts in and what it compares afterwards.
//!
//! `Regs` is the register part (16 GPRs, RFLAGS, XMM0–15, MXCSR); memory is the fixed-size
//! scratch area (`SCRATCH_LEN` bytes) that every memory operand of a generated instruction
//! points into, plus one marker byte that branch landing stubs write. The same `Regs` and
//! scratch bytes are fed to the host CPU (`native`) and to the emulator (`emu`), and the two
//! `Outcome`s are compared field by field (`compare`).

use std::fmt;

/// Bytes of scratch memory (two pages) that memory operands and the stack point into.
pub const SCRATCH_LEN: usize = 8192;

/// RFLAGS bits a test may set on input and compares on output: CF PF AF ZF SF OF and DF.
pub const FLAGS_IN: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x800 | 0x400;

/// GPR names in encoding order.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// Register state of one test case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Regs {
    /// GPRs in encoding order (rax rcx rdx rbx rsp rbp rsi rdi r8..r15).
    pub gpr: [u64; 16],
    /// RFLAGS; on input only `FLAGS_IN` bits are used.
    pub rflags: u64,
    /// XMM0–15.
    pub xmm: [u128; 16],
    /// MXCSR.
    pub mxcsr: u32,
}

impl Default for Regs {
    fn default() -> Self {
        Regs { gpr: [0; 16], rflags: 0x2, xmm: [0; 16], mxcsr: 0x1f80 }
    }
}

/// A fault seen while running one instruction, in the terms both sides can produce.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultKind {
    /// #DE: divide error.
    DivideError,
    /// #UD: invalid opcode.
    InvalidOpcode,
    /// #GP (natively also any other SIGSEGV with trap 13).
    GeneralProtection,
    /// #PF at an address.
    PageFault(u64),
    /// #AC alignment check (SIGBUS).
    AlignmentCheck,
    /// #XM: unmasked SIMD floating-point exception.
    SimdFp,
    /// #BP / INT3.
    Breakpoint,
    /// A system call instruction reached the emulator's syscall exit.
    Syscall,
    /// Anything else, described.
    Other(&'static str),
}

/// The observable result of running one case.
#[derive(Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction completed.
    Done {
        /// Registers after the instruction.
        regs: Box<Regs>,
        /// Scratch memory after the instruction.
        mem: Vec<u8>,
        /// Branch landing marker (0 for non-branch snippets).
        marker: u8,
    },
    /// The instruction faulted (state is not compared).
    Fault(FaultKind),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done { regs, marker, .. } => {
                write!(f, "Done(marker {marker}) {}", RegsDisplay(regs, true))
            }
            Outcome::Fault(k) => write!(f, "Fault({k:?})"),
        }
    }
}

/// Multi-line display of a register state; with `.1` set, also the non-zero XMMs.
pub struct RegsDisplay<'a>(pub &'a Regs, pub bool);

impl fmt::Display for RegsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        for (i, chunk) in r.gpr.chunks(4).enumerate() {
            write!(f, "\n   ")?;
            for (j, v) in chunk.iter().enumerate() {
                write!(f, " {:>3}={v:016x}", GPR_NAMES[i * 4 + j])?;
            }
        }
        write!(f, "\n    rflags={:#x} [{}] mxcsr={:#x}", r.rflags, flag_names(r.rflags), r.mxcsr)?;
        for (i, x) in r.xmm.iter().enumerate() {
            if *x != 0 && self.1 {
                write!(f, "\n    xmm{i}={x:032x}")?;
            }
        }
        Ok(())
    }
}

/// Names of the set bits among CF PF AF ZF SF DF OF, e.g. `CF ZF`.
pub fn flag_names(fl: u64) -> String {
    const N: [(u64, &str); 7] = [
        (0x1, "CF"),
        (0x4, "PF"),
        (0x10, "AF"),
        (0x40, "ZF"),
        (0x80, "SF"),
        (0x400, "DF"),
        (0x800, "OF"),
    ];
    let v: Vec<&str> = N.iter().filter(|(b, _)| fl & b != 0).map(|(_, n)| *n).collect();
    v.join(" ")
}
