//! Cutting and lifting one translation block.

use super::cx::{LiftCx, Unsupported};
use super::dispatch::lifters;
use super::flags::FlagState;
use crate::cpu::{Fault, Width, GUEST_SLOTS};
use crate::ir::{Block, InsnMeta, Op, Slot, Term, UnOp};
use crate::mem::GuestMemory;
use iced_x86::{Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, Mnemonic};

/// A translated block plus the decoded instructions (for plugin views and tracing).
pub struct Translated {
    /// The IR.
    pub block: Block,
    /// The guest instructions, one per `block.insns` entry.
    pub insns: Vec<Instruction>,
    /// Set when the block ends in #UD because no lifter handles the instruction there
    /// (as opposed to an architecturally undefined opcode).
    pub unimplemented: Option<u64>,
    /// Code ranges outside the block whose bytes its translation depends on (the flag
    /// lookahead at successors): a write there must invalidate this block too.
    pub depends_on: Vec<(u64, u64)>,
}

/// Bytes fetched for a block at first (more when its instructions need them).
const FIRST_FETCH: usize = 128;

fn ends_block(i: &Instruction) -> bool {
    !matches!(i.flow_control(), FlowControl::Next)
        || matches!(i.mnemonic(), Mnemonic::Syscall | Mnemonic::Hlt | Mnemonic::Cpuid)
}

/// Most direct `jmp`s one block continues through (see `elided_target`).
const MAX_ELIDED: usize = 8;

/// Where decoding goes on after `i` in the same block, if `i` is a direct unconditional
/// `jmp` the block may continue through (as DynamoRIO elides them): not the block's last
/// instruction slot, a target below `end_limit` and not already in the block (a loop
/// stays a block that branches to itself). The `jmp` stays one of the block's
/// instructions (it executes and counts) and lifts to nothing: its target is simply the
/// next instruction. A block run then pays one dispatch, one counter of each plugin and
/// one chained exit less per elided jump.
fn elided_target(
    i: &Instruction,
    insns: &[Instruction],
    max_insns: usize,
    end_limit: u64,
    elided: usize,
) -> Option<u64> {
    if !is_direct_jmp(i) || elided >= MAX_ELIDED {
        return None;
    }
    let t = i.near_branch_target();
    (insns.len() < max_insns && t < end_limit && insns.iter().all(|d| d.ip() != t)).then_some(t)
}

/// How instructions are lifted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiftOpts {
    /// A REP-prefixed string instruction runs one element per execution and ends its
    /// block, as Valgrind's and DynamoRIO's expanded REP loops do: the instruction is
    /// executed (and seen by plugins) once per iteration plus once for the final test of
    /// the count register, and each element's accesses are ordinary memory ops that
    /// plugins can instrument. Otherwise it is one helper call that runs the whole
    /// operation (bulk copies, no per-element memory ops). See `string.rs`.
    pub rep_each: bool,
}

/// Translate the block starting at `pc`. Fails only if the first instruction cannot be
/// fetched (the fault to raise at `pc`).
pub fn translate(
    pc: u64,
    mem: &mut dyn GuestMemory,
    max_insns: usize,
    end_limit: u64,
) -> Result<Translated, Fault> {
    translate_with(pc, mem, max_insns, end_limit, LiftOpts::default())
}

