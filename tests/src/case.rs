//! One instruction instance as a runnable snippet, and one input run on the host CPU and
//! in each emulator tier.
//!
//! Snippet layout in the test page (`Placement`): the instruction at `insn`; for a
//! non-branch, a `jmp` to the runner's epilogue right after it, and the emulator stops at
//! the instruction's end. For a control transfer, a *fallthrough landing* right after it
//! (`mov byte [marker], 1; jmp join`), a *taken landing* at `taken`
//! (`mov byte [marker], 2; jmp join`) and at `join` a `jmp` to the epilogue; the emulator
//! stops at `join` and the marker byte tells which way the branch went. Unused bytes are
//! INT3 so stray execution traps on both sides.

use crate::compare::{diff, hex};
use crate::emu::run_emulated;
use crate::gen::{encode_check, is_branch, Placement, Skip};
use crate::inputs::Input;
use crate::native::{jmp_rel32, Layout, NativeRunner};
use crate::state::{Outcome, RegsDisplay, FLAGS_IN};
use blockscope::config::Tier;
use iced_x86::{Formatter, Instruction, IntelFormatter, RflagsBits};

/// A snippet ready to be written to a runner's test page.
pub struct Snippet {
    /// The instruction under test (ip set).
    pub insn: Instruction,
    /// Its encoding.
    pub bytes: Vec<u8>,
    /// Test-page image from the page start.
    pub code: Vec<u8>,
    /// Where execution starts.
    pub entry: u64,
    /// Where the emulator stops.
    pub stop: u64,
    /// RFLAGS bits compared: `FLAGS_IN` minus the instruction's undefined flags.
    pub flag_mask: u64,
}

/// Intel-syntax disassembly of an instruction.
pub fn disasm(i: &Instruction) -> String {
    let mut f = IntelFormatter::new();
    f.options_mut().set_hex_prefix("0x");
    f.options_mut().set_hex_suffix("");
    f.options_mut().set_branch_leading_zeros(false);
    f.options_mut().set_uppercase_hex(false);
    let mut s = String::new();
    f.format(i, &mut s);
    s
}

/// Convert iced `RflagsBits` to RFLAGS bit positions.
pub fn iced_flags(b: u32) -> u64 {
    const MAP: [(u32, u64); 7] = [
        (RflagsBits::OF, 0x800),
        (RflagsBits::SF, 0x80),
        (RflagsBits::ZF, 0x40),
        (RflagsBits::AF, 0x10),
        (RflagsBits::CF, 0x1),
        (RflagsBits::PF, 0x4),
        (RflagsBits::DF, 0x400),
    ];
    MAP.iter().filter(|(i, _)| b & i != 0).map(|(_, x)| x).fold(0, |a, x| a | x)
}

fn landing(at: u64, marker: u64, value: u8, join: u64) -> Vec<u8> {
    // mov byte ptr [rip + disp32], imm8 ; jmp rel32
    let disp = marker.wrapping_sub(at + 7) as i64;
    let disp = i32::try_from(disp).expect("marker within 2 GiB");
    let mut v = vec![0xc6, 0x05];
    v.extend_from_slice(&disp.to_le_bytes());
    v.push(value);
    v.extend(jmp_rel32(at + 7, join));
    v
}

/// Build the snippet for `ins` (already aimed at `place`).
pub fn assemble(ins: &Instruction, l: &Layout, place: &Placement) -> Result<Snippet, Skip> {
    let mut enc = *ins;
    let bytes = encode_check(&mut enc, place.insn)?;
    snippet_from_bytes(&bytes, l, place)
}

/// Build the snippet for one instruction given by its bytes, placed at `place.insn`.
pub fn snippet_from_bytes(bytes: &[u8], l: &Layout, place: &Placement) -> Result<Snippet, Skip> {
    let bytes = bytes.to_vec();
    // Work with the decoded form: it has length, next ip and prefixes exactly as executed.
    let insn = iced_x86::Decoder::with_ip(64, &bytes, place.insn, 0).decode();
    if insn.is_invalid() || insn.len() != bytes.len() {
        return Err(format!("bytes {} are not exactly one instruction", hex(&bytes)));
    }
    let page = l.test_page;
    let at = |a: u64| (a - page) as usize;
    let mut code = vec![0xccu8; at(place.join) + 16];
    let end = place.insn + bytes.len() as u64;
    code[at(place.insn)..at(end)].copy_from_slice(&bytes);
    let put =
        |code: &mut Vec<u8>, a: u64, b: &[u8]| code[at(a)..at(a) + b.len()].copy_from_slice(b);
    let stop = if is_branch(&insn) {
        put(&mut code, end, &landing(end, l.marker, 1, place.join));
        put(&mut code, place.taken, &landing(place.taken, l.marker, 2, place.join));
        put(&mut code, place.join, &jmp_rel32(place.join, l.epilogue));
        place.join
    } else {
        put(&mut code, end, &jmp_rel32(end, l.epilogue));
        end
    };
    let flag_mask = FLAGS_IN & !iced_flags(insn.rflags_undefined());
    Ok(Snippet { insn, bytes, code, entry: place.insn, stop, flag_mask })
}

/// The tiers every case runs in.
pub const TIERS: [Tier; 2] = [Tier::Interp, Tier::Jit];

/// A mismatch between the host and one tier for one input.
pub struct Mismatch {
    /// The tier that disagreed.
    pub tier: Tier,
    /// What differed, one line each.
    pub diffs: Vec<String>,
    /// The host's outcome.
    pub native: Outcome,
}

/// Run `input` through `snip` natively and in `tiers`; return the host's outcome and the
/// disagreements. The snippet must already be in the runner's test page
/// (`NativeRunner::set_code`).
pub fn run_input(
    runner: &mut NativeRunner,
    snip: &Snippet,
    input: &Input,
    tiers: &[Tier],
) -> (Outcome, Vec<Mismatch>) {
    let native = runner.run(snip.entry, &input.regs, &input.mem);
    let mut out = Vec::new();
    for &tier in tiers {
        let emu = run_emulated(runner, snip.entry, snip.stop, &input.regs, &input.mem, tier);
        let diffs = diff(&native, &emu, snip.flag_mask);
        if !diffs.is_empty() {
            out.push(Mismatch { tier, diffs, native: native.clone() });
        }
    }
    (native, out)
}

/// Whether the instruction names an XMM register.
pub fn uses_xmm(i: &Instruction) -> bool {
    (0..i.op_count())
        .any(|n| i.op_kind(n) == iced_x86::OpKind::Register && i.op_register(n).is_xmm())
}

/// A readable failure report for one input.
pub fn report(snip: &Snippet, input: &Input, m: &Mismatch) -> String {
    let mut s = format!(
        "{}  [{}]  ({:?}, tier {:?})\n  input:{}",
        disasm(&snip.insn),
        hex(&snip.bytes),
        snip.insn.code(),
        m.tier,
        RegsDisplay(&input.regs, uses_xmm(&snip.insn))
    );
    for &t in &input.targets {
        let hi = (t + 16).min(input.mem.len());
        s += &format!("\n    scratch[{t:#x}..{hi:#x}] = {}", hex(&input.mem[t..hi]));
    }
    match &m.native {
        Outcome::Done { marker, .. } => s += &format!("\n  host: completed (marker {marker})"),
        Outcome::Fault(k) => s += &format!("\n  host: fault {k:?}"),
    }
    for d in &m.diffs {
        s += &format!("\n  differs: {d}");
    }
    s
}
