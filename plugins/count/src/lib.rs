//! `count`: instructions and blocks executed, per thread and in total, with inline
//! counters only (no callbacks), so the JIT turns each counter into a load, an add and a
//! store.
//!
//! Counting conventions (arguments):
//! - `mode=tb` (default): at block entry, add the block's instruction count. A block left
//!   early (a fault, a LOCK retry, a store into its own code) over-counts the instructions
//!   it skipped; normal programs leave blocks early only at a fault that ends them.
//!   `mode=insn` adds 1 before every instruction: exact in every case, a little slower.
//! - `rep=once` (default, like QEMU): a REP-prefixed string instruction counts once however
//!   many iterations it runs. `rep=iterations` counts it like Valgrind (whose `Ir` is what
//!   callgrind and cachegrind report): once per iteration plus the final test of the count
//!   register, i.e. `1 + (rcx before - rcx after)`. When another plugin expands REP
//!   string instructions (memtrace does), each iteration is a run of the instruction and
//!   is counted as such, whatever `rep` says (a warning says so when it is `once`).
//!
//! - `exit_block=count` (default): the instructions of the block in which a thread exits
//!   (the one ending in `exit`/`exit_group`) are counted. `exit_block=drop` leaves them out,
//!   as callgrind does: it charges a block's instructions when the block is left, and a
//!   block left by ending the process never is (Valgrind's blocks also end after a REP
//!   string instruction, so only the instructions after the last one are dropped). With
//!   `exit_block=drop rep=iterations` the total equals callgrind's `Ir` for the same run.
//!
//! In `mode=tb` each translated block (up to `slots=N` distinct ones, default 32768) has
//! its own execution counter, so a block run costs one add; the instruction and block
//! totals are summed from them at exit (runs × length). Blocks beyond that share two
//! counters (two adds per run). Each thread's counters take 8 bytes per slot.
//!
//! Output (`out=FILE`, default stderr), one line per thread then the total:
//! `thread N: insns=I blocks=B` and `total: insns=I blocks=B threads=T`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use blockscope_plugin_api::{
    abi::ArgSpec, declare_plugin, Args, BinOp, Host, Injector, Plugin, Reg, Scoreboard, TbView,
};

const INSNS: u32 = 0;
const BLOCKS: u32 = 1;
/// rcx before the last REP instruction (rep=iterations).
const REP_RCX: u32 = 2;
/// 1 while a REP instruction's iterations are still to be added.
const REP_PENDING: u32 = 3;
/// Instructions of the block being executed after its last REP string instruction
/// (for exit_block=drop).
const LAST_LEN: u32 = 4;
/// Default number of blocks with a counter of their own (`mode=tb`).
const SLOTS: u32 = 1 << 15;
/// Most `slots=` accepts.
const MAX_SLOTS: u32 = 1 << 20;
const SYS_EXIT: u64 = 60;
const SYS_EXIT_GROUP: u64 = 231;

/// The slot of each block, by (pc, instruction count); and each slot's block length.
type Slots = (HashMap<(u64, u32), u32>, Vec<u64>);

/// The plugin.
pub struct Count {
    host: Host,
    sb: Scoreboard,
    /// Per-block execution counters (`mode=tb`).
    slots: Scoreboard,
    slot_of: Mutex<Slots>,
    /// Number of slots (`slots=`).
    nslots: u32,
    per_insn: bool,
    rep_iterations: bool,
    /// Whether the warning that another plugin expanded REP strings was given.
    warned: AtomicBool,
    drop_exit_block: bool,
    /// Instructions not to count, by vCPU (exit_block=drop).
    dropped: Mutex<HashMap<u32, u64>>,
    out: Option<String>,
}