/// [`translate`] with lifting options.
pub fn translate_with(
    pc: u64,
    mem: &mut dyn GuestMemory,
    max_insns: usize,
    end_limit: u64,
    opts: LiftOpts,
) -> Result<Translated, Fault> {
    // Fetch a little first and more only when the decoder runs out: most blocks are a
    // few instructions long, and the buffer could hold `max_insns` of the longest.
    let cap = max_insns.clamp(1, 256) * 15;
    let mut buf = vec![0u8; cap.min(FIRST_FETCH)];
    let mut n = mem.fetch_code(pc, &mut buf)?;
    let mut insns: Vec<Instruction> = Vec::new();
    let mut trailing_fault: Option<Term> = None;
    // Start of the contiguous run being decoded (the block's first, or the target of an
    // elided `jmp`) and the offset in `buf` of its next instruction.
    let mut seg = pc;
    let mut at = 0usize;
    let mut elided = 0;
    loop {
        // Whether a bigger buffer would hold more bytes (the fetch was not cut short).
        let more = n == buf.len() && buf.len() < cap;
        let mut grow = false;
        let mut next_seg = None;
        let mut dec = Decoder::with_ip(64, &buf[at..n], seg + at as u64, DecoderOptions::NONE);
        while insns.len() < max_insns {
            if !dec.can_decode() {
                grow = more;
                break;
            }
            if dec.ip() >= end_limit && !insns.is_empty() {
                break;
            }
            let i = dec.decode();
            if i.is_invalid() {
                if dec.last_error() == DecoderError::NoMoreBytes {
                    if more {
                        grow = true;
                    } else if n < buf.len() && insns.is_empty() {
                        // The instruction runs into a page we cannot fetch.
                        let addr = pc + n as u64;
                        return Err(Fault::PageFault {
                            addr,
                            code: crate::cpu::pf::USER | crate::cpu::pf::FETCH,
                        });
                    } else if n == buf.len() && insns.is_empty() {
                        let len = (i.len() as u64).max(1);
                        trailing_fault =
                            Some(Term::Fault { fault: Fault::InvalidOpcode, pc, next: pc + len });
                    }
                } else if insns.is_empty() {
                    let len = (i.len() as u64).max(1);
                    trailing_fault =
                        Some(Term::Fault { fault: Fault::InvalidOpcode, pc, next: pc + len });
                }
                break;
            }
            at += i.len();
            insns.push(i);
            if ends_block(&i) {
                next_seg = elided_target(&i, &insns, max_insns, end_limit, elided);
                break;
            }
        }
        if let Some(t) = next_seg {
            // Go on at the target when its first bytes can be fetched; if not, the `jmp`
            // ends the block as usual (and the target faults when it runs).
            let mut b = vec![0u8; cap.min(FIRST_FETCH)];
            if let Ok(k) = mem.fetch_code(t, &mut b) {
                (buf, n, seg, at) = (b, k, t, 0);
                elided += 1;
                continue;
            }
            break;
        }
        if !grow {
            break;
        }
        let old = buf.len();
        buf.resize((old * 2).min(cap), 0);
        n += mem.fetch_code(seg + old as u64, &mut buf[old..]).unwrap_or(0);
    }
    if insns.is_empty() {
        let term =
            trailing_fault.unwrap_or(Term::Fault { fault: Fault::InvalidOpcode, pc, next: pc + 1 });
        let block =
            Block { pc, end: pc + 1, ops: vec![], insns: vec![], term, temps: 0, fixups: vec![] };
        return Ok(Translated { block, insns, unimplemented: None, depends_on: vec![] });
    }
    let mut depends_on = Vec::new();
    let exit_live = exit_liveness(insns.last().expect("non-empty"), mem, &mut depends_on);
    let mut t = lift(pc, insns, exit_live, opts);
    // The block's own code past an elided `jmp` is watched like the lookahead's: `end`
    // closes the first contiguous run, each later run is a range it depends on.
    let runs = runs(&t.block.insns);
    if let Some(&(_, first_end)) = runs.first() {
        t.block.end = first_end;
    }
    depends_on.extend(runs.into_iter().skip(1));
    t.depends_on = depends_on;
    Ok(t)
}

/// The contiguous runs `(start, end)` of a block's instructions, in block order (more
/// than one when the block continues through an elided `jmp`).
pub fn runs(insns: &[InsnMeta]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for m in insns {
        let end = m.pc + m.len as u64;
        match out.last_mut() {
            Some(r) if r.1 == m.pc => r.1 = end,
            _ => out.push((m.pc, end)),
        }
    }
    out
}

