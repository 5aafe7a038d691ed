//! Memory syscalls. The host mapping is made as the guest asked, but without PROT_EXEC
//! (an executable guest page is host-readable); `DirectShared` records the guest
//! protection, which instruction fetch checks. Every change to a page holding translated
//! code drops its blocks. The guest cannot map over, unmap or reprotect memory that is not
//! its own (the emulator's): such `MAP_FIXED` requests fail with ENOMEM, and munmap /
//! mprotect only touch guest-mapped pages.

use crate::mem::{page_ceil, page_floor, Prot, PAGE_SIZE};
use crate::user::elf::host_prot;
use crate::user::process::Thread;
use crate::user::sys;

const EINVAL: i64 = -(libc::EINVAL as i64);
const ENOMEM: i64 = -(libc::ENOMEM as i64);

fn errno(e: i32) -> i64 {
    -(e as i64)
}

/// Drop the translated code in `[lo, hi)` and forget its protection records.
fn unrecord(t: &Thread, lo: u64, hi: u64) {
    let code = t.proc.shared.unmap(lo, hi - lo);
    t.proc.engine.invalidate_pages(&code);
}

/// Whether `[lo, hi)` may be taken by a fixed guest mapping: every page is either the
/// guest's already or not mapped in the host process at all.
fn fixed_ok(t: &Thread, lo: u64, hi: u64) -> bool {
    let mut cur = lo;
    for (s, e, _) in t.proc.shared.mapped_ranges(lo, hi) {
        if s > cur && sys::any_host_mapped(cur, s - cur) {
            return false;
        }
        cur = e;
    }
    cur >= hi || !sys::any_host_mapped(cur, hi - cur)
}

/// `mmap(addr, len, prot, flags, fd, off)`.
pub fn mmap(t: &mut Thread, a: &[u64; 6]) -> i64 {
    let (addr, len, prot, flags) = (a[0], a[1], a[2] as i32, a[3] as i32);
    if len == 0 || len > 0x7fff_ffff_f000 {
        return EINVAL;
    }
    let len = page_ceil(len);
    let gprot = (prot & 7) as u32;
    let hprot = host_prot(gprot) | (prot & !7);
    if flags & libc::MAP_FIXED != 0 {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return EINVAL;
        }
        if !fixed_ok(t, addr, addr.saturating_add(len)) {
            return ENOMEM;
        }
        // The new mapping replaces the old at once: no inline access may still trust it.
        t.proc.shared.revoke_fast(addr, addr.saturating_add(len));
    }
    match sys::mmap(addr, len, hprot, flags, a[4] as i32, a[5]) {
        Err(e) => errno(e),
        Ok(p) => {
            unrecord(t, p, p + len);
            t.proc.shared.map(p, len, Prot(gprot));
            let plugins = &t.proc.engine.plugins;
            if !plugins.is_empty() && gprot & Prot::EXEC != 0 && flags & libc::MAP_ANONYMOUS == 0 {
                // A file mapped executable (a shared library): tell the plugins.
                if let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", a[4] as i32)) {
                    plugins.on_file_mmap(&path.to_string_lossy(), p, a[5]);
                }
            }
            p as i64
        }
    }
}

/// `munmap(addr, len)`.
pub fn munmap(t: &mut Thread, addr: u64, len: u64) -> i64 {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 || addr.checked_add(len).is_none() {
        return EINVAL;
    }
    let end = page_ceil(addr + len);
    t.proc.shared.revoke_fast(addr, end);
    for (s, e, _) in t.proc.shared.mapped_ranges(addr, end) {
        sys::munmap(s, e - s);
    }
    unrecord(t, addr, end);
    0
}

/// `mprotect(addr, len, prot)`.
pub fn mprotect(t: &mut Thread, addr: u64, len: u64, prot: u64) -> i64 {
    if !addr.is_multiple_of(PAGE_SIZE) || addr.checked_add(len).is_none() {
        return EINVAL;
    }
    let end = page_ceil(addr + len);
    if end == addr {
        return 0;
    }
    let before = t.proc.shared.mapped_ranges(addr, end);
    let covered: u64 = before.iter().map(|r| r.1 - r.0).sum();
    if covered != end - addr {
        return ENOMEM;
    }
    let gprot = (prot as i32 & 7) as u32;
    t.proc.shared.revoke_fast(addr, end);
    let r = sys::mprotect(addr, end - addr, host_prot(gprot) | (prot as i32 & !7));
    if r < 0 {
        for (s, e, p) in before {
            t.proc.shared.map(s, e - s, p);
        }
        return r;
    }
    unrecord(t, addr, end);
    t.proc.shared.map(addr, end - addr, Prot(gprot));
    0
}

