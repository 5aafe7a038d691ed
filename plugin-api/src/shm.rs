//! System V shared memory for plugins that feed fuzzers: AFL++ passes the id of the
//! coverage map's segment in `__AFL_SHM_ID` and reads the map after the target exits.
//! The one `unsafe` step (attaching the segment) lives here so plugins stay
//! `#![forbid(unsafe_code)]`.
#![allow(unsafe_code, reason = "shmat/shmdt of a segment the caller names (module docs)")]

/// Copy `data` to the start of the SysV segment `id` (at most the segment's size).
/// Returns the number of bytes written.
pub fn write_sysv(id: i32, data: &[u8]) -> Result<usize, String> {
    // SAFETY: IPC_STAT fills the zero-initialised `shmid_ds` we pass; no other memory.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `ds` is a valid, writable `shmid_ds`.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(format!("shared memory {id}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: attaches the segment at an address the kernel picks; nothing else is mapped
    // there and we detach it below.
    let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(format!(
            "cannot attach shared memory {id}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let n = data.len().min(ds.shm_segsz);
    // SAFETY: the segment is at least `shm_segsz` bytes and `n` does not exceed it; the
    // source is a live slice that cannot overlap a fresh attachment.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.cast::<u8>(), n) };
    // SAFETY: `p` came from the shmat above and is not used afterwards.
    unsafe { libc::shmdt(p) };
    Ok(n)
}