const STATUS: u32 = iced_x86::RflagsBits::OF
    | iced_x86::RflagsBits::SF
    | iced_x86::RflagsBits::ZF
    | iced_x86::RflagsBits::AF
    | iced_x86::RflagsBits::CF
    | iced_x86::RflagsBits::PF;

/// Status flags that may be read after the block: the union over its direct successors of
/// the flags a straight-line lookahead reads before writing. Unknown successors (returns,
/// indirect jumps, syscalls, traps) keep every flag live.
fn exit_liveness(last: &Instruction, mem: &mut dyn GuestMemory, deps: &mut Vec<(u64, u64)>) -> u32 {
    let succs: Vec<u64> = match last.flow_control() {
        FlowControl::Next => vec![last.next_ip()],
        FlowControl::ConditionalBranch if is_direct(last) => {
            vec![last.near_branch_target(), last.next_ip()]
        }
        FlowControl::UnconditionalBranch | FlowControl::Call if is_direct(last) => {
            vec![last.near_branch_target()]
        }
        _ => return u32::MAX,
    };
    let mut live = !STATUS;
    for pc in succs {
        live |= lookahead(pc, mem, deps);
    }
    live
}

/// A direct unconditional `jmp`: decoding can go on at its target (`elided_target`), so
/// one that is not its block's last instruction was gone through.
fn is_direct_jmp(i: &Instruction) -> bool {
    i.mnemonic() == Mnemonic::Jmp && is_direct(i)
}

fn is_direct(i: &Instruction) -> bool {
    matches!(
        i.op0_kind(),
        iced_x86::OpKind::NearBranch64
            | iced_x86::OpKind::NearBranch32
            | iced_x86::OpKind::NearBranch16
    )
}

/// Status flags read by code at `pc` before being overwritten (looking at up to 16
/// straight-line instructions; anything undecided counts as read).
fn lookahead(pc: u64, mem: &mut dyn GuestMemory, deps: &mut Vec<(u64, u64)>) -> u32 {
    // A short look first; the full 16 instructions' worth of bytes only when it ran out.
    let mut buf = [0u8; 16 * 15];
    for len in [64, buf.len()] {
        let Ok(n) = mem.fetch_code(pc, &mut buf[..len]) else { return STATUS };
        let may_grow = n == len && len < buf.len();
        if let Some(live) = lookahead_in(pc, &buf[..n], may_grow) {
            deps.push((pc, pc + n as u64));
            return live;
        }
    }
    unreachable!("the last attempt always decides")
}

/// `lookahead` over the fetched `code`; `None` when it ran out of bytes and `may_grow`.
fn lookahead_in(pc: u64, code: &[u8], may_grow: bool) -> Option<u32> {
    let mut dec = Decoder::with_ip(64, code, pc, DecoderOptions::NONE);
    let (mut live, mut written) = (0u32, 0u32);
    for _ in 0..16 {
        if !dec.can_decode() {
            if may_grow {
                return None;
            }
            break;
        }
        let i = dec.decode();
        if may_grow && i.is_invalid() && dec.last_error() == DecoderError::NoMoreBytes {
            return None;
        }
        // Past a syscall or a trap the kernel or a signal handler sees every flag. So it
        // does past HLT (#GP at CPL 3), which iced counts as falling through.
        if i.is_invalid()
            || matches!(
                i.mnemonic(),
                Mnemonic::Syscall | Mnemonic::Int | Mnemonic::Int3 | Mnemonic::Hlt
            )
        {
            break;
        }
        // As in `flag_liveness`: DIV/IDIV see every flag; a CL shift (count 0) and REP
        // CMPS/SCAS (RCX = 0) may write none, so they do not end the lookahead's need.
        let seen = if super::muldiv::fault_sees_flags(&i) { STATUS } else { 0 };
        live |= (i.rflags_read() | seen) & !written;
        if !super::shift::may_keep_flags(&i) && !super::string::may_keep_flags(&i) {
            written |= i.rflags_modified();
        }
        if written & STATUS == STATUS {
            return Some(live & STATUS);
        }
        if !matches!(i.flow_control(), FlowControl::Next) {
            break;
        }
    }
    Some((live | !written) & STATUS)
}

