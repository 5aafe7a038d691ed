//! `Direct`: user-mode guest memory, where a guest linear address is the same host address.
//!
//! Safety contract. Every guest access goes through the assembly accessors below (`bs_*`),
//! which touch only the addressed bytes, use no stack, and return `(value, status)` in
//! rax:rdx. The process-wide SIGSEGV/SIGBUS handler installed by `install_fault_handler`
//! recognises a fault whose host pc lies inside the accessor text, rewrites rax (fault
//! address), rdx (status) and rip (a landing pad that returns), so the accessor "returns" the
//! fault to its caller. Guest memory is never turned into Rust references: the guest may
//! change it at any time from another thread, so only these raw accessors touch it.
//!
//! Translated-code pages that the guest may write are write-protected on the host; a write
//! fault on such a page unprotects it, records it for invalidation, and the store is retried.
#![allow(unsafe_code)]

use super::{page_ceil, page_floor, GuestMemory, RmwOp, PAGE_SIZE};
use crate::cpu::{pf, Fault, Width};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Guest page protection bits (the same values as `PROT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Prot(pub u32);

impl Prot {
    /// Readable.
    pub const READ: u32 = 1;
    /// Writable.
    pub const WRITE: u32 = 2;
    /// Executable.
    pub const EXEC: u32 = 4;
    /// Whether all bits in `m` are set.
    pub fn has(self, m: u32) -> bool {
        self.0 & m == m
    }
}

#[repr(C)]
struct Ret {
    val: u64,
    status: u64,
}

std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl bs_acc_start",
    "bs_acc_start:",
    ".globl bs_ld8",
    "bs_ld8:",
    "    movzx eax, byte ptr [rdi]",
    "    xor edx, edx",
    "    ret",
    ".globl bs_st8",
    "bs_st8:",
    "    mov byte ptr [rdi], sil",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_cas8",
    "bs_cas8:",
    "    mov rax, rsi",
    "    lock cmpxchg byte ptr [rdi], dl",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xchg8",
    "bs_xchg8:",
    "    mov rax, rsi",
    "    xchg byte ptr [rdi], al",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xadd8",
    "bs_xadd8:",
    "    mov rax, rsi",
    "    lock xadd byte ptr [rdi], al",
    "    xor edx, edx",
    "    ret",
    ".globl bs_and8",
    "bs_and8:",
    "    movzx eax, byte ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    and rcx, rsi",
    "    lock cmpxchg byte ptr [rdi], cl",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_or8",
    "bs_or8:",
    "    movzx eax, byte ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    or rcx, rsi",
    "    lock cmpxchg byte ptr [rdi], cl",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xor8",
    "bs_xor8:",
    "    movzx eax, byte ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    xor rcx, rsi",
    "    lock cmpxchg byte ptr [rdi], cl",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_ld16",
    "bs_ld16:",
    "    movzx eax, word ptr [rdi]",
    "    xor edx, edx",
    "    ret",
    ".globl bs_st16",
    "bs_st16:",
    "    mov word ptr [rdi], si",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_cas16",
    "bs_cas16:",
    "    mov rax, rsi",
    "    lock cmpxchg word ptr [rdi], dx",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xchg16",
    "bs_xchg16:",
    "    mov rax, rsi",
    "    xchg word ptr [rdi], ax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xadd16",
    "bs_xadd16:",
    "    mov rax, rsi",
    "    lock xadd word ptr [rdi], ax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_and16",
    "bs_and16:",
    "    movzx eax, word ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    and rcx, rsi",
    "    lock cmpxchg word ptr [rdi], cx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_or16",
    "bs_or16:",
    "    movzx eax, word ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    or rcx, rsi",
    "    lock cmpxchg word ptr [rdi], cx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xor16",
    "bs_xor16:",
    "    movzx eax, word ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    xor rcx, rsi",
    "    lock cmpxchg word ptr [rdi], cx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_ld32",
    "bs_ld32:",
    "    mov eax, dword ptr [rdi]",
    "    xor edx, edx",
    "    ret",
    ".globl bs_st32",
    "bs_st32:",
    "    mov dword ptr [rdi], esi",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_cas32",
    "bs_cas32:",
    "    mov rax, rsi",
    "    lock cmpxchg dword ptr [rdi], edx",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xchg32",
    "bs_xchg32:",
    "    mov rax, rsi",
    "    xchg dword ptr [rdi], eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xadd32",
    "bs_xadd32:",
    "    mov rax, rsi",
    "    lock xadd dword ptr [rdi], eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_and32",
    "bs_and32:",
    "    mov eax, dword ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    and rcx, rsi",
    "    lock cmpxchg dword ptr [rdi], ecx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_or32",
    "bs_or32:",
    "    mov eax, dword ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    or rcx, rsi",
    "    lock cmpxchg dword ptr [rdi], ecx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xor32",
    "bs_xor32:",
    "    mov eax, dword ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    xor rcx, rsi",
    "    lock cmpxchg dword ptr [rdi], ecx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_ld64",
    "bs_ld64:",
    "    mov rax, qword ptr [rdi]",
    "    xor edx, edx",
    "    ret",
    ".globl bs_st64",
    "bs_st64:",
    "    mov qword ptr [rdi], rsi",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_cas64",
    "bs_cas64:",
    "    mov rax, rsi",
    "    lock cmpxchg qword ptr [rdi], rdx",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xchg64",
    "bs_xchg64:",
    "    mov rax, rsi",
    "    xchg qword ptr [rdi], rax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xadd64",
    "bs_xadd64:",
    "    mov rax, rsi",
    "    lock xadd qword ptr [rdi], rax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_and64",
    "bs_and64:",
    "    mov rax, qword ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    and rcx, rsi",
    "    lock cmpxchg qword ptr [rdi], rcx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_or64",
    "bs_or64:",
    "    mov rax, qword ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    or rcx, rsi",
    "    lock cmpxchg qword ptr [rdi], rcx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    ".globl bs_xor64",
    "bs_xor64:",
    "    mov rax, qword ptr [rdi]",
    "    2:",
    "    mov rcx, rax",
    "    xor rcx, rsi",
    "    lock cmpxchg qword ptr [rdi], rcx",
    "    jne 2b",
    "    xor edx, edx",
    "    ret",
    // Bulk copy for `read_bytes`/`write_bytes`: rdi = destination, rsi = source,
    // rdx = length. One side is a host buffer, the other guest memory.
    ".globl bs_copy",
    "bs_copy:",
    "    mov rcx, rdx",
    "    rep movsb",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_cas128",
    "bs_cas128:",
    "    mov r11, rbx",
    "    mov r9, rsi",
    "    mov rax, qword ptr [r9]",
    "    mov rdx, qword ptr [r9 + 8]",
    "    mov rbx, qword ptr [r9 + 16]",
    "    mov rcx, qword ptr [r9 + 24]",
    "    lock cmpxchg16b xmmword ptr [rdi]",
    "    mov qword ptr [r9], rax",
    "    mov qword ptr [r9 + 8], rdx",
    "    mov rbx, r11",
    "    xor eax, eax",
    "    xor edx, edx",
    "    ret",
    ".globl bs_cas128_end",
    "bs_cas128_end:",
    "    mov rbx, r11",
    "    ret",
    ".globl bs_acc_landing",
    "bs_acc_landing:",
    "    ret",
    ".globl bs_acc_end",
    "bs_acc_end:",
);

extern "sysv64" {
    fn bs_ld8(a: u64) -> Ret;
    fn bs_ld16(a: u64) -> Ret;
    fn bs_ld32(a: u64) -> Ret;
    fn bs_ld64(a: u64) -> Ret;
    fn bs_st8(a: u64, v: u64) -> Ret;
    fn bs_st16(a: u64, v: u64) -> Ret;
    fn bs_st32(a: u64, v: u64) -> Ret;
    fn bs_st64(a: u64, v: u64) -> Ret;
    fn bs_cas8(a: u64, e: u64, n: u64) -> Ret;
    fn bs_cas16(a: u64, e: u64, n: u64) -> Ret;
    fn bs_cas32(a: u64, e: u64, n: u64) -> Ret;
    fn bs_cas64(a: u64, e: u64, n: u64) -> Ret;
    fn bs_xchg8(a: u64, v: u64) -> Ret;
    fn bs_xchg16(a: u64, v: u64) -> Ret;
    fn bs_xchg32(a: u64, v: u64) -> Ret;
    fn bs_xchg64(a: u64, v: u64) -> Ret;
    fn bs_xadd8(a: u64, v: u64) -> Ret;
    fn bs_xadd16(a: u64, v: u64) -> Ret;
    fn bs_xadd32(a: u64, v: u64) -> Ret;
    fn bs_xadd64(a: u64, v: u64) -> Ret;
    fn bs_and8(a: u64, v: u64) -> Ret;
    fn bs_and16(a: u64, v: u64) -> Ret;
    fn bs_and32(a: u64, v: u64) -> Ret;
    fn bs_and64(a: u64, v: u64) -> Ret;
    fn bs_or8(a: u64, v: u64) -> Ret;
    fn bs_or16(a: u64, v: u64) -> Ret;
    fn bs_or32(a: u64, v: u64) -> Ret;
    fn bs_or64(a: u64, v: u64) -> Ret;
    fn bs_xor8(a: u64, v: u64) -> Ret;
    fn bs_xor16(a: u64, v: u64) -> Ret;
    fn bs_xor32(a: u64, v: u64) -> Ret;
    fn bs_xor64(a: u64, v: u64) -> Ret;
    fn bs_cas128(a: u64, io: *mut [u64; 4]) -> Ret;
    fn bs_copy(dst: u64, src: u64, len: u64) -> Ret;
    static bs_acc_start: u8;
    static bs_acc_end: u8;
    static bs_acc_landing: u8;
    static bs_cas128_end: u8;
}

/// The raw load and store accessors' addresses by width (index = `Width as usize`), for
/// compiled code that calls them directly (the JIT's user-mode fast path). Each follows
/// the sysv64 ABI: loads are `fn(addr) -> (value, status)`, stores `fn(addr, value) ->
/// (0, status)`, both returned in rax:rdx. Status 0 means the access happened; any other
/// status means it did not, and it must be redone through `GuestMemory` to get its exact
/// fault or code-write handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectAccessors {
    /// `bs_ld8`, `bs_ld16`, `bs_ld32`, `bs_ld64`.
    pub load: [usize; 4],
    /// `bs_st8`, `bs_st16`, `bs_st32`, `bs_st64`.
    pub store: [usize; 4],
    /// Base of the page map (`page_map` below), or 0 if it could not be reserved.
    pub page_map: usize,
}

