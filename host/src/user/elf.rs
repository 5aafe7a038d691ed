//! ELF loading, as the kernel's `binfmt_elf` does it for an x86-64 process.
//!
//! Headers are parsed here (ELF-64 little-endian only: `e_ident`, the file header and the
//! program headers; nothing else is needed to run a program). `PT_LOAD` segments are
//! mapped with the host `mmap` (file-backed `MAP_PRIVATE|MAP_FIXED` for the file part,
//! anonymous for the rest of the bss), the tail of the last file page past `p_filesz` is
//! zeroed up to the page end when the segment has a bss (as the kernel's `padzero`), and every segment is recorded with its guest protection in `DirectShared`.
//! The host mapping gets no `PROT_EXEC`: guest execute permission is tracked by
//! `DirectShared` (instruction fetch checks it); an executable segment is host-readable.
//!
//! - `ET_EXEC`: mapped at its link addresses (refused if that range is already in use).
//! - `ET_DYN` (PIE, static-PIE, the dynamic loader): the whole span is reserved first
//!   (at `PIE_BASE` for the main program if free, where the kernel would put it without
//!   ASLR; anywhere for an interpreter) and segments are mapped into it.
//! - `PT_INTERP`: the named interpreter (the host's `ld.so`) is loaded as well and
//!   execution starts at its entry point, with `AT_BASE` = its load bias.
//! - `#!` scripts are resolved by `user::resolve_script` before this module is called.

use crate::mem::{page_ceil, page_floor, Direct, DirectShared, GuestMemory, Prot};
use crate::user::sys;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// Where the kernel (without ASLR) puts a PIE main program; used when free.
pub const PIE_BASE: u64 = 0x5555_5555_4000;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// Why a program cannot be loaded. `Display` gives the part after `blockscope: <prog>: `.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not exist.
    #[error("no such file or directory")]
    NotFound,
    /// Not readable or not executable.
    #[error("permission denied")]
    PermissionDenied,
    /// A directory.
    #[error("is a directory")]
    IsDirectory,
    /// No ELF magic (and no `#!`).
    #[error("not an ELF executable")]
    NotElf,
    /// ELF, but not what we run.
    #[error("{0}")]
    Unsupported(String),
    /// Inconsistent headers.
    #[error("malformed ELF file: {0}")]
    Malformed(String),
    /// Reading the file failed.
    #[error("{0}")]
    Io(std::io::Error),
    /// A segment could not be mapped.
    #[error("cannot map segment at {addr:#x}: {err}")]
    Map {
        /// Address.
        addr: u64,
        /// The host error.
        err: std::io::Error,
    },
    /// The interpreter could not be loaded.
    #[error("interpreter {path}: {err}")]
    Interp {
        /// Its path.
        path: String,
        /// What went wrong.
        err: Box<LoadError>,
    },
}

impl LoadError {
    /// The error of opening or reading a program file.
    pub fn from_io(e: std::io::Error) -> LoadError {
        match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound,
            std::io::ErrorKind::PermissionDenied => LoadError::PermissionDenied,
            std::io::ErrorKind::IsADirectory => LoadError::IsDirectory,
            _ => LoadError::Io(e),
        }
    }
}

/// One program header.
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    /// Type.
    pub p_type: u32,
    /// Flags (PF_R/W/X).
    pub flags: u32,
    /// File offset.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory.
    pub memsz: u64,
}

/// The parsed headers of an ELF file.
#[derive(Clone, Debug)]
pub struct ElfInfo {
    /// `e_type`.
    pub e_type: u16,
    /// `e_entry`.
    pub entry: u64,
    /// `e_phoff`.
    pub phoff: u64,
    /// `e_phentsize`.
    pub phentsize: u16,
    /// Program headers.
    pub phdrs: Vec<Phdr>,
    /// `PT_INTERP` path, if any.
    pub interp: Option<String>,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Check the ELF identification of a file's first bytes and say what it is if not ours.
pub fn check_ident(head: &[u8]) -> Result<(), LoadError> {
    if head.len() < 4 || &head[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    if head.len() < 20 {
        return Err(LoadError::Malformed("truncated header".into()));
    }
    let machine = u16_at(head, 18);
    if head[4] == 1 {
        let what = if machine == 3 { "32-bit x86 (i386)" } else { "32-bit" };
        return Err(LoadError::Unsupported(format!(
            "{what} ELF is not supported (only x86-64 programs run)"
        )));
    }
    if head[4] != 2 || head[5] != 1 {
        return Err(LoadError::Unsupported(
            "not a 64-bit little-endian ELF (only x86-64 programs run)".into(),
        ));
    }
    if machine != EM_X86_64 {
        return Err(LoadError::Unsupported(format!(
            "ELF for machine {machine} ({}), not x86-64",
            machine_name(machine)
        )));
    }
    Ok(())
}

fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "i386",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "S/390",
        40 => "ARM",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "unknown",
    }
}

