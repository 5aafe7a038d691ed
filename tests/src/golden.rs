//! Single-instruction goldens: a small text format and its checker.
//!
//! ```text
//! # comment to end of line
//! 48 01 d8 "add rax,rbx" rax=0x7fffffffffffffff rbx=1 => rax=0x8000000000000000 flags=SF|AF|PF|OF;
//! ```
//!
//! A statement is `BYTES "DISASM" INPUTS => OUTPUTS ;`. BYTES are hex bytes; DISASM must
//! equal iced's Intel disassembly (spaces and case are not significant). Fields are
//! `name=value`: the 64-bit GPRs `rax`..`r15`, `xmm0`..`xmm15` (128-bit hex), `mxcsr`,
//! `flags` (`CF|PF|AF|ZF|SF|DF|OF` or `0`) and memory `m8[OFF]`, `m16[OFF]`, `m32[OFF]`,
//! `m64[OFF]` at byte offset OFF of the scratch area. A value is a number (`0x..`, decimal,
//! `-decimal`) or `@OFF`, the address of scratch byte OFF. Inputs not given are 0, rsp is
//! `@0x1000`, MXCSR 0x1f80. In OUTPUTS, `fault=DE|UD|GP|PF|BP|XM|AC` expects a fault, and
//! `flags` lists the set flags among the instruction's *defined* flags (naming a flag
//! iced calls undefined is an error). `branch=taken|fallthrough` checks a branch; a branch
//! target must be `insn + 0x60` (e.g. `74 5e` for `je`).
//!
//! Checking order: the disassembly against iced, the OUTPUTS against the host CPU (so a
//! golden can never enshrine an emulator bug), then the emulator in every tier against
//! the host on the whole state, exactly as `insn_native` compares.

use crate::state::{FaultKind, Regs, FLAGS_IN, GPR_NAMES, SCRATCH_LEN};

/// A field assignment or expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A GPR (encoding number) and its value.
    Gpr(usize, Value),
    /// An XMM register.
    Xmm(usize, u128),
    /// MXCSR.
    Mxcsr(u32),
    /// Flags (RFLAGS bit positions).
    Flags(u64),
    /// Memory: scratch offset, size in bytes, value.
    Mem(usize, usize, Value),
    /// Expected fault.
    Fault(FaultKind),
    /// Expected branch outcome: 1 fallthrough, 2 taken.
    Branch(u8),
}

/// A number, or a scratch address to be resolved against the runner's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A plain value.
    Num(u64),
    /// The address of scratch byte `n`.
    Scratch(u64),
}

impl Value {
    /// Resolve against the scratch base address.
    pub fn get(self, scratch: u64) -> u64 {
        match self {
            Value::Num(v) => v,
            Value::Scratch(o) => scratch + o,
        }
    }
}

/// One golden statement.
#[derive(Clone, Debug)]
pub struct Golden {
    /// Line of the statement's start (1-based).
    pub line: usize,
    /// Instruction bytes.
    pub bytes: Vec<u8>,
    /// Expected disassembly.
    pub disasm: String,
    /// Inputs.
    pub inputs: Vec<Field>,
    /// Expected outputs.
    pub outputs: Vec<Field>,
}

/// Normalise a disassembly for comparison: lowercase, no spaces.
pub fn norm_disasm(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

fn parse_num(s: &str) -> Result<u64, String> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s),
    };
    let t = t.replace('_', "");
    let v = if let Some(h) = t.strip_prefix("0x") {
        u128::from_str_radix(h, 16)
    } else {
        t.parse::<u128>()
    }
    .map_err(|_| format!("bad number `{s}`"))?;
    let v = u64::try_from(v).map_err(|_| format!("number `{s}` does not fit 64 bits"))?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

fn parse_value(s: &str) -> Result<Value, String> {
    match s.strip_prefix('@') {
        Some(o) => Ok(Value::Scratch(parse_num(o)?)),
        None => Ok(Value::Num(parse_num(s)?)),
    }
}

/// Parse `CF|ZF` (or `0`) into RFLAGS bits.
pub fn parse_flags(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    s.split('|').try_fold(0u64, |acc, f| {
        let bit = match f.trim().to_ascii_uppercase().as_str() {
            "CF" => 0x1,
            "PF" => 0x4,
            "AF" => 0x10,
            "ZF" => 0x40,
            "SF" => 0x80,
            "DF" => 0x400,
            "OF" => 0x800,
            other => return Err(format!("unknown flag `{other}`")),
        };
        Ok(acc | bit)
    })
}

fn parse_fault(s: &str) -> Result<FaultKind, String> {
    Ok(match s {
        "DE" => FaultKind::DivideError,
        "UD" => FaultKind::InvalidOpcode,
        "GP" => FaultKind::GeneralProtection,
        "PF" => FaultKind::PageFault(0),
        "BP" => FaultKind::Breakpoint,
        "XM" => FaultKind::SimdFp,
        "AC" => FaultKind::AlignmentCheck,
        other => return Err(format!("unknown fault `{other}`")),
    })
}