impl DirectAccessors {
    /// The accessors of this process.
    pub fn get() -> DirectAccessors {
        let f = |p: *const ()| p as usize;
        DirectAccessors {
            load: [
                f(bs_ld8 as *const ()),
                f(bs_ld16 as *const ()),
                f(bs_ld32 as *const ()),
                f(bs_ld64 as *const ()),
            ],
            store: [
                f(bs_st8 as *const ()),
                f(bs_st16 as *const ()),
                f(bs_st32 as *const ()),
                f(bs_st64 as *const ()),
            ],
            page_map: page_map::base(),
        }
    }
}

/// The page map: one byte per 4 KiB page of the user address space (below 2^47), saying
/// which plain accesses cannot fault on the host. Compiled code reads it to access guest
/// memory inline (`mov` with no call) and calls the accessors only when the byte says no.
///
/// It is one process-wide table because the host address space is one: `DirectShared`
/// sets and clears bytes for the pages it records, always under its lock, clearing a bit
/// *before* the host mapping loses the permission and setting it *after* the mapping has
/// it. The table is reserved lazily with `MAP_NORESERVE` (32 GiB of address space; pages
/// never written read as zero: "not known, take the accessor").
pub mod page_map {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::OnceLock;

    /// A load of any width cannot fault (the page is host-readable).
    pub const READ: u8 = 1;
    /// A store of any width cannot fault (host-writable: not write-protected for code).
    pub const WRITE: u8 = 2;
    /// The guest may write the page (it is write-protected only because it holds code).
    pub const GUEST_WRITE: u8 = 4;
    /// `READ` here and on the page before: a load of up to a page that *ends* here cannot
    /// fault, wherever it starts (one check for a wide access, on its last byte's page).
    pub const READ_PREV: u8 = 8;
    /// `WRITE` here and on the page before (as `READ_PREV`, for stores).
    pub const WRITE_PREV: u8 = 16;
    const OWN: u8 = READ | WRITE | GUEST_WRITE;
    /// Pages covered: addresses below `PAGES << 12` (the user half of the address space).
    pub const PAGES: u64 = 1 << 35;