/// Parse the headers of an x86-64 ELF file.
pub fn parse(file: &File) -> Result<ElfInfo, LoadError> {
    let mut head = [0u8; 64];
    let n = read_full(file, &mut head, 0)?;
    check_ident(&head[..n])?;
    if n < 64 {
        return Err(LoadError::Malformed("truncated header".into()));
    }
    let e_type = u16_at(&head, 16);
    if e_type != ET_EXEC && e_type != ET_DYN {
        let what = match e_type {
            1 => "a relocatable object",
            4 => "a core dump",
            _ => "not an executable",
        };
        return Err(LoadError::Unsupported(format!("ELF file is {what}, not an executable")));
    }
    let entry = u64_at(&head, 24);
    let phoff = u64_at(&head, 32);
    let phentsize = u16_at(&head, 54);
    let phnum = u16_at(&head, 56);
    if phentsize != 56 {
        return Err(LoadError::Malformed(format!("program header size {phentsize}")));
    }
    if phnum == 0 || phnum > 256 {
        return Err(LoadError::Malformed(format!("{phnum} program headers")));
    }
    let mut raw = vec![0u8; phnum as usize * 56];
    if read_full(file, &mut raw, phoff)? != raw.len() {
        return Err(LoadError::Malformed("truncated program headers".into()));
    }
    let mut phdrs = Vec::with_capacity(phnum as usize);
    let mut interp = None;
    for c in raw.chunks_exact(56) {
        let ph = Phdr {
            p_type: u32_at(c, 0),
            flags: u32_at(c, 4),
            offset: u64_at(c, 8),
            vaddr: u64_at(c, 16),
            filesz: u64_at(c, 32),
            memsz: u64_at(c, 40),
        };
        if ph.p_type == PT_LOAD {
            if ph.filesz > ph.memsz {
                return Err(LoadError::Malformed("segment file size exceeds memory size".into()));
            }
            if ph.vaddr % 4096 != ph.offset % 4096 {
                return Err(LoadError::Malformed("misaligned segment".into()));
            }
            if ph.vaddr.checked_add(ph.memsz).is_none_or(|e| e > 0x7fff_ffff_f000) {
                return Err(LoadError::Malformed("segment outside the user address space".into()));
            }
        }
        if ph.p_type == PT_INTERP {
            if ph.filesz == 0 || ph.filesz > 4096 {
                return Err(LoadError::Malformed("bad PT_INTERP".into()));
            }
            let mut p = vec![0u8; ph.filesz as usize];
            if read_full(file, &mut p, ph.offset)? != p.len() {
                return Err(LoadError::Malformed("truncated PT_INTERP".into()));
            }
            while p.last() == Some(&0) {
                p.pop();
            }
            interp = Some(String::from_utf8_lossy(&p).into_owned());
        }
        phdrs.push(ph);
    }
    if !phdrs.iter().any(|p| p.p_type == PT_LOAD) {
        return Err(LoadError::Malformed("no loadable segments".into()));
    }
    Ok(ElfInfo { e_type, entry, phoff, phentsize, phdrs, interp })
}

fn read_full(file: &File, buf: &mut [u8], off: u64) -> Result<usize, LoadError> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LoadError::from_io(e)),
        }
    }
    Ok(n)
}

/// A loaded image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    /// Entry point (biased).
    pub entry: u64,
    /// Address of the program headers in memory (AT_PHDR).
    pub phdr: u64,
    /// Program header count.
    pub phnum: u16,
    /// Program header entry size.
    pub phent: u16,
    /// First page past the highest segment.
    pub end: u64,
    /// Interpreter path (main program only).
    pub interp: Option<String>,
}

