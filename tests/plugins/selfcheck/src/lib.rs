//! Test-only plugin: counts executed blocks, instructions and memory accesses three ways,
//! which must agree:
//! - inline: scoreboard counters (`sb_add`, no call);
//! - callback: an unconditional call per block / instruction / access;
//! - conditional callback: calls guarded by runtime conditions that partition the events
//!   (`rsp != 0` for instructions; even/odd address for accesses), plus an inline count
//!   of even addresses made with `cmp` + `select`.
//!
//! At exit it writes one `key=value` line per quantity to `out=FILE` (or stderr).
//! Arguments that make it misbehave on purpose (for the failure tests): `panic=callback`
//! (panic in the 500th instruction callback), `panic=exit`, `bad=<kind>` (inject an op
//! the host must reject: `reg`, `scoreboard`, `value`, `mem`, `entry`, `point`).
#![forbid(unsafe_code)]

use blockscope_plugin_api::{
    abi::ArgSpec, declare_plugin, Args, BinOp, Call, CmpOp, Host, Injector, Plugin, Reg,
    Scoreboard, TbView,
};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const TBS: u32 = 0;
const INSNS: u32 = 1;
const MEMS: u32 = 2;
const EVEN: u32 = 3;

/// The plugin.
pub struct SelfCheck {
    host: Host,
    sb: Scoreboard,
    tbs: AtomicU64,
    insns: AtomicU64,
    insns_cond: AtomicU64,
    mems: AtomicU64,
    mems_even: AtomicU64,
    mems_odd: AtomicU64,
    mem_bytes: AtomicU64,
    /// 1 if `expand_rep_strings` was accepted after install (it must not be).
    late_expand: AtomicU64,
    out: Option<String>,
    panic: String,
    bad: String,
}

fn on_tb(p: &SelfCheck, _: &Call) {
    p.tbs.fetch_add(1, Relaxed);
}

fn on_insn(p: &SelfCheck, c: &Call) {
    let n = p.insns.fetch_add(1, Relaxed);
    if p.panic == "callback" && n == 499 {
        panic!("selfcheck: deliberate panic in an instruction callback (pc {:#x})", c.udata);
    }
}

fn on_insn_cond(p: &SelfCheck, _: &Call) {
    p.insns_cond.fetch_add(1, Relaxed);
}

fn on_mem(p: &SelfCheck, c: &Call) {
    p.mems.fetch_add(1, Relaxed);
    p.mem_bytes.fetch_add(c.udata, Relaxed);
}

fn on_mem_even(p: &SelfCheck, c: &Call) {
    assert_eq!(c.args[0] & 1, 0, "even-address callback got an odd address");
    p.mems_even.fetch_add(1, Relaxed);
}

fn on_mem_odd(p: &SelfCheck, c: &Call) {
    assert_eq!(c.args[0] & 1, 1, "odd-address callback got an even address");
    p.mems_odd.fetch_add(1, Relaxed);
}

impl SelfCheck {
    fn inject_bad(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        let n = tb.len();
        match self.bad.as_str() {
            "reg" => {
                // %rip is not readable (raw register 18 = REG_RIP).
                let mut e = inj.before(0);
                let mut op = blockscope_plugin_api::abi::PluginOp::new(
                    blockscope_plugin_api::abi::Point { kind: 0, insn: 0, access: 0 },
                    blockscope_plugin_api::abi::OP_REG,
                );
                op.sub = blockscope_plugin_api::abi::REG_RIP;
                e.raw(op);
            }
            "scoreboard" => {
                let mut e = inj.before(0);
                let mut op = blockscope_plugin_api::abi::PluginOp::new(
                    blockscope_plugin_api::abi::Point { kind: 0, insn: 0, access: 0 },
                    blockscope_plugin_api::abi::OP_SB_ADD,
                );
                op.sub = self.sb.id() + 1000;
                e.raw(op);
            }
            "entry" => {
                let mut e = inj.before(0);
                e.sb_add(&self.sb, 4, None, 1);
            }
            "value" => {
                let v = inj.block_entry().constant(1);
                let mut e2 = inj.before(n - 1);
                let w = e2.constant(2);
                // `v` was made at another point.
                e2.bin(BinOp::Add, v, w);
            }
            "mem" => {
                // Reading the access address outside an access point.
                inj.block_entry().mem_addr();
            }
            "point" => {
                inj.before(n + 5).constant(0);
            }
            _ => {}
        }
    }
}

