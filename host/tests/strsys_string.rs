//! String instructions against the host CPU: MOVS STOS LODS CMPS SCAS in every width,
//! without prefix and with REP/REPE/REPNE, DF = 0 and 1, counts 0, 1, a few and many,
//! overlapping buffers, the address-size prefix and an FS override. Plus the restart
//! contract: a REP op that faults after k iterations leaves the registers after k
//! iterations and rip at the instruction, and running it again finishes the job.

mod strsys_support;

use blockscope::cpu::Fault;
use strsys_support::*;

const MOVS: u8 = 0xa4;
const CMPS: u8 = 0xa6;
const STOS: u8 = 0xaa;
const LODS: u8 = 0xac;
const SCAS: u8 = 0xae;

/// Encode a string instruction: `op` is the byte form's opcode.
fn enc(op: u8, width: usize, rep: Option<u8>, addr32: bool, fs: bool) -> Vec<u8> {
    let mut v = Vec::new();
    if addr32 {
        v.push(0x67);
    }
    if fs {
        v.push(0x64);
    }
    if width == 2 {
        v.push(0x66);
    }
    if let Some(p) = rep {
        v.push(p);
    }
    if width == 8 {
        v.push(0x48);
    }
    v.push(if width == 1 { op } else { op + 1 });
    v
}

fn name(op: u8) -> &'static str {
    match op {
        MOVS => "movs",
        CMPS => "cmps",
        STOS => "stos",
        LODS => "lods",
        _ => "scas",
    }
}

const HALF: u64 = 64 * 1024;

struct Bufs {
    base: u64,
}

impl Bufs {
    fn region(&self) -> Region {
        Region { addr: self.base, len: 2 * HALF as usize }
    }
}

/// Start address of a stream of `w`-byte elements going up (DF=0) or down (DF=1) in half
/// `h` (0 = source, 1 = destination) of the buffer, `skew` bytes from its edge.
fn start(b: &Bufs, h: u64, w: u64, df: bool, skew: u64) -> u64 {
    let lo = b.base + h * HALF;
    if df {
        lo + HALF - w - skew
    } else {
        lo + skew
    }
}

/// Byte offset in the buffer of element `k` of a stream starting at `a`.
fn elem(b: &Bufs, a: u64, k: u64, w: u64, df: bool) -> usize {
    let e = if df { a - k * w } else { a + k * w };
    (e - b.base) as usize
}

/// A random `w`-byte value that differs from `v` in its low `w` bytes.
fn other(rng: &mut Rng, v: u64, w: usize) -> u64 {
    let m = if w == 8 { u64::MAX } else { (1u64 << (8 * w)) - 1 };
    let d = (rng.next() & m).max(1);
    (v ^ d) & m
}

fn put(init: &mut [u8], off: usize, v: u64, w: usize) {
    init[off..off + w].copy_from_slice(&v.to_le_bytes()[..w]);
}