    fn table() -> Option<usize> {
        static BASE: OnceLock<Option<usize>> = OnceLock::new();
        *BASE.get_or_init(|| {
            // SAFETY: a fresh private anonymous reservation; nothing else refers to it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    // Compiled code reads only bytes below `PAGES`: it checks the page
                    // of an access's last byte against the bound first.
                    PAGES as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            (p != libc::MAP_FAILED).then_some(p as usize)
        })
    }

    /// The table's address, or 0 when it could not be reserved (compiled code then calls
    /// the accessors for every access).
    pub fn base() -> usize {
        table().unwrap_or(0)
    }

    fn byte(page: u64) -> Option<&'static AtomicU8> {
        let idx = page >> 12;
        let base = table()?;
        if idx >= PAGES {
            return None;
        }
        // SAFETY: `idx < PAGES`, so the byte lies inside the reservation, which is never
        // unmapped; AtomicU8 has the size and alignment of u8, and every access to the
        // table from Rust is atomic (compiled code only reads it).
        Some(unsafe { &*((base + idx as usize) as *const AtomicU8) })
    }

    /// The flags of the page holding `addr` (all of them, `READ_PREV`/`WRITE_PREV` too).
    pub fn get(addr: u64) -> u8 {
        byte(addr & !0xfff).map_or(0, |b| b.load(Ordering::Acquire))
    }

    /// The `*_PREV` bits of a page with own flags `here` after one with `prev`.
    fn prev_bits(here: u8, prev: u8) -> u8 {
        let both = here & prev;
        (if both & READ != 0 { READ_PREV } else { 0 })
            | (if both & WRITE != 0 { WRITE_PREV } else { 0 })
    }

    /// Set the flags (`READ`, `WRITE`, `GUEST_WRITE`) of `page` (page-aligned), and the
    /// `*_PREV` bits of it and of the page after. Callers serialise (one lock). The page
    /// after is updated first: a wide access ending there must not pass its one check
    /// once this page has lost a permission (compiled code reads the table unlocked).
    pub(super) fn set(page: u64, flags: u8) {
        let Some(b) = byte(page) else { return };
        let own = flags & OWN;
        if let Some(next) = byte(page + 4096) {
            let n = next.load(Ordering::Relaxed);
            next.store((n & OWN) | prev_bits(n, own), Ordering::Release);
        }
        let prev = page.checked_sub(4096).and_then(byte).map_or(0, |p| p.load(Ordering::Relaxed));
        b.store(own | prev_bits(own, prev), Ordering::Release);
    }
}

