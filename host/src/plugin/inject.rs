//! Injection: plugin ops (plain data from the ABI) are verified and turned into host IR,
//! then spliced into the block at their points (QEMU's `plugin_gen_inject`, without
//! placeholder ops: the frontend is never re-run).
//!
//! What a plugin may reach, and nothing else (the verifier rejects the rest, naming the
//! op): constants; arithmetic, compares and selects on its own values; GPRs, FS/GS base
//! and XMM halves (read only: never `%rip` or the lazy flags, which are not current in the
//! middle of a block); the address and value of the memory access it is attached to; its
//! own scoreboards (in bounds by construction: a static entry is checked, a dynamic index
//! is masked); calls to its callbacks. Injected IR writes only fresh temporaries and
//! plugin memory, and never faults, so fault fix-ups and the guest state at a fault are
//! unchanged.
//!
//! Layout of an instrumented block: block-entry ops, the original prologue, then per
//! instruction k its before-ops (where `insns[k].first_op` now points, so a block left
//! after a code write skips them and the next block runs them) followed by its own ops,
//! with after-access ops right behind each access. Values live only at their point, so
//! temporaries are reused between points.

use super::scoreboard::Scoreboards;
use super::view::ViewData;
use crate::cpu::{slot, Width};
use crate::ir::{BinOp, Block, Cond, Op, PluginCall, PluginSite, Slot};
use blockscope_plugin_api::abi::*;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Who injects, for the verifier and call sites.
pub struct Injecting<'a> {
    /// Global plugin id.
    pub id: u32,
    /// Plugin name.
    pub name: &'static str,
    /// Instance word.
    pub instance: u64,
    /// The run's scoreboards.
    pub scoreboards: &'a Scoreboards,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum At {
    Entry,
    Before(u32),
    After(u32, u32),
}

#[derive(Default)]
struct PointOps {
    ops: Vec<Op>,
    next: u16,
    addr_copy: Option<Slot>,
}

/// Injected IR of all plugins for one block, by point.
pub struct Plan {
    base: u16,
    points: HashMap<At, PointOps>,
}

#[derive(Clone, Copy)]
enum Val {
    Const(u64),
    Slot(Slot),
}

fn op_name(kind: u32) -> &'static str {
    match kind {
        OP_CONST => "const",
        OP_REG => "reg",
        OP_MEM_ADDR => "mem_addr",
        OP_MEM_VALUE => "mem_value",
        OP_BIN => "bin",
        OP_CMP => "cmp",
        OP_SELECT => "select",
        OP_SB_LOAD => "sb_load",
        OP_SB_STORE => "sb_store",
        OP_SB_ADD => "sb_add",
        OP_CALL => "call",
        _ => "unknown",
    }
}

fn bin_op(sub: u32) -> Option<BinOp> {
    Some(match sub {
        BIN_ADD => BinOp::Add,
        BIN_SUB => BinOp::Sub,
        BIN_AND => BinOp::And,
        BIN_OR => BinOp::Or,
        BIN_XOR => BinOp::Xor,
        BIN_SHL => BinOp::Shl,
        BIN_SHR => BinOp::Shr,
        BIN_SAR => BinOp::Sar,
        BIN_MUL => BinOp::Mul,
        _ => return None,
    })
}

fn cond(sub: u32) -> Option<Cond> {
    Some(match sub {
        CMP_EQ => Cond::Eq,
        CMP_NE => Cond::Ne,
        CMP_ULT => Cond::Ult,
        CMP_ULE => Cond::Ule,
        CMP_UGT => Cond::Ugt,
        CMP_UGE => Cond::Uge,
        CMP_SLT => Cond::Slt,
        CMP_SLE => Cond::Sle,
        CMP_SGT => Cond::Sgt,
        CMP_SGE => Cond::Sge,
        _ => return None,
    })
}

fn width(bytes: u32) -> Option<Width> {
    matches!(bytes, 1 | 2 | 4 | 8).then(|| Width::from_bytes(bytes as usize))
}

/// The guest slot a plugin may read as register `r`.
fn reg_slot(r: u32) -> Option<Slot> {
    Some(Slot(match r {
        0..=15 => r as u16,
        REG_FS_BASE => slot::FS_BASE,
        REG_GS_BASE => slot::GS_BASE,
        32..=63 => slot::XMM0 + (r - REG_XMM0_LO) as u16,
        _ => return None,
    }))
}