/// `mremap(old, old_len, new_len, flags, new_addr)`.
pub fn mremap(t: &mut Thread, a: &[u64; 6]) -> i64 {
    let (old, old_len, new_len, flags, new_addr) = (a[0], a[1], a[2], a[3] as i32, a[4]);
    if !old.is_multiple_of(PAGE_SIZE) {
        return EINVAL;
    }
    let Some(prot) = t.proc.shared.prot_of(old) else {
        return -(libc::EFAULT as i64);
    };
    if flags & libc::MREMAP_FIXED != 0
        && !fixed_ok(t, new_addr, new_addr.saturating_add(page_ceil(new_len)))
    {
        return ENOMEM;
    }
    let old_end = old.saturating_add(page_ceil(old_len));
    let before = t.proc.shared.mapped_ranges(old, old_end);
    t.proc.shared.revoke_fast(old, old_end);
    let r = sys::syscall6(libc::SYS_mremap, [old, old_len, new_len, flags as u64, new_addr, 0]);
    if r < 0 {
        for (s, e, p) in before {
            t.proc.shared.map(s, e - s, p);
        }
        return r;
    }
    let new = r as u64;
    if flags & libc::MREMAP_DONTUNMAP == 0 {
        unrecord(t, old, old + page_ceil(old_len));
    }
    unrecord(t, new, new + page_ceil(new_len));
    t.proc.shared.map(new, page_ceil(new_len), prot);
    r
}

/// `madvise`: passed through; advice that discards contents drops translated code.
pub fn madvise(t: &mut Thread, a: &[u64; 6]) -> i64 {
    let r = super::passthrough(t, libc::SYS_madvise as u64, a);
    let discards = matches!(a[2] as i32, libc::MADV_DONTNEED | libc::MADV_FREE | libc::MADV_REMOVE);
    if r == 0 && discards {
        let (lo, hi) = (page_floor(a[0]), page_ceil(a[0].saturating_add(a[1])));
        let pages = t.proc.shared.code_pages(lo, hi);
        for p in &pages {
            t.proc.shared.forget_code(*p);
        }
        t.proc.engine.invalidate_pages(&pages);
    }
    r
}

/// `shmat`: passed through, the segment recorded with its size (from IPC_STAT).
pub fn shmat(t: &mut Thread, a: &[u64; 6]) -> i64 {
    let r = super::passthrough(t, libc::SYS_shmat as u64, a);
    if r < 0 {
        return r;
    }
    let mut ds = [0u64; 16];
    let st = sys::syscall6(
        libc::SYS_shmctl,
        [a[0], libc::IPC_STAT as u64, ds.as_mut_ptr() as u64, 0, 0, 0],
    );
    if st == 0 {
        // struct shmid64_ds: ipc64_perm (48 bytes), then shm_segsz.
        let size = page_ceil(ds[6]);
        let ro = a[2] as i32 & libc::SHM_RDONLY != 0;
        let exec = a[2] as i32 & 0o100000 != 0; // SHM_EXEC
        let mut p = Prot::READ;
        if !ro {
            p |= Prot::WRITE;
        }
        if exec {
            p |= Prot::EXEC;
        }
        unrecord(t, r as u64, r as u64 + size);
        t.proc.shared.map(r as u64, size, Prot(p));
    }
    r
}

/// `shmdt`: passed through; the segment's records go (up to the next unmapped page).
pub fn shmdt(t: &mut Thread, addr: u64) -> i64 {
    let prot = t.proc.shared.prot_of(addr);
    let r = super::passthrough(t, libc::SYS_shmdt as u64, &[addr, 0, 0, 0, 0, 0]);
    if r == 0 && prot.is_some() {
        let mut end = addr;
        while t.proc.shared.prot_of(end).is_some() && !sys::any_host_mapped(end, PAGE_SIZE) {
            end += PAGE_SIZE;
        }
        unrecord(t, addr, end.max(addr + PAGE_SIZE));
    }
    r
}

/// `brk(addr)`: grow or shrink the heap after the program; never over another mapping.
pub fn brk(t: &mut Thread, want: u64) -> i64 {
    let proc = t.proc.clone();
    let mut b = proc.brk.lock().unwrap_or_else(|e| e.into_inner());
    if want < b.start || want > 0x7fff_ffff_f000 {
        return b.cur as i64;
    }
    let (old_top, new_top) = (page_ceil(b.cur), page_ceil(want));
    if new_top > old_top {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        match sys::mmap(old_top, new_top - old_top, rw, flags, -1, 0) {
            Ok(p) if p == old_top => proc.shared.map(old_top, new_top - old_top, Prot(3)),
            Ok(p) => {
                sys::munmap(p, new_top - old_top);
                return b.cur as i64;
            }
            Err(_) => return b.cur as i64,
        }
    } else if new_top < old_top {
        proc.shared.revoke_fast(new_top, old_top);
        sys::munmap(new_top, old_top - new_top);
        unrecord(t, new_top, old_top);
    }
    b.cur = want;
    want as i64
}
