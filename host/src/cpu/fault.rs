//! Guest faults as values (Intel SDM vol. 3, chapter 6 "Interrupt and exception handling").
//!
//! A fault is returned, never thrown: IR ops, helpers and memory accessors return
//! `Result<_, Fault>`, and the exec loop receives it together with the faulting
//! instruction's pc. User mode turns a fault into a signal; system mode delivers it
//! through the IDT.

/// A CPU exception raised by a guest instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// #DE, vector 0: DIV/IDIV by zero or quotient overflow.
    DivideError,
    /// #DB, vector 1.
    Debug,
    /// #BP, vector 3: INT3.
    Breakpoint,
    /// #OF, vector 4.
    Overflow,
    /// #UD, vector 6: undefined or unimplemented instruction.
    InvalidOpcode,
    /// #NM, vector 7.
    DeviceNotAvailable,
    /// #GP, vector 13, with its error code.
    GeneralProtection(u32),
    /// #SS, vector 12, with its error code.
    StackFault(u32),
    /// #PF, vector 14: the linear address and the error code (bit 0 present, 1 write,
    /// 2 user, 4 instruction fetch).
    PageFault {
        /// Faulting linear address (CR2).
        addr: u64,
        /// Page-fault error code.
        code: u32,
    },
    /// #MF, vector 16: x87 floating-point error.
    X87,
    /// #AC, vector 17.
    AlignmentCheck,
    /// #XM, vector 19: unmasked SIMD floating-point exception.
    SimdFp,
    /// A software interrupt `INT n` (n != 3) executed in user mode, seen as #GP by Linux.
    SoftInt(u8),
}

/// Page-fault error-code bits.
pub mod pf {
    /// The page was present (protection violation) rather than not mapped.
    pub const PRESENT: u32 = 1;
    /// The access was a write.
    pub const WRITE: u32 = 2;
    /// The access came from CPL 3.
    pub const USER: u32 = 4;
    /// The access was an instruction fetch.
    pub const FETCH: u32 = 16;
}

impl Fault {
    /// The exception vector number.
    pub fn vector(self) -> u8 {
        match self {
            Fault::DivideError => 0,
            Fault::Debug => 1,
            Fault::Breakpoint => 3,
            Fault::Overflow => 4,
            Fault::InvalidOpcode => 6,
            Fault::DeviceNotAvailable => 7,
            Fault::StackFault(_) => 12,
            Fault::GeneralProtection(_) => 13,
            Fault::PageFault { .. } => 14,
            Fault::X87 => 16,
            Fault::AlignmentCheck => 17,
            Fault::SimdFp => 19,
            Fault::SoftInt(n) => n,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::PageFault { addr, code } => {
                write!(f, "page fault at {addr:#x} (error code {code:#x})")
            }
            Fault::GeneralProtection(c) => write!(f, "general protection fault ({c:#x})"),
            Fault::StackFault(c) => write!(f, "stack fault ({c:#x})"),
            Fault::SoftInt(n) => write!(f, "software interrupt {n:#x}"),
            other => write!(f, "{other:?}"),
        }
    }
}
