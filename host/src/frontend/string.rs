//! String instructions: MOVS STOS LODS CMPS SCAS (all widths), with REP/REPE/REPNE.
//!
//! A string op without a repeat prefix is a few inline IR ops: the element access(es), then
//! RSI/RDI advanced by ±width according to RFLAGS.DF (read at run time from `%rflags`).
//!
//! A repeated op is one call to the `rep_string` helper, which loops in Rust and leaves
//! RCX/RSI/RDI (and RAX for LODS, the flags for CMPS/SCAS) exactly as the CPU does after the
//! iterations it completed. When an element faults after k iterations, the helper writes
//! the registers for those k iterations back to `CpuState` before returning the fault, and
//! the instruction pointer stays at the instruction: restarting it continues the
//! operation, as on hardware. After a bounded amount of work the helper returns "not done"
//! and the block leaves to the same instruction, so the exec loop can see interrupts during
//! a huge REP.
//!
//! With DF = 0 and 64-bit addressing every REP op takes a bulk path: page-bounded chunks
//! through `GuestMemory::read_bytes`/`write_bytes` (MOVS/STOS copy them; LODS/CMPS/SCAS
//! walk them in Rust). A chunk never crosses a page of the source or the destination, so a
//! chunk that faults has written nothing (protection is per page) and is redone element by
//! element to find the exact faulting element. When the destination lies shortly after the
//! source (`0 < rdi - rsi < chunk`), a MOVS chunk is cut to that distance so each element
//! still reads what earlier elements wrote (the `rep movsb` "pattern fill" idiom works).
//! Compares may read a little past the element that ends them: invisible for `Direct`
//! memory; a memory model with read side effects (MMIO) must not use this path.
//!
//! Address size: with a 0x67 prefix the registers are ESI/EDI/ECX, addresses wrap at
//! 4 GiB and the register updates are 32-bit writes (zero-extending), as on hardware.
//! Segments: the source may carry an FS/GS override (its base is added); the destination
//! is always ES (base 0 in 64-bit mode). F2 (REPNE) on MOVS/STOS/LODS repeats like F3, as
//! Intel and AMD CPUs do.
//!
//! Note on mnemonics: iced names the string MOVSD/CMPSD and the SSE2 MOVSD/CMPSD alike
//! (`Mnemonic::Movsd`, `Mnemonic::Cmpsd`). Both families claim them (dispatch tries the
//! lifters of a mnemonic in order); `lift_movsd`/`lift_cmpsd` here accept only the string
//! codes and refuse the others before emitting anything.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifts;
use super::flags::FlagOp;
use crate::cpu::{rflags, slot, Fault, Width};
use crate::ir::{BinOp, Cond, HelperCx, HelperDesc, Op, Slot, Term};
use crate::mem::{page_floor, GuestMemory, PAGE_SIZE};
use iced_x86::{Code, ConditionCode, Mnemonic, OpKind, Register};

lifts! {
    Movsb => lift_string, Movsw => lift_string, Movsd => lift_movsd, Movsq => lift_string,
    Stosb => lift_string, Stosw => lift_string, Stosd => lift_string, Stosq => lift_string,
    Lodsb => lift_string, Lodsw => lift_string, Lodsd => lift_string, Lodsq => lift_string,
    Cmpsb => lift_string, Cmpsw => lift_string, Cmpsd => lift_cmpsd, Cmpsq => lift_string,
    Scasb => lift_string, Scasw => lift_string, Scasd => lift_string, Scasq => lift_string,
}

type R = Result<(), Unsupported>;

/// The string operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Movs = 0,
    Stos = 1,
    Lods = 2,
    Cmps = 3,
    Scas = 4,
}

impl Kind {
    fn of(m: Mnemonic) -> Option<Kind> {
        use Mnemonic as M;
        Some(match m {
            M::Movsb | M::Movsw | M::Movsd | M::Movsq => Kind::Movs,
            M::Stosb | M::Stosw | M::Stosd | M::Stosq => Kind::Stos,
            M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => Kind::Lods,
            M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => Kind::Cmps,
            M::Scasb | M::Scasw | M::Scasd | M::Scasq => Kind::Scas,
            _ => return None,
        })
    }
    fn from_u8(v: u64) -> Kind {
        match v {
            0 => Kind::Movs,
            1 => Kind::Stos,
            2 => Kind::Lods,
            3 => Kind::Cmps,
            _ => Kind::Scas,
        }
    }
    fn reads_src(self) -> bool {
        matches!(self, Kind::Movs | Kind::Lods | Kind::Cmps)
    }
    fn uses_dst(self) -> bool {
        !matches!(self, Kind::Lods)
    }
    fn compares(self) -> bool {
        matches!(self, Kind::Cmps | Kind::Scas)
    }
}

