//! `CpuState`: registers, lazy flags, segments, x87/SSE, control registers and MSRs.
//!
//! Layout contract. The first `GUEST_SLOTS` (64) `u64` words form the *slot file*: GPRs,
//! rip, the lazy-flag fields, the non-arithmetic RFLAGS bits, FS/GS bases, MXCSR and the 16
//! XMM registers as lo/hi halves. IR ops name them by slot number (`slot::*`). The words
//! from `GUEST_SLOTS` to `SLOT_COUNT` are the interpreter's per-block temporaries, so the
//! interpreter indexes one array for both (`slots[s & SLOT_MASK]`, no bounds check, no
//! branch). The JIT keeps temporaries in SSA values and never touches that area. Everything
//! after `slots` is reached by helpers through field names, and by the JIT through
//! `offset_of!`.
//!
//! Lazy flags (QEMU's CC_OP idea): the arithmetic flags CF PF AF ZF SF OF are not stored
//! as bits; `cc_op` names the last flag-setting operation and width, and `cc_res`,
//! `cc_a`, `cc_b`, `cc_c` hold its operands. `frontend::flags` alone knows how to derive
//! a flag or a condition from them. The other RFLAGS bits (DF, IF, TF, AC, ID, ...) live in
//! `rflags` with the arithmetic bits kept zero there.

/// Number of guest-state slots at the start of `CpuState::slots`.
pub const GUEST_SLOTS: usize = 64;
/// Total number of slots (guest state plus interpreter temporaries). A power of two.
pub const SLOT_COUNT: usize = 1024;
/// Mask applied to a slot index by the interpreter.
pub const SLOT_MASK: usize = SLOT_COUNT - 1;
/// Number of temporaries a block may use.
pub const MAX_TEMPS: usize = SLOT_COUNT - GUEST_SLOTS;

/// Slot numbers of the guest-state words.
pub mod slot {
    /// GPRs in encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15.
    pub const RAX: u16 = 0;
    /// rcx
    pub const RCX: u16 = 1;
    /// rdx
    pub const RDX: u16 = 2;
    /// rbx
    pub const RBX: u16 = 3;
    /// rsp
    pub const RSP: u16 = 4;
    /// rbp
    pub const RBP: u16 = 5;
    /// rsi
    pub const RSI: u16 = 6;
    /// rdi
    pub const RDI: u16 = 7;
    /// r8 (r9..r15 follow)
    pub const R8: u16 = 8;
    /// The instruction pointer. Only written at block exits and on fault paths.
    pub const RIP: u16 = 16;
    /// Lazy flags: `FlagOp as u64 | (width_log2 << 8)`.
    pub const CC_OP: u16 = 17;
    /// Lazy flags: the result of the last flag-setting operation.
    pub const CC_RES: u16 = 18;
    /// Lazy flags: first operand.
    pub const CC_A: u16 = 19;
    /// Lazy flags: second operand.
    pub const CC_B: u16 = 20;
    /// Lazy flags: carry in / preserved flag bits, depending on the op.
    pub const CC_C: u16 = 21;
    /// RFLAGS bits other than CF PF AF ZF SF OF (DF, IF, TF, AC, ID, bit 1).
    pub const RFLAGS: u16 = 22;
    /// FS segment base (user mode TLS).
    pub const FS_BASE: u16 = 23;
    /// GS segment base.
    pub const GS_BASE: u16 = 24;
    /// MXCSR (low 32 bits).
    pub const MXCSR: u16 = 25;
    /// Low half of xmm0; xmm n is `XMM0 + 2n` (low) and `XMM0 + 2n + 1` (high).
    pub const XMM0: u16 = 32;
    /// Slot of GPR `n` (0..16).
    pub const fn gpr(n: u8) -> u16 {
        n as u16
    }
    /// Slot of the low 64 bits of xmm `n`.
    pub const fn xmm_lo(n: u8) -> u16 {
        XMM0 + 2 * n as u16
    }
    /// Slot of the high 64 bits of xmm `n`.
    pub const fn xmm_hi(n: u8) -> u16 {
        XMM0 + 2 * n as u16 + 1
    }
    /// A printable name for a guest slot, e.g. `%rax`, `%xmm3.hi`.
    pub fn name(s: u16) -> String {
        const G: [&str; 16] = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ];
        match s {
            0..=15 => format!("%{}", G[s as usize]),
            RIP => "%rip".into(),
            CC_OP => "%cc_op".into(),
            CC_RES => "%cc_res".into(),
            CC_A => "%cc_a".into(),
            CC_B => "%cc_b".into(),
            CC_C => "%cc_c".into(),
            RFLAGS => "%rflags".into(),
            FS_BASE => "%fs_base".into(),
            GS_BASE => "%gs_base".into(),
            MXCSR => "%mxcsr".into(),
            32..=63 => {
                let n = (s - 32) / 2;
                format!("%xmm{}.{}", n, if s.is_multiple_of(2) { "lo" } else { "hi" })
            }
            _ => format!("%slot{s}"),
        }
    }
}