/// The page-map flags of a page with guest protection `prot`; `code` when the page is
/// write-protected by us because it holds translated code.
fn page_flags(prot: Prot, code: bool) -> u8 {
    let mut f = 0;
    if prot.0 & (Prot::READ | Prot::WRITE | Prot::EXEC) != 0 {
        f |= page_map::READ;
    }
    if prot.has(Prot::WRITE) {
        f |= page_map::GUEST_WRITE;
        if !code {
            f |= page_map::WRITE;
        }
    }
    f
}

/// Status bit: the fault was a SIGBUS (e.g. past the end of a mapped file).
const ST_BUS: u64 = 1 << 40;
/// Status bits 32..40: the x86 trap number; bits 0..32: the page-fault error code.
const ST_TRAP_SHIFT: u32 = 32;

/// Raw accessors by width. Each is a plain call into the accessor text; the only unsafety
/// is the call to an `extern` function, whose contract is documented in the module header.
mod raw {
    use super::*;
    pub(super) fn load(a: u64, w: Width) -> Ret {
        // SAFETY: accessors may be called with any address; faults are recovered (module
        // header) and the functions follow the sysv64 ABI.
        unsafe {
            match w {
                Width::W8 => bs_ld8(a),
                Width::W16 => bs_ld16(a),
                Width::W32 => bs_ld32(a),
                Width::W64 => bs_ld64(a),
            }
        }
    }
    pub(super) fn store(a: u64, w: Width, v: u64) -> Ret {
        // SAFETY: as in `load`; a store through an accessor can only change guest memory.
        unsafe {
            match w {
                Width::W8 => bs_st8(a, v),
                Width::W16 => bs_st16(a, v),
                Width::W32 => bs_st32(a, v),
                Width::W64 => bs_st64(a, v),
            }
        }
    }
    pub(super) fn cas(a: u64, w: Width, e: u64, n: u64) -> Ret {
        // SAFETY: as in `store`.
        unsafe {
            match w {
                Width::W8 => bs_cas8(a, e, n),
                Width::W16 => bs_cas16(a, e, n),
                Width::W32 => bs_cas32(a, e, n),
                Width::W64 => bs_cas64(a, e, n),
            }
        }
    }
    pub(super) fn rmw(op: RmwOp, a: u64, w: Width, v: u64) -> Ret {
        type F = unsafe extern "sysv64" fn(u64, u64) -> Ret;
        let table: [[F; 4]; 5] = [
            [bs_xchg8, bs_xchg16, bs_xchg32, bs_xchg64],
            [bs_xadd8, bs_xadd16, bs_xadd32, bs_xadd64],
            [bs_and8, bs_and16, bs_and32, bs_and64],
            [bs_or8, bs_or16, bs_or32, bs_or64],
            [bs_xor8, bs_xor16, bs_xor32, bs_xor64],
        ];
        let f = table[op as usize][w as usize];
        // SAFETY: as in `store`.
        unsafe { f(a, v) }
    }
    /// Copy `len` bytes; one of `dst`/`src` is guest memory, the other a host buffer the
    /// caller holds for the duration of the call.
    pub(super) fn copy(dst: u64, src: u64, len: u64) -> Ret {
        // SAFETY: as in `store`; the host side is a live buffer of `len` bytes owned by
        // the caller (a `&[u8]`/`&mut [u8]`), so only guest memory can fault.
        unsafe { bs_copy(dst, src, len) }
    }
    pub(super) fn cas128(a: u64, io: &mut [u64; 4]) -> Ret {
        // SAFETY: as in `store`; `io` is a valid exclusive host buffer for the call.
        unsafe { bs_cas128(a, io) }
    }
}

fn status_to_fault(r: &Ret, write: bool) -> Fault {
    // Bit 39 (the top of the trap field) is the handler's "faulted" marker; vectors < 32.
    let trap = (r.status >> ST_TRAP_SHIFT) & 0x1f;
    if trap == 13 && r.status & ST_BUS == 0 {
        return Fault::GeneralProtection(0);
    }
    let mut code = (r.status as u32) & (pf::PRESENT | pf::WRITE) | pf::USER;
    if write {
        code |= pf::WRITE;
    }
    if r.status & ST_BUS != 0 {
        // A bus error is reported to user mode as SIGBUS; mark it with a reserved bit.
        code |= 1 << 15;
    }
    Fault::PageFault { addr: r.val, code }
}