/// Liveness of status flags after each instruction (iced `RflagsBits`).
fn flag_liveness(insns: &[Instruction], exit_live: u32) -> Vec<u32> {
    let mut live = exit_live;
    let mut out = vec![0; insns.len()];
    for (k, i) in insns.iter().enumerate().rev() {
        out[k] = live;
        // A shift or rotate by CL may keep every flag (count 0), and so may REP CMPS/SCAS
        // (RCX = 0): they kill nothing.
        let keeps = super::shift::may_keep_flags(i) || super::string::may_keep_flags(i);
        let killed = if keeps { 0 } else { i.rflags_modified() };
        // A #DE is an expected event: its handler sees every flag.
        let seen = if super::muldiv::fault_sees_flags(i) { u32::MAX } else { 0 };
        live = (live & !killed) | i.rflags_read() | seen;
    }
    out
}

fn lift(pc: u64, mut insns: Vec<Instruction>, exit_live: u32, opts: LiftOpts) -> Translated {
    let live = flag_liveness(&insns, exit_live);
    let mut cx = LiftCx::new(&insns[0]);
    cx.rep_each = opts.rep_each;
    let mut metas: Vec<InsnMeta> = Vec::with_capacity(insns.len());
    let mut fixups: Vec<(u32, Vec<Op>)> = Vec::new();
    let mut term = None;
    let mut unimplemented = None;
    let mut lifted = 0;
    for k in 0..insns.len() {
        let i = &insns[k];
        cx.i = i;
        cx.pc = i.ip();
        cx.next = i.next_ip();
        cx.live_out = live[k];
        cx.mem_addr = None;
        let snap = (cx.ops.len(), cx.temps, cx.flags);
        if k + 1 < insns.len() && is_direct_jmp(i) {
            // An elided `jmp` (`elided_target`): the next instruction is its target.
            metas.push(InsnMeta { pc: i.ip(), len: i.len() as u8, first_op: snap.0 as u32 });
            lifted = k + 1;
            continue;
        }
        if let FlagState::Pending(_) = cx.flags {
            fixups.push((k as u32, cx.flags.commit_ops()));
        }
        let mut r = Err(Unsupported);
        for f in lifters(i.mnemonic()) {
            r = f(&mut cx);
            if r.is_ok() {
                break;
            }
            cx.ops.truncate(snap.0);
            cx.temps = snap.1;
            cx.flags = snap.2;
            cx.term = None;
            cx.mem_addr = None;
        }
        if r.is_err() || cx.temps as usize > crate::cpu::MAX_TEMPS - 64 {
            cx.ops.truncate(snap.0);
            cx.temps = snap.1;
            cx.flags = snap.2;
            cx.term = None;
            if fixups.last().is_some_and(|f| f.0 == k as u32) {
                fixups.pop();
            }
            if k == 0 {
                if r.is_err() {
                    unimplemented = Some(i.ip());
                }
                term = Some(Term::Fault {
                    fault: Fault::InvalidOpcode,
                    pc: i.ip(),
                    next: i.next_ip(),
                });
                metas.push(InsnMeta {
                    pc: i.ip(),
                    len: i.len() as u8,
                    first_op: cx.ops.len() as u32,
                });
                lifted = 1;
            } else {
                term = Some(Term::Jump(i.ip()));
            }
            break;
        }
        metas.push(InsnMeta { pc: i.ip(), len: i.len() as u8, first_op: snap.0 as u32 });
        lifted = k + 1;
        if let Some(t) = cx.term.take() {
            term = Some(t);
            break;
        }
    }
    let end_pc = metas.last().map_or(pc, |m| m.pc + m.len as u64);
    let term = term.unwrap_or(Term::Jump(end_pc));
    // A block cut short (unsupported instruction at k > 0) ends at an instruction whose
    // flag reads the liveness already accounted for; otherwise `exit_live` decides.
    let cut_short = lifted < insns.len();
    if cut_short || exit_live & STATUS != 0 {
        cx.commit_flags();
    }
    let mut ops = std::mem::take(&mut cx.ops);
    let temps = cx.temps;
    fold_moves(&mut ops, &mut metas, &fixups, &term, temps);
    // The lifter's buffer is sized for the longest blocks; a cached block keeps an exact
    // copy (tens of thousands of blocks stay dense in memory and the big buffer is reused
    // by the next translation).
    let ops = ops.as_slice().to_vec();
    metas.shrink_to_fit();
    insns.truncate(lifted);
    insns.shrink_to_fit();
    let block = Block { pc, end: end_pc, ops, insns: metas, term, temps, fixups };
    debug_assert!(crate::ir::verify(&block).is_ok(), "{:?}\n{block}", crate::ir::verify(&block));
    Translated { block, insns, unimplemented, depends_on: Vec::new() }
}