/// Host protection for a guest protection: no host PROT_EXEC; executable means readable.
pub fn host_prot(guest: u32) -> i32 {
    let mut p = guest & (Prot::READ | Prot::WRITE);
    if guest & Prot::EXEC != 0 {
        p |= Prot::READ;
    }
    p as i32
}

fn seg_prot(flags: u32) -> u32 {
    let mut p = 0;
    if flags & PF_R != 0 {
        p |= Prot::READ;
    }
    if flags & PF_W != 0 {
        p |= Prot::WRITE;
    }
    if flags & PF_X != 0 {
        p |= Prot::EXEC;
    }
    p
}

fn map_err(addr: u64, errno: i32) -> LoadError {
    LoadError::Map { addr, err: std::io::Error::from_raw_os_error(errno) }
}

/// Load an ELF image from `path`. `main` selects the PIE placement policy.
pub fn load_image(path: &Path, shared: &Arc<DirectShared>, main: bool) -> Result<Image, LoadError> {
    let file = File::open(path).map_err(LoadError::from_io)?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(LoadError::IsDirectory);
    }
    let info = parse(&file)?;
    let loads: Vec<&Phdr> = info.phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let lo = page_floor(loads.iter().map(|p| p.vaddr).min().unwrap_or(0));
    let hi = page_ceil(loads.iter().map(|p| p.vaddr + p.memsz).max().unwrap_or(0));
    let span = hi - lo;
    let none = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let bias = if info.e_type == ET_DYN {
        let fixed_try = if main {
            sys::mmap(PIE_BASE, span, libc::PROT_NONE, none | libc::MAP_FIXED_NOREPLACE, -1, 0).ok()
        } else {
            None
        };
        let at = match fixed_try {
            Some(a) => a,
            None => sys::mmap(0, span, libc::PROT_NONE, none, -1, 0).map_err(|e| map_err(0, e))?,
        };
        at - lo
    } else {
        sys::mmap(lo, span, libc::PROT_NONE, none | libc::MAP_FIXED_NOREPLACE, -1, 0)
            .map_err(|e| map_err(lo, e))?;
        0
    };
    let fd = file.as_raw_fd();
    let mut mem = Direct::new(shared.clone());
    let mut mapped: Vec<(u64, u64)> = Vec::new();
    for ph in &loads {
        let prot = seg_prot(ph.flags);
        let hprot = host_prot(prot);
        let vaddr = bias + ph.vaddr;
        let page = page_floor(vaddr);
        let file_end = vaddr + ph.filesz;
        let mem_end = vaddr + ph.memsz;
        let mut anon_from = page;
        if ph.filesz > 0 {
            let len = page_ceil(file_end) - page;
            let needs_zero = ph.memsz > ph.filesz && file_end != page_ceil(file_end);
            let p = if needs_zero { hprot | libc::PROT_WRITE } else { hprot };
            let off = page_floor(ph.offset);
            sys::mmap(page, len, p, libc::MAP_PRIVATE | libc::MAP_FIXED, fd, off)
                .map_err(|e| map_err(page, e))?;
            if needs_zero {
                // Like the kernel's padzero: to the end of the page, not just to p_memsz
                // (ld.so's early allocator uses the rest of its last bss page).
                let zeros = vec![0u8; (page_ceil(file_end) - file_end) as usize];
                mem.write_bytes(file_end, &zeros)
                    .map_err(|f| LoadError::Malformed(format!("zeroing bss: {f}")))?;
                if p != hprot {
                    sys::mprotect(page, len, hprot);
                }
            }
            anon_from = page_ceil(file_end);
        }
        if page_ceil(mem_end) > anon_from {
            sys::mmap(
                anon_from,
                page_ceil(mem_end) - anon_from,
                hprot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
            .map_err(|e| map_err(anon_from, e))?;
        }
        shared.map(page, page_ceil(mem_end) - page, Prot(prot));
        mapped.push((page, page_ceil(mem_end)));
    }
    // Give back the holes of the reservation between segments.
    mapped.sort_unstable();
    let mut cur = bias + lo;
    for (s, e) in &mapped {
        if *s > cur {
            sys::munmap(cur, s - cur);
        }
        cur = cur.max(*e);
    }
    if bias + hi > cur {
        sys::munmap(cur, bias + hi - cur);
    }
    let phnum = info.phdrs.len() as u16;
    let phdr = match info.phdrs.iter().find(|p| p.p_type == PT_PHDR) {
        Some(p) => bias + p.vaddr,
        None => loads
            .iter()
            .find(|p| p.offset <= info.phoff && info.phoff < p.offset + p.filesz)
            .map(|p| bias + p.vaddr + (info.phoff - p.offset))
            .unwrap_or(0),
    };
    Ok(Image {
        bias,
        entry: bias + info.entry,
        phdr,
        phnum,
        phent: info.phentsize,
        end: bias + hi,
        interp: info.interp,
    })
}