/// Page-fault error-code bit blockscope uses to mark a host SIGBUS (shows up as guest SIGBUS).
pub const PF_BUS: u32 = 1 << 15;

/// State shared by every vCPU's `Direct` handle: the guest's page protections and the set
/// of pages holding translated code.
#[derive(Default)]
pub struct DirectShared {
    inner: Mutex<Maps>,
}

#[derive(Default)]
struct Maps {
    /// Guest protection per page.
    prot: BTreeMap<u64, Prot>,
    /// Pages with translated code, and whether they are host write-protected by us.
    code: BTreeMap<u64, bool>,
}

impl DirectShared {
    /// A new, empty address-space description.
    pub fn new() -> Arc<DirectShared> {
        install_fault_handler();
        Arc::new(DirectShared::default())
    }
    /// Record that `[addr, addr+len)` is mapped with `prot` (after the host mapping exists).
    pub fn map(&self, addr: u64, len: u64, prot: Prot) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = page_floor(addr);
        while p < page_ceil(addr + len) {
            m.prot.insert(p, prot);
            let code = m.code.contains_key(&p);
            if code && prot.has(Prot::WRITE) {
                protect_host(p, Prot(prot.0 & !Prot::WRITE));
                m.code.insert(p, true);
            }
            page_map::set(p, page_flags(prot, code));
            p += PAGE_SIZE;
        }
    }

    /// Compiled code must stop accessing `[lo, hi)` inline: call before the host
    /// mapping loses a permission (munmap, mprotect), so no thread passes the page-map
    /// check and then faults outside the accessors.
    pub fn revoke_fast(&self, lo: u64, hi: u64) {
        let _m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = page_floor(lo);
        while p < page_ceil(hi) {
            page_map::set(p, 0);
            p += PAGE_SIZE;
        }
    }
    /// Record that `[addr, addr+len)` is unmapped. Returns the pages that held code.
    pub fn unmap(&self, addr: u64, len: u64) -> Vec<u64> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = (page_floor(addr), page_ceil(addr + len));
        let keys: Vec<u64> = m.prot.range(lo..hi).map(|(k, _)| *k).collect();
        for k in keys {
            m.prot.remove(&k);
            page_map::set(k, 0);
        }
        let code: Vec<u64> = m.code.range(lo..hi).map(|(k, _)| *k).collect();
        for k in &code {
            m.code.remove(k);
        }
        code
    }
    /// Guest protection of the page holding `addr`, if mapped.
    pub fn prot_of(&self, addr: u64) -> Option<Prot> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.prot.get(&page_floor(addr)).copied()
    }
    /// Forget that a page holds code (its translations were invalidated).
    pub fn forget_code(&self, page: u64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prot_by_us) = m.code.remove(&page) {
            let p = m.prot.get(&page).copied().unwrap_or_default();
            if prot_by_us {
                protect_host(page, p);
            }
            if m.prot.contains_key(&page) {
                page_map::set(page, page_flags(p, false));
            }
        }
    }
    /// Map anonymous guest memory with the host `mmap` and record it. `addr` is a hint
    /// (or the exact address with `fixed`). Returns the address or a negative errno.
    pub fn mmap_anon(&self, addr: u64, len: u64, prot: Prot, fixed: bool) -> Result<u64, i32> {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if fixed {
            flags |= libc::MAP_FIXED;
        }
        // SAFETY: creates a new anonymous mapping; with MAP_FIXED it may replace guest
        // mappings, which only the guest's own accessors (module header) ever touch.
        let p = unsafe {
            libc::mmap(addr as *mut libc::c_void, len as usize, prot.0 as i32, flags, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(-std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM));
        }
        self.map(p as u64, len, prot);
        Ok(p as u64)
    }

    /// Run `f` (user mode: `fork`) holding the address-space lock, so a forked child
    /// never inherits it locked by another thread.
    pub fn quiesced<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }
    /// The guest-mapped parts of `[lo, hi)` as `(start, end, prot)` runs of equal
    /// protection, in address order.
    pub fn mapped_ranges(&self, lo: u64, hi: u64) -> Vec<(u64, u64, Prot)> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(u64, u64, Prot)> = Vec::new();
        for (&p, &prot) in m.prot.range(page_floor(lo)..page_ceil(hi)) {
            match out.last_mut() {
                Some(last) if last.1 == p && last.2 == prot => last.1 = p + PAGE_SIZE,
                _ => out.push((p, p + PAGE_SIZE, prot)),
            }
        }
        out
    }
    /// Pages in `[lo, hi)` that hold translated code.
    pub fn code_pages(&self, lo: u64, hi: u64) -> Vec<u64> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.code.range(page_floor(lo)..page_ceil(hi)).map(|(k, _)| *k).collect()
    }

    /// Whether the page holding `addr` is mapped in the guest.
    pub fn is_mapped(&self, addr: u64) -> bool {
        self.prot_of(addr).is_some()
    }
    fn watch(&self, start: u64, end: u64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = page_floor(start);
        while p < end {
            if !m.code.contains_key(&p) {
                let prot = m.prot.get(&p).copied().unwrap_or_default();
                let by_us = prot.has(Prot::WRITE);
                if m.prot.contains_key(&p) {
                    // Before the protection: no inline store may start after this.
                    page_map::set(p, page_flags(prot, true));
                }
                if by_us {
                    protect_host(p, Prot(prot.0 & !Prot::WRITE));
                }
                m.code.insert(p, by_us);
            }
            p += PAGE_SIZE;
        }
    }
    /// The fault handler made `page` writable (`async_code_write`): record it like a
    /// write fault taken by an accessor.
    fn unprotected_by_handler(&self, page: u64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if m.code.remove(&page).is_some() {
            let p = m.prot.get(&page).copied().unwrap_or_default();
            protect_host(page, p);
            page_map::set(page, page_flags(p, false));
        }
    }

    /// A write fault at `addr`: if the page holds code we protected, unprotect it and
    /// return true (the store should be retried and the page's code invalidated).
    fn take_write_fault(&self, addr: u64) -> bool {
        let page = page_floor(addr);
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if m.code.get(&page) == Some(&true) {
            let p = m.prot.get(&page).copied().unwrap_or_default();
            protect_host(page, p);
            m.code.remove(&page);
            page_map::set(page, page_flags(p, false));
            true
        } else {
            false
        }
    }
}

