//! File syscalls that must not show the emulator: `/proc/self/exe` names (readlink) and
//! opens (open, openat) the guest program, not blockscope. Everything else passes through.

use super::{passthrough, read_cstr, write_bytes};
use crate::user::process::Thread;
use crate::user::sys;
use std::os::unix::ffi::OsStrExt;

/// Whether `path` names the running executable through /proc.
pub fn is_self_exe(path: &[u8]) -> bool {
    if path == b"/proc/self/exe" || path == b"/proc/thread-self/exe" {
        return true;
    }
    let Some(rest) = path.strip_prefix(b"/proc/") else { return false };
    let Some(pid) = rest.strip_suffix(b"/exe") else { return false };
    std::str::from_utf8(pid).ok().and_then(|s| s.parse::<i32>().ok()) == Some(sys::getpid())
}

/// `readlink` / `readlinkat`.
pub fn readlink(t: &mut Thread, dirfd: i32, path: u64, buf: u64, size: u64) -> i64 {
    let p = match read_cstr(t, path, 4096) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if (p.first() == Some(&b'/') || dirfd == libc::AT_FDCWD) && is_self_exe(&p) {
        if size as i64 <= 0 {
            return -(libc::EINVAL as i64);
        }
        let exe = t.proc.exe.as_os_str().as_bytes().to_vec();
        let n = exe.len().min(size as usize);
        return match write_bytes(t, buf, &exe[..n]) {
            Ok(()) => n as i64,
            Err(e) => e,
        };
    }
    passthrough(t, libc::SYS_readlinkat as u64, &[dirfd as u64, path, buf, size, 0, 0])
}

/// `open` / `openat`.
pub fn open(t: &mut Thread, dirfd: i32, path: u64, flags: u64, mode: u64, nr: u64) -> i64 {
    let p = match read_cstr(t, path, 4096) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if (p.first() == Some(&b'/') || dirfd == libc::AT_FDCWD) && is_self_exe(&p) {
        let exe =
            std::ffi::CString::new(t.proc.exe.as_os_str().as_bytes().to_vec()).unwrap_or_default();
        let a = [libc::AT_FDCWD as u64, exe.as_ptr() as u64, flags, mode, 0, 0];
        return passthrough(t, libc::SYS_openat as u64, &a);
    }
    if nr == libc::SYS_open as u64 {
        passthrough(t, nr, &[path, flags, mode, 0, 0, 0])
    } else {
        passthrough(t, nr, &[dirfd as u64, path, flags, mode, 0, 0])
    }
}

/// `close`, `dup`, `dup2`, `dup3`, `fcntl` and `close_range` keep blockscope's private log
/// fd (`sys::log_fd`) out of the guest's reach, as if it were not open: closing,
/// duplicating or querying it is `EBADF`, so is duplicating onto it, and a range that
/// covers it is closed around it.
pub fn fd_guard(t: &mut Thread, nr: u64, a: &[u64; 6]) -> i64 {
    let Some(log) = sys::log_fd().map(|fd| fd as u64) else { return passthrough(t, nr, a) };
    let ebadf = -(libc::EBADF as i64);
    match nr as i64 {
        libc::SYS_close | libc::SYS_dup | libc::SYS_fcntl if a[0] as u32 as u64 == log => ebadf,
        libc::SYS_dup2 | libc::SYS_dup3 if a[1] as u32 as u64 == log => ebadf,
        libc::SYS_close_range => {
            let (lo, hi) = (a[0] as u32 as u64, a[1] as u32 as u64);
            if lo > log || hi < log {
                return passthrough(t, nr, a);
            }
            let mut r = 0;
            if lo < log {
                r = passthrough(t, nr, &[lo, log - 1, a[2], 0, 0, 0]);
            }
            if r == 0 && hi > log {
                r = passthrough(t, nr, &[log + 1, hi, a[2], 0, 0, 0]);
            }
            r
        }
        _ => passthrough(t, nr, a),
    }
}