/// Repeat prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Rep {
    /// F3: REP (MOVS/STOS/LODS) or REPE (CMPS/SCAS).
    E = 1,
    /// F2: REPNE (CMPS/SCAS); a plain REP on the others.
    Ne = 2,
}

/// Source segment override that has a base in 64-bit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Seg {
    None = 0,
    Fs = 1,
    Gs = 2,
}

/// Everything the helper needs to know about the instruction, packed in one argument:
/// bits 0..3 kind, 4..6 log2(width), 8..10 rep, bit 12 addr32, bits 16..18 segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cfg {
    kind: Kind,
    w: Width,
    rep: Rep,
    addr32: bool,
    seg: Seg,
}

impl Cfg {
    fn pack(self) -> u64 {
        self.kind as u64
            | (self.w as u64) << 4
            | (self.rep as u64) << 8
            | (self.addr32 as u64) << 12
            | (self.seg as u64) << 16
    }
    fn unpack(v: u64) -> Cfg {
        let w = match (v >> 4) & 3 {
            0 => Width::W8,
            1 => Width::W16,
            2 => Width::W32,
            _ => Width::W64,
        };
        let rep = if (v >> 8) & 3 == Rep::Ne as u64 { Rep::Ne } else { Rep::E };
        let seg = match (v >> 16) & 3 {
            1 => Seg::Fs,
            2 => Seg::Gs,
            _ => Seg::None,
        };
        Cfg { kind: Kind::from_u8(v & 7), w, rep, addr32: (v >> 12) & 1 != 0, seg }
    }
}

/// REP/REPNE CMPS and SCAS write no flag when RCX (ECX) is 0: for flag liveness they may
/// keep every flag (the translator then keeps earlier flag results alive across them).
pub(super) fn may_keep_flags(i: &iced_x86::Instruction) -> bool {
    let string_form = (0..i.op_count()).any(|n| {
        matches!(
            i.op_kind(n),
            OpKind::MemorySegRSI | OpKind::MemorySegESI | OpKind::MemoryESRDI | OpKind::MemoryESEDI
        )
    });
    string_form
        && matches!(Kind::of(i.mnemonic()), Some(Kind::Cmps | Kind::Scas))
        && (i.has_rep_prefix() || i.has_repne_prefix())
}

/// The string MOVSD (A5) shares its mnemonic with SSE2 MOVSD; only the string form is here.
fn lift_movsd(cx: &mut LiftCx<'_>) -> R {
    match cx.i.code() {
        Code::Movsd_m32_m32 => lift_string(cx),
        _ => Err(Unsupported),
    }
}

/// The string CMPSD (A7) shares its mnemonic with SSE2 CMPSD; only the string form is here.
fn lift_cmpsd(cx: &mut LiftCx<'_>) -> R {
    match cx.i.code() {
        Code::Cmpsd_m32_m32 => lift_string(cx),
        _ => Err(Unsupported),
    }
}

/// Decode the instruction into a `Cfg` (rep is filled in only when a prefix is present).
fn cfg_of(cx: &LiftCx<'_>) -> Result<(Cfg, Option<Rep>), Unsupported> {
    let i = cx.i;
    let kind = Kind::of(i.mnemonic()).ok_or(Unsupported)?;
    let mut addr32 = None;
    let mut seg = Seg::None;
    let mut w = None;
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::MemorySegRSI | OpKind::MemoryESRDI => addr32 = Some(false),
            OpKind::MemorySegESI | OpKind::MemoryESEDI => addr32 = Some(true),
            OpKind::Register => continue,
            _ => return Err(Unsupported),
        }
        if matches!(i.op_kind(n), OpKind::MemorySegRSI | OpKind::MemorySegESI) {
            seg = match i.memory_segment() {
                Register::FS => Seg::Fs,
                Register::GS => Seg::Gs,
                _ => Seg::None,
            };
        }
        w = Some(Width::from_bytes(i.memory_size().size().clamp(1, 8)));
    }
    let (Some(addr32), Some(w)) = (addr32, w) else { return Err(Unsupported) };
    if i.memory_size().size() != w.bytes() {
        return Err(Unsupported);
    }
    let rep = if i.has_repne_prefix() {
        Some(Rep::Ne)
    } else if i.has_rep_prefix() {
        Some(Rep::E)
    } else {
        None
    };
    Ok((Cfg { kind, w, rep: rep.unwrap_or(Rep::E), addr32, seg }, rep))
}