fn protect_host(page: u64, prot: Prot) {
    // SAFETY: changes the protection of one guest page; guest pages are never aliased by
    // Rust references (module header), so no Rust invariant depends on them.
    let r = unsafe { libc::mprotect(page as *mut libc::c_void, PAGE_SIZE as usize, prot.0 as i32) };
    debug_assert!(r == 0, "mprotect({page:#x}) failed");
}

impl Drop for DirectShared {
    /// The pages recorded here are no longer known to be accessible.
    fn drop(&mut self) {
        let m = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        for &p in m.prot.keys() {
            page_map::set(p, 0);
        }
    }
}

/// One vCPU's handle on user-mode guest memory.
pub struct Direct {
    shared: Arc<DirectShared>,
    code_writes: Vec<u64>,
}

impl Direct {
    /// A handle on `shared`.
    pub fn new(shared: Arc<DirectShared>) -> Direct {
        Direct { shared, code_writes: Vec::new() }
    }
    /// The shared address-space description.
    pub fn shared(&self) -> &Arc<DirectShared> {
        &self.shared
    }
    fn retry_write<T>(
        &mut self,
        r: &Ret,
        mut again: impl FnMut() -> Ret,
        ok: impl Fn(&Ret) -> T,
    ) -> Result<T, Fault> {
        // Any write fault may hit a page we protected: a never-touched page faults as
        // not-present (error code 6) even though only our protection refuses the write.
        let write_prot = r.status & ST_BUS == 0;
        if write_prot && self.shared.take_write_fault(r.val) {
            self.code_writes.push(page_floor(r.val));
            let r2 = again();
            if r2.status == 0 {
                return Ok(ok(&r2));
            }
            return self.retry_write(&r2, again, ok);
        }
        Err(status_to_fault(r, true))
    }
}