/// RFLAGS bit masks.
pub mod rflags {
    /// Carry flag.
    pub const CF: u64 = 1 << 0;
    /// Reserved, always 1.
    pub const FIXED1: u64 = 1 << 1;
    /// Parity flag.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry flag.
    pub const AF: u64 = 1 << 4;
    /// Zero flag.
    pub const ZF: u64 = 1 << 6;
    /// Sign flag.
    pub const SF: u64 = 1 << 7;
    /// Trap flag.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable flag.
    pub const IF: u64 = 1 << 9;
    /// Direction flag.
    pub const DF: u64 = 1 << 10;
    /// Overflow flag.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (2 bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume flag.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// CPUID available.
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic (status) flags kept lazily.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// A segment register with its descriptor cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Visible selector.
    pub selector: u16,
    /// Descriptor attributes (type, S, DPL, P, AVL, L, D/B, G) as in the descriptor bits 40..56.
    pub attr: u16,
    /// Limit in bytes.
    pub limit: u32,
    /// Base address (for FS and GS in 64-bit mode this mirrors the FS/GS base slots).
    pub base: u64,
}

/// Segment register indices, in the x86 encoding order.
pub mod seg {
    /// ES
    pub const ES: usize = 0;
    /// CS
    pub const CS: usize = 1;
    /// SS
    pub const SS: usize = 2;
    /// DS
    pub const DS: usize = 3;
    /// FS
    pub const FS: usize = 4;
    /// GS
    pub const GS: usize = 5;
}

/// A descriptor-table register (GDTR, IDTR).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableReg {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// x87 FPU state. Registers are kept as raw 80-bit values in physical order (`st[i]` is
/// physical register i; ST(j) is `st[(top + j) & 7]`), exactly as FXSAVE stores them after
/// rotation by TOP, so helpers can run them through the host's own x87 unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X87State {
    /// The eight 80-bit registers, each in the low 10 bytes of a 16-byte cell.
    pub st: [[u8; 16]; 8],
    /// Control word.
    pub fcw: u16,
    /// Status word with TOP (bits 11..14) kept in `top` instead.
    pub fsw: u16,
    /// Top-of-stack index (0..8).
    pub top: u8,
    /// Tag bits, one per physical register: 1 = valid (abridged FXSAVE form).
    pub ftw: u8,
    /// Last opcode.
    pub fop: u16,
    /// Last instruction pointer.
    pub fip: u64,
    /// Last data pointer.
    pub fdp: u64,
}

impl Default for X87State {
    fn default() -> Self {
        X87State { st: [[0; 16]; 8], fcw: 0x037f, fsw: 0, top: 0, ftw: 0, fop: 0, fip: 0, fdp: 0 }
    }
}

/// The architectural state of one x86-64 logical CPU.
#[repr(C, align(64))]
#[derive(Clone)]
pub struct CpuState {
    /// The slot file: guest words (see `slot`), then interpreter temporaries.
    pub slots: [u64; SLOT_COUNT],
    /// x87 unit.
    pub x87: X87State,
    /// Segment registers ES CS SS DS FS GS.
    pub seg: [Segment; 6],
    /// Local descriptor table register.
    pub ldtr: Segment,
    /// Task register.
    pub tr: Segment,
    /// Global descriptor table register.
    pub gdtr: TableReg,
    /// Interrupt descriptor table register.
    pub idtr: TableReg,
    /// CR0.
    pub cr0: u64,
    /// CR2: last page-fault address.
    pub cr2: u64,
    /// CR3: page-table root.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 / TPR.
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_KERNEL_GS_BASE (swapped by SWAPGS).
    pub kernel_gs_base: u64,
    /// IA32_STAR, IA32_LSTAR, IA32_CSTAR, IA32_FMASK (SYSCALL MSRs).
    pub star: u64,
    /// IA32_LSTAR.
    pub lstar: u64,
    /// IA32_CSTAR.
    pub cstar: u64,
    /// IA32_FMASK.
    pub fmask: u64,
    /// IA32_SYSENTER_CS/ESP/EIP.
    pub sysenter: [u64; 3],
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// IA32_TSC_AUX (RDTSCP, RDPID).
    pub tsc_aux: u64,
    /// Offset added to the host TSC to give the guest TSC.
    pub tsc_offset: u64,
    /// Current privilege level (0..3).
    pub cpl: u8,
    /// Set by HLT until an interrupt arrives (system mode).
    pub halted: bool,
    /// Engine data, not guest state: this vCPU's index, which plugin callbacks receive.
    /// Set by `plugin::Plugins::vcpu_init`.
    pub vcpu_index: u32,
    /// Engine data, not guest state: this vCPU's plugin memory (scoreboards) as 64-bit
    /// words, read and written by `Op::PluginLoad`/`Op::PluginStore`. Empty without
    /// plugins. Set by `plugin::Plugins::vcpu_init` together with `plugin_mem_base`.
    pub plugin_mem: &'static [std::sync::atomic::AtomicU64],
    /// Engine data: the address of `plugin_mem[0]` (for the JIT), 0 when empty.
    pub plugin_mem_base: u64,
}

