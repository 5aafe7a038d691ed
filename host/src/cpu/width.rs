//! Operand widths of integer operations and memory accesses.

/// Operand width of an integer op or memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Width {
    /// 8 bits.
    W8 = 0,
    /// 16 bits.
    W16 = 1,
    /// 32 bits.
    W32 = 2,
    /// 64 bits.
    W64 = 3,
}

impl Width {
    /// Width from a byte count (1, 2, 4, 8).
    pub fn from_bytes(n: usize) -> Width {
        match n {
            1 => Width::W8,
            2 => Width::W16,
            4 => Width::W32,
            8 => Width::W64,
            _ => panic!("no integer width of {n} bytes"),
        }
    }
    /// Size in bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        8 << self as u32
    }
    /// Size in bytes.
    #[inline]
    pub const fn bytes(self) -> usize {
        1 << self as usize
    }
    /// All-ones mask of this width.
    #[inline]
    pub const fn mask(self) -> u64 {
        u64::MAX >> (64 - self.bits())
    }
    /// The sign bit of this width.
    #[inline]
    pub const fn sign_bit(self) -> u64 {
        1 << (self.bits() - 1)
    }
    /// Sign-extend the low bits of `v` to 64 bits.
    #[inline]
    pub const fn sext(self, v: u64) -> u64 {
        let sh = 64 - self.bits();
        (((v << sh) as i64) >> sh) as u64
    }
    /// Suffix used by the printer (`i8`, `i16`, `i32`, `i64`).
    pub const fn suffix(self) -> &'static str {
        match self {
            Width::W8 => "i8",
            Width::W16 => "i16",
            Width::W32 => "i32",
            Width::W64 => "i64",
        }
    }
}
