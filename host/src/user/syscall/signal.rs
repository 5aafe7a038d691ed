//! Signal syscalls over the emulated state in `user::signal`.

use super::{passthrough, read_bytes, read_u64, write_bytes, write_u64};
use crate::user::process::Thread;
use crate::user::signal::{
    deliverable, set_blocked, take_queued, Action, AltStack, SS_AUTODISARM, SS_DISABLE, SS_ONSTACK,
    UNBLOCKABLE,
};
use crate::user::stack::MINSIGSTKSZ;
use crate::user::sys::{self, bit, ERESTART_BEFORE};
use std::sync::atomic::Ordering;

const EINVAL: i64 = -(libc::EINVAL as i64);
const EINTR: i64 = -(libc::EINTR as i64);

/// `rt_sigaction(sig, act, oldact, sigsetsize)`.
pub fn rt_sigaction(t: &mut Thread, a: &[u64; 6]) -> i64 {
    let (sig, act, oact, size) = (a[0] as i32, a[1], a[2], a[3]);
    if size != 8 || !(1..=64).contains(&sig) {
        return EINVAL;
    }
    if act != 0 && (sig == libc::SIGKILL || sig == libc::SIGSTOP) {
        return EINVAL;
    }
    let new = if act != 0 {
        let mut w = [0u8; 32];
        if let Err(e) = read_bytes(t, act, &mut w) {
            return e;
        }
        let g = |i: usize| u64::from_le_bytes(w[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Some(Action { handler: g(0), flags: g(1), restorer: g(2), mask: g(3) & !UNBLOCKABLE })
    } else {
        None
    };
    let old = match new {
        Some(n) => t.proc.actions.set(sig, n),
        None => t.proc.actions.get(sig),
    };
    if oact != 0 {
        let mut w = Vec::with_capacity(32);
        for v in [old.handler, old.flags, old.restorer, old.mask] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        if let Err(e) = write_bytes(t, oact, &w) {
            return e;
        }
    }
    0
}

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
pub fn rt_sigprocmask(t: &mut Thread, a: &[u64; 6]) -> i64 {
    let (how, set, oset, size) = (a[0] as i32, a[1], a[2], a[3]);
    if size != 8 {
        return EINVAL;
    }
    let old = t.sig.blocked;
    let new = if set != 0 {
        let s = match read_u64(t, set) {
            Ok(s) => s,
            Err(e) => return e,
        };
        match how {
            libc::SIG_BLOCK => Some(old | s),
            libc::SIG_UNBLOCK => Some(old & !s),
            libc::SIG_SETMASK => Some(s),
            _ => return EINVAL,
        }
    } else {
        None
    };
    if oset != 0 {
        if let Err(e) = write_u64(t, oset, old) {
            return e;
        }
    }
    if let Some(n) = new {
        set_blocked(t, n);
    }
    0
}

/// `sigaltstack(ss, old_ss)`.
pub fn sigaltstack(t: &mut Thread, ss: u64, oss: u64) -> i64 {
    let sp = t.vcpu.cpu.gpr(4);
    let cur = t.sig.alt;
    if ss != 0 {
        let mut w = [0u8; 24];
        if let Err(e) = read_bytes(t, ss, &mut w) {
            return e;
        }
        let ss_sp = u64::from_le_bytes(w[0..8].try_into().unwrap_or([0; 8]));
        let flags = i32::from_le_bytes(w[8..12].try_into().unwrap_or([0; 4]));
        let size = u64::from_le_bytes(w[16..24].try_into().unwrap_or([0; 8]));
        if cur.on(sp) {
            return -(libc::EPERM as i64);
        }
        let mode = flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK {
            return EINVAL;
        }
        let new = if mode == SS_DISABLE {
            AltStack::default()
        } else {
            if size < MINSIGSTKSZ {
                return -(libc::ENOMEM as i64);
            }
            AltStack { sp: ss_sp, size, autodisarm: flags & SS_AUTODISARM != 0 }
        };
        if oss != 0 {
            if let Err(e) = write_stack(t, oss, &cur, sp) {
                return e;
            }
        }
        t.sig.alt = new;
        return 0;
    }
    if oss != 0 {
        if let Err(e) = write_stack(t, oss, &cur, sp) {
            return e;
        }
    }
    0
}

fn write_stack(t: &mut Thread, at: u64, s: &AltStack, sp: u64) -> Result<(), i64> {
    let mut flags = s.flags(sp);
    if s.autodisarm {
        flags |= SS_AUTODISARM;
    }
    let mut w = Vec::with_capacity(24);
    w.extend_from_slice(&s.sp.to_le_bytes());
    w.extend_from_slice(&(flags as u32 as u64).to_le_bytes());
    w.extend_from_slice(&s.size.to_le_bytes());
    write_bytes(t, at, &w)
}

/// Install a temporary mask for a waiting syscall (sigsuspend, ppoll, pselect6,
/// epoll_pwait): the old mask is restored after the syscall, or by sigreturn when a
/// handler runs. Returns false if a queued signal is deliverable right away.
fn push_temp_mask(t: &mut Thread, mask: u64) -> bool {
    let old = t.sig.blocked;
    t.sig.saved_mask = Some(old);
    set_blocked(t, mask);
    if deliverable(t, t.sig.blocked) {
        t.vcpu.interrupt.store(true, Ordering::Release);
        return false;
    }
    true
}

fn pop_temp_mask(t: &mut Thread, r: i64) -> i64 {
    if r == EINTR || r == ERESTART_BEFORE {
        // Delivery builds the frame with the saved mask and restores it on sigreturn.
        return EINTR;
    }
    if let Some(m) = t.sig.saved_mask.take() {
        set_blocked(t, m);
    }
    r
}

/// `rt_sigsuspend(mask, sigsetsize)`.
pub fn rt_sigsuspend(t: &mut Thread, mask: u64, size: u64) -> i64 {
    if size != 8 {
        return EINVAL;
    }
    let m = match read_u64(t, mask) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if !push_temp_mask(t, m) {
        return EINTR;
    }
    let host = t.sig.blocked & !sys::SYNC_SIGNALS;
    let r = sys::safe_syscall(
        &t.vcpu.interrupt,
        libc::SYS_rt_sigsuspend,
        [&host as *const u64 as u64, 8, 0, 0, 0, 0],
    );
    pop_temp_mask(t, if r == 0 { EINTR } else { r })
}

/// `ppoll` / `epoll_pwait` / `epoll_pwait2`: the mask is argument `mask_at`.
pub fn with_temp_mask(t: &mut Thread, nr: u64, a: &[u64; 6], mask: u64, size: u64) -> i64 {
    if mask == 0 {
        return passthrough(t, nr, a);
    }
    if size != 8 {
        return EINVAL;
    }
    let m = match read_u64(t, mask) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if !push_temp_mask(t, m) {
        return EINTR;
    }
    let r = passthrough(t, nr, a);
    pop_temp_mask(t, r)
}

/// `pselect6(n, r, w, e, timeout, &{mask, size})`.
pub fn pselect6(t: &mut Thread, a: &[u64; 6]) -> i64 {
    if a[5] == 0 {
        return passthrough(t, libc::SYS_pselect6 as u64, a);
    }
    let (mp, size) = match (read_u64(t, a[5]), read_u64(t, a[5] + 8)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if mp == 0 {
        return passthrough(t, libc::SYS_pselect6 as u64, a);
    }
    with_temp_mask(t, libc::SYS_pselect6 as u64, a, mp, size)
}

/// `rt_sigpending(set, sigsetsize)`: the host's pending set plus signals we queued
/// while the guest had them blocked.
pub fn rt_sigpending(t: &mut Thread, set: u64, size: u64) -> i64 {
    if size != 8 {
        return EINVAL;
    }
    let mut host = 0u64;
    let r = sys::syscall6(libc::SYS_rt_sigpending, [&mut host as *mut u64 as u64, 8, 0, 0, 0, 0]);
    if r < 0 {
        return r;
    }
    let ours = (t.signals.signals().queue.pending() | sys::PROCESS_QUEUE.pending()) & t.sig.blocked;
    super::flat(write_u64(t, set, (host | ours) & t.sig.blocked).map(|_| 0))
}

/// `rt_sigtimedwait(set, info, timeout, sigsetsize)`: a signal already queued here is
/// returned at once; otherwise the host waits (the guest has the set blocked, and so does
/// the host mask).
pub fn rt_sigtimedwait(t: &mut Thread, a: &[u64; 6]) -> i64 {
    if a[3] != 8 {
        return EINVAL;
    }
    let set = match read_u64(t, a[0]) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if let Some((sig, info)) = take_queued(t, !(set & !UNBLOCKABLE)) {
        if a[1] != 0 {
            let bytes: Vec<u8> = info.iter().flat_map(|w| w.to_le_bytes()).collect();
            if let Err(e) = write_bytes(t, a[1], &bytes) {
                return e;
            }
        }
        return sig as i64;
    }
    let _ = bit;
    passthrough(t, libc::SYS_rt_sigtimedwait as u64, a)
}