/// A loaded program: the main image and, for a dynamic program, its interpreter.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The program.
    pub main: Image,
    /// The dynamic loader, if `PT_INTERP` named one.
    pub interp: Option<Image>,
}

impl Loaded {
    /// Where execution starts.
    pub fn start(&self) -> u64 {
        self.interp.as_ref().map_or(self.main.entry, |i| i.entry)
    }
}

/// Load a program and its interpreter.
pub fn load(path: &Path, shared: &Arc<DirectShared>) -> Result<Loaded, LoadError> {
    let main = load_image(path, shared, true)?;
    let interp = match &main.interp {
        None => None,
        Some(ip) => Some(
            load_image(Path::new(ip), shared, false)
                .map_err(|e| LoadError::Interp { path: ip.clone(), err: Box::new(e) })?,
        ),
    };
    Ok(Loaded { main, interp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_checks() {
        assert!(matches!(check_ident(b"#!/bin/sh\n"), Err(LoadError::NotElf)));
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 1;
        h[5] = 1;
        h[18] = 3;
        let e = check_ident(&h).unwrap_err().to_string();
        assert!(e.contains("32-bit"), "{e}");
        h[4] = 2;
        h[18] = 183;
        let e = check_ident(&h).unwrap_err().to_string();
        assert!(e.contains("AArch64"), "{e}");
        h[18] = 62;
        assert!(check_ident(&h).is_ok());
    }

    /// A one-segment ET_DYN file: RW, p_filesz 0x100, p_memsz 0x200, the whole first page
    /// of the file filled with 0xaa.
    fn tiny_elf() -> Vec<u8> {
        let mut f = vec![0xaau8; 4096];
        f[..64].fill(0);
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&0x80u64.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut f[64..120];
        ph.fill(0);
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[4..8].copy_from_slice(&(PF_R | PF_W).to_le_bytes());
        ph[32..40].copy_from_slice(&0x100u64.to_le_bytes()); // p_filesz
        ph[40..48].copy_from_slice(&0x200u64.to_le_bytes()); // p_memsz
        f
    }

    #[test]
    fn bss_page_is_zeroed_to_its_end() {
        let path = std::env::temp_dir().join(format!("bs-elf-test-{}", std::process::id()));
        std::fs::write(&path, tiny_elf()).unwrap();
        let shared = DirectShared::new();
        let img = load_image(&path, &shared, false).expect("load");
        let _ = std::fs::remove_file(&path);
        let mut mem = Direct::new(shared.clone());
        let mut page = vec![0u8; 4096];
        mem.read_bytes(img.bias, &mut page).unwrap();
        assert_eq!(&page[..4], b"\x7fELF");
        assert_eq!(page[0xff], 0xaa, "file bytes up to p_filesz");
        assert!(page[0x100..].iter().all(|b| *b == 0), "zero from p_filesz to the page end");
        assert_eq!(img.entry, img.bias + 0x80);
        assert_eq!(img.phdr, img.bias + 64);
        assert_eq!(shared.prot_of(img.bias), Some(Prot(Prot::READ | Prot::WRITE)));
        assert_eq!(img.end, img.bias + 4096);
    }

    #[test]
    fn host_prot_drops_exec() {
        assert_eq!(host_prot(Prot::EXEC), libc::PROT_READ);
        assert_eq!(
            host_prot(Prot::READ | Prot::WRITE | Prot::EXEC),
            libc::PROT_READ | libc::PROT_WRITE
        );
    }
}
