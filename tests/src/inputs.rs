//! Input states for an instruction instance: edge values first, then seeded random values,
//! then the constraints that keep a case runnable and meaningful.
//!
//! Order of construction: (1) every GPR, XMM, MXCSR and the flags get values (edge values
//! 0, 1, 2, -1, 0x7f.., 0x80.., width boundaries for the first states, rotated so operand
//! pairs vary; random afterwards; one input in eight gives all register operands equal
//! values); (2) per-mnemonic shaping of data registers (small RCX
//! for REP, small bit offsets for BT* on memory, 16-bit SHLD/SHRD counts <= 16 whose
//! results are defined); (3) every memory access iced reports
//! (`InstructionInfo::used_memory`, explicit and implicit such as the stack or RSI/RDI) gets
//! its base register solved so the address lands in the scratch area; (4) the bytes around
//! each access are randomised or given edge values; (5) shaping that needs memory: branch
//! targets for RET and indirect jumps/calls, POPF images without TF/AC, CMPXCHG operands
//! equal half of the time, DIV/IDIV dividends that mostly do not overflow.

use crate::gen::Placement;
use crate::native::{Layout, GPR64};
use crate::rng::Rng;
use crate::state::{Regs, FLAGS_IN, SCRATCH_LEN};
use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind, Register, UsedMemory};

const EDGES: [u64; 24] = [
    0,
    1,
    2,
    u64::MAX,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0x8000_0000_0000_0001,
    31,
    32,
    63,
    64,
    0xfffe,
    0xffff_ffff_ffff_fffe,
];

const F32_EDGES: [u32; 12] = [
    0,
    0x8000_0000,
    0x3f80_0000,
    0xbf80_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0x7fa0_0000,
    1,
    0x7f7f_ffff,
    0x0080_0000,
    0x4f00_0000,
];
const F64_EDGES: [u64; 10] = [
    0,
    0x8000_0000_0000_0000,
    0x3ff0_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0x7ff4_0000_0000_0000,
    1,
    0x0010_0000_0000_0000,
    0x43e0_0000_0000_0000,
];

/// One input: registers and the full scratch image.
#[derive(Clone)]
pub struct Input {
    /// Registers.
    pub regs: Regs,
    /// Scratch memory image.
    pub mem: Vec<u8>,
    /// Scratch offsets of the memory accesses (for failure reports).
    pub targets: Vec<usize>,
}

fn gpr_value(rng: &mut Rng, edge: Option<usize>, n: usize) -> u64 {
    if let Some(k) = edge {
        return EDGES[(k * 7 + n * 5) % EDGES.len()];
    }
    match rng.below(20) {
        0..=9 => rng.next_u64(),
        10..=13 => rng.next_u64() >> (rng.below(64)),
        14..=16 => (rng.below(512) as i64 - 256) as u64,
        _ => *rng.pick(&EDGES),
    }
}

fn xmm_value(rng: &mut Rng) -> u128 {
    match rng.below(4) {
        0 | 1 => u128::from(rng.next_u64()) | u128::from(rng.next_u64()) << 64,
        2 => (0..4).fold(0u128, |acc, i| {
            let lane = if rng.chance(1, 2) { *rng.pick(&F32_EDGES) } else { rng.next_u64() as u32 };
            acc | u128::from(lane) << (32 * i)
        }),
        _ => (0..2).fold(0u128, |acc, i| {
            let lane = if rng.chance(1, 2) { *rng.pick(&F64_EDGES) } else { rng.next_u64() };
            acc | u128::from(lane) << (64 * i)
        }),
    }
}

fn mxcsr_value(rng: &mut Rng) -> u32 {
    if rng.chance(3, 4) {
        return 0x1f80;
    }
    let mut m = 0x1f80 | (rng.below(4) as u32) << 13 | (rng.below(64) as u32);
    if rng.chance(1, 2) {
        m |= 0x8000; // FTZ
    }
    if rng.chance(1, 2) {
        m |= 0x40; // DAZ
    }
    if rng.chance(1, 10) {
        m &= !((rng.below(64) as u32) << 7); // unmask some exceptions
    }
    m
}

fn gpr_index(r: Register) -> Option<usize> {
    let full = r.full_register();
    GPR64.iter().position(|g| *g == full)
}