fn lift_string(cx: &mut LiftCx<'_>) -> R {
    if cx.locked() {
        return Err(Unsupported);
    }
    let (cfg, rep) = cfg_of(cx)?;
    match rep {
        Some(_) if cx.rep_each => lift_rep_each(cx, cfg),
        Some(_) => lift_rep(cx, cfg),
        None => lift_once(cx, cfg),
    }
}

/// `±width` as a 64-bit value: `width - ((rflags & DF) >> k)` with `(DF >> k) == 2 * width`.
fn delta(cx: &mut LiftCx<'_>, w: Width) -> Slot {
    const DF_BIT: u32 = rflags::DF.trailing_zeros();
    let df = cx.bin_imm(BinOp::And, Width::W64, Slot(slot::RFLAGS), rflags::DF);
    let twice = cx.bin_imm(BinOp::Shr, Width::W64, df, (DF_BIT - (w as u32 + 1)) as u64);
    let k = cx.konst(w.bytes() as u64);
    cx.bin(BinOp::Sub, Width::W64, k, twice)
}

/// The linear address of an index register (RSI/RDI), with the address-size truncation and
/// the source segment base.
fn str_addr(cx: &mut LiftCx<'_>, reg: u16, cfg: Cfg, with_seg: bool) -> Slot {
    let mut a = Slot(reg);
    if cfg.addr32 {
        a = cx.bin_imm(BinOp::And, Width::W64, a, 0xffff_ffff);
    }
    if with_seg {
        match cfg.seg {
            Seg::Fs => a = cx.bin(BinOp::Add, Width::W64, a, Slot(slot::FS_BASE)),
            Seg::Gs => a = cx.bin(BinOp::Add, Width::W64, a, Slot(slot::GS_BASE)),
            Seg::None => {}
        }
    }
    a
}

/// Advance an index register by `d` (a 32-bit write under an address-size prefix).
fn advance(cx: &mut LiftCx<'_>, reg: u16, d: Slot, addr32: bool) {
    let w = if addr32 { Width::W32 } else { Width::W64 };
    cx.set_slot_op(reg, Op::Bin { op: BinOp::Add, w, dst: Slot(0), a: Slot(reg), b: d });
}

/// The accumulator register of width `w`.
fn acc(w: Width) -> Register {
    match w {
        Width::W8 => Register::AL,
        Width::W16 => Register::AX,
        Width::W32 => Register::EAX,
        Width::W64 => Register::RAX,
    }
}

/// One iteration, inline.
fn lift_once(cx: &mut LiftCx<'_>, cfg: Cfg) -> R {
    let w = cfg.w;
    // Memory accesses first (they may fault), register writes after.
    let src = if cfg.kind.reads_src() { Some(str_addr(cx, slot::RSI, cfg, true)) } else { None };
    let dst = if cfg.kind.uses_dst() { Some(str_addr(cx, slot::RDI, cfg, false)) } else { None };
    let d = delta(cx, w);
    match cfg.kind {
        Kind::Movs => {
            let v = cx.load(w, src.ok_or(Unsupported)?);
            cx.store(w, dst.ok_or(Unsupported)?, v);
        }
        Kind::Stos => cx.store(w, dst.ok_or(Unsupported)?, Slot(slot::RAX)),
        Kind::Lods => {
            let v = cx.load(w, src.ok_or(Unsupported)?);
            cx.write_reg(acc(w), v)?;
        }
        Kind::Cmps => {
            let a = cx.load(w, src.ok_or(Unsupported)?);
            let b = cx.load(w, dst.ok_or(Unsupported)?);
            cx.set_flags_cmp(w, a, b);
        }
        Kind::Scas => {
            let b = cx.load(w, dst.ok_or(Unsupported)?);
            cx.set_flags_cmp(w, Slot(slot::RAX), b);
        }
    }
    if cfg.kind.reads_src() {
        advance(cx, slot::RSI, d, cfg.addr32);
    }
    if cfg.kind.uses_dst() {
        advance(cx, slot::RDI, d, cfg.addr32);
    }
    Ok(())
}