#[test]
fn every_form_matches_the_cpu() {
    let mut nat = Native::new();
    let mut emu = Emu::new();
    let b = Bufs { base: emu.alloc(2 * HALF as usize) };
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(0x5151);
    let mut cases = 0;
    // Both liftings of REP: one helper call, and one element per run (expanded).
    for expand in [false, true] {
        emu.expand_rep = expand;
        for op in [MOVS, STOS, LODS, CMPS, SCAS] {
            for w in [1usize, 2, 4, 8] {
                for rep in [None, Some(0xf3u8), Some(0xf2u8)] {
                    for df in [false, true] {
                        let counts: &[u64] = if rep.is_some() {
                            &[0, 1, 2, 7, 100, 4099, 12000]
                        } else {
                            &[1, 1, 1]
                        };
                        for &count in counts {
                            let wb = w as u64;
                            let count = count.min((HALF - 128) / wb);
                            let src = start(&b, 0, wb, df, rng.below(64));
                            let dst = start(&b, 1, wb, df, rng.below(64));
                            let mut init = rng.bytes(2 * HALF as usize);
                            let mut r = Regs::new();
                            for g in r.gpr.iter_mut() {
                                *g = rng.edgy();
                            }
                            // Compare ops: streams equal until a break point (REPE) or
                            // different until one (REPNE); without REP either, at random.
                            let brk = rng.below(count + 2);
                            let equal_run = match rep {
                                Some(0xf3) => true,
                                Some(_) => false,
                                None => rng.below(2) == 0,
                            };
                            if op == CMPS || op == SCAS {
                                let m = if w == 8 { u64::MAX } else { (1u64 << (8 * w)) - 1 };
                                let acc = r.gpr[0] & m;
                                for k in 0..count {
                                    let d = elem(&b, dst, k, wb, df);
                                    let want_equal = (k == brk) != equal_run;
                                    let x = if op == SCAS { acc } else { rng.next() & m };
                                    let y = if want_equal { x } else { other(&mut rng, x, w) };
                                    if op == CMPS {
                                        put(&mut init, elem(&b, src, k, wb, df), x, w);
                                    }
                                    put(&mut init, d, y, w);
                                }
                            }
                            r.gpr[1] = count;
                            r.gpr[4] = stack;
                            r.gpr[6] = src;
                            r.gpr[7] = dst;
                            r.rflags = FLAGS_BASE | (rng.next() & ARITH) | if df { DF } else { 0 };
                            let what = format!(
                                "{} w={w} rep={rep:x?} df={df} count={count} expanded={expand}",
                                name(op)
                            );
                            let code = enc(op, w, rep, false, false);
                            diff(
                                &mut nat,
                                &mut emu,
                                &what,
                                &code,
                                &r,
                                &[(b.region(), init)],
                                CMP_FLAGS,
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(cases > 600, "{cases}");
}

#[test]
fn overlapping_movs_matches_the_cpu() {
    let mut nat = Native::new();
    let mut emu = Emu::new();
    let b = Bufs { base: emu.alloc(2 * HALF as usize) };
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(0x0be7);
    for w in [1usize, 2, 4, 8] {
        for df in [false, true] {
            for dist in [1i64, 2, 3, 5, 7, 8, 9, 16, 17, 100, 4095, 4096, 4097, -1, -3, -8, -4097] {
                for count in [1u64, 5, 300, 9000 / w as u64] {
                    let mid = b.base + HALF;
                    let src = mid;
                    let dst = mid.wrapping_add(dist as u64);
                    let mut r = Regs::new();
                    r.gpr[1] = count;
                    r.gpr[4] = stack;
                    r.gpr[6] = src;
                    r.gpr[7] = dst;
                    r.rflags = FLAGS_BASE | if df { DF } else { 0 };
                    let what = format!("rep movs w={w} df={df} dist={dist} count={count}");
                    let init = rng.bytes(2 * HALF as usize);
                    let code = enc(MOVS, w, Some(0xf3), false, false);
                    diff(&mut nat, &mut emu, &what, &code, &r, &[(b.region(), init)], CMP_FLAGS);
                }
            }
        }
    }
}

#[test]
fn address_size_prefix_matches_the_cpu() {
    let mut nat = Native::new();
    let mut emu = Emu::new();
    let low = emu.alloc_low(2 * HALF as usize);
    assert!(low + 2 * HALF < 1 << 32);
    let b = Bufs { base: low };
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(0x6767);
    // Both liftings of REP: one helper call, and one element per run (expanded).
    for expand in [false, true] {
        emu.expand_rep = expand;
        for op in [MOVS, STOS, LODS, CMPS, SCAS] {
            for w in [1usize, 2, 4, 8] {
                for rep in [None, Some(0xf3u8), Some(0xf2u8)] {
                    for df in [false, true] {
                        for count in [0u64, 1, 3, 50] {
                            if rep.is_none() && count != 1 {
                                continue;
                            }
                            let wb = w as u64;
                            let src = start(&b, 0, wb, df, rng.below(64));
                            let dst = start(&b, 1, wb, df, rng.below(64));
                            let mut r = Regs::new();
                            for g in r.gpr.iter_mut() {
                                *g = rng.edgy();
                            }
                            // Garbage in the upper halves: the 32-bit forms ignore it.
                            let hi = rng.next() & 0xffff_ffff_0000_0000;
                            r.gpr[1] = hi | count;
                            r.gpr[4] = stack;
                            r.gpr[6] = (rng.next() & 0xffff_ffff_0000_0000) | src;
                            r.gpr[7] = (rng.next() & 0xffff_ffff_0000_0000) | dst;
                            r.rflags = FLAGS_BASE | (rng.next() & ARITH) | if df { DF } else { 0 };
                            let what = format!(
                            "addr32 {} w={w} rep={rep:x?} df={df} count={count} expanded={expand}",
                            name(op)
                        );
                            let init = rng.bytes(2 * HALF as usize);
                            let code = enc(op, w, rep, true, false);
                            diff(
                                &mut nat,
                                &mut emu,
                                &what,
                                &code,
                                &r,
                                &[(b.region(), init)],
                                CMP_FLAGS,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn fs_override_on_the_source_matches_the_cpu() {
    let mut nat = Native::new();
    let mut emu = Emu::new();
    emu.fs_base = host_fs_base();
    let b = Bufs { base: emu.alloc(2 * HALF as usize) };
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(0xf5);
    for op in [MOVS, LODS, CMPS] {
        for w in [1usize, 8] {
            for rep in [None, Some(0xf3u8)] {
                let count = if rep.is_some() { 37 } else { 1 };
                let src = b.base + 100;
                let dst = b.base + HALF + 300;
                let mut r = Regs::new();
                r.gpr[1] = count;
                r.gpr[4] = stack;
                r.gpr[6] = src.wrapping_sub(emu.fs_base);
                r.gpr[7] = dst;
                let init = rng.bytes(2 * HALF as usize);
                let what = format!("fs: {} w={w} rep={rep:x?}", name(op));
                let code = enc(op, w, rep, false, true);
                diff(&mut nat, &mut emu, &what, &code, &r, &[(b.region(), init)], CMP_FLAGS);
            }
        }
    }
}

#[test]
fn huge_rep_yields_and_finishes() {
    // More elements than the helper does per call: the block leaves to the same
    // instruction and runs it again until RCX is 0.
    let mut nat = Native::new();
    let mut emu = Emu::new();
    let len = 1_300_000usize;
    let base = emu.alloc(len);
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(77);
    let reg = Region { addr: base, len };
    for (op, w, df) in [(STOS, 1usize, true), (SCAS, 1, false), (MOVS, 2, true)] {
        let count = 1_200_000 / w as u64;
        let mut r = Regs::new();
        r.gpr[0] = 0x5a;
        r.gpr[1] = count;
        r.gpr[4] = stack;
        // Both pointers walk 1.2 MB inside the 1.3 MB buffer.
        let top = base + len as u64 - 8;
        let (s, d) = if df { (top, top - 24) } else { (base, base + 8) };
        r.gpr[6] = s;
        r.gpr[7] = d;
        r.rflags = FLAGS_BASE | if df { DF } else { 0 };
        let init = if op == SCAS { vec![0u8; len] } else { rng.bytes(len) };
        let rep = if op == SCAS { Some(0xf2) } else { Some(0xf3) };
        let what = format!("huge {} w={w} df={df}", name(op));
        let out = diff(
            &mut nat,
            &mut emu,
            &what,
            &enc(op, w, rep, false, false),
            &r,
            &[(reg, init)],
            CMP_FLAGS,
        );
        if op != SCAS {
            assert_eq!(out.gpr[1], 0);
        }
    }
}

/// A REP op that runs into an inaccessible page: the fault, the registers after the
/// completed iterations, rip at the instruction; then the page is made accessible and the
/// same state is resumed to completion, which must end exactly like one uninterrupted
/// native run (registers and memory). Expected fault-time values are the architectural
/// ones (SDM vol. 1, "Repeated string operations": registers reflect the iterations done).
#[test]
fn faults_mid_rep_leave_restartable_state() {
    use blockscope::cpu::CpuState;
    let mut emu = Emu::new();
    let mut nat = Native::new();
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(0xfa);
    for (tier, expand) in TIERS.iter().flat_map(|&t| [(t, false), (t, true)]) {
        emu.expand_rep = expand;
        for w in [1u64, 2, 4, 8] {
            for op in [MOVS, STOS, LODS, CMPS, SCAS] {
                for df in [false, true] {
                    // Pages [p0 | p1 | p2 | p3]; the guard is p0 (DF=1) or p3 (DF=0), and
                    // the walking pointer starts `bytes_ok` bytes before it.
                    let base = emu.alloc(4 * 4096);
                    let guard = if df { base } else { base + 3 * 4096 };
                    let bytes_ok: u64 = 3001;
                    let count = (bytes_ok + 2000) / w;
                    let walk = if df { base + 4096 + bytes_ok - w } else { guard - bytes_ok };
                    let other = if df { base + 3 * 4096 - w } else { base + 4096 };
                    let walks_src = matches!(op, LODS | CMPS);
                    let (src, dst) = if walks_src { (walk, other) } else { (other, walk) };
                    let compare = matches!(op, CMPS | SCAS);
                    // Compare ops see equal streams (REPE runs on); the others random data.
                    let mut init =
                        if compare { vec![0x11u8; 4 * 4096] } else { rng.bytes(4 * 4096) };
                    emu.poke(base, &init);
                    emu.protect(guard, 4096, 0);
                    let mut inp = Regs::new();
                    inp.gpr[0] = 0x1111_1111_1111_1111;
                    inp.gpr[1] = count;
                    inp.gpr[4] = stack;
                    inp.gpr[6] = src;
                    inp.gpr[7] = dst;
                    inp.rflags = FLAGS_BASE | if df { DF } else { 0 };
                    let mut cpu = CpuState::new_user();
                    for (k, v) in inp.gpr.iter().enumerate() {
                        cpu.set_gpr(k, *v);
                    }
                    blockscope::frontend::set_full_rflags(&mut cpu, inp.rflags);
                    let code = enc(op, w as usize, Some(0xf3), false, false);
                    let what = format!("{} w={w} df={df} ({tier:?}, expanded={expand})", name(op));
                    let end = emu.run_cpu(&code, &mut cpu, tier);
                    let done = bytes_ok / w; // whole elements before the guard
                    let step = |p: u64, n: u64| if df { p - n * w } else { p + n * w };
                    // The faulting element may straddle the guard's edge: the reported
                    // address is the first inaccessible byte it touches.
                    let elem = step(walk, done);
                    let fault_addr = if df { elem } else { elem.max(guard) };
                    match end {
                        EmuEnd::Fault { fault: Fault::PageFault { addr, code: ec }, off: 0 } => {
                            assert_eq!(addr, fault_addr, "{what}: fault address");
                            let write = matches!(op, MOVS | STOS);
                            assert_eq!(ec & 2 != 0, write, "{what}: write bit in {ec:#x}");
                        }
                        other => panic!("{what}: expected #PF at the instruction, got {other:?}"),
                    }
                    assert_eq!(cpu.gpr(1), count - done, "{what}: rcx");
                    let src_moves = matches!(op, MOVS | LODS | CMPS);
                    let want_rsi = if src_moves { step(src, done) } else { src };
                    let want_rdi = if op != LODS { step(dst, done) } else { dst };
                    assert_eq!(cpu.gpr(6), want_rsi, "{what}: rsi");
                    assert_eq!(cpu.gpr(7), want_rdi, "{what}: rdi");
                    // Restart from the fault state with the guard page accessible.
                    emu.protect(guard, 4096, 3);
                    let fill = if compare { vec![0x11u8; 4096] } else { rng.bytes(4096) };
                    emu.poke(guard, &fill);
                    let end = emu.run_cpu(&code, &mut cpu, tier);
                    assert_eq!(end, EmuEnd::Done, "{what}: restart");
                    assert_eq!(cpu.gpr(1), 0, "{what}: rcx after restart");
                    let got_mem = emu.peek(base, 4 * 4096);
                    // One uninterrupted native run from the same inputs.
                    let g = (guard - base) as usize;
                    init[g..g + 4096].copy_from_slice(&fill);
                    emu.poke(base, &init);
                    let want = nat.run(&code, &inp);
                    for (k, name) in GPR_NAMES.iter().enumerate() {
                        if k != 4 {
                            assert_eq!(cpu.gpr(k), want.gpr[k], "{what}: {name}");
                        }
                    }
                    let fl = blockscope::frontend::full_rflags(&cpu);
                    assert_eq!(fl & CMP_FLAGS, want.rflags & CMP_FLAGS, "{what}: flags");
                    assert!(emu.peek(base, 4 * 4096) == got_mem, "{what}: memory");
                }
            }
        }
    }
}

/// A REP op that runs out of its per-call budget in the same call that writes a page of
/// translated code (its own block's page) must still be restarted, not treated as done.
#[test]
fn budget_exit_after_a_code_write_restarts() {
    use blockscope::cpu::CpuState;
    let mut emu = Emu::new();
    let m = emu.alloc_rwx(3 << 20);
    let code_page = m + (2 << 20);
    let code = code_page + 4000; // the snippet sits past the bytes the op writes
    let s = code_page + 3000;
    let count = 1_500_000u64;
    for tier in TIERS {
        emu.poke(m, &vec![0u8; 3 << 20]);
        let mut cpu = CpuState::new_user();
        cpu.set_gpr(0, 0xa5);
        cpu.set_gpr(1, count);
        cpu.set_gpr(7, s);
        blockscope::frontend::set_full_rflags(&mut cpu, FLAGS_BASE | DF);
        let end = emu.run_cpu_at(code, &enc(STOS, 1, Some(0xf3), false, false), &mut cpu, tier);
        assert_eq!(end, EmuEnd::Done, "{tier:?}");
        assert_eq!(cpu.gpr(1), 0, "{tier:?}: rcx");
        assert_eq!(cpu.gpr(7), s - count, "{tier:?}: rdi");
        let lo = s + 1 - count;
        let bytes = emu.peek(lo, count as usize);
        assert!(bytes.iter().all(|&b| b == 0xa5), "{tier:?}: stored bytes");
        assert_eq!(emu.peek(lo - 1, 1)[0], 0, "{tier:?}: byte below");
    }
}

#[test]
fn unprefixed_fault_leaves_registers_alone() {
    use blockscope::cpu::CpuState;
    let mut emu = Emu::new();
    let page = emu.alloc(4096);
    emu.protect(page, 4096, 1); // read-only
    for tier in TIERS {
        for op in [MOVS, STOS] {
            let mut cpu = CpuState::new_user();
            cpu.set_gpr(6, page);
            cpu.set_gpr(7, page + 8);
            cpu.set_gpr(1, 5);
            let end = emu.run_cpu(&enc(op, 8, None, false, false), &mut cpu, tier);
            assert!(
                matches!(end, EmuEnd::Fault { fault: Fault::PageFault { .. }, off: 0 }),
                "{end:?}"
            );
            assert_eq!((cpu.gpr(6), cpu.gpr(7), cpu.gpr(1)), (page, page + 8, 5));
        }
    }
}

fn small_buf() -> [u8; 8] {
    [0; 8]
}

/// The bulk accessors behind the fast path (`Direct::read_bytes`/`write_bytes`).
#[test]
fn direct_bulk_copies_report_faults_and_code_writes() {
    use blockscope::mem::GuestMemory;
    let mut emu = Emu::new();
    let base = emu.alloc(3 * 4096);
    let mut rng = Rng::new(3);
    let data = rng.bytes(6000);
    emu.mem.write_bytes(base + 100, &data).expect("write");
    let mut back = vec![0u8; 6000];
    emu.mem.read_bytes(base + 100, &mut back).expect("read");
    assert_eq!(back, data);
    // Page 2 inaccessible: both directions fault at its first byte.
    emu.protect(base + 8192, 4096, 0);
    let mut big = vec![0u8; 5000];
    match emu.mem.read_bytes(base + 4096, &mut big) {
        Err(Fault::PageFault { addr, code }) => {
            assert_eq!(addr, base + 8192);
            assert_eq!(code & 2, 0, "read has no write bit");
        }
        other => panic!("expected #PF, got {other:?}"),
    }
    match emu.mem.write_bytes(base + 4096, &big) {
        Err(Fault::PageFault { addr, code }) => {
            assert_eq!(addr, base + 8192);
            assert_eq!(code & 2, 2, "write bit");
        }
        other => panic!("expected #PF, got {other:?}"),
    }
    // Non-canonical addresses are #GP(0), not page faults.
    let nc = 0x8000_0000_0000_0000u64;
    assert_eq!(emu.mem.read_bytes(nc, &mut small_buf()), Err(Fault::GeneralProtection(0)));
    assert_eq!(emu.mem.write_bytes(nc, &[1, 2, 3]), Err(Fault::GeneralProtection(0)));
    // Read-only page: reads work, writes fault with the present bit.
    emu.protect(base, 4096, 1);
    let mut small = vec![0u8; 16];
    emu.mem.read_bytes(base + 100, &mut small).expect("read-only read");
    assert_eq!(&small[..], &data[..16]);
    match emu.mem.write_bytes(base + 8, &small) {
        Err(Fault::PageFault { addr, code }) => {
            assert_eq!(addr, base + 8);
            assert_eq!(code & 3, 3, "present + write");
        }
        other => panic!("expected #PF, got {other:?}"),
    }
    // A watched (translated-code) page is written through and reported.
    emu.protect(base, 4096, 7);
    emu.mem.watch_code(base, base + 16);
    assert!(!emu.mem.code_written());
    emu.mem.write_bytes(base + 4000, &data[..200]).expect("write over code page");
    assert!(emu.mem.code_written());
    assert_eq!(emu.mem.take_code_writes(), vec![base]);
    let mut back = vec![0u8; 200];
    emu.mem.read_bytes(base + 4000, &mut back).expect("read");
    assert_eq!(&back[..], &data[..200]);
}

/// REP CMPS/SCAS with RCX = 0 leave the flags of the previous instruction: a flag-setting
/// instruction before them must not be treated as dead.
#[test]
fn zero_count_rep_compare_keeps_earlier_flags() {
    let mut nat = Native::new();
    let mut emu = Emu::new();
    let b = Bufs { base: emu.alloc(2 * HALF as usize) };
    let stack = emu.alloc(4096) + 2048;
    let mut rng = Rng::new(0xcc);
    for op in [CMPS, SCAS] {
        for rep in [0xf3u8, 0xf2] {
            for count in [0u64, 3] {
                for (pre_name, pre) in [
                    ("cmp rdx, rbx", &[0x48u8, 0x39, 0xda][..]),
                    ("xor edx, edx", &[0x31, 0xd2][..]),
                ] {
                    // pre; rep cmps/scas; setz dl; setc bl; seto bh
                    let mut code = pre.to_vec();
                    code.extend(enc(op, 1, Some(rep), false, false));
                    code.extend([0x0f, 0x94, 0xc2, 0x0f, 0x92, 0xc3, 0x0f, 0x90, 0xc7]);
                    let mut r = Regs::new();
                    for g in r.gpr.iter_mut() {
                        *g = rng.edgy();
                    }
                    r.gpr[1] = count;
                    r.gpr[4] = stack;
                    r.gpr[6] = b.base;
                    r.gpr[7] = b.base + HALF;
                    let what = format!("{pre_name}; rep({rep:x}) {} count {count}", name(op));
                    let init = rng.bytes(2 * HALF as usize);
                    diff(&mut nat, &mut emu, &what, &code, &r, &[(b.region(), init)], CMP_FLAGS);
                }
            }
        }
    }
}