/// Solve `base` so that `base + index*scale + disp == target` (wrapping), given the index's
/// value; `None` if base and index are the same register and no solution exists.
fn solve_base(target: u64, disp: u64, scale: u64, same: bool, idx_val: u64) -> Option<u64> {
    let t = target.wrapping_sub(disp);
    if !same {
        return Some(t.wrapping_sub(idx_val.wrapping_mul(scale)));
    }
    // v * (scale + 1) == t (mod 2^64); scale + 1 is 2, 3, 5 or 9.
    let f = scale + 1;
    let tz = f.trailing_zeros();
    if t.trailing_zeros() < tz && t != 0 {
        return None;
    }
    let odd = f >> tz;
    let mut inv = 1u64;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
    }
    Some((t >> tz).wrapping_mul(inv))
}

/// Build an input for `ins`: edge values number `edge` (rotated per register), or random
/// values when `edge` is `None`.
pub fn make_input(
    ins: &Instruction,
    used: &[UsedMemory],
    l: &Layout,
    place: &Placement,
    base_mem: &[u8],
    rng: &mut Rng,
    edge: Option<usize>,
) -> Input {
    let m = ins.mnemonic();
    let mut regs = Regs::default();
    for n in 0..16 {
        regs.gpr[n] = gpr_value(rng, edge, n);
        regs.xmm[n] = xmm_value(rng);
    }
    regs.mxcsr = mxcsr_value(rng);
    // Sometimes give every register operand the same value (src1 = src2: equal compares,
    // x - x, and so on), without making them the same register.
    if rng.chance(1, 8) {
        let ops: Vec<Register> = (0..ins.op_count())
            .filter(|&i| ins.op_kind(i) == OpKind::Register)
            .map(|i| ins.op_register(i))
            .collect();
        if let Some(first) = ops.iter().find_map(|r| gpr_index(*r)) {
            let v = regs.gpr[first];
            ops.iter().filter_map(|r| gpr_index(*r)).for_each(|n| regs.gpr[n] = v);
        }
        let xmms: Vec<usize> = ops.iter().filter(|r| r.is_xmm()).map(|r| r.number()).collect();
        if let Some(&first) = xmms.first() {
            let v = regs.xmm[first];
            xmms.iter().for_each(|&n| regs.xmm[n] = v);
        }
    }
    let string = ins.has_rep_prefix() || ins.has_repne_prefix() || is_string(m);
    regs.rflags = rng.next_u64() & FLAGS_IN & !0x400;
    if rng.chance(1, if string { 2 } else { 8 }) {
        regs.rflags |= 0x400;
    }
    // Default stack: the middle of the scratch area.
    regs.gpr[4] = l.scratch + 0x1000 + rng.below(32) * 8;
    if ins.has_rep_prefix() || ins.has_repne_prefix() {
        regs.gpr[1] = if rng.chance(1, 8) { 0 } else { rng.below(17) };
    }
    if matches!(m, Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc)
        && ins.op0_kind() == OpKind::Memory
        && ins.op1_kind() == OpKind::Register
    {
        let n = gpr_index(ins.op1_register()).unwrap_or(0);
        regs.gpr[n] = (rng.below(4096) as i64 - 2048) as u64;
    }
    // SHLD/SHRD of 16-bit operands by more than 16 give an undefined result.
    if matches!(m, Mnemonic::Shld | Mnemonic::Shrd)
        && ins.op_count() == 3
        && ins.op2_kind() == OpKind::Register
        && ins.op1_register().size() == 2
    {
        regs.gpr[1] = (regs.gpr[1] & !0xff) | ((regs.gpr[1] & 0x1f) % 17);
    }
    if matches!(m, Mnemonic::Enter | Mnemonic::Leave) {
        regs.gpr[5] = l.scratch + 0x1100 + rng.below(16) * 8;
    }
    // Memory addresses.
    let mut fixed = [false; 16];
    let mut targets = Vec::new();
    for u in used.iter().filter(|u| u.access() != iced_x86::OpAccess::NoMemAccess) {
        let target = if u.base() == Register::RIP
            || (u.base() == Register::None && u.index() == Register::None)
        {
            u.displacement()
        } else {
            let size = u.memory_size().size().clamp(1, 16) as u64;
            let align = if rng.chance(9, 10) { size.next_power_of_two() } else { 1 };
            let off = 0x800 + rng.below(0x1000);
            (l.scratch + off) & !(align - 1)
        };
        if let Some(b) = gpr_index(u.base()) {
            if !fixed[b] {
                let ix = gpr_index(u.index());
                let idx_val = reg_value(u.index(), &regs);
                let same = ix == Some(b);
                let t = if same { target & !1 } else { target };
                if let Some(v) =
                    solve_base(t, u.displacement(), u64::from(u.scale()), same, idx_val)
                {
                    regs.gpr[b] = v;
                    fixed[b] = true;
                }
            }
        }
        let ea = effective(u, &regs);
        if let Some(off) = ea.checked_sub(l.scratch).filter(|o| *o < SCRATCH_LEN as u64) {
            targets.push(off as usize);
        }
    }
    let mut mem = base_mem.to_vec();
    for &t in &targets {
        let lo = t.saturating_sub(16);
        let hi = (t + 48).min(SCRATCH_LEN);
        if rng.chance(1, 2) {
            rng.fill(&mut mem[lo..hi]);
        } else {
            let v = match edge {
                Some(k) => EDGES[(k * 3) % EDGES.len()],
                None => *rng.pick(&EDGES),
            };
            let n = (hi - t).min(8);
            mem[t..t + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
    }
    let mut inp = Input { regs, mem, targets };
    let solved = inp.regs;
    shape_after(ins, &mut inp, l, place, rng);
    // Shaping rewrites registers (dividends, accumulators, counts); if one of them also
    // forms an address, the access would leave the scratch page and hit whatever the host
    // has mapped there at that moment. Put such address registers back.
    let in_scratch = |a: u64| a.checked_sub(l.scratch).is_some_and(|o| o < SCRATCH_LEN as u64);
    for u in used.iter().filter(|u| u.access() != iced_x86::OpAccess::NoMemAccess) {
        if in_scratch(effective(u, &solved)) && !in_scratch(effective(u, &inp.regs)) {
            for r in [u.base(), u.index()] {
                if let Some(n) = gpr_index(r) {
                    inp.regs.gpr[n] = solved.gpr[n];
                }
            }
        }
    }
    inp
}

fn effective(u: &UsedMemory, regs: &Regs) -> u64 {
    if u.base() == Register::RIP {
        return u.displacement();
    }
    let index = reg_value(u.index(), regs).wrapping_mul(u64::from(u.scale()));
    reg_value(u.base(), regs).wrapping_add(index).wrapping_add(u.displacement())
}

fn is_string(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Movsb
            | Movsw
            | Movsd
            | Movsq
            | Cmpsb
            | Cmpsw
            | Cmpsd
            | Cmpsq
            | Stosb
            | Stosw
            | Stosd
            | Stosq
            | Lodsb
            | Lodsw
            | Lodsd
            | Lodsq
            | Scasb
            | Scasw
            | Scasd
            | Scasq
    )
}

fn put_u64(inp: &mut Input, l: &Layout, addr: u64, v: u64) {
    if let Some(off) =
        addr.checked_sub(l.scratch).map(|o| o as usize).filter(|o| o + 8 <= SCRATCH_LEN)
    {
        inp.mem[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

fn get_u64(inp: &Input, l: &Layout, addr: u64) -> u64 {
    match addr.checked_sub(l.scratch).map(|o| o as usize).filter(|o| o + 8 <= SCRATCH_LEN) {
        Some(off) => u64::from_le_bytes(inp.mem[off..off + 8].try_into().unwrap_or([0; 8])),
        None => 0,
    }
}

/// The value of operand `op` (register or memory) of `ins`, at `size` bytes.
fn operand_value(ins: &Instruction, op: u32, inp: &Input, l: &Layout) -> u64 {
    let size = ins.memory_size().size().clamp(1, 8);
    let mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
    match ins.op_kind(op) {
        OpKind::Register => reg_value(ins.op_register(op), &inp.regs),
        OpKind::Memory => {
            let off = inp.targets.first().copied().unwrap_or(0);
            get_u64(inp, l, l.scratch + off as u64) & mask
        }
        _ => 0,
    }
}

/// The value of a GPR (any width, including AH..BH) in `regs`.
pub fn reg_value(r: Register, regs: &Regs) -> u64 {
    let Some(n) = gpr_index(r) else { return 0 };
    let v = regs.gpr[n];
    match r {
        Register::AH | Register::CH | Register::DH | Register::BH => (v >> 8) & 0xff,
        _ => match r.size() {
            1 => v & 0xff,
            2 => v & 0xffff,
            4 => v & 0xffff_ffff,
            _ => v,
        },
    }
}

fn shape_after(ins: &Instruction, inp: &mut Input, l: &Layout, place: &Placement, rng: &mut Rng) {
    let m = ins.mnemonic();
    match ins.flow_control() {
        FlowControl::Return => {
            let rsp = inp.regs.gpr[4];
            put_u64(inp, l, rsp, place.taken);
        }
        FlowControl::IndirectBranch | FlowControl::IndirectCall => match ins.op0_kind() {
            OpKind::Register => {
                if let Some(n) = gpr_index(ins.op0_register()) {
                    inp.regs.gpr[n] = place.taken;
                }
            }
            _ => {
                if let Some(off) = inp.targets.first().copied() {
                    put_u64(inp, l, l.scratch + off as u64, place.taken);
                }
            }
        },
        _ => {}
    }
    match m {
        Mnemonic::Popf | Mnemonic::Popfq => {
            let rsp = inp.regs.gpr[4];
            let v = get_u64(inp, l, rsp) & FLAGS_IN;
            put_u64(inp, l, rsp, v | 2);
        }
        // The shapers below rewrite RAX/RDX; never when that register also forms the
        // memory operand's address, which would move the access off the scratch page.
        Mnemonic::Cmpxchg if rng.chance(1, 2) && !addr_uses(ins, Register::RAX) => {
            let v = operand_value(ins, 0, inp, l);
            let keep = inp.regs.gpr[0] & !width_mask(ins.op1_register().size());
            inp.regs.gpr[0] = keep | (v & width_mask(ins.op1_register().size()));
        }
        Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b
            if rng.chance(1, 2)
                && !addr_uses(ins, Register::RAX)
                && !addr_uses(ins, Register::RDX) =>
        {
            if let Some(off) = inp.targets.first().copied() {
                let a = l.scratch + off as u64;
                let (lo, hi) = (get_u64(inp, l, a), get_u64(inp, l, a + 8));
                if m == Mnemonic::Cmpxchg8b {
                    inp.regs.gpr[0] = lo & 0xffff_ffff;
                    inp.regs.gpr[2] = lo >> 32;
                } else {
                    inp.regs.gpr[0] = lo;
                    inp.regs.gpr[2] = hi;
                }
            }
        }
        Mnemonic::Div | Mnemonic::Idiv if rng.chance(4, 5) => {
            // The dividend's high half is RDX, or AH for byte forms.
            let high = if ins.op0_kind() == OpKind::Memory && ins.memory_size().size() == 1
                || ins.op0_kind() == OpKind::Register && ins.op0_register().size() == 1
            {
                Register::RAX
            } else {
                Register::RDX
            };
            if !addr_uses(ins, high) {
                shape_div(ins, inp, l, rng)
            }
        }
        _ => {}
    }
}

/// Whether the memory operand's address is formed with `reg` (any width of it).
fn addr_uses(ins: &Instruction, reg: Register) -> bool {
    (0..ins.op_count()).any(|n| ins.op_kind(n) == OpKind::Memory)
        && (ins.memory_base().full_register() == reg || ins.memory_index().full_register() == reg)
}

fn width_mask(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    }
}

/// Make the high half of the dividend small enough that the quotient fits (mostly).
fn shape_div(ins: &Instruction, inp: &mut Input, l: &Layout, rng: &mut Rng) {
    let size = if ins.op0_kind() == OpKind::Register {
        ins.op0_register().size()
    } else {
        ins.memory_size().size()
    };
    let d = operand_value(ins, 0, inp, l) & width_mask(size);
    if d == 0 {
        return;
    }
    let bits = 8 * size as u32;
    let signed = ins.mnemonic() == Mnemonic::Idiv;
    let low = if size == 1 { inp.regs.gpr[0] & 0xff } else { inp.regs.gpr[0] & width_mask(size) };
    let high = if signed {
        let neg = (low >> (bits - 1)) & 1 == 1;
        if neg {
            width_mask(size)
        } else {
            0
        }
    } else {
        rng.next_u64() % d
    };
    if size == 1 {
        inp.regs.gpr[0] = (inp.regs.gpr[0] & !0xff00) | (high & 0xff) << 8;
    } else {
        let keep = inp.regs.gpr[2] & !width_mask(size);
        inp.regs.gpr[2] = keep | (high & width_mask(size));
    }
}