fn parse_field(tok: &str) -> Result<Field, String> {
    let (name, val) =
        tok.split_once('=').ok_or_else(|| format!("expected name=value, got `{tok}`"))?;
    let name = name.to_ascii_lowercase();
    if let Some(n) = GPR_NAMES.iter().position(|g| *g == name) {
        return Ok(Field::Gpr(n, parse_value(val)?));
    }
    if let Some(n) =
        name.strip_prefix("xmm").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n < 16)
    {
        let h = val.strip_prefix("0x").ok_or_else(|| format!("xmm value must be hex: `{val}`"))?;
        let v = u128::from_str_radix(&h.replace('_', ""), 16)
            .map_err(|_| format!("bad xmm value `{val}`"))?;
        return Ok(Field::Xmm(n, v));
    }
    if let Some(rest) = name.strip_prefix('m') {
        if let Some((size, off)) = rest.split_once('[') {
            let off = off.strip_suffix(']').ok_or_else(|| format!("missing `]` in `{tok}`"))?;
            let size = match size {
                "8" => 1,
                "16" => 2,
                "32" => 4,
                "64" => 8,
                _ => return Err(format!("bad memory size in `{tok}`")),
            };
            let off = parse_num(off)? as usize;
            if off + size > SCRATCH_LEN {
                return Err(format!("memory offset outside the scratch area in `{tok}`"));
            }
            return Ok(Field::Mem(off, size, parse_value(val)?));
        }
    }
    match name.as_str() {
        "mxcsr" => Ok(Field::Mxcsr(parse_num(val)? as u32)),
        "flags" => Ok(Field::Flags(parse_flags(val)?)),
        "fault" => Ok(Field::Fault(parse_fault(val)?)),
        "branch" => match val {
            "taken" => Ok(Field::Branch(2)),
            "fallthrough" => Ok(Field::Branch(1)),
            _ => Err(format!("branch must be taken or fallthrough, got `{val}`")),
        },
        _ => Err(format!("unknown field `{name}`")),
    }
}

/// Parse a golden file. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<Golden>, String> {
    let mut out = Vec::new();
    // Strip comments, keep line numbers.
    let mut stmt = String::new();
    let mut start_line = 0;
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for ch in line.chars() {
            if stmt.trim().is_empty() && !ch.is_whitespace() {
                start_line = ln + 1;
            }
            if ch == ';' {
                out.push(parse_stmt(&stmt).map_err(|e| format!("line {start_line}: {e}"))?);
                if let Some(g) = out.last_mut() {
                    g.line = start_line;
                }
                stmt.clear();
            } else {
                stmt.push(ch);
            }
        }
        stmt.push(' ');
    }
    if !stmt.trim().is_empty() {
        return Err(format!("line {start_line}: statement without a closing `;`"));
    }
    Ok(out)
}

fn parse_stmt(s: &str) -> Result<Golden, String> {
    let q1 = s.find('"').ok_or("missing quoted disassembly")?;
    let q2 = s[q1 + 1..].find('"').ok_or("unterminated quoted disassembly")? + q1 + 1;
    let bytes = s[..q1]
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).map_err(|_| format!("bad byte `{b}`")))
        .collect::<Result<Vec<u8>, _>>()?;
    if bytes.is_empty() || bytes.len() > 15 {
        return Err(format!("{} instruction bytes (want 1..=15)", bytes.len()));
    }
    let disasm = s[q1 + 1..q2].to_string();
    let rest = &s[q2 + 1..];
    let (ins, outs) = rest.split_once("=>").ok_or("missing `=>`")?;
    let inputs = ins.split_whitespace().map(parse_field).collect::<Result<Vec<_>, _>>()?;
    let outputs = outs.split_whitespace().map(parse_field).collect::<Result<Vec<_>, _>>()?;
    if inputs.iter().any(|f| matches!(f, Field::Fault(_) | Field::Branch(_))) {
        return Err("fault/branch are outputs only".into());
    }
    if outputs.is_empty() {
        return Err("no outputs".into());
    }
    Ok(Golden { line: 0, bytes, disasm, inputs, outputs })
}

