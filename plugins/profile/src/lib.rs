//! `profile`: hot blocks, instruction mix (by mnemonic and by category), per-function
//! exclusive and inclusive cost in guest instructions, and a call graph; written as a text
//! top-N, a `callgrind.out` file (callgrind_annotate, KCachegrind), folded stacks and a
//! flamegraph SVG (inferno).
//!
//! How it measures:
//! - every block has an inline execution counter, and an inline per-thread instruction
//!   counter runs at block entry; exclusive cost and the instruction mix are block counts
//!   times the block's instructions (exact, no call);
//! - calls and returns are tracked with a per-thread shadow stack: a call instruction runs
//!   a callback (call site, callee, instruction counter, stack pointer) that pushes a frame;
//!   the callee of a direct call is known at translation, an indirect call passes its
//!   target (the register, or the loaded pointer right after the load); a return pops
//!   the frames whose stack pointer it passes (so longjmp-style unwinding stays balanced).
//!   Blocks without a call or return get no callback at all.
//!   Inclusive cost of a frame is the instruction-counter difference between entry and
//!   return, counted once for recursive functions (as callgrind does). Folded stacks charge
//!   the instructions between two stack changes to the stack at that time.
//! - Functions are the ELF symbols of the program and its shared libraries; code outside
//!   any symbol is named by its module and address.
#![forbid(unsafe_code)]