impl Plugin for SelfCheck {
    const NAME: &'static str = "selfcheck";
    const DESCRIPTION: &'static str = "test plugin: counts blocks, insns and accesses three ways";
    const ARGS: &'static [ArgSpec] = &[
        ArgSpec::new("out", "", "write the counts to this file (default: stderr)"),
        ArgSpec::new("panic", "", "panic on purpose: callback or exit"),
        ArgSpec::new("bad", "", "inject a forbidden op: reg, scoreboard, entry, value, mem, point"),
    ];

    fn install(host: Host, args: &Args) -> Result<Self, String> {
        Ok(SelfCheck {
            host,
            sb: host.scoreboard(8, 4)?,
            tbs: AtomicU64::new(0),
            insns: AtomicU64::new(0),
            insns_cond: AtomicU64::new(0),
            mems: AtomicU64::new(0),
            mems_even: AtomicU64::new(0),
            mems_odd: AtomicU64::new(0),
            mem_bytes: AtomicU64::new(0),
            late_expand: AtomicU64::new(0),
            out: args.get("out").map(str::to_string),
            panic: args.get("panic").unwrap_or("").to_string(),
            bad: args.get("bad").unwrap_or("").to_string(),
        })
    }

    fn translate(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        // Asking for REP expansion after install is refused (the lifting of blocks
        // already translated could not follow).
        if self.host.expand_rep_strings() {
            self.late_expand.store(1, Relaxed);
        }
        if !self.bad.is_empty() {
            return self.inject_bad(tb, inj);
        }
        {
            let mut e = inj.block_entry();
            e.sb_add(&self.sb, TBS, None, 1);
            e.call(on_tb, tb.pc(), &[]);
        }
        for insn in tb.insns() {
            let k = insn.index();
            let mut e = inj.before(k);
            e.sb_add(&self.sb, INSNS, None, 1);
            e.call(on_insn, insn.pc(), &[]);
            let rsp = e.reg(Reg::RSP);
            let zero = e.constant(0);
            let nz = e.cmp(CmpOp::Ne, rsp, zero);
            e.call_if(nz, on_insn_cond, insn.pc(), &[]);
            for (m, a) in insn.accesses().iter().enumerate() {
                let mut e = inj.after_access(k, m);
                e.sb_add(&self.sb, MEMS, None, 1);
                let addr = e.mem_addr();
                let value = e.mem_value();
                e.call(on_mem, a.size as u64, &[addr, value]);
                let one = e.constant(1);
                let low = e.bin(BinOp::And, addr, one);
                let zero = e.constant(0);
                let even = e.cmp(CmpOp::Eq, low, zero);
                e.call_if(even, on_mem_even, 0, &[addr]);
                e.call_if(low, on_mem_odd, 0, &[addr]);
                let inc = e.select(even, one, zero);
                e.sb_add_value(&self.sb, EVEN, None, inc);
            }
        }
    }

    fn exit(&self) {
        if self.panic == "exit" {
            panic!("selfcheck: deliberate panic at exit");
        }
        let sum = |e| self.sb.sum(e);
        let text = format!(
            "tbs_inline={}\ntbs_callback={}\ninsns_inline={}\ninsns_callback={}\ninsns_cond={}\n\
             mems_inline={}\nmems_callback={}\nmems_even_cond={}\nmems_odd_cond={}\n\
             mems_even_inline={}\nmem_bytes={}\nvcpus={}\nlate_expand_accepted={}\n\
             rep_expanded={}\n",
            sum(TBS),
            self.tbs.load(Relaxed),
            sum(INSNS),
            self.insns.load(Relaxed),
            self.insns_cond.load(Relaxed),
            sum(MEMS),
            self.mems.load(Relaxed),
            self.mems_even.load(Relaxed),
            self.mems_odd.load(Relaxed),
            sum(EVEN),
            self.mem_bytes.load(Relaxed),
            self.host.vcpu_count(),
            self.late_expand.load(Relaxed),
            self.host.rep_strings_expanded() as u64,
        );
        match &self.out {
            Some(path) => {
                if let Err(e) = std::fs::write(path, &text) {
                    self.host.error(&format!("cannot write {path}: {e}"));
                }
            }
            None => eprint!("{text}"),
        }
    }
}

declare_plugin!(SelfCheck);
