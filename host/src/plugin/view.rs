//! The read-only view of a block that plugins see at translation (`TbRaw`), built from the
//! lifted block's instruction metadata, the decoder's `iced_x86::Instruction`s and the
//! code bytes. Memory accesses (the attach points of `POINT_AFTER_ACCESS`) are the block's
//! own load/store/atomic ops of each instruction, in order; accesses made inside helpers
//! (REP string ops, FXSAVE, ...) are not attach points.

use crate::ir::{Block, Op};
use blockscope_plugin_api::abi::*;
use iced_x86::{FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, Register};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// Everything a view points into, plus what injection needs to find attach points.
#[derive(Default)]
pub struct ViewData {
    /// Block start.
    pub pc: u64,
    /// Block end.
    pub end: u64,
    /// Instructions.
    pub insns: Vec<InsnRaw>,
    /// Memory operands.
    pub mems: Vec<MemOperandRaw>,
    /// Memory accesses.
    pub accesses: Vec<AccessRaw>,
    /// For each instruction, the op index of each access, in order.
    pub access_ops: Vec<Vec<usize>>,
    /// The decoded instructions (for disassembly), when the frontend gave them.
    pub decoded: Vec<Instruction>,
}

impl ViewData {
    /// The raw view (borrowing this data).
    pub fn raw(&self) -> TbRaw<'_> {
        use abi_stable::std_types::RSlice;
        TbRaw {
            pc: self.pc,
            end: self.end,
            insns: RSlice::from_slice(&self.insns),
            mem_operands: RSlice::from_slice(&self.mems),
            accesses: RSlice::from_slice(&self.accesses),
        }
    }
}

fn mnemonic_str(m: Mnemonic) -> &'static str {
    static NAMES: OnceLock<RwLock<HashMap<Mnemonic, &'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    if let Some(s) = names.read().unwrap_or_else(|e| e.into_inner()).get(&m) {
        return s;
    }
    let s: &'static str = Box::leak(format!("{m:?}").to_lowercase().into_boxed_str());
    names.write().unwrap_or_else(|e| e.into_inner()).insert(m, s);
    s
}

fn reg_num(r: Register) -> u32 {
    if r == Register::None {
        return NONE;
    }
    if r == Register::RIP || r == Register::EIP {
        return REG_RIP;
    }
    if r.is_gpr() {
        return r.full_register().number() as u32;
    }
    NONE
}

fn branch_kind(i: &Instruction) -> u32 {
    match i.mnemonic() {
        Mnemonic::Syscall | Mnemonic::Sysenter | Mnemonic::Int | Mnemonic::Into => {
            return BRANCH_SYSCALL
        }
        Mnemonic::Hlt => return BRANCH_EXCEPTION,
        _ => {}
    }
    match i.flow_control() {
        FlowControl::Next | FlowControl::XbeginXabortXend => BRANCH_NONE,
        FlowControl::UnconditionalBranch => BRANCH_JUMP,
        FlowControl::ConditionalBranch => BRANCH_COND,
        FlowControl::IndirectBranch => BRANCH_INDIRECT,
        FlowControl::Call => BRANCH_CALL,
        FlowControl::IndirectCall => BRANCH_INDIRECT_CALL,
        FlowControl::Return => BRANCH_RETURN,
        FlowControl::Interrupt => BRANCH_SYSCALL,
        FlowControl::Exception => BRANCH_EXCEPTION,
    }
}

fn access_of(op: &Op) -> Option<AccessRaw> {
    let (w, kind) = match *op {
        Op::Load { w, .. } => (w, ACCESS_LOAD),
        Op::Store { w, .. } => (w, ACCESS_STORE),
        Op::AtomicRmw { w, .. } | Op::AtomicCas { w, .. } => (w, ACCESS_RMW),
        _ => return None,
    };
    Some(AccessRaw { size: w.bytes() as u32, kind })
}