/// A repeated string op: one helper call, then leave to the same instruction if the helper
/// stopped early (work budget) with iterations left.
fn lift_rep(cx: &mut LiftCx<'_>, cfg: Cfg) -> R {
    let k = cx.konst(cfg.pack());
    let more = cx.helper(&REP_STRING, &[k]);
    cx.commit_flags();
    cx.emit(Op::ExitIf { c: more, target: cx.pc });
    Ok(())
}

/// A repeated string op, one element per run (`LiftOpts::rep_each`): leave to the next
/// instruction when the count register is 0; else one element (`lift_once`), the count
/// decremented, and for CMPS/SCAS leave to the next instruction when ZF ends the repeat
/// (REPE: ZF = 0, REPNE: ZF = 1); otherwise end the block with a jump back to this
/// instruction. Each run thus makes one element's accesses as ordinary memory ops, a
/// fault leaves the registers of the elements before it (the instruction restarts from
/// there, as on hardware), and the exec loop sees every iteration.
fn lift_rep_each(cx: &mut LiftCx<'_>, cfg: Cfg) -> R {
    // The count register: ECX under an address-size prefix (the compare's width).
    let w = if cfg.addr32 { Width::W32 } else { Width::W64 };
    let done = cx.cmp_imm(Cond::Eq, w, Slot(slot::RCX), 0);
    cx.commit_flags();
    cx.emit(Op::ExitIf { c: done, target: cx.next });
    lift_once(cx, cfg)?;
    let one = cx.konst(1);
    cx.set_slot_op(
        slot::RCX,
        Op::Bin { op: BinOp::Sub, w, dst: Slot(0), a: Slot(slot::RCX), b: one },
    );
    if cfg.kind.compares() {
        let stop = cx.cond(match cfg.rep {
            Rep::E => ConditionCode::ne,
            Rep::Ne => ConditionCode::e,
        });
        cx.commit_flags();
        cx.emit(Op::ExitIf { c: stop, target: cx.next });
    }
    cx.end(Term::Jump(cx.pc));
    Ok(())
}

/// `rep_string(cfg)`: runs a REP-prefixed string instruction; returns 1 if it stopped
/// early with iterations left (the instruction must run again), 0 when finished.
static REP_STRING: HelperDesc = HelperDesc {
    name: "rep_string",
    func: helper_rep_string,
    reads_state: true,
    writes_state: true,
    may_fault: true,
};

/// Elements per helper call on the element-by-element path before yielding.
const ELEM_BUDGET: u64 = 1 << 20;
/// Bytes per helper call on the bulk path before yielding.
const BULK_BUDGET: u64 = 64 << 20;
/// Bulk chunk size (at most one page of source and destination).
const CHUNK: usize = PAGE_SIZE as usize;

/// The registers a REP string op updates, kept locally while it runs.
struct Regs {
    rcx: u64,
    rsi: u64,
    rdi: u64,
    rax: u64,
    /// `(a, b)` of the last comparison (CMPS/SCAS), if any iteration ran.
    cmp: Option<(u64, u64)>,
}

fn helper_rep_string(cx: &mut HelperCx<'_>, args: [u64; 4]) -> Result<u64, Fault> {
    let cfg = Cfg::unpack(args[0]);
    let cpu = &*cx.cpu;
    let mut r =
        Regs { rcx: cpu.gpr(1), rsi: cpu.gpr(6), rdi: cpu.gpr(7), rax: cpu.gpr(0), cmp: None };
    let seg_base = match cfg.seg {
        Seg::None => 0,
        Seg::Fs => cpu.slot(slot::FS_BASE),
        Seg::Gs => cpu.slot(slot::GS_BASE),
    };
    let df = cpu.slot(slot::RFLAGS) & rflags::DF != 0;
    let result = run_rep(cx.mem, cfg, df, seg_base, &mut r);
    // Write back what was done, also when an element faulted. Under an address-size
    // prefix the register updates are 32-bit writes (upper halves cleared) once an
    // iteration has run.
    let cpu = &mut *cx.cpu;
    let ran = r.rcx != cpu.gpr(1);
    let fix = |v: u64| if cfg.addr32 && ran { v & 0xffff_ffff } else { v };
    cpu.set_gpr(1, fix(r.rcx));
    if cfg.kind.reads_src() {
        cpu.set_gpr(6, fix(r.rsi));
    }
    if cfg.kind.uses_dst() {
        cpu.set_gpr(7, fix(r.rdi));
    }
    if cfg.kind == Kind::Lods {
        cpu.set_gpr(0, r.rax);
    }
    if let Some((a, b)) = r.cmp {
        let w = cfg.w;
        cpu.set_slot(slot::CC_OP, FlagOp::Sub as u64 | (w as u64) << 8);
        cpu.set_slot(slot::CC_RES, a.wrapping_sub(b) & w.mask());
        cpu.set_slot(slot::CC_A, a);
        cpu.set_slot(slot::CC_B, b);
    }
    result
}