fn is_rep_string(bytes: &[u8], mnemonic: &str) -> bool {
    let string = matches!(
        mnemonic,
        "movsb"
            | "movsw"
            | "movsd"
            | "movsq"
            | "stosb"
            | "stosw"
            | "stosd"
            | "stosq"
            | "lodsb"
            | "lodsw"
            | "lodsd"
            | "lodsq"
            | "cmpsb"
            | "cmpsw"
            | "cmpsd"
            | "cmpsq"
            | "scasb"
            | "scasw"
            | "scasd"
            | "scasq"
            | "insb"
            | "insw"
            | "insd"
            | "outsb"
            | "outsw"
            | "outsd"
    );
    let prefix = bytes.iter().take_while(|&&b| {
        matches!(
            b,
            0x66 | 0x67 | 0xf2 | 0xf3 | 0x2e | 0x3e | 0x26 | 0x64 | 0x65 | 0x36 | 0x40..=0x4f
        )
    });
    string && prefix.clone().any(|&b| b == 0xf2 || b == 0xf3)
}

impl Count {
    /// Add `saved rcx - rcx` to the instruction count if a REP instruction is pending.
    fn settle_rep(&self, e: &mut blockscope_plugin_api::Emit<'_, '_, Self>) {
        let pending = e.sb_load(&self.sb, REP_PENDING, None);
        let saved = e.sb_load(&self.sb, REP_RCX, None);
        let rcx = e.reg(Reg::RCX);
        let diff = e.bin(BinOp::Sub, saved, rcx);
        let zero = e.constant(0);
        let add = e.select(pending, diff, zero);
        e.sb_add_value(&self.sb, INSNS, None, add);
        e.sb_store(&self.sb, REP_PENDING, None, zero);
    }

    /// The counter slot of a block of `len` instructions at `pc`, if one is free.
    fn slot(&self, pc: u64, len: usize) -> Option<u32> {
        let mut g = self.slot_of.lock().unwrap_or_else(|e| e.into_inner());
        let (map, lens) = &mut *g;
        if let Some(&s) = map.get(&(pc, len as u32)) {
            return Some(s);
        }
        let s = lens.len() as u32;
        if s >= self.nslots {
            return None;
        }
        lens.push(len as u64);
        map.insert((pc, len as u32), s);
        Some(s)
    }

    fn totals(&self, vcpu: u32) -> (u64, u64) {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner()).get(&vcpu).copied();
        let (mut insns, mut blocks) = (self.sb.read(vcpu, INSNS), self.sb.read(vcpu, BLOCKS));
        let lens = self.slot_of.lock().unwrap_or_else(|e| e.into_inner()).1.clone();
        if !lens.is_empty() {
            let mut runs = vec![0u64; lens.len()];
            self.slots.read_into(vcpu, &mut runs);
            for (n, len) in runs.iter().zip(&lens) {
                insns = insns.wrapping_add(n.wrapping_mul(*len));
                blocks = blocks.wrapping_add(*n);
            }
        }
        (insns - dropped.unwrap_or(0), blocks)
    }
}