impl GuestMemory for Direct {
    #[inline]
    fn load(&mut self, addr: u64, w: Width) -> Result<u64, Fault> {
        let r = raw::load(addr, w);
        if r.status == 0 {
            Ok(r.val)
        } else {
            Err(status_to_fault(&r, false))
        }
    }
    #[inline]
    fn store(&mut self, addr: u64, w: Width, val: u64) -> Result<(), Fault> {
        let r = raw::store(addr, w, val);
        if r.status == 0 {
            return Ok(());
        }
        self.retry_write(&r, || raw::store(addr, w, val), |_| ())
    }
    fn atomic_rmw(&mut self, op: RmwOp, addr: u64, w: Width, val: u64) -> Result<u64, Fault> {
        let r = raw::rmw(op, addr, w, val);
        if r.status == 0 {
            return Ok(r.val & w.mask());
        }
        self.retry_write(&r, || raw::rmw(op, addr, w, val), |r| r.val & w.mask())
    }
    fn atomic_cas(&mut self, addr: u64, w: Width, expected: u64, new: u64) -> Result<u64, Fault> {
        let r = raw::cas(addr, w, expected, new);
        if r.status == 0 {
            return Ok(r.val & w.mask());
        }
        self.retry_write(&r, || raw::cas(addr, w, expected, new), |r| r.val & w.mask())
    }
    fn atomic_cas128(&mut self, addr: u64, expected: u128, new: u128) -> Result<u128, Fault> {
        if !addr.is_multiple_of(16) {
            return Err(Fault::GeneralProtection(0));
        }
        let init = [expected as u64, (expected >> 64) as u64, new as u64, (new >> 64) as u64];
        let mut io = init;
        let r = raw::cas128(addr, &mut io);
        let get = |io: &[u64; 4]| io[0] as u128 | (io[1] as u128) << 64;
        if r.status == 0 {
            return Ok(get(&io));
        }
        let write_prot = r.status & ST_BUS == 0;
        if write_prot && self.shared.take_write_fault(r.val) {
            self.code_writes.push(page_floor(r.val));
            io = init;
            let r2 = raw::cas128(addr, &mut io);
            if r2.status == 0 {
                return Ok(get(&io));
            }
            return Err(status_to_fault(&r2, true));
        }
        Err(status_to_fault(&r, true))
    }
    /// One `rep movsb` through the fault-recovering accessor. On a fault a prefix of the
    /// bytes may have been copied.
    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let r = raw::copy(buf.as_mut_ptr() as u64, addr, buf.len() as u64);
        if r.status == 0 {
            Ok(())
        } else {
            Err(status_to_fault(&r, false))
        }
    }
    /// One `rep movsb` through the fault-recovering accessor (retried after a write to a
    /// protected code page). On a fault a prefix of the bytes may have been written.
    fn write_bytes(&mut self, addr: u64, buf: &[u8]) -> Result<(), Fault> {
        let src = buf.as_ptr() as u64;
        let len = buf.len() as u64;
        let r = raw::copy(addr, src, len);
        if r.status == 0 {
            return Ok(());
        }
        self.retry_write(&r, || raw::copy(addr, src, len), |_| ())
    }
    fn fetch_code(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, Fault> {
        let mut n = 0;
        while n < buf.len() {
            let a = addr.wrapping_add(n as u64);
            let executable = self.shared.prot_of(a).is_some_and(|p| p.has(Prot::EXEC));
            if !executable {
                break;
            }
            let page_end = (page_floor(a) + PAGE_SIZE).min(addr + buf.len() as u64);
            // Eight bytes per accessor call while they stay in the page (a fault is a
            // property of the page, so it is seen just as byte loads would see it).
            while addr + (n as u64) + 8 <= page_end {
                let r = raw::load(addr + n as u64, Width::W64);
                if r.status != 0 {
                    break;
                }
                buf[n..n + 8].copy_from_slice(&r.val.to_le_bytes());
                n += 8;
            }
            while addr + (n as u64) < page_end {
                let r = raw::load(addr + n as u64, Width::W8);
                if r.status != 0 {
                    break;
                }
                buf[n] = r.val as u8;
                n += 1;
            }
            if addr + (n as u64) < page_end {
                break;
            }
        }
        if n == 0 {
            let present = self.shared.prot_of(addr).is_some() as u32;
            return Err(Fault::PageFault { addr, code: present | pf::USER | pf::FETCH });
        }
        Ok(n)
    }
    fn watch_code(&mut self, start: u64, end: u64) {
        self.shared.watch(start, end);
    }
    fn code_written(&self) -> bool {
        !self.code_writes.is_empty() || ASYNC_PENDING.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn take_code_writes(&mut self) -> Vec<u64> {
        use std::sync::atomic::Ordering;
        if ASYNC_PENDING.swap(false, Ordering::AcqRel) {
            for e in &ASYNC_WRITES {
                let page = e.swap(0, Ordering::AcqRel);
                if page != 0 {
                    self.shared.unprotected_by_handler(page);
                    self.code_writes.push(page);
                }
            }
        }
        std::mem::take(&mut self.code_writes)
    }
    fn direct_accessors(&self) -> Option<DirectAccessors> {
        Some(DirectAccessors::get())
    }
}

/// The host's time-stamp counter. User mode passes it through to the guest's RDTSC (plus
/// `CpuState::tsc_offset`), so a guest reading the host's vDSO time data with RDTSC gets
/// consistent clocks.
pub fn host_tsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter; it touches no memory. (CR4.TSD is
    // clear for Linux user processes; if it were set the host would deliver SIGSEGV.)
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A callback for SIGSEGV/SIGBUS that did not come from an accessor but from another
/// process or thread (`kill`, `tgkill`): user mode forwards those to the guest.
pub type ForeignFaultHook = fn(sig: i32, info: *const libc::siginfo_t);

static FOREIGN_HOOK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Register the hook for signals sent by software (`si_code <= 0`).
pub fn set_foreign_fault_hook(h: ForeignFaultHook) {
    FOREIGN_HOOK.store(h as usize, std::sync::atomic::Ordering::SeqCst);
}

extern "C" fn on_fault(sig: i32, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO handler;
    // we only read and write register slots of the interrupted context.
    unsafe {
        let uc = &mut *(uctx as *mut libc::ucontext_t);
        let gregs = &mut uc.uc_mcontext.gregs;
        let rip = gregs[libc::REG_RIP as usize] as u64;
        let start = &raw const bs_acc_start as u64;
        let end = &raw const bs_acc_end as u64;
        if (start..end).contains(&rip) {
            let trap = gregs[libc::REG_TRAPNO as usize] as u64;
            let err = gregs[libc::REG_ERR as usize] as u64 & 0xffff_ffff;
            let mut st = (trap << ST_TRAP_SHIFT) | err | (1 << 39);
            if sig == libc::SIGBUS {
                st |= ST_BUS;
            }
            gregs[libc::REG_RAX as usize] = (*info).si_addr() as i64;
            gregs[libc::REG_RDX as usize] = st as i64;
            let cas128 = bs_cas128 as *const () as u64;
            let cas128_end = &raw const bs_cas128_end as u64;
            gregs[libc::REG_RIP as usize] = if (cas128..cas128_end).contains(&rip) {
                cas128_end as i64
            } else {
                &raw const bs_acc_landing as i64
            };
            return;
        }
        if sig == libc::SIGSEGV && (*info).si_code > 0 {
            let addr = (*info).si_addr() as u64;
            let write = gregs[libc::REG_ERR as usize] & 2 != 0;
            if write && async_code_write(addr) {
                // Retry the store: the page is writable again and queued for invalidation.
                return;
            }
        }
        if (*info).si_code <= 0 {
            let h = FOREIGN_HOOK.load(std::sync::atomic::Ordering::SeqCst);
            if h != 0 {
                let f: ForeignFaultHook = std::mem::transmute::<usize, ForeignFaultHook>(h);
                f(sig, info);
                return;
            }
        }
        // One line naming the host pc and address (formatted without allocating: this is
        // a signal handler).
        let mut line = *b"blockscope: internal error: host fault outside guest memory accessors \
            (signal 00, code 0000, pc 0x0000000000000000, addr 0x0000000000000000)\n";
        let hex = |buf: &mut [u8], mut v: u64| {
            for b in buf.iter_mut().rev() {
                *b = b"0123456789abcdef"[(v & 15) as usize];
                v >>= 4;
            }
        };
        let text_len = line.len();
        let at = |needle: &[u8], line: &[u8]| {
            line.windows(needle.len()).position(|w| w == needle).map_or(0, |p| p + needle.len())
        };
        let (s_at, c_at) = (at(b"signal ", &line), at(b"code ", &line));
        let (p_at, a_at) = (at(b"pc 0x", &line), at(b"addr 0x", &line));
        line[s_at] = b'0' + (sig / 10 % 10) as u8;
        line[s_at + 1] = b'0' + (sig % 10) as u8;
        hex(&mut line[c_at..c_at + 4], (*info).si_code as u16 as u64);
        hex(&mut line[p_at..p_at + 16], rip);
        hex(&mut line[a_at..a_at + 16], (*info).si_addr() as u64);
        libc::write(2, line.as_ptr() as *const libc::c_void, text_len);
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Pages made writable by the fault handler, not yet invalidated (0 = free entry).
static ASYNC_WRITES: [std::sync::atomic::AtomicU64; 64] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 64];
/// Whether `ASYNC_WRITES` may hold entries.
static ASYNC_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// In the fault handler: a store outside the accessors (compiled code's inline store,
/// which checked the page map just before another thread write-protected the page for
/// code) hit a page the guest may write. Make it writable again and queue it for
/// invalidation, as the accessor path would; false if the page is not such a page or
/// the queue is full (the fault is then fatal, as before). Only async-signal-safe calls.
fn async_code_write(addr: u64) -> bool {
    use std::sync::atomic::Ordering;
    let flags = page_map::get(addr);
    if flags & page_map::GUEST_WRITE == 0 || flags & page_map::WRITE != 0 {
        return false;
    }
    let page = page_floor(addr);
    let Some(slot) = ASYNC_WRITES
        .iter()
        .find(|e| e.compare_exchange(0, page, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    else {
        return false;
    };
    let _ = slot;
    ASYNC_PENDING.store(true, Ordering::Release);
    // SAFETY: mprotect is async-signal-safe; the page is a guest page (GUEST_WRITE is only
    // set for pages `DirectShared` recorded), which no Rust reference aliases.
    let r = unsafe {
        libc::mprotect(
            page as *mut libc::c_void,
            PAGE_SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    r == 0
}

/// Install the SIGSEGV/SIGBUS handler (idempotent).
pub fn install_fault_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: installs a handler that only touches the interrupted context (above);
            // the sigaction struct is fully initialised.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_fault as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}
