//! The one CPU model blockscope shows its guests through CPUID.
//!
//! The model is fixed (it never mirrors the host) and advertises only what blockscope
//! executes. It is a "GenuineIntel" family 6 part: C libraries pick their cache and string
//! strategies by vendor, and an unknown vendor string sends some glibc versions down
//! untested paths (zero cache sizes, a zero non-temporal threshold), so the vendor is the
//! most common one and the model number (0x2C, a Westmere-class core without AVX) is one
//! glibc treats as "fast rep strings, fast unaligned loads" and nothing model-specific else.
//!
//! ISA level: x86-64 baseline (FPU CX8 CMOV MMX FXSR SSE SSE2 SYSCALL LM) plus the
//! x86-64-v2 set (CMPXCHG16B LAHF/SAHF POPCNT SSE3 SSSE3 SSE4.1 SSE4.2), plus BMI1 BMI2
//! LZCNT. MMX is listed because glibc's baseline ISA check requires the bit. No AVX, no
//! XSAVE/OSXSAVE (so XGETBV is #UD and glibc uses FXSAVE for lazy binding), no RDRAND,
//! RDSEED, MOVBE, AES, PCLMULQDQ, FSGSBASE.
//!
//! Topology and caches describe one logical CPU with one core: L1d/L1i 32 KiB 8-way,
//! L2 256 KiB 8-way, L3 8 MiB 16-way, 64-byte lines. Leaves above the maximum return the
//! highest basic leaf, as Intel CPUs do.
//!
//! `features` is the single source of the feature bits; user mode derives AT_HWCAP from it.

/// Feature bits, by leaf and register.
pub mod features {
    /// Leaf 1 EDX: x87 FPU on chip.
    pub const FPU: u32 = 1 << 0;
    /// Leaf 1 EDX: RDTSC.
    pub const TSC: u32 = 1 << 4;
    /// Leaf 1 EDX: CMPXCHG8B.
    pub const CX8: u32 = 1 << 8;
    /// Leaf 1 EDX: CMOVcc (and FCMOVcc/FCOMI with FPU).
    pub const CMOV: u32 = 1 << 15;
    /// Leaf 1 EDX: MMX.
    pub const MMX: u32 = 1 << 23;
    /// Leaf 1 EDX: FXSAVE/FXRSTOR.
    pub const FXSR: u32 = 1 << 24;
    /// Leaf 1 EDX: SSE.
    pub const SSE: u32 = 1 << 25;
    /// Leaf 1 EDX: SSE2.
    pub const SSE2: u32 = 1 << 26;
    /// Leaf 1 EDX as advertised.
    pub const LEAF1_EDX: u32 = FPU | TSC | CX8 | CMOV | MMX | FXSR | SSE | SSE2;

    /// Leaf 1 ECX: SSE3.
    pub const SSE3: u32 = 1 << 0;
    /// Leaf 1 ECX: SSSE3.
    pub const SSSE3: u32 = 1 << 9;
    /// Leaf 1 ECX: CMPXCHG16B.
    pub const CX16: u32 = 1 << 13;
    /// Leaf 1 ECX: SSE4.1.
    pub const SSE4_1: u32 = 1 << 19;
    /// Leaf 1 ECX: SSE4.2.
    pub const SSE4_2: u32 = 1 << 20;
    /// Leaf 1 ECX: POPCNT.
    pub const POPCNT: u32 = 1 << 23;
    /// Leaf 1 ECX as advertised.
    pub const LEAF1_ECX: u32 = SSE3 | SSSE3 | CX16 | SSE4_1 | SSE4_2 | POPCNT;

    /// Leaf 7.0 EBX: BMI1 (ANDN BEXTR BLSI BLSMSK BLSR TZCNT).
    pub const BMI1: u32 = 1 << 3;
    /// Leaf 7.0 EBX: BMI2 (BZHI MULX PDEP PEXT RORX SARX SHLX SHRX).
    pub const BMI2: u32 = 1 << 8;
    /// Leaf 7.0 EBX: enhanced REP MOVSB/STOSB (a speed hint: blockscope's REP MOVSB/STOSB
    /// run as bulk copies, so C libraries should prefer them for large copies).
    pub const ERMS: u32 = 1 << 9;
    /// Leaf 7.0 EBX as advertised.
    pub const LEAF7_EBX: u32 = BMI1 | BMI2 | ERMS;
    /// Leaf 7.0 ECX: RDPID.
    pub const RDPID: u32 = 1 << 22;
    /// Leaf 7.0 ECX as advertised.
    pub const LEAF7_ECX: u32 = RDPID;