impl Plugin for Count {
    const NAME: &'static str = "count";
    const DESCRIPTION: &'static str =
        "instructions and blocks executed, per thread and total (inline counters)";
    const ARGS: &'static [ArgSpec] = &[
        ArgSpec::new("mode", "tb", "tb: add per block (fast); insn: add per instruction (exact)"),
        ArgSpec::new("rep", "once", "once: a REP instruction counts 1; iterations: as Valgrind"),
        ArgSpec::new("exit_block", "count", "count, or drop the exiting block (as callgrind)"),
        ArgSpec::new("slots", "32768", "blocks with their own counter (mode=tb; 8 bytes each)"),
        ArgSpec::new("out", "", "write the counts to this file (default: stderr)"),
    ];

    fn install(host: Host, args: &Args) -> Result<Self, String> {
        let per_insn = match args.get("mode").unwrap_or("tb") {
            "tb" => false,
            "insn" => true,
            m => return Err(format!("mode must be tb or insn, not `{m}`")),
        };
        let rep_iterations = match args.get("rep").unwrap_or("once") {
            "once" => false,
            "iterations" => true,
            m => return Err(format!("rep must be once or iterations, not `{m}`")),
        };
        let drop_exit_block = match args.get("exit_block").unwrap_or("count") {
            "count" => false,
            "drop" => true,
            m => return Err(format!("exit_block must be count or drop, not `{m}`")),
        };
        let nslots = match args.get("slots").map(str::parse::<u32>) {
            None => SLOTS,
            Some(Ok(n)) if n <= MAX_SLOTS => n,
            Some(_) => {
                return Err(format!(
                    "slots must be a number from 0 to {MAX_SLOTS}, not `{}`",
                    args.get("slots").unwrap_or_default()
                ))
            }
        };
        Ok(Count {
            host,
            sb: host.scoreboard(8, 5)?,
            slots: host.scoreboard(8, if per_insn { 1 } else { nslots.max(1) })?,
            slot_of: Mutex::new((HashMap::new(), Vec::new())),
            nslots: if per_insn { 0 } else { nslots },
            per_insn,
            rep_iterations,
            warned: AtomicBool::new(false),
            drop_exit_block,
            dropped: Mutex::new(HashMap::new()),
            out: args.get("out").map(str::to_string),
        })
    }

    fn translate(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        // With REP string instructions expanded (another plugin asked), each iteration is a
        // run of the instruction: block counting alone gives `rep=iterations`.
        let expanded = self.host.rep_strings_expanded();
        if expanded && !self.rep_iterations && !self.warned.swap(true, Ordering::Relaxed) {
            self.host.warn(
                "another plugin expands REP string instructions: each iteration counts, as with \
                 rep=iterations",
            );
        }
        let rep_iterations = self.rep_iterations && !expanded;
        {
            let mut e = inj.block_entry();
            match (!self.per_insn).then(|| self.slot(tb.pc(), tb.len())) {
                Some(Some(s)) => e.sb_add(&self.slots, s, None, 1),
                Some(None) => {
                    e.sb_add(&self.sb, BLOCKS, None, 1);
                    e.sb_add(&self.sb, INSNS, None, tb.len() as u64);
                }
                None => e.sb_add(&self.sb, BLOCKS, None, 1),
            }
            if rep_iterations {
                self.settle_rep(&mut e);
            }
            if self.drop_exit_block {
                // Valgrind ends its blocks after a REP string instruction, so the block
                // callgrind never charges is only what follows the last one.
                let tail = tb
                    .insns()
                    .filter(|i| is_rep_string(i.bytes(), i.mnemonic()))
                    .map(|i| tb.len() - i.index() - 1)
                    .last()
                    .unwrap_or(tb.len());
                let n = e.constant(tail as u64);
                e.sb_store(&self.sb, LAST_LEN, None, n);
            }
        }
        for insn in tb.insns() {
            let k = insn.index();
            let rep = rep_iterations && is_rep_string(insn.bytes(), insn.mnemonic());
            let prev_rep = rep_iterations
                && k > 0
                && is_rep_string(tb.insn(k - 1).bytes(), tb.insn(k - 1).mnemonic());
            if !self.per_insn && !rep && !prev_rep {
                continue;
            }
            let mut e = inj.before(k);
            if self.per_insn {
                e.sb_add(&self.sb, INSNS, None, 1);
            }
            if prev_rep {
                self.settle_rep(&mut e);
            }
            if rep {
                let rcx = e.reg(Reg::RCX);
                e.sb_store(&self.sb, REP_RCX, None, rcx);
                let one = e.constant(1);
                e.sb_store(&self.sb, REP_PENDING, None, one);
            }
        }
    }

    fn syscall(&self, vcpu: u32, nr: u64, _args: &[u64; 6]) {
        if self.drop_exit_block && (nr == SYS_EXIT || nr == SYS_EXIT_GROUP) {
            let n = self.sb.read(vcpu, LAST_LEN);
            *self.dropped.lock().unwrap_or_else(|e| e.into_inner()).entry(vcpu).or_default() += n;
        }
    }

    fn exit(&self) {
        let mut text = String::new();
        let (mut ti, mut tb) = (0u64, 0u64);
        let n = self.host.vcpu_count();
        for v in 0..n {
            let (i, b) = self.totals(v);
            ti += i;
            tb += b;
            text.push_str(&format!("thread {v}: insns={i} blocks={b}\n"));
        }
        text.push_str(&format!("total: insns={ti} blocks={tb} threads={n}\n"));
        match &self.out {
            Some(p) => {
                if let Err(e) = std::fs::write(p, &text) {
                    self.host.error(&format!("cannot write {p}: {e}"));
                }
            }
            None => eprint!("{text}"),
        }
    }
}

declare_plugin!(Count);