/// The loop. Registers in `r` always describe the completed iterations.
fn run_rep(
    mem: &mut dyn GuestMemory,
    cfg: Cfg,
    df: bool,
    seg_base: u64,
    r: &mut Regs,
) -> Result<u64, Fault> {
    let w = cfg.w;
    let wb = w.bytes() as u64;
    let amask = if cfg.addr32 { 0xffff_ffff } else { u64::MAX };
    let count = |r: &Regs| r.rcx & amask;
    let step = if df { wb.wrapping_neg() } else { wb };
    let bulk = !df && !cfg.addr32;
    let mut sc = Scratch { src: [0; CHUNK], dst: [0; CHUNK], filled: false };
    let mut budget_elems = ELEM_BUDGET;
    let mut budget_bytes = BULK_BUDGET;
    while count(r) != 0 {
        if bulk {
            if budget_bytes == 0 {
                return Ok(1);
            }
            let done = bulk_chunk(mem, cfg, seg_base, r, &mut sc)?;
            if done != 0 {
                budget_bytes = budget_bytes.saturating_sub(done);
                if ends(cfg, r) {
                    break;
                }
                continue;
            }
            // Fall through: one element by element (page-straddling element, short
            // overlap distance, or a chunk that faulted: find the exact element).
        }
        if budget_elems == 0 {
            return Ok(1);
        }
        budget_elems -= 1;
        let src = seg_base.wrapping_add(r.rsi & amask);
        let dst = r.rdi & amask;
        match cfg.kind {
            Kind::Movs => {
                let v = mem.load(src, w)?;
                mem.store(dst, w, v)?;
            }
            Kind::Stos => mem.store(dst, w, r.rax)?,
            Kind::Lods => {
                let v = mem.load(src, w)?;
                r.rax = match w {
                    Width::W32 => v,
                    Width::W64 => v,
                    _ => (r.rax & !w.mask()) | v,
                };
            }
            Kind::Cmps => {
                let a = mem.load(src, w)?;
                let b = mem.load(dst, w)?;
                r.cmp = Some((a, b));
            }
            Kind::Scas => {
                let b = mem.load(dst, w)?;
                r.cmp = Some((r.rax & w.mask(), b));
            }
        }
        r.rcx = (r.rcx.wrapping_sub(1) & amask) | (r.rcx & !amask);
        if cfg.kind.reads_src() {
            r.rsi = (r.rsi.wrapping_add(step) & amask) | (r.rsi & !amask);
        }
        if cfg.kind.uses_dst() {
            r.rdi = (r.rdi.wrapping_add(step) & amask) | (r.rdi & !amask);
        }
        if ends(cfg, r) {
            break;
        }
    }
    Ok(0)
}

/// Whether the last comparison of a REPE/REPNE CMPS/SCAS ends the operation.
fn ends(cfg: Cfg, r: &Regs) -> bool {
    match (cfg.kind.compares(), r.cmp) {
        (true, Some((a, b))) => {
            let equal = (a ^ b) & cfg.w.mask() == 0;
            equal != (cfg.rep == Rep::E)
        }
        _ => false,
    }
}

/// Bytes left in the page of `a`.
fn page_left(a: u64) -> u64 {
    page_floor(a).wrapping_add(PAGE_SIZE).wrapping_sub(a)
}

/// Scratch space of the bulk path: one chunk of source and one of destination data.
struct Scratch {
    src: [u8; CHUNK],
    dst: [u8; CHUNK],
    /// Whether `dst` holds the STOS pattern already.
    filled: bool,
}

/// The `w`-byte element at byte offset `o` of `buf`.
fn elem_at(buf: &[u8], o: usize, w: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..w].copy_from_slice(&buf[o..o + w]);
    u64::from_le_bytes(v)
}