/// Fold `t = op ...; g = mov t` into `g = op ...` when `t` has no other use (the common
/// shape of lifted register writes). Keeps instruction boundaries: never folds across one.
fn fold_moves(
    ops: &mut Vec<Op>,
    metas: &mut [InsnMeta],
    fixups: &[(u32, Vec<Op>)],
    term: &Term,
    temps: u16,
) {
    // Uses of each temporary, indexed by slot number (temporaries are numbered from
    // `GUEST_SLOTS` up to `GUEST_SLOTS + temps`).
    let mut uses = vec![0u32; GUEST_SLOTS + temps as usize];
    let mut count = |s: Slot| {
        if !s.is_guest() {
            if let Some(u) = uses.get_mut(s.0 as usize) {
                *u += 1;
            }
        }
    };
    for op in ops.iter() {
        op.for_each_src(&mut count);
    }
    for (_, f) in fixups {
        for op in f {
            op.for_each_src(&mut count);
        }
    }
    match *term {
        Term::Branch { c, .. } => count(c),
        Term::Indirect { target, .. } => count(target),
        _ => {}
    }
    let mut starts = vec![false; ops.len() + 1];
    for m in metas.iter() {
        if let Some(st) = starts.get_mut(m.first_op as usize) {
            *st = true;
        }
    }
    let mut keep = vec![true; ops.len()];
    for j in 1..ops.len() {
        let (dst, src, zext32) = match ops[j] {
            Op::Mov { dst, src } => (dst, src, false),
            Op::Un { op: UnOp::Zext, w: Width::W32, dst, a } => (dst, a, true),
            _ => continue,
        };
        if !dst.is_guest() || src.is_guest() || uses.get(src.0 as usize) != Some(&1) {
            continue;
        }
        if !keep[j - 1] || starts[j] || ops[j - 1].dst() != Some(src) {
            continue;
        }
        let foldable = match ops[j - 1] {
            Op::Bin { w, .. } | Op::BinImm { w, .. } | Op::Load { w, .. } => {
                !zext32 || w != Width::W64
            }
            Op::Un { op, w, .. } => !zext32 || (op != UnOp::Sext && w != Width::W64),
            Op::Cmp { .. } | Op::CmpImm { .. } => true,
            Op::Const { imm, .. } => !zext32 || imm <= u32::MAX as u64,
            Op::Select { .. } | Op::Mov { .. } => !zext32,
            _ => false,
        };
        if !foldable {
            continue;
        }
        super::cx::set_dst(&mut ops[j - 1], dst);
        keep[j] = false;
    }
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut new_index = Vec::with_capacity(ops.len() + 1);
    let mut n = 0u32;
    for k in &keep {
        new_index.push(n);
        n += *k as u32;
    }
    new_index.push(n);
    for m in metas.iter_mut() {
        m.first_op = new_index[m.first_op as usize];
    }
    let mut it = keep.iter();
    ops.retain(|_| *it.next().unwrap_or(&true));
}