impl Default for CpuState {
    fn default() -> Self {
        let mut s = CpuState {
            slots: [0; SLOT_COUNT],
            x87: X87State::default(),
            seg: [Segment::default(); 6],
            ldtr: Segment::default(),
            tr: Segment::default(),
            gdtr: TableReg::default(),
            idtr: TableReg::default(),
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            kernel_gs_base: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            fmask: 0,
            sysenter: [0; 3],
            apic_base: 0,
            pat: 0x0007_0406_0007_0406,
            tsc_aux: 0,
            tsc_offset: 0,
            cpl: 3,
            halted: false,
            vcpu_index: 0,
            plugin_mem: &[],
            plugin_mem_base: 0,
        };
        s.slots[slot::RFLAGS as usize] = rflags::FIXED1 | rflags::IF;
        s.slots[slot::MXCSR as usize] = 0x1f80;
        // cc_op 0 is FlagOp::Eflags: flags taken verbatim from cc_res (all clear).
        s
    }
}

impl CpuState {
    /// A fresh state for a 64-bit user-mode thread (CPL 3, long mode, SSE enabled).
    pub fn new_user() -> Box<CpuState> {
        let mut s = Box::<CpuState>::default();
        s.cr0 = 0x8000_0033; // PG | NE | ET | MP | PE
        s.cr4 = 0x0000_0620; // PAE | OSFXSR | OSXMMEXCPT
        s.efer = 0xd01; // SCE | LME | LMA | NXE
        s.seg[seg::CS] = Segment { selector: 0x33, attr: 0xa0fb, limit: 0xffff_ffff, base: 0 };
        s.seg[seg::SS] = Segment { selector: 0x2b, attr: 0xc0f3, limit: 0xffff_ffff, base: 0 };
        s.cpl = 3;
        s
    }
    /// GPR `n` (0..16, encoding order).
    #[inline]
    pub fn gpr(&self, n: usize) -> u64 {
        self.slots[n]
    }
    /// Set GPR `n`.
    #[inline]
    pub fn set_gpr(&mut self, n: usize, v: u64) {
        self.slots[n] = v;
    }
    /// The instruction pointer.
    #[inline]
    pub fn rip(&self) -> u64 {
        self.slots[slot::RIP as usize]
    }
    /// Set the instruction pointer.
    #[inline]
    pub fn set_rip(&mut self, v: u64) {
        self.slots[slot::RIP as usize] = v;
    }
    /// A guest slot by number.
    #[inline]
    pub fn slot(&self, s: u16) -> u64 {
        self.slots[s as usize & SLOT_MASK]
    }
    /// Set a guest slot by number.
    #[inline]
    pub fn set_slot(&mut self, s: u16, v: u64) {
        self.slots[s as usize & SLOT_MASK] = v;
    }
    /// FS base.
    pub fn fs_base(&self) -> u64 {
        self.slots[slot::FS_BASE as usize]
    }
    /// Set FS base.
    pub fn set_fs_base(&mut self, v: u64) {
        self.slots[slot::FS_BASE as usize] = v;
        self.seg[seg::FS].base = v;
    }
    /// GS base.
    pub fn gs_base(&self) -> u64 {
        self.slots[slot::GS_BASE as usize]
    }
    /// Set GS base.
    pub fn set_gs_base(&mut self, v: u64) {
        self.slots[slot::GS_BASE as usize] = v;
        self.seg[seg::GS].base = v;
    }
    /// xmm register `n` as a 128-bit value.
    pub fn xmm(&self, n: usize) -> u128 {
        let lo = self.slots[slot::XMM0 as usize + 2 * n] as u128;
        let hi = self.slots[slot::XMM0 as usize + 2 * n + 1] as u128;
        lo | (hi << 64)
    }
    /// Set xmm register `n`.
    pub fn set_xmm(&mut self, n: usize, v: u128) {
        self.slots[slot::XMM0 as usize + 2 * n] = v as u64;
        self.slots[slot::XMM0 as usize + 2 * n + 1] = (v >> 64) as u64;
    }
    /// MXCSR.
    pub fn mxcsr(&self) -> u32 {
        self.slots[slot::MXCSR as usize] as u32
    }
}

const _: () = {
    assert!(std::mem::size_of::<CpuState>() < i32::MAX as usize);
    assert!(GUEST_SLOTS <= SLOT_COUNT && SLOT_COUNT.is_power_of_two());
    assert!(std::mem::offset_of!(CpuState, slots) == 0);
};