/// Build the input registers and scratch image of a golden.
pub fn build_input(g: &Golden, scratch: u64) -> (Regs, Vec<u8>) {
    let mut regs = Regs { mxcsr: 0x1f80, ..Regs::default() };
    regs.gpr[4] = scratch + 0x1000;
    regs.rflags = 2;
    let mut mem = vec![0u8; SCRATCH_LEN];
    for f in &g.inputs {
        match *f {
            Field::Gpr(n, v) => regs.gpr[n] = v.get(scratch),
            Field::Xmm(n, v) => regs.xmm[n] = v,
            Field::Mxcsr(v) => regs.mxcsr = v,
            Field::Flags(v) => regs.rflags = v & FLAGS_IN | 2,
            Field::Mem(off, size, v) => {
                mem[off..off + size].copy_from_slice(&v.get(scratch).to_le_bytes()[..size]);
            }
            Field::Fault(_) | Field::Branch(_) => {}
        }
    }
    (regs, mem)
}

/// Check a golden's OUTPUTS against an outcome (the host's). `flag_mask` is the set of
/// defined flags; naming another flag is reported as an error in the golden.
pub fn check_outputs(
    g: &Golden,
    got: &crate::state::Outcome,
    scratch: u64,
    flag_mask: u64,
) -> Vec<String> {
    use crate::state::{flag_names, Outcome};
    let mut errs = Vec::new();
    let want_fault = g.outputs.iter().find_map(|f| match f {
        Field::Fault(k) => Some(*k),
        _ => None,
    });
    let (regs, mem, marker) = match (got, want_fault) {
        (Outcome::Fault(k), Some(w)) => {
            let same = match (k, w) {
                (FaultKind::PageFault(_), FaultKind::PageFault(_)) => true,
                _ => *k == w,
            };
            if !same {
                errs.push(format!("fault: golden {w:?}, got {k:?}"));
            }
            return errs;
        }
        (Outcome::Fault(k), None) => {
            return vec![format!("faulted with {k:?}; golden expects completion")]
        }
        (Outcome::Done { .. }, Some(w)) => {
            return vec![format!("completed; golden expects fault {w:?}")]
        }
        (Outcome::Done { regs, mem, marker }, None) => (regs, mem, *marker),
    };
    for f in &g.outputs {
        match *f {
            Field::Gpr(n, v) => {
                let v = v.get(scratch);
                if regs.gpr[n] != v {
                    errs.push(format!("{}: golden {v:#x}, got {:#x}", GPR_NAMES[n], regs.gpr[n]));
                }
            }
            Field::Xmm(n, v) => {
                if regs.xmm[n] != v {
                    errs.push(format!("xmm{n}: golden {v:#x}, got {:#x}", regs.xmm[n]));
                }
            }
            Field::Mxcsr(v) => {
                if regs.mxcsr != v {
                    errs.push(format!("mxcsr: golden {v:#x}, got {:#x}", regs.mxcsr));
                }
            }
            Field::Flags(v) => {
                if v & !flag_mask != 0 {
                    errs.push(format!(
                        "flags: [{}] are undefined for this instruction",
                        flag_names(v & !flag_mask)
                    ));
                }
                let got = regs.rflags & flag_mask;
                if got != v & flag_mask {
                    errs.push(format!(
                        "flags: golden [{}], got [{}] (compared: [{}])",
                        flag_names(v),
                        flag_names(got),
                        flag_names(flag_mask)
                    ));
                }
            }
            Field::Mem(off, size, v) => {
                let v = v.get(scratch);
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(&mem[off..off + size]);
                let m = u64::from_le_bytes(b);
                let want = if size == 8 { v } else { v & ((1u64 << (8 * size)) - 1) };
                if m != want {
                    errs.push(format!("m{}[{off:#x}]: golden {want:#x}, got {m:#x}", 8 * size));
                }
            }
            Field::Branch(b) => {
                if marker != b {
                    errs.push(format!("branch: golden {b}, got {marker} (1 fallthrough, 2 taken)"));
                }
            }
            Field::Fault(_) => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_reports_line_numbers() {
        let g = parse("# c\n48 01 d8 \"add rax, rbx\" rax=-1 rbx=@0x10 m32[8]=5 flags=CF|ZF\n => rax=1 flags=0;")
            .expect("parses");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].line, 2);
        assert_eq!(g[0].bytes, vec![0x48, 0x01, 0xd8]);
        assert_eq!(norm_disasm(&g[0].disasm), "addrax,rbx");
        assert_eq!(g[0].inputs[0], Field::Gpr(0, Value::Num(u64::MAX)));
        assert_eq!(g[0].inputs[1], Field::Gpr(3, Value::Scratch(0x10)));
        assert_eq!(g[0].inputs[2], Field::Mem(8, 4, Value::Num(5)));
        assert_eq!(g[0].inputs[3], Field::Flags(0x41));
        let e = parse("\n\n90 \"nop\" => rax=zz;").expect_err("bad number");
        assert!(e.starts_with("line 3:"), "{e}");
        assert!(parse("90 \"nop\" => rax=1").is_err(), "missing semicolon");
        assert!(parse("90 \"nop\" foo=1 => rax=1;").is_err(), "unknown field");
    }
}