/// Build the view of `block`. `decoded` holds the decoder's instructions in block order
/// (may be empty: then mnemonics are `"?"` and there are no memory operands); `code`
/// holds the instructions' bytes one after another, in block order (the block's bytes
/// from `block.pc` unless it continues through an elided `jmp`).
pub fn build(block: &Block, decoded: &[Instruction], code: &[u8]) -> ViewData {
    let mut v = ViewData { pc: block.pc, end: block.end, ..Default::default() };
    let mut factory = InstructionInfoFactory::new();
    let n = block.insns.len();
    let mut at = 0;
    for (k, meta) in block.insns.iter().enumerate() {
        let mut raw = InsnRaw {
            pc: meta.pc,
            bytes: [0; 16],
            len: meta.len as u32,
            branch: BRANCH_NONE,
            target: 0,
            mnemonic: abi_stable::std_types::RStr::from_str("?"),
            mem_first: v.mems.len() as u32,
            mem_count: 0,
            access_first: v.accesses.len() as u32,
            access_count: 0,
        };
        let off = at;
        at += meta.len as usize;
        if let Some(b) = code.get(off..off + meta.len as usize) {
            raw.bytes[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
        }
        if let Some(d) = decoded.get(k).filter(|d| d.ip() == meta.pc) {
            raw.mnemonic = abi_stable::std_types::RStr::from_str(mnemonic_str(d.mnemonic()));
            raw.branch = branch_kind(d);
            if matches!(raw.branch, BRANCH_JUMP | BRANCH_COND | BRANCH_CALL) {
                raw.target = d.near_branch_target();
            }
            for m in factory.info(d).used_memory() {
                let access = match m.access() {
                    OpAccess::Read | OpAccess::CondRead => ACCESS_LOAD,
                    OpAccess::Write | OpAccess::CondWrite => ACCESS_STORE,
                    OpAccess::ReadWrite | OpAccess::ReadCondWrite => ACCESS_LOAD | ACCESS_STORE,
                    _ => 0,
                };
                let segment = match m.segment() {
                    Register::FS => 4,
                    Register::GS => 5,
                    _ => 0,
                };
                v.mems.push(MemOperandRaw {
                    base: reg_num(m.base()),
                    index: reg_num(m.index()),
                    scale: m.scale(),
                    size: m.memory_size().size() as u32,
                    disp: m.displacement() as i64,
                    access,
                    segment,
                });
                raw.mem_count += 1;
            }
        }
        let first = meta.first_op as usize;
        let last = block.insns.get(k + 1).map_or(block.ops.len(), |m| m.first_op as usize);
        let mut ops = Vec::new();
        for j in first..last.min(block.ops.len()) {
            if let Some(a) = access_of(&block.ops[j]) {
                v.accesses.push(a);
                ops.push(j);
                raw.access_count += 1;
            }
        }
        v.access_ops.push(ops);
        v.insns.push(raw);
    }
    if decoded.len() == n {
        v.decoded = decoded.to_vec();
    }
    v
}

/// Intel-syntax disassembly of instruction `k`, if decoded.
pub fn disas(v: &ViewData, k: usize) -> Option<String> {
    use iced_x86::{Formatter, IntelFormatter};
    let d = v.decoded.get(k)?;
    let mut f = IntelFormatter::new();
    let mut s = String::new();
    f.format(d, &mut s);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{InsnMeta, Term};

    /// A block that goes on through a `jmp` into code elsewhere: each instruction gets its
    /// own bytes from `code` (the instructions' bytes one after another), wherever it is.
    #[test]
    fn instructions_past_an_elided_jmp_get_their_own_bytes() {
        let m = |pc, len| InsnMeta { pc, len, first_op: 0 };
        let block = Block {
            pc: 0x2000,
            end: 0x2006,
            ops: vec![],
            insns: vec![m(0x2000, 4), m(0x2004, 2), m(0x1000, 1)],
            term: Term::Indirect { target: crate::ir::Slot(0), is_ret: true },
            temps: 0,
            fixups: vec![],
        };
        let code = [0x48, 0x83, 0xc0, 0x01, 0xeb, 0x08, 0xc3];
        let v = build(&block, &[], &code);
        assert_eq!((v.pc, v.end), (0x2000, 0x2006));
        let bytes: Vec<&[u8]> = v.insns.iter().map(|i| &i.bytes[..i.len as usize]).collect();
        assert_eq!(bytes, [&code[..4], &code[4..6], &code[6..]]);
        assert_eq!(v.insns[2].pc, 0x1000);
    }
}