/// The interned call site for `(plugin, func, fdata, udata)`.
fn call_site(who: &Injecting<'_>, func: CallbackFn, fdata: u64, udata: u64) -> &'static PluginCall {
    type Key = (usize, u64, u64, u64);
    static SITES: OnceLock<Mutex<HashMap<Key, &'static PluginCall>>> = OnceLock::new();
    let key = (func as usize, who.instance, fdata, udata);
    let mut sites = SITES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    sites.entry(key).or_insert_with(|| {
        Box::leak(Box::new(PluginCall {
            plugin: who.name,
            func: super::load::callback_for_ir(func),
            site: PluginSite { instance: who.instance, fdata, udata },
        }))
    })
}

impl Plan {
    /// An empty plan for a block that uses `temps` temporaries.
    pub fn new(temps: u16) -> Plan {
        Plan { base: temps, points: HashMap::new() }
    }

    /// Whether no plugin injected anything.
    pub fn is_empty(&self) -> bool {
        self.points.values().all(|p| p.ops.is_empty() && p.addr_copy.is_none())
    }

    /// Verify one plugin's ops and add their IR. On error nothing of this plugin's ops is
    /// kept, and the message says which op and why.
    pub fn add(
        &mut self,
        who: &Injecting<'_>,
        view: &ViewData,
        block: &Block,
        ops: &[PluginOp],
    ) -> Result<(), String> {
        let saved: HashMap<At, (usize, u16, Option<Slot>)> =
            self.points.iter().map(|(k, p)| (*k, (p.ops.len(), p.next, p.addr_copy))).collect();
        let r = self.add_inner(who, view, block, ops);
        if r.is_err() {
            self.points.retain(|k, _| saved.contains_key(k));
            for (k, (len, next, copy)) in saved {
                let p = self.points.get_mut(&k).expect("kept above");
                p.ops.truncate(len);
                (p.next, p.addr_copy) = (next, copy);
            }
        }
        r
    }

    fn add_inner(
        &mut self,
        who: &Injecting<'_>,
        view: &ViewData,
        block: &Block,
        ops: &[PluginOp],
    ) -> Result<(), String> {
        let mut vals: Vec<Option<(At, Val)>> = Vec::with_capacity(ops.len());
        let base = self.base;
        for (i, op) in ops.iter().enumerate() {
            let fail = |why: String| format!("injected op {i} ({}): {why}", op_name(op.kind));
            let at = match op.point.kind {
                POINT_BLOCK_ENTRY => At::Entry,
                POINT_BEFORE_INSN if (op.point.insn as usize) < view.insns.len() => {
                    At::Before(op.point.insn)
                }
                POINT_AFTER_ACCESS
                    if view
                        .access_ops
                        .get(op.point.insn as usize)
                        .is_some_and(|a| (op.point.access as usize) < a.len()) =>
                {
                    At::After(op.point.insn, op.point.access)
                }
                _ => {
                    return Err(fail(format!(
                        "point (kind {}, insn {}, access {}) is not in this block",
                        op.point.kind, op.point.insn, op.point.access
                    )))
                }
            };
            let point = self
                .points
                .entry(at)
                .or_insert_with(|| PointOps { next: base, ..Default::default() });
            // A value operand: defined earlier, by a value-producing op, at this point.
            let val = |r: u32, what: &str| -> Result<Val, String> {
                match vals.get(r as usize) {
                    Some(Some((a, v))) if (r as usize) < i && *a == at => Ok(*v),
                    Some(Some(_)) if (r as usize) < i => {
                        Err(fail(format!("{what} uses value {r}, which was made at another point")))
                    }
                    _ => Err(fail(format!("{what} uses value {r}, which is not an earlier value"))),
                }
            };
            let mut new_temp = |p: &mut PointOps| -> Result<Slot, String> {
                if p.next as usize >= crate::cpu::MAX_TEMPS {
                    return Err(fail("the block has no temporaries left".into()));
                }
                p.next += 1;
                Ok(Slot::temp(p.next - 1))
            };
            let result: Option<Val> = match op.kind {
                OP_CONST => Some(Val::Const(op.imm)),
                OP_REG => {
                    let s = reg_slot(op.sub)
                        .ok_or_else(|| fail(format!("register {} is not readable", op.sub)))?;
                    let t = new_temp(point)?;
                    point.ops.push(Op::Mov { dst: t, src: s });
                    Some(Val::Slot(t))
                }
                OP_MEM_ADDR | OP_MEM_VALUE => {
                    let At::After(k, m) = at else {
                        return Err(fail(
                            "only ops attached to a memory access may read it".into(),
                        ));
                    };
                    let j = view.access_ops[k as usize][m as usize];
                    let (addr, value) = match block.ops[j] {
                        Op::Load { dst, addr, .. }
                        | Op::AtomicRmw { dst, addr, .. }
                        | Op::AtomicCas { dst, addr, .. } => (addr, dst),
                        Op::Store { addr, val, .. } => (addr, val),
                        _ => unreachable!("access_ops holds memory ops only"),
                    };
                    if op.kind == OP_MEM_VALUE {
                        Some(Val::Slot(value))
                    } else {
                        if point.addr_copy.is_none() {
                            point.addr_copy = Some(new_temp(point)?);
                        }
                        let _ = addr;
                        Some(Val::Slot(point.addr_copy.expect("set above")))
                    }
                }
                OP_BIN => {
                    let bop = bin_op(op.sub)
                        .ok_or_else(|| fail(format!("unknown operation {}", op.sub)))?;
                    let w =
                        width(op.width).ok_or_else(|| fail(format!("bad width {}", op.width)))?;
                    let (a, b) = (val(op.a, "operand a")?, val(op.b, "operand b")?);
                    let a = materialize(point, a, &mut new_temp)?;
                    let dst = new_temp(point)?;
                    point.ops.push(match b {
                        Val::Const(imm) => Op::BinImm { op: bop, w, dst, a, imm },
                        Val::Slot(b) => Op::Bin { op: bop, w, dst, a, b },
                    });
                    Some(Val::Slot(dst))
                }
                OP_CMP => {
                    let cc = cond(op.sub)
                        .ok_or_else(|| fail(format!("unknown comparison {}", op.sub)))?;
                    let w =
                        width(op.width).ok_or_else(|| fail(format!("bad width {}", op.width)))?;
                    let (a, b) = (val(op.a, "operand a")?, val(op.b, "operand b")?);
                    let a = materialize(point, a, &mut new_temp)?;
                    let dst = new_temp(point)?;
                    point.ops.push(match b {
                        Val::Const(imm) => Op::CmpImm { cc, w, dst, a, imm },
                        Val::Slot(b) => Op::Cmp { cc, w, dst, a, b },
                    });
                    Some(Val::Slot(dst))
                }
                OP_SELECT => {
                    let (c, t, f) =
                        (val(op.a, "condition")?, val(op.b, "operand b")?, val(op.c, "operand c")?);
                    let c = materialize(point, c, &mut new_temp)?;
                    let t = materialize(point, t, &mut new_temp)?;
                    let f = materialize(point, f, &mut new_temp)?;
                    let dst = new_temp(point)?;
                    point.ops.push(Op::Select { dst, c, t, f });
                    Some(Val::Slot(dst))
                }
                OP_SB_LOAD | OP_SB_STORE | OP_SB_ADD => {
                    let d = who.scoreboards.get(op.sub).filter(|d| d.owner == who.id).ok_or_else(
                        || fail(format!("scoreboard {} does not belong to this plugin", op.sub)),
                    )?;
                    if op.imm >= d.entries as u64 {
                        return Err(fail(format!(
                            "entry {} is outside the scoreboard ({} entries)",
                            op.imm, d.entries
                        )));
                    }
                    let w = Width::from_bytes(d.entry_bytes as usize);
                    let index = if op.a == NONE { None } else { Some(val(op.a, "index")?) };
                    let (off, idx) = match index {
                        None => (d.off as u64 + op.imm * d.entry_bytes as u64, None),
                        Some(Val::Const(c)) => {
                            let e = op.imm.wrapping_add(c) & d.mask as u64;
                            (d.off as u64 + e * d.entry_bytes as u64, None)
                        }
                        Some(Val::Slot(s)) if op.imm == 0 => (d.off as u64, Some(s)),
                        Some(Val::Slot(s)) => {
                            let t = new_temp(point)?;
                            point.ops.push(Op::BinImm {
                                op: BinOp::Add,
                                w: Width::W64,
                                dst: t,
                                a: s,
                                imm: op.imm,
                            });
                            (d.off as u64, Some(t))
                        }
                    };
                    let (off, mask) = (off as u32, if idx.is_some() { d.mask } else { 0 });
                    match op.kind {
                        OP_SB_LOAD => {
                            let dst = new_temp(point)?;
                            point.ops.push(Op::PluginLoad { w, dst, off, idx, mask });
                            Some(Val::Slot(dst))
                        }
                        OP_SB_STORE => {
                            let v = val(op.b, "value")?;
                            let val = materialize(point, v, &mut new_temp)?;
                            point.ops.push(Op::PluginStore { w, val, off, idx, mask });
                            None
                        }
                        _ => {
                            let addend = if op.b == NONE {
                                Val::Const(op.imm2)
                            } else {
                                val(op.b, "addend")?
                            };
                            let old = new_temp(point)?;
                            point.ops.push(Op::PluginLoad { w, dst: old, off, idx, mask });
                            let new = new_temp(point)?;
                            point.ops.push(match addend {
                                Val::Const(imm) => {
                                    Op::BinImm { op: BinOp::Add, w, dst: new, a: old, imm }
                                }
                                Val::Slot(b) => Op::Bin { op: BinOp::Add, w, dst: new, a: old, b },
                            });
                            point.ops.push(Op::PluginStore { w, val: new, off, idx, mask });
                            None
                        }
                    }
                }
                OP_CALL => {
                    let func = op.func.ok_or_else(|| fail("no function".into()))?;
                    if op.nargs > 4 {
                        return Err(fail(format!("{} arguments (at most 4)", op.nargs)));
                    }
                    let mut args = [Slot(0); 4];
                    for (slot, &r) in args.iter_mut().zip(&op.args[..op.nargs as usize]) {
                        let v = val(r, "an argument")?;
                        *slot = materialize(point, v, &mut new_temp)?;
                    }
                    let cond: Option<Option<Slot>> = if op.c == NONE {
                        Some(None)
                    } else {
                        match val(op.c, "the condition")? {
                            Val::Const(0) => None,
                            Val::Const(_) => Some(None),
                            Val::Slot(s) => Some(Some(s)),
                        }
                    };
                    // `cond`: None = never called (constant false); Some(c) = call if c.
                    if let Some(cond) = cond {
                        let call = call_site(who, func, op.imm, op.imm2);
                        point.ops.push(Op::CallPlugin { call, args, nargs: op.nargs as u8, cond });
                    }
                    None
                }
                k => return Err(fail(format!("unknown op kind {k}"))),
            };
            vals.push(result.map(|v| (at, v)));
        }
        Ok(())
    }

    /// Splice the plan into `block`.
    pub fn apply(self, block: &mut Block, view: &ViewData) {
        let mut points = self.points;
        let max_temp = points.values().map(|p| p.next).max().unwrap_or(self.base).max(self.base);
        let old = std::mem::take(&mut block.ops);
        let mut ops = Vec::with_capacity(old.len() + 16);
        if let Some(p) = points.remove(&At::Entry) {
            ops.extend(p.ops);
        }
        let n = block.insns.len();
        let first0 = block.insns.first().map_or(old.len(), |m| m.first_op as usize);
        ops.extend_from_slice(&old[..first0.min(old.len())]);
        for k in 0..n {
            let start = block.insns[k].first_op as usize;
            let end = block.insns.get(k + 1).map_or(old.len(), |m| m.first_op as usize);
            block.insns[k].first_op = if k == 0 { 0 } else { ops.len() as u32 };
            if let Some(p) = points.remove(&At::Before(k as u32)) {
                ops.extend(p.ops);
            }
            let accesses = view.access_ops.get(k).map_or(&[][..], |a| a.as_slice());
            for (j, op) in old.iter().enumerate().take(end.min(old.len())).skip(start) {
                let m = accesses.iter().position(|&a| a == j);
                let after = m.and_then(|m| points.remove(&At::After(k as u32, m as u32)));
                if let (Some(p), Some(addr)) = (&after, address_of(op)) {
                    if let Some(copy) = p.addr_copy {
                        ops.push(Op::Mov { dst: copy, src: addr });
                    }
                }
                ops.push(*op);
                if let Some(p) = after {
                    ops.extend(p.ops);
                }
            }
        }
        block.ops = ops;
        block.temps = max_temp;
    }
}

fn address_of(op: &Op) -> Option<Slot> {
    match *op {
        Op::Load { addr, .. }
        | Op::Store { addr, .. }
        | Op::AtomicRmw { addr, .. }
        | Op::AtomicCas { addr, .. } => Some(addr),
        _ => None,
    }
}

fn materialize(
    p: &mut PointOps,
    v: Val,
    new_temp: &mut impl FnMut(&mut PointOps) -> Result<Slot, String>,
) -> Result<Slot, String> {
    match v {
        Val::Slot(s) => Ok(s),
        Val::Const(imm) => {
            let t = new_temp(p)?;
            p.ops.push(Op::Const { dst: t, imm });
            Ok(t)
        }
    }
}