use blockscope_plugin_api::{
    abi::{ArgSpec, ACCESS_LOAD},
    declare_plugin, Args, Branch, Call, Host, Injector, Plugin, Reg, Scoreboard, TbView,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

const ICOUNT: u32 = 0;

#[derive(Clone)]
struct BlockInfo {
    pc: u64,
    /// (pc, mnemonic, function id) of each instruction.
    insns: Vec<(u64, &'static str, u32)>,
}

#[derive(Clone, Debug)]
struct Func {
    name: String,
    module: String,
}

struct Frame {
    func: u32,
    call_site_func: u32,
    start: u64,
    sp: u64,
}

#[derive(Default)]
struct Thread {
    stack: Vec<Frame>,
    last: u64,
}

#[derive(Default)]
struct Graph {
    /// (caller, callee) → (calls, inclusive instructions).
    edges: HashMap<(u32, u32), (u64, u64)>,
    inclusive: HashMap<u32, u64>,
    folded: HashMap<Vec<u32>, u64>,
    threads: HashMap<u32, Thread>,
}

#[derive(Default)]
struct Tables {
    blocks: Vec<BlockInfo>,
    by_pc: HashMap<u64, u32>,
    funcs: Vec<Func>,
    func_ids: HashMap<(String, String), u32>,
    /// Function id of each indirect call target seen.
    targets: HashMap<u64, u32>,
}

/// The plugin.
pub struct Profile {
    host: Host,
    counts: Scoreboard,
    state: Scoreboard,
    top: usize,
    report: Option<String>,
    callgrind: Option<String>,
    folded: Option<String>,
    flamegraph: Option<String>,
    cmd: String,
    tables: Mutex<Tables>,
    graph: Mutex<Graph>,
}

fn category(m: &str, b: Branch, accesses: usize) -> &'static str {
    match b {
        Branch::Call | Branch::IndirectCall | Branch::Return => return "call/ret",
        Branch::Jump | Branch::Cond | Branch::Indirect => return "branch",
        Branch::Syscall => return "syscall",
        _ => {}
    }
    let fp = m.starts_with('f') && !m.starts_with("fs")
        || m.ends_with("ps")
        || m.ends_with("pd")
        || m.ends_with("ss") && m != "movss" && !m.starts_with("cmps")
        || m.ends_with("sd") && m.starts_with("cvt")
        || m.starts_with('p') && m.len() > 3 && m != "push" && m != "pop" && m != "pause";
    if fp {
        "simd/fp"
    } else if m.starts_with("mov")
        || m == "push"
        || m == "pop"
        || m == "lea"
        || m.starts_with("stos")
    {
        if accesses > 0 {
            "memory"
        } else {
            "move"
        }
    } else if accesses > 0 {
        "alu+memory"
    } else {
        "alu"
    }
}

/// `udata`: caller function id in the low half, callee function id + 1 in the high half
/// (0: indirect, the target is `args[2]`); args: instruction count, stack pointer before
/// the call.
fn on_call(p: &Profile, c: &Call) {
    let caller = c.udata as u32;
    let callee = match (c.udata >> 32) as u32 {
        0 => {
            let mut t = p.tables.lock().unwrap_or_else(|e| e.into_inner());
            let target = c.args[2];
            match t.targets.get(&target) {
                Some(&f) => f,
                None => {
                    let f = Profile::func_id(&mut t, &p.host, target);
                    t.targets.insert(target, f);
                    f
                }
            }
        }
        f => f - 1,
    };
    let (now, sp) = (c.args[0], c.args[1]);
    let mut g = p.graph.lock().unwrap_or_else(|e| e.into_inner());
    let g = &mut *g;
    let t = g.threads.entry(c.vcpu).or_default();
    let stack: Vec<u32> = t.stack.iter().map(|f| f.func).collect();
    *g.folded.entry(stack).or_default() += now - t.last;
    t.last = now;
    t.stack.push(Frame { func: callee, call_site_func: caller, start: now, sp });
}

/// The register of an indirect `call r64` (`FF /2` with a register operand), if `bytes`
/// is one.
fn call_register(bytes: &[u8]) -> Option<u8> {
    let mut i = 0;
    while matches!(
        bytes.get(i)?,
        0x66 | 0x67 | 0xf2 | 0xf3 | 0x2e | 0x3e | 0x26 | 0x36 | 0x64 | 0x65
    ) {
        i += 1;
    }
    let rex = match bytes.get(i)? {
        r @ 0x40..=0x4f => {
            i += 1;
            *r
        }
        _ => 0,
    };
    let (op, modrm) = (*bytes.get(i)?, *bytes.get(i + 1)?);
    (op == 0xff && modrm >> 6 == 3 && (modrm >> 3) & 7 == 2).then_some((modrm & 7) | (rex & 1) << 3)
}

fn pop_frame(g: &mut Graph, vcpu: u32, now: u64) {
    let t = g.threads.entry(vcpu).or_default();
    let stack: Vec<u32> = t.stack.iter().map(|f| f.func).collect();
    let Some(f) = t.stack.pop() else { return };
    *g.folded.entry(stack).or_default() += now - t.last;
    t.last = now;
    let cost = now - f.start;
    let recursive = t.stack.iter().any(|o| o.func == f.func);
    let e = g.edges.entry((f.call_site_func, f.func)).or_default();
    e.0 += 1;
    e.1 += cost;
    if !recursive {
        *g.inclusive.entry(f.func).or_default() += cost;
    }
}

fn on_ret(p: &Profile, c: &Call) {
    let mut g = p.graph.lock().unwrap_or_else(|e| e.into_inner());
    let (now, sp) = (c.args[0], c.args[1]);
    loop {
        let t = g.threads.entry(c.vcpu).or_default();
        // The frame made by a call at stack pointer s returns when rsp is s - 8 at `ret`.
        match t.stack.last() {
            Some(f) if f.sp <= sp + 8 => pop_frame(&mut g, c.vcpu, now),
            _ => break,
        }
    }
}

impl Profile {
    fn func_id(t: &mut Tables, host: &Host, pc: u64) -> u32 {
        let (name, module) = match host.symbolize(pc) {
            Some(s) if !s.name.is_empty() => (s.name.to_string(), s.module.to_string()),
            Some(s) => {
                (format!("{}+{:#x}", short(s.module), pc - s.module_base), s.module.to_string())
            }
            None => (format!("{:#x}", pc & !0xfff), "[unknown]".to_string()),
        };
        let key = (name, module);
        if let Some(&id) = t.func_ids.get(&key) {
            return id;
        }
        let id = t.funcs.len() as u32;
        t.funcs.push(Func { name: key.0.clone(), module: key.1.clone() });
        t.func_ids.insert(key, id);
        id
    }

    fn block_counts(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.counts.entries() as usize];
        for v in 0..self.host.vcpu_count() {
            for (o, x) in c.iter_mut().zip(self.counts.read_all(v)) {
                *o += x;
            }
        }
        c
    }

    /// Close every frame still open (the program exited inside them).
    fn unwind_all(&self) {
        let mut g = self.graph.lock().unwrap_or_else(|e| e.into_inner());
        let vcpus: Vec<u32> = g.threads.keys().copied().collect();
        for v in vcpus {
            let now = self.state.read(v, ICOUNT);
            while !g.threads.get(&v).is_none_or(|t| t.stack.is_empty()) {
                pop_frame(&mut g, v, now);
            }
            let t = g.threads.entry(v).or_default();
            let rest = now.saturating_sub(t.last);
            t.last = now;
            *g.folded.entry(Vec::new()).or_default() += rest;
        }
        for v in 0..self.host.vcpu_count() {
            if !g.threads.contains_key(&v) {
                let now = self.state.read(v, ICOUNT);
                *g.folded.entry(Vec::new()).or_default() += now;
            }
        }
    }
}

fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Plugin for Profile {
    const NAME: &'static str = "profile";
    const DESCRIPTION: &'static str =
        "hot blocks, instruction mix, per-function cost, call graph (callgrind.out, flamegraph)";
    const ARGS: &'static [ArgSpec] = &[
        ArgSpec::new("top", "20", "entries in each table of the text report"),
        ArgSpec::new("report", "", "write the text report to this file (default: stderr)"),
        ArgSpec::new("callgrind", "", "write a callgrind.out file"),
        ArgSpec::new("folded", "", "write folded stacks (one `a;b;c count` line each)"),
        ArgSpec::new("flamegraph", "", "write a flamegraph SVG"),
        ArgSpec::new("max_blocks", "262144", "distinct blocks tracked"),
        ArgSpec::new("cmd", "", "command line recorded in callgrind.out"),
    ];

    fn install(host: Host, args: &Args) -> Result<Self, String> {
        let max_blocks: u32 = args.parse("max_blocks", 1 << 18)?;
        Ok(Profile {
            host,
            counts: host.scoreboard(8, max_blocks)?,
            state: host.scoreboard(8, 2)?,
            top: args.parse("top", 20usize)?,
            report: args.get("report").map(str::to_string),
            callgrind: args.get("callgrind").map(str::to_string),
            folded: args.get("folded").map(str::to_string),
            flamegraph: args.get("flamegraph").map(str::to_string),
            cmd: args.get("cmd").unwrap_or("guest").to_string(),
            tables: Mutex::new(Tables::default()),
            graph: Mutex::new(Graph::default()),
        })
    }

    fn translate(&self, tb: &TbView<'_>, inj: &mut Injector<'_, Self>) {
        let id = {
            let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
            let insns: Vec<(u64, &'static str, u32)> = tb
                .insns()
                .map(|i| (i.pc(), i.mnemonic(), Self::func_id(&mut t, &self.host, i.pc())))
                .collect();
            match t.by_pc.get(&tb.pc()) {
                Some(&id) => {
                    t.blocks[id as usize].insns = insns;
                    id
                }
                None => {
                    let id = t.blocks.len() as u32;
                    t.blocks.push(BlockInfo { pc: tb.pc(), insns });
                    t.by_pc.insert(tb.pc(), id);
                    id
                }
            }
        };
        {
            let mut e = inj.block_entry();
            if id < self.counts.entries() {
                e.sb_add(&self.counts, id, None, 1);
            }
            e.sb_add(&self.state, ICOUNT, None, tb.len() as u64);
        }
        for insn in tb.insns() {
            let k = insn.index();
            match insn.branch() {
                Branch::Call | Branch::IndirectCall => {
                    let (caller, direct) = {
                        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
                        let caller = t.blocks[id as usize].insns[k].2;
                        let direct = (insn.branch() == Branch::Call)
                            .then(|| Self::func_id(&mut t, &self.host, insn.target()));
                        (caller, direct)
                    };
                    if let Some(callee) = direct {
                        let mut e = inj.before(k);
                        let n = e.sb_load(&self.state, ICOUNT, None);
                        let sp = e.reg(Reg::RSP);
                        e.call(on_call, caller as u64 | (callee as u64 + 1) << 32, &[n, sp]);
                    } else if let Some(r) = call_register(insn.bytes()) {
                        let mut e = inj.before(k);
                        let n = e.sb_load(&self.state, ICOUNT, None);
                        let sp = e.reg(Reg::RSP);
                        let target = e.reg(Reg::Gpr(r));
                        e.call(on_call, caller as u64, &[n, sp, target]);
                    } else if let Some(m) =
                        insn.accesses().iter().position(|a| a.kind == ACCESS_LOAD)
                    {
                        // The pointer is loaded before the call writes %rsp.
                        let mut e = inj.after_access(k, m);
                        let n = e.sb_load(&self.state, ICOUNT, None);
                        let sp = e.reg(Reg::RSP);
                        let target = e.mem_value();
                        e.call(on_call, caller as u64, &[n, sp, target]);
                    }
                }
                Branch::Return => {
                    let mut e = inj.before(k);
                    let n = e.sb_load(&self.state, ICOUNT, None);
                    let sp = e.reg(Reg::RSP);
                    e.call(on_ret, 0, &[n, sp]);
                }
                _ => {}
            }
        }
    }

    fn exit(&self) {
        self.unwind_all();
        let counts = self.block_counts();
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let g = self.graph.lock().unwrap_or_else(|e| e.into_inner());
        let mut exclusive: HashMap<u32, u64> = HashMap::new();
        let mut mix: HashMap<&str, u64> = HashMap::new();
        let mut cats: HashMap<&str, u64> = HashMap::new();
        let mut hot: Vec<(u64, u64, usize)> = Vec::new();
        let mut total = 0u64;
        for (id, b) in t.blocks.iter().enumerate() {
            let n = counts.get(id).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            hot.push((n * b.insns.len() as u64, b.pc, id));
            for &(_, m, f) in &b.insns {
                *exclusive.entry(f).or_default() += n;
                *mix.entry(m).or_default() += n;
                total += n;
            }
        }
        // Categories need branch kinds and accesses, known from the mnemonic table only
        // roughly here: derive from mnemonic and the call/ret/branch spelling.
        for (m, n) in &mix {
            let b = match *m {
                "call" => Branch::Call,
                "ret" => Branch::Return,
                "jmp" => Branch::Jump,
                "syscall" => Branch::Syscall,
                j if j.starts_with('j') || j.starts_with("loop") => Branch::Cond,
                _ => Branch::None,
            };
            *cats.entry(category(m, b, 0)).or_default() += n;
        }
        let name = |f: u32| t.funcs.get(f as usize).map_or("?".to_string(), |x| x.name.clone());
        if let Err(e) = self.write_report(&t, &counts, total, &exclusive, &g, &mix, &cats, &mut hot)
        {
            self.host.error(&e);
        }
        if let Some(p) = &self.callgrind {
            let text = self.callgrind_text(&t, total, &exclusive, &g);
            if let Err(e) = std::fs::write(p, text) {
                self.host.error(&format!("cannot write {p}: {e}"));
            }
        }
        let mut folded: Vec<String> = g
            .folded
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(s, n)| {
                let mut path = vec!["[root]".to_string()];
                path.extend(s.iter().map(|&f| name(f)));
                format!("{} {n}", path.join(";"))
            })
            .collect();
        folded.sort();
        if let Some(p) = &self.folded {
            if let Err(e) = std::fs::write(p, folded.join("\n") + "\n") {
                self.host.error(&format!("cannot write {p}: {e}"));
            }
        }
        if let Some(p) = &self.flamegraph {
            let mut opts = inferno::flamegraph::Options::default();
            opts.title = format!("blockscope profile: {}", self.cmd);
            opts.count_name = "instructions".into();
            let r = std::fs::File::create(p).map_err(|e| e.to_string()).and_then(|f| {
                inferno::flamegraph::from_lines(&mut opts, folded.iter().map(|s| s.as_str()), f)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = r {
                self.host.error(&format!("cannot write {p}: {e}"));
            }
        }
    }
}

impl Profile {
    #[allow(clippy::too_many_arguments, reason = "one report from the tables built in exit")]
    fn write_report(
        &self,
        t: &Tables,
        _counts: &[u64],
        total: u64,
        exclusive: &HashMap<u32, u64>,
        g: &Graph,
        mix: &HashMap<&str, u64>,
        cats: &HashMap<&str, u64>,
        hot: &mut [(u64, u64, usize)],
    ) -> Result<(), String> {
        let n = self.top;
        let pct = |x: u64| if total == 0 { 0.0 } else { 100.0 * x as f64 / total as f64 };
        let mut s = String::new();
        let _ = writeln!(s, "profile: {total} guest instructions");
        let _ = writeln!(s, "\nhot blocks (instructions executed):");
        hot.sort_unstable_by(|a, b| b.cmp(a));
        for (cost, pc, id) in hot.iter().take(n) {
            let f = t.blocks[*id].insns.first().map_or(0, |i| i.2);
            let fname = t.funcs.get(f as usize).map_or("?", |x| x.name.as_str());
            let _ = writeln!(s, "  {cost:>14} {:5.1}%  {pc:#x}  {fname}", pct(*cost));
        }
        let mut funcs: Vec<(u64, u32)> = exclusive.iter().map(|(&f, &c)| (c, f)).collect();
        funcs.sort_unstable_by(|a, b| b.cmp(a));
        let _ = writeln!(s, "\nfunctions (exclusive, inclusive):");
        for (c, f) in funcs.iter().take(n) {
            let inc = g.inclusive.get(f).copied().unwrap_or(*c).max(*c);
            let func = &t.funcs[*f as usize];
            let _ = writeln!(
                s,
                "  {c:>14} {:5.1}%  {inc:>14}  {}  ({})",
                pct(*c),
                func.name,
                short(&func.module)
            );
        }
        let mut m: Vec<(u64, &str)> = mix.iter().map(|(k, v)| (*v, *k)).collect();
        m.sort_unstable_by(|a, b| b.cmp(a));
        let _ = writeln!(s, "\ninstruction mix by mnemonic:");
        for (c, k) in m.iter().take(n) {
            let _ = writeln!(s, "  {c:>14} {:5.1}%  {k}", pct(*c));
        }
        let mut c: Vec<(u64, &str)> = cats.iter().map(|(k, v)| (*v, *k)).collect();
        c.sort_unstable_by(|a, b| b.cmp(a));
        let _ = writeln!(s, "\ninstruction mix by category:");
        for (x, k) in &c {
            let _ = writeln!(s, "  {x:>14} {:5.1}%  {k}", pct(*x));
        }
        match &self.report {
            Some(p) => std::fs::write(p, s).map_err(|e| format!("cannot write {p}: {e}")),
            None => {
                eprint!("{s}");
                Ok(())
            }
        }
    }

    fn callgrind_text(
        &self,
        t: &Tables,
        total: u64,
        exclusive: &HashMap<u32, u64>,
        g: &Graph,
    ) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# callgrind format\nversion: 1\ncreator: blockscope profile");
        let _ = writeln!(s, "cmd: {}\npart: 1\n\npositions: line\nevents: Ir\n", self.cmd);
        let mut callees: BTreeMap<u32, Vec<(u32, u64, u64)>> = BTreeMap::new();
        for (&(caller, callee), &(calls, inc)) in &g.edges {
            callees.entry(caller).or_default().push((callee, calls, inc));
        }
        let mut ids: Vec<u32> = exclusive.keys().copied().chain(callees.keys().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        for f in ids {
            let func = &t.funcs[f as usize];
            let _ = writeln!(s, "ob={}\nfl={}\nfn={}", func.module, func.module, func.name);
            let _ = writeln!(s, "0 {}", exclusive.get(&f).copied().unwrap_or(0));
            if let Some(cs) = callees.get_mut(&f) {
                cs.sort_unstable();
                for &(callee, calls, inc) in cs.iter() {
                    let c = &t.funcs[callee as usize];
                    let _ = writeln!(
                        s,
                        "cob={}\ncfi={}\ncfn={}\ncalls={calls} 0\n0 {inc}",
                        c.module, c.module, c.name
                    );
                }
            }
            s.push('\n');
        }
        let _ = writeln!(s, "totals: {total}");
        s
    }
}

declare_plugin!(Profile);