/// One bulk chunk with DF = 0 and 64-bit addressing. Returns the bytes done; 0 means "do
/// the next element on the element path" (no progress, nothing written).
///
/// MOVS/STOS copy a page-bounded chunk (cut to the overlap distance for MOVS). LODS, CMPS
/// and SCAS read a page-bounded chunk and walk it in Rust; they may read elements past the
/// one that ends the operation, which has no visible effect on `Direct` memory.
fn bulk_chunk(
    mem: &mut dyn GuestMemory,
    cfg: Cfg,
    seg_base: u64,
    r: &mut Regs,
    sc: &mut Scratch,
) -> Result<u64, Fault> {
    let w = cfg.w.bytes();
    let wb = w as u64;
    let (reads, writes) = (cfg.kind.reads_src(), cfg.kind.uses_dst());
    let src = seg_base.wrapping_add(r.rsi);
    let dst = r.rdi;
    let mut n = r.rcx.saturating_mul(wb).min(CHUNK as u64);
    if reads {
        n = n.min(page_left(src));
    }
    if writes {
        n = n.min(page_left(dst));
    }
    if cfg.kind == Kind::Movs {
        let dist = dst.wrapping_sub(src);
        if dist != 0 && dist < n {
            // Each element must see what earlier elements wrote.
            n = dist;
        }
    }
    // No wrap-around of the 64-bit address space inside a chunk.
    if reads && src.checked_add(n).is_none() || writes && dst.checked_add(n).is_none() {
        return Ok(0);
    }
    n -= n % wb;
    if n == 0 {
        return Ok(0);
    }
    let len = n as usize;
    if reads && mem.read_bytes(src, &mut sc.src[..len]).is_err() {
        return Ok(0);
    }
    let elems = match cfg.kind {
        Kind::Movs | Kind::Stos => {
            let data = if cfg.kind == Kind::Movs {
                &sc.src[..len]
            } else {
                if !sc.filled {
                    let pat = r.rax.to_le_bytes();
                    for c in sc.dst.chunks_exact_mut(w) {
                        c.copy_from_slice(&pat[..w]);
                    }
                    sc.filled = true;
                }
                &sc.dst[..len]
            };
            if mem.write_bytes(dst, data).is_err() {
                return Ok(0);
            }
            n / wb
        }
        Kind::Lods => {
            let v = elem_at(&sc.src, len - w, w);
            r.rax = if w >= 4 { v } else { (r.rax & !cfg.w.mask()) | v };
            n / wb
        }
        Kind::Cmps | Kind::Scas => {
            if mem.read_bytes(dst, &mut sc.dst[..len]).is_err() {
                return Ok(0);
            }
            let want_equal = cfg.rep == Rep::E;
            let (a_side, b_side) = (&sc.src[..len], &sc.dst[..len]);
            let pat = r.rax.to_le_bytes();
            let pat = &pat[..w];
            // Index of the element that ends the operation, if it is in this chunk.
            let hit = match cfg.kind {
                Kind::Cmps if want_equal && a_side == b_side => None,
                Kind::Cmps => a_side
                    .chunks_exact(w)
                    .zip(b_side.chunks_exact(w))
                    .position(|(a, b)| (a == b) != want_equal),
                _ => b_side.chunks_exact(w).position(|b| (b == pat) != want_equal),
            };
            let k = hit.map_or(len / w, |i| i + 1);
            let last = (k - 1) * w;
            let a = if cfg.kind == Kind::Cmps {
                elem_at(a_side, last, w)
            } else {
                r.rax & cfg.w.mask()
            };
            r.cmp = Some((a, elem_at(b_side, last, w)));
            k as u64
        }
    };
    let bytes = elems * wb;
    r.rcx -= elems;
    if writes {
        r.rdi += bytes;
    }
    if reads {
        r.rsi = r.rsi.wrapping_add(bytes);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_round_trips() {
        for kind in [Kind::Movs, Kind::Stos, Kind::Lods, Kind::Cmps, Kind::Scas] {
            for w in [Width::W8, Width::W16, Width::W32, Width::W64] {
                for rep in [Rep::E, Rep::Ne] {
                    for seg in [Seg::None, Seg::Fs, Seg::Gs] {
                        for addr32 in [false, true] {
                            let c = Cfg { kind, w, rep, addr32, seg };
                            assert_eq!(Cfg::unpack(c.pack()), c);
                        }
                    }
                }
            }
        }
    }
}
