//! Executable memory for compiled blocks: `CodeRegion`.
//!
//! A region is one `memfd` mapped twice: a read-write view that only the compiler writes
//! through, and a read-execute view that compiled code runs from. No page is ever both
//! writable and executable (W^X), nothing is flipped with `mprotect`, and a new function can
//! be appended next to code another thread is running. Allocation is a bump pointer; a
//! region is never reused piecemeal: it is freed (both views unmapped) when the last
//! `Arc<CodeRegion>` goes, which happens once no `CompiledTb` and no running vCPU refers to
//! it (the exec loop drops its cache at a quiescent point).
//!
//! Fork. The views are `MAP_SHARED`, so after a guest `fork` the child shares the parent's
//! region. Both may keep running the code already there (it never changes), but only the
//! creating process may append: `alloc` refuses in any other process, and the JIT then
//! starts a fresh region of its own.
//!
//! Safety contract. `CodeRegion` owns both mappings. Bytes are written only through
//! `alloc_and_write`, only into space no one has been handed yet, and a pointer into the
//! executable view is handed out only after its bytes are written. x86-64 keeps
//! instruction fetch coherent with data writes, and a new function is published to other
//! threads through the exec loop's own synchronisation (a mutex or an atomic with release
//! ordering), so no explicit cache flush is needed.
#![allow(unsafe_code)] // mmap/munmap and raw writes into the code mapping; see the contract

use std::io;
use std::ptr::NonNull;
use std::sync::Mutex;

/// One dual-mapped block of code memory.
pub struct CodeRegion {
    /// Base of the read-write view.
    rw: NonNull<u8>,
    /// Base of the read-execute view.
    rx: NonNull<u8>,
    /// Size of each view in bytes.
    size: usize,
    /// Bytes handed out so far.
    used: Mutex<usize>,
    /// Process that created the region: the only one that may append to it.
    owner_pid: u32,
}

// SAFETY: the raw pointers are owned mappings; the executable view is immutable once a
// function is handed out, and appends are serialised by `used`'s mutex.
unsafe impl Send for CodeRegion {}
// SAFETY: as above; `&CodeRegion` only allows appending (under the mutex) and reading.
unsafe impl Sync for CodeRegion {}

impl CodeRegion {
    /// Map a region of `size` bytes (rounded up to whole pages).
    pub fn new(size: usize) -> io::Result<CodeRegion> {
        let size = size.max(1).next_multiple_of(crate::mem::PAGE_SIZE as usize);
        // SAFETY: memfd_create takes a NUL-terminated name and flags; no memory is touched.
        let fd = unsafe { libc::memfd_create(c"blockscope-jit".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = libc::off_t::try_from(size).map_err(|_| io::Error::other("region too big"))?;
        // SAFETY: fd is a memfd we own; ftruncate only sets its size.
        if unsafe { libc::ftruncate(fd, len) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: closing the fd we opened above.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let map = |prot| {
            // SAFETY: a fresh shared mapping of our own memfd at an address the kernel picks;
            // it aliases no Rust object.
            let p =
                unsafe { libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0) };
            if p == libc::MAP_FAILED {
                Err(io::Error::last_os_error())
            } else {
                Ok(p.cast::<u8>())
            }
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE);
        let rx = map(libc::PROT_READ | libc::PROT_EXEC);
        // SAFETY: the mappings keep the memfd's pages alive; the descriptor is not needed.
        unsafe { libc::close(fd) };
        let (rw, rx) = match (rw, rx) {
            (Ok(rw), Ok(rx)) => (rw, rx),
            (rw, rx) => {
                for p in [&rw, &rx].into_iter().flatten() {
                    // SAFETY: unmapping a mapping made above that nothing refers to.
                    unsafe { libc::munmap(p.cast(), size) };
                }
                return Err(rw.err().or(rx.err()).unwrap_or_else(|| io::Error::other("mmap")));
            }
        };
        Ok(CodeRegion {
            rw: NonNull::new(rw).ok_or_else(|| io::Error::other("mmap returned null"))?,
            rx: NonNull::new(rx).ok_or_else(|| io::Error::other("mmap returned null"))?,
            size,
            used: Mutex::new(0),
            owner_pid: std::process::id(),
        })
    }

    /// Size of the region in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copy `code` into fresh space aligned to `align` (a power of two) and return its
    /// address in the executable view, or `None` when the region is full or belongs to
    /// another process (after a fork).
    pub fn alloc_and_write(&self, code: &[u8], align: usize) -> Option<NonNull<u8>> {
        if std::process::id() != self.owner_pid || !align.is_power_of_two() {
            return None;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let start = used.checked_next_multiple_of(align)?;
        let end = start.checked_add(code.len())?;
        if end > self.size {
            return None;
        }
        // SAFETY: [start, end) lies inside the read-write view (end <= size) and has never
        // been handed out (start >= used under the mutex), so no one executes or reads it.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.rw.as_ptr().add(start), code.len())
        };
        *used = end;
        // SAFETY: start < size, so the pointer stays inside the executable view.
        NonNull::new(unsafe { self.rx.as_ptr().add(start) })
    }

    /// Whether `p` points into this region's executable view.
    pub fn contains(&self, p: *const u8) -> bool {
        let base = self.rx.as_ptr() as usize;
        (base..base + self.size).contains(&(p as usize))
    }
}

impl Drop for CodeRegion {
    fn drop(&mut self) {
        // SAFETY: both views were mapped by `new` with `size` bytes; the last owner is going
        // away, so no compiled function in them can run any more.
        unsafe {
            libc::munmap(self.rw.as_ptr().cast(), self.size);
            libc::munmap(self.rx.as_ptr().cast(), self.size);
        }
    }
}

impl std::fmt::Debug for CodeRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeRegion")
            .field("rx", &self.rx)
            .field("size", &self.size)
            .field("used", &self.used())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_alias_and_allocations_do_not_overlap() {
        let r = CodeRegion::new(8192).unwrap();
        let a = r.alloc_and_write(&[0xc3; 10], 16).unwrap();
        let b = r.alloc_and_write(&[0x90, 0xc3], 16).unwrap();
        assert!(r.contains(a.as_ptr()) && r.contains(b.as_ptr()));
        assert_eq!(b.as_ptr() as usize - a.as_ptr() as usize, 16);
        // SAFETY: both pointers were just written through the RW view and are readable.
        let (x, y) = unsafe { (*a.as_ptr(), *b.as_ptr()) };
        assert_eq!((x, y), (0xc3, 0x90));
        assert!(r.alloc_and_write(&[0; 9000], 16).is_none(), "overfull allocation refused");
        assert_eq!(r.used(), 18);
    }
}