    /// Leaf 0x8000_0001 ECX: LAHF/SAHF in 64-bit mode.
    pub const LAHF_LM: u32 = 1 << 0;
    /// Leaf 0x8000_0001 ECX: LZCNT (AMD's "ABM").
    pub const ABM: u32 = 1 << 5;
    /// Leaf 0x8000_0001 ECX: PREFETCHW.
    pub const PREFETCHW: u32 = 1 << 8;
    /// Leaf 0x8000_0001 ECX as advertised.
    pub const EXT1_ECX: u32 = LAHF_LM | ABM | PREFETCHW;
    /// Leaf 0x8000_0001 EDX: SYSCALL/SYSRET.
    pub const SYSCALL: u32 = 1 << 11;
    /// Leaf 0x8000_0001 EDX: no-execute pages.
    pub const NX: u32 = 1 << 20;
    /// Leaf 0x8000_0001 EDX: RDTSCP.
    pub const RDTSCP: u32 = 1 << 27;
    /// Leaf 0x8000_0001 EDX: long mode.
    pub const LM: u32 = 1 << 29;
    /// Leaf 0x8000_0001 EDX as advertised.
    pub const EXT1_EDX: u32 = SYSCALL | NX | RDTSCP | LM;

    /// Linux x86 AT_HWCAP: leaf 1 EDX.
    pub const HWCAP: u64 = LEAF1_EDX as u64;
    /// Linux x86 AT_HWCAP2: bit 0 ring-3 MONITOR/MWAIT, bit 1 FSGSBASE; neither.
    pub const HWCAP2: u64 = 0;
}

/// Vendor string (leaf 0 EBX, EDX, ECX).
pub const VENDOR: &[u8; 12] = b"GenuineIntel";
/// Brand string (leaves 0x8000_0002..=0x8000_0004), NUL-padded.
pub const BRAND: &[u8; 48] = b"blockscope x86-64 emulated CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
/// Highest basic leaf.
pub const MAX_BASIC: u32 = 0xb;
/// Highest extended leaf.
pub const MAX_EXT: u32 = 0x8000_0008;
/// Family 6, model 0x2C, stepping 2 (leaf 1 EAX layout: ext. model in bits 16..20).
pub const SIGNATURE: u32 = 0x0002_06c2;

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// One deterministic cache level for leaf 4: type (1 data, 2 instruction, 3 unified),
/// level, ways, sets; 64-byte lines, one partition, shared by one logical CPU.
fn cache(ty: u32, level: u32, ways: u32, sets: u32) -> [u32; 4] {
    let eax = ty | level << 5 | 1 << 8; // self-initialising; sharing fields 0 (= 1 CPU)
    let ebx = (ways - 1) << 22 | 63; // ways-1, partitions-1 = 0, line size-1
    [eax, ebx, sets - 1, 0]
}

/// CPUID for `leaf` (EAX) and `subleaf` (ECX): `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let in_basic = leaf <= MAX_BASIC;
    let in_ext = (0x8000_0000..=MAX_EXT).contains(&leaf);
    if !in_basic && !in_ext {
        return cpuid(MAX_BASIC, subleaf);
    }
    match leaf {
        // Highest basic leaf and vendor.
        0 => [MAX_BASIC, le32(&VENDOR[0..4]), le32(&VENDOR[8..12]), le32(&VENDOR[4..8])],
        // Signature; EBX: CLFLUSH line 8 qwords, 1 logical CPU, APIC ID 0; features.
        1 => [SIGNATURE, 1 << 16 | 8 << 8, features::LEAF1_ECX, features::LEAF1_EDX],
        // Cache descriptors: one iteration, descriptor 0xFF = "see leaf 4".
        2 => [0x0000_ff01, 0, 0, 0],
        // Deterministic cache parameters, one subleaf per cache, then type 0 (no more).
        4 => match subleaf {
            0 => cache(1, 1, 8, 64),
            1 => cache(2, 1, 8, 64),
            2 => cache(3, 2, 8, 512),
            3 => cache(3, 3, 16, 8192),
            _ => [0; 4],
        },
        // Structured extended features: subleaf 0 only (max subleaf 0).
        7 => match subleaf {
            0 => [0, features::LEAF7_EBX, features::LEAF7_ECX, 0],
            _ => [0; 4],
        },
        // x2APIC topology: SMT level with 1 thread, core level with 1 core, then invalid.
        0xb => match subleaf {
            0 => [0, 1, 1 << 8, 0],
            1 => [0, 1, 2 << 8 | 1, 0],
            n => [0, 0, n & 0xff, 0],
        },
        // Leaf 3 (serial number), 5 (MONITOR), 6 (power), 8, 9, 0xA (perfmon): none.
        3 | 5 | 6 | 8 | 9 | 0xa => [0; 4],
        0x8000_0000 => [MAX_EXT, 0, 0, 0],
        0x8000_0001 => [0, 0, features::EXT1_ECX, features::EXT1_EDX],
        0x8000_0002..=0x8000_0004 => {
            let o = ((leaf - 0x8000_0002) * 16) as usize;
            let b = &BRAND[o..o + 16];
            [le32(&b[0..4]), le32(&b[4..8]), le32(&b[8..12]), le32(&b[12..16])]
        }
        // L2 as AMD-style leaf (Intel fills ECX): 256 KiB, 8-way (code 6), 64-byte lines.
        0x8000_0006 => [0, 0, 256 << 16 | 6 << 12 | 64, 0],
        // Address sizes: 40 physical, 48 linear bits.
        0x8000_0008 => [48 << 8 | 40, 0, 0, 0],
        // 0x8000_0005 (AMD L1), 0x8000_0007 (power, no invariant-TSC claim): none.
        _ => [0; 4],
    }
}
