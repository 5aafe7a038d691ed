//! The initial process stack, as the kernel builds it (System V x86-64 ABI, §3.4.1).
//!
//! From the top down: the `AT_EXECFN` string, the environment and argument strings, the
//! `AT_PLATFORM` string and the 16 `AT_RANDOM` bytes; then, 16-byte aligned so that `%rsp`
//! points at `argc` on a 16-byte boundary: `argc`, `argv[]`, NULL, `envp[]`, NULL and the
//! auxiliary vector ending in `AT_NULL`. No `AT_SYSINFO_EHDR` is passed (there is no vDSO;
//! the C library then makes real `clock_gettime` syscalls, which we pass through).

use crate::cpu::Fault;
use crate::mem::{Direct, GuestMemory};
use crate::user::sys;

/// `AT_HWCAP` on x86-64 is CPUID leaf 1 EDX of the CPU model blockscope advertises.
pub const HWCAP: u64 = crate::cpu::cpuid::features::HWCAP;
/// `AT_HWCAP2` of that model.
pub const HWCAP2: u64 = crate::cpu::cpuid::features::HWCAP2;

/// `AT_MINSIGSTKSZ`: the largest signal frame we build (see `user::signal`), rounded up.
pub const MINSIGSTKSZ: u64 = 2048;

/// Auxiliary vector keys (linux/auxvec.h).
#[allow(missing_docs, reason = "names are the ABI's own")]
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const PLATFORM: u64 = 15;
    pub const HWCAP: u64 = 16;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const HWCAP2: u64 = 26;
    pub const EXECFN: u64 = 31;
    pub const MINSIGSTKSZ: u64 = 51;
}

/// Facts about the loaded program that go into the auxiliary vector.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuxInfo {
    /// AT_PHDR.
    pub phdr: u64,
    /// AT_PHENT.
    pub phent: u64,
    /// AT_PHNUM.
    pub phnum: u64,
    /// AT_BASE (interpreter load bias, 0 without one).
    pub base: u64,
    /// AT_ENTRY (the program's entry, not the interpreter's).
    pub entry: u64,
}

/// What `build` wrote: the initial `%rsp` and where the aux vector lies.
#[derive(Clone, Copy, Debug)]
pub struct Built {
    /// Initial stack pointer (points at argc).
    pub sp: u64,
    /// Address of the auxiliary vector.
    pub auxv: u64,
    /// Number of auxv entries including AT_NULL.
    pub auxc: usize,
}

fn push_bytes(mem: &mut Direct, sp: &mut u64, b: &[u8]) -> Result<u64, Fault> {
    *sp -= b.len() as u64;
    mem.write_bytes(*sp, b)?;
    Ok(*sp)
}

fn push_cstr(mem: &mut Direct, sp: &mut u64, s: &[u8]) -> Result<u64, Fault> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s);
    v.push(0);
    push_bytes(mem, sp, &v)
}

/// Build the initial stack below `top` and return the stack pointer.
pub fn build(
    mem: &mut Direct,
    top: u64,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
    aux: &AuxInfo,
) -> Result<Built, Fault> {
    let mut sp = top - 16;
    let execfn_p = push_cstr(mem, &mut sp, execfn)?;
    let mut env_p = Vec::with_capacity(envp.len());
    for e in envp.iter().rev() {
        env_p.push(push_cstr(mem, &mut sp, e)?);
    }
    env_p.reverse();
    let mut arg_p = Vec::with_capacity(argv.len());
    for a in argv.iter().rev() {
        arg_p.push(push_cstr(mem, &mut sp, a)?);
    }
    arg_p.reverse();
    let platform_p = push_cstr(mem, &mut sp, b"x86_64")?;
    let mut random = [0u8; 16];
    sys::getrandom(&mut random);
    sp &= !15;
    let random_p = push_bytes(mem, &mut sp, &random)?;

    let ids = ids();
    let auxv: Vec<(u64, u64)> = vec![
        (at::HWCAP, HWCAP),
        (at::PAGESZ, 4096),
        (at::CLKTCK, 100),
        (at::PHDR, aux.phdr),
        (at::PHENT, aux.phent),
        (at::PHNUM, aux.phnum),
        (at::BASE, aux.base),
        (at::FLAGS, 0),
        (at::ENTRY, aux.entry),
        (at::UID, ids[0]),
        (at::EUID, ids[1]),
        (at::GID, ids[2]),
        (at::EGID, ids[3]),
        (at::SECURE, 0),
        (at::RANDOM, random_p),
        (at::HWCAP2, HWCAP2),
        (at::EXECFN, execfn_p),
        (at::PLATFORM, platform_p),
        (at::MINSIGSTKSZ, MINSIGSTKSZ),
        (at::NULL, 0),
    ];
    let words = 1 + (argv.len() + 1) + (envp.len() + 1) + 2 * auxv.len();
    sp &= !15;
    if words % 2 == 1 {
        sp -= 8;
    }
    let mut w: Vec<u64> = Vec::with_capacity(words);
    w.push(argv.len() as u64);
    w.extend(&arg_p);
    w.push(0);
    w.extend(&env_p);
    w.push(0);
    let auxv_off = w.len();
    for (k, v) in &auxv {
        w.push(*k);
        w.push(*v);
    }
    let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    sp -= bytes.len() as u64;
    mem.write_bytes(sp, &bytes)?;
    debug_assert_eq!(sp % 16, 0);
    Ok(Built { sp, auxv: sp + 8 * auxv_off as u64, auxc: auxv.len() })
}

fn ids() -> [u64; 4] {
    let id = |nr| sys::syscall6(nr, [0; 6]) as u64;
    [id(libc::SYS_getuid), id(libc::SYS_geteuid), id(libc::SYS_getgid), id(libc::SYS_getegid)]
}