/// Whether a lifter accepts this instruction (for test generators).
pub fn lift_probe(i: &Instruction) -> bool {
    lifters(i.mnemonic()).iter().any(|f| {
        let mut cx = LiftCx::new(i);
        cx.live_out = u32::MAX;
        f(&mut cx).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::RmwOp;

    /// Code bytes at `BASE`; fetches past the end fail like an unmapped page. Counts the
    /// bytes fetched.
    struct Code {
        bytes: Vec<u8>,
        fetched: usize,
    }

    const BASE: u64 = 0x40_0000;

    impl GuestMemory for Code {
        fn load(&mut self, addr: u64, _: Width) -> Result<u64, Fault> {
            Err(Fault::PageFault { addr, code: 4 })
        }
        fn store(&mut self, addr: u64, _: Width, _: u64) -> Result<(), Fault> {
            Err(Fault::PageFault { addr, code: 6 })
        }
        fn atomic_rmw(&mut self, _: RmwOp, addr: u64, _: Width, _: u64) -> Result<u64, Fault> {
            Err(Fault::PageFault { addr, code: 6 })
        }
        fn atomic_cas(&mut self, addr: u64, _: Width, _: u64, _: u64) -> Result<u64, Fault> {
            Err(Fault::PageFault { addr, code: 6 })
        }
        fn atomic_cas128(&mut self, addr: u64, _: u128, _: u128) -> Result<u128, Fault> {
            Err(Fault::PageFault { addr, code: 6 })
        }
        fn fetch_code(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, Fault> {
            let off = addr.wrapping_sub(BASE) as usize;
            let n = self.bytes.len().saturating_sub(off).min(buf.len());
            if n == 0 {
                return Err(Fault::PageFault { addr, code: 4 | 16 });
            }
            buf[..n].copy_from_slice(&self.bytes[off..off + n]);
            self.fetched += n;
            Ok(n)
        }
        fn watch_code(&mut self, _: u64, _: u64) {}
        fn code_written(&self) -> bool {
            false
        }
        fn take_code_writes(&mut self) -> Vec<u64> {
            Vec::new()
        }
    }

    const ADD_RAX_1: [u8; 4] = [0x48, 0x83, 0xc0, 0x01];
    const RET: u8 = 0xc3;

    #[test]
    fn long_blocks_are_fetched_in_steps_and_short_ones_fetch_little() {
        // 60 four-byte instructions and a RET: 241 bytes, past the first fetch.
        let mut bytes: Vec<u8> = ADD_RAX_1.repeat(60);
        bytes.push(RET);
        let mut mem = Code { bytes, fetched: 0 };
        let t = translate(BASE, &mut mem, 64, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 61);
        assert_eq!(t.block.end, BASE + 241);
        assert!(matches!(t.block.term, Term::Indirect { is_ret: true, .. }));
        // A two-instruction block at the end reads at most the first fetch.
        let mut mem = Code { bytes: mem.bytes, fetched: 0 };
        let t = translate(BASE + 236, &mut mem, 64, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 2);
        assert!(mem.fetched <= FIRST_FETCH, "fetched {}", mem.fetched);
    }

    #[test]
    fn an_instruction_cut_by_the_end_of_fetchable_code_past_the_first_fetch() {
        // 50 instructions (200 bytes) then the first 2 bytes of a third: the block stops
        // before it; a block starting at it faults at the first unfetchable byte.
        let mut bytes: Vec<u8> = ADD_RAX_1.repeat(50);
        bytes.extend_from_slice(&ADD_RAX_1[..2]);
        let mut mem = Code { bytes, fetched: 0 };
        let t = translate(BASE, &mut mem, 64, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 50);
        assert_eq!(t.block.term, Term::Jump(BASE + 200));
        let r = translate(BASE + 200, &mut mem, 64, u64::MAX).map(|t| t.insns.len());
        let code = crate::cpu::pf::USER | crate::cpu::pf::FETCH;
        assert_eq!(r.err(), Some(Fault::PageFault { addr: BASE + 202, code }));
    }

    #[test]
    fn lookahead_depends_on_the_bytes_it_decoded_even_far_away() {
        // JMP to 14 five-byte NOPs (70 bytes: past the short look) and an ADD that writes
        // every status flag: the lookahead needs the longer fetch, and the ADD's bytes
        // must be among the block's dependencies (a write there invalidates the block).
        let mut bytes = vec![0xeb, 0x00]; // jmp +0 (to BASE + 2)
        for _ in 0..14 {
            bytes.extend_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]); // nop dword [rax+rax]
        }
        bytes.extend_from_slice(&ADD_RAX_1);
        let mut mem = Code { bytes, fetched: 0 };
        // One instruction: the `jmp` ends the block (it is not elided).
        let t = translate(BASE, &mut mem, 1, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 1);
        let add = BASE + 72;
        assert!(t.depends_on.iter().any(|&(s, e)| s <= add && add + 4 <= e), "{:x?}", t.depends_on);
    }

    #[test]
    fn a_block_goes_on_through_a_direct_jmp() {
        // add rax, 1 ; jmp +4 ; (4 bytes that are not code) ; add rax, 1 ; ret
        let mut bytes = ADD_RAX_1.to_vec();
        bytes.extend_from_slice(&[0xeb, 0x04, 0x0f, 0x0b, 0x0f, 0x0b]);
        bytes.extend_from_slice(&ADD_RAX_1);
        bytes.push(RET);
        let mut mem = Code { bytes, fetched: 0 };
        let t = translate(BASE, &mut mem, 64, u64::MAX).unwrap();
        let pcs: Vec<u64> = t.block.insns.iter().map(|m| m.pc - BASE).collect();
        assert_eq!(pcs, [0, 4, 10, 14]);
        assert!(matches!(t.block.term, Term::Indirect { is_ret: true, .. }));
        // The `jmp` executes (it is one of the block's instructions) but lifts to nothing.
        assert_eq!(t.block.insns[1].first_op, t.block.insns[2].first_op);
        // `end` closes the first run; the second is a range the block depends on.
        assert_eq!(t.block.end, BASE + 6);
        assert_eq!(runs(&t.block.insns), [(BASE, BASE + 6), (BASE + 10, BASE + 15)]);
        assert!(t.depends_on.contains(&(BASE + 10, BASE + 15)), "{:x?}", t.depends_on);
        // Not past the end limit (`run_snippet`'s stop address): the `jmp` ends the block.
        let t = translate(BASE, &mut mem, 64, BASE + 10).unwrap();
        assert_eq!(t.insns.len(), 2);
        assert_eq!(t.block.term, Term::Jump(BASE + 10));
    }

    #[test]
    fn a_jmp_back_into_the_block_or_past_the_limits_ends_it() {
        // l: add rax, 1 ; jmp l: a loop stays a block that branches to itself.
        let mut bytes = ADD_RAX_1.to_vec();
        bytes.extend_from_slice(&[0xeb, 0xfa]);
        let mut mem = Code { bytes, fetched: 0 };
        let t = translate(BASE, &mut mem, 64, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 2);
        assert_eq!(t.block.term, Term::Jump(BASE));
        // A chain of `jmp +0`: at most MAX_ELIDED are gone through, and never more than
        // `max_insns` instructions in all.
        let mut mem = Code { bytes: [0xeb, 0x00].repeat(20), fetched: 0 };
        let t = translate(BASE, &mut mem, 64, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), MAX_ELIDED + 1);
        assert_eq!(t.block.term, Term::Jump(BASE + 2 * (MAX_ELIDED as u64 + 1)));
        let t = translate(BASE, &mut mem, 3, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 3);
        assert_eq!(t.block.term, Term::Jump(BASE + 6));
        // A target that cannot be fetched: the `jmp` ends the block, the target faults
        // when it runs.
        let mut mem = Code { bytes: vec![0xe9, 0, 0x10, 0, 0], fetched: 0 };
        let t = translate(BASE, &mut mem, 64, u64::MAX).unwrap();
        assert_eq!(t.insns.len(), 1);
        assert_eq!(t.block.term, Term::Jump(BASE + 5 + 0x1000));
    }
}
