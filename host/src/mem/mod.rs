//! Guest memory models behind one interface used by both backends and by helpers.
//!
//! - `Direct` (user mode): guest linear addresses are host addresses in this process, as
//!   in `qemu-x86_64` with a zero guest base. Every access goes through a tiny assembly
//!   accessor; a host SIGSEGV/SIGBUS inside an accessor is turned into a returned status
//!   and then into a guest `Fault`. Pages that hold translated code are kept
//!   write-protected on the host so a guest store to them is seen (self-modifying code).
//! - `SoftMmu` (system mode, later): page walk, TLB and MMIO dispatch.

mod direct;

pub use direct::{
    host_tsc, install_fault_handler, page_map, set_foreign_fault_hook, Direct, DirectAccessors,
    DirectShared, ForeignFaultHook, Prot, PF_BUS,
};

use crate::cpu::{Fault, Width};

/// Atomic read-modify-write operations on guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmwOp {
    /// Exchange.
    Xchg,
    /// Add.
    Add,
    /// And.
    And,
    /// Or.
    Or,
    /// Xor.
    Xor,
}

/// The interface every guest memory model provides.
pub trait GuestMemory {
    /// Load `w` bytes at `addr`, zero-extended.
    fn load(&mut self, addr: u64, w: Width) -> Result<u64, Fault>;
    /// Store the low `w` bytes of `val` at `addr`.
    fn store(&mut self, addr: u64, w: Width, val: u64) -> Result<(), Fault>;
    /// Atomic read-modify-write; returns the old value.
    fn atomic_rmw(&mut self, op: RmwOp, addr: u64, w: Width, val: u64) -> Result<u64, Fault>;
    /// Atomic compare-and-exchange; returns the old value (success iff it equals `expected`).
    fn atomic_cas(&mut self, addr: u64, w: Width, expected: u64, new: u64) -> Result<u64, Fault>;
    /// Atomic 16-byte compare-and-exchange (CMPXCHG16B); returns the old value.
    fn atomic_cas128(&mut self, addr: u64, expected: u128, new: u128) -> Result<u128, Fault>;
    /// Read instruction bytes for decoding. Fills as much of `buf` as is executable and
    /// returns the count; a fault only if not even the first byte can be fetched.
    fn fetch_code(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, Fault>;
    /// Note that translated code now covers `[start, end)`: later stores there must be seen.
    fn watch_code(&mut self, start: u64, end: u64);
    /// Whether a store since the last `take_code_writes` hit a watched page.
    fn code_written(&self) -> bool;
    /// Page addresses written by stores that hit watched pages, cleared by the call.
    fn take_code_writes(&mut self) -> Vec<u64>;

    /// Read bytes (helpers: FXSAVE area, string ops). Default: byte by byte.
    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.load(addr.wrapping_add(i as u64), Width::W8)? as u8;
        }
        Ok(())
    }
    /// Write bytes. Default: byte by byte.
    fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        for (i, b) in buf.iter().enumerate() {
            self.store(addr.wrapping_add(i as u64), Width::W8, *b as u64)?;
        }
        Ok(())
    }
    /// The raw accessors compiled code may call directly, when guest addresses are host
    /// addresses behind `mem::direct`'s fault-recovering accessors (user mode). A model
    /// returning `Some` must behave exactly like those accessors for every load and store
    /// whose accessor reports success. Default: `None` (go through this trait).
    fn direct_accessors(&self) -> Option<DirectAccessors> {
        None
    }
}

/// A `&mut` to a memory model is a memory model (vCPUs borrowing one, tests).
impl<M: GuestMemory + ?Sized> GuestMemory for &mut M {
    fn load(&mut self, addr: u64, w: Width) -> Result<u64, Fault> {
        (**self).load(addr, w)
    }
    fn store(&mut self, addr: u64, w: Width, val: u64) -> Result<(), Fault> {
        (**self).store(addr, w, val)
    }
    fn atomic_rmw(&mut self, op: RmwOp, addr: u64, w: Width, val: u64) -> Result<u64, Fault> {
        (**self).atomic_rmw(op, addr, w, val)
    }
    fn atomic_cas(&mut self, addr: u64, w: Width, e: u64, n: u64) -> Result<u64, Fault> {
        (**self).atomic_cas(addr, w, e, n)
    }
    fn atomic_cas128(&mut self, addr: u64, e: u128, n: u128) -> Result<u128, Fault> {
        (**self).atomic_cas128(addr, e, n)
    }
    fn fetch_code(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, Fault> {
        (**self).fetch_code(addr, buf)
    }
    fn watch_code(&mut self, start: u64, end: u64) {
        (**self).watch_code(start, end)
    }
    fn code_written(&self) -> bool {
        (**self).code_written()
    }
    fn take_code_writes(&mut self) -> Vec<u64> {
        (**self).take_code_writes()
    }
    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        (**self).read_bytes(addr, buf)
    }
    fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        (**self).write_bytes(addr, buf)
    }
    fn direct_accessors(&self) -> Option<DirectAccessors> {
        (**self).direct_accessors()
    }
}

/// Host page size.
pub const PAGE_SIZE: u64 = 4096;

/// Round down to a page boundary.
pub const fn page_floor(a: u64) -> u64 {
    a & !(PAGE_SIZE - 1)
}

/// Round up to a page boundary.
pub const fn page_ceil(a: u64) -> u64 {
    a.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}
