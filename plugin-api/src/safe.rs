//! The safe Rust side of the ABI: the [`Plugin`] trait, the [`Host`] handle, scoreboards,
//! the read-only [`TbView`] and the [`Injector`] that builds plugin ops.
//!
//! Plugins observe; they never change guest state. Everything a plugin can inject is in
//! [`Emit`]: constants, arithmetic, compares and selects, reads of guest registers, the
//! current memory access's address and value, loads and stores on the plugin's own
//! scoreboards, and (optionally conditional) calls to its callbacks. Views and injectors
//! live only for the duration of `translate`.

use crate::abi::*;
use abi_stable::std_types::{RSlice, RSliceMut, RStr};
use std::marker::PhantomData;

/// A plugin. Implement it and export it with `declare_plugin!(MyType)`.
///
/// One value of the type is created per `--plugin` occurrence (by [`Plugin::install`]) and
/// shared by every guest thread: use atomics, scoreboards or locks for mutable state.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Short name, as used on the command line.
    const NAME: &'static str;
    /// One-line description for `blockscope plugins`.
    const DESCRIPTION: &'static str;
    /// Accepted `key=value` arguments; anything else is refused before `install`.
    const ARGS: &'static [ArgSpec] = &[];

    /// Create the plugin. Scoreboards must be allocated here.
    fn install(host: Host, args: &Args) -> Result<Self, String>;
    /// A vCPU (guest thread) starts.
    fn vcpu_init(&self, _vcpu: u32) {}
    /// A vCPU (guest thread) exits.
    fn vcpu_exit(&self, _vcpu: u32) {}
    /// A block is being translated: look at it and inject ops.
    fn translate(&self, _tb: &TbView<'_>, _inj: &mut Injector<'_, Self>) {}
    /// A system call is about to run.
    fn syscall(&self, _vcpu: u32, _nr: u64, _args: &[u64; 6]) {}
    /// A system call returned `ret`.
    fn syscall_ret(&self, _vcpu: u32, _nr: u64, _ret: u64) {}
    /// The guest exits: write outputs.
    fn exit(&self) {}
}

/// What a callback receives.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// The vCPU (guest thread) index.
    pub vcpu: u32,
    /// The user word given at injection.
    pub udata: u64,
    /// The argument values (unused ones are 0).
    pub args: [u64; 4],
}

/// A callback: runs on the guest's thread when the injected call executes.
pub type Callback<P> = fn(&P, &Call);

/// The plugin's `key=value` arguments.
#[derive(Clone, Debug, Default)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Arguments from pairs (tests, in-process use).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        p: impl IntoIterator<Item = (K, V)>,
    ) -> Args {
        Args { pairs: p.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
    pub(crate) fn from_raw(raw: RSlice<'_, KeyValue<'_>>) -> Args {
        let s = |r: RStr<'_>| String::from_utf8_lossy(r.as_rslice().as_slice()).into_owned();
        Args { pairs: raw.as_slice().iter().map(|kv| (s(kv.key), s(kv.value))).collect() }
    }
    /// The value of `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    /// All values of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
    /// Parse `key` with `FromStr`, or return `default` when absent.
    pub fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_num(v).ok_or_else(|| format!("bad value `{v}` for `{key}`")),
        }
    }
    /// A boolean (`on/off`, `true/false`, `yes/no`, `1/0`), or `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("on" | "true" | "yes" | "1" | "") => Ok(true),
            Some("off" | "false" | "no" | "0") => Ok(false),
            Some(v) => Err(format!("bad value `{v}` for `{key}` (expected on or off)")),
        }
    }
}

/// Parse a number in decimal or `0x` hex (with `k`/`m` size suffixes), or any `FromStr`.
fn parse_num<T: std::str::FromStr>(v: &str) -> Option<T> {
    if let Ok(t) = v.parse::<T>() {
        return Some(t);
    }
    let lower = v.to_ascii_lowercase();
    let (num, mul) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1024u64),
        Some(b'm') => (&lower[..lower.len() - 1], 1024 * 1024),
        _ => (lower.as_str(), 1),
    };
    let n = match num.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => num.parse::<u64>().ok()?,
    };
    n.checked_mul(mul)?.to_string().parse().ok()
}

/// A module mapped into the guest.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Path of the ELF file.
    pub path: &'static str,
    /// Lowest mapped address.
    pub start: u64,
    /// End of the highest mapping.
    pub end: u64,
    /// Run-time address minus file address.
    pub bias: u64,
    /// Entry point, 0 if unknown.
    pub entry: u64,
}

/// The module and symbol containing an address.
#[derive(Clone, Copy, Debug)]
pub struct Symbol {
    /// Path of the module; empty if none.
    pub module: &'static str,
    /// Lowest mapped address of the module.
    pub module_base: u64,
    /// Load bias of the module.
    pub module_bias: u64,
    /// Symbol name; empty if none.
    pub name: &'static str,
    /// Run-time address of the symbol.
    pub addr: u64,
    /// Size of the symbol (0 if unknown).
    pub size: u64,
}

fn rstr(s: RStr<'static>) -> &'static str {
    // The host hands out valid UTF-8 (it builds these strings from Rust `str`s).
    s.as_str()
}

/// The host, as seen from a plugin. Copyable; valid for the life of the process.
#[derive(Clone, Copy)]
pub struct Host {
    pub(crate) api: &'static HostApi,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host(plugin {})", self.api.plugin)
    }
}

impl Host {
    /// Wrap the host's table.
    pub fn new(api: &'static HostApi) -> Host {
        Host { api }
    }
    /// The host's ABI version (major, minor).
    pub fn abi_version(&self) -> (u32, u32) {
        (self.api.abi_major, self.api.abi_minor)
    }
    /// Allocate a zeroed per-vCPU scoreboard of `entries` entries of `entry_bytes` bytes
    /// (1, 2, 4 or 8). Only during `install`.
    pub fn scoreboard(&self, entry_bytes: u32, entries: u32) -> Result<Scoreboard, String> {
        let id = (self.api.scoreboard_new)(self.api.plugin, entry_bytes, entries);
        if id < 0 {
            return Err(format!("cannot allocate a scoreboard of {entries} x {entry_bytes} bytes"));
        }
        Ok(Scoreboard { id: id as u32, entries, entry_bytes, host: *self })
    }
    /// Expand REP string instructions for the whole run: each run of one then moves one
    /// element, whose accesses are ordinary memory accesses (`TbView::accesses`, attach
    /// points), and the instruction executes once per iteration plus once for the final
    /// test of the count register (Valgrind's convention; DynamoRIO's
    /// `drutil_expand_rep_string`). Without it a REP string instruction is one step whose
    /// accesses no plugin sees. Only during `install`; false otherwise.
    pub fn expand_rep_strings(&self) -> bool {
        (self.api.expand_rep_strings)(self.api.plugin)
    }
    /// Whether REP string instructions are expanded (some plugin asked). Settled before
    /// the first block is translated.
    pub fn rep_strings_expanded(&self) -> bool {
        (self.api.rep_strings_expanded)(self.api.plugin)
    }
    /// Number of vCPUs started so far.
    pub fn vcpu_count(&self) -> u32 {
        (self.api.vcpu_count)(self.api.plugin)
    }
    /// Print an informational line (prefixed with the plugin name).
    pub fn info(&self, msg: &str) {
        (self.api.message)(self.api.plugin, LEVEL_INFO, RStr::from_str(msg))
    }
    /// Print a warning.
    pub fn warn(&self, msg: &str) {
        (self.api.message)(self.api.plugin, LEVEL_WARN, RStr::from_str(msg))
    }
    /// Report an error (during install: why it failed).
    pub fn error(&self, msg: &str) {
        (self.api.message)(self.api.plugin, LEVEL_ERROR, RStr::from_str(msg))
    }
    /// Report a fatal failure: the host disables this plugin and the run fails.
    pub fn fatal(&self, msg: &str) {
        (self.api.message)(self.api.plugin, LEVEL_FATAL, RStr::from_str(msg))
    }
    /// The module and symbol containing `pc`.
    pub fn symbolize(&self, pc: u64) -> Option<Symbol> {
        let mut out = SymbolRaw {
            module: RStr::from_str(""),
            module_base: 0,
            module_bias: 0,
            symbol: RStr::from_str(""),
            symbol_addr: 0,
            symbol_size: 0,
        };
        if !(self.api.symbolize)(self.api.plugin, pc, &mut out) {
            return None;
        }
        Some(Symbol {
            module: rstr(out.module),
            module_base: out.module_base,
            module_bias: out.module_bias,
            name: rstr(out.symbol),
            addr: out.symbol_addr,
            size: out.symbol_size,
        })
    }
    /// The modules mapped so far, in load order (the main program first).
    pub fn modules(&self) -> Vec<Module> {
        let mut v = Vec::new();
        let mut raw = ModuleRaw { path: RStr::from_str(""), start: 0, end: 0, bias: 0, entry: 0 };
        let mut i = 0;
        while (self.api.module)(self.api.plugin, i, &mut raw) {
            v.push(Module {
                path: rstr(raw.path),
                start: raw.start,
                end: raw.end,
                bias: raw.bias,
                entry: raw.entry,
            });
            i += 1;
        }
        v
    }
}

/// A per-vCPU array of counters owned by the plugin, allocated by the host. Injected ops
/// read and write the running vCPU's copy; the plugin reads every copy (at exit or when a
/// vCPU exits).
#[derive(Clone, Copy, Debug)]
pub struct Scoreboard {
    id: u32,
    entries: u32,
    entry_bytes: u32,
    host: Host,
}

impl Scoreboard {
    /// Number of entries.
    pub fn entries(&self) -> u32 {
        self.entries
    }
    /// Entry size in bytes.
    pub fn entry_bytes(&self) -> u32 {
        self.entry_bytes
    }
    /// The scoreboard id (as used in raw ops).
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Entry `entry` of vCPU `vcpu`.
    pub fn read(&self, vcpu: u32, entry: u32) -> u64 {
        (self.host.api.scoreboard_read)(self.host.api.plugin, self.id, vcpu, entry)
    }
    /// Entry `entry` summed over every vCPU.
    pub fn sum(&self, entry: u32) -> u64 {
        (0..self.host.vcpu_count()).map(|v| self.read(v, entry)).fold(0, u64::wrapping_add)
    }
    /// All entries of vCPU `vcpu`.
    pub fn read_all(&self, vcpu: u32) -> Vec<u64> {
        let mut v = vec![0u64; self.entries as usize];
        let n = self.read_into(vcpu, &mut v);
        v.truncate(n);
        v
    }
    /// The first `out.len()` entries of vCPU `vcpu` into `out` (no allocation: trace
    /// buffers drain this way); returns how many were filled (fewer if the scoreboard has
    /// fewer entries or the vCPU does not exist).
    pub fn read_into(&self, vcpu: u32, out: &mut [u64]) -> usize {
        (self.host.api.scoreboard_read_all)(
            self.host.api.plugin,
            self.id,
            vcpu,
            RSliceMut::from_mut_slice(out),
        ) as usize
    }
}

/// How an instruction transfers control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Branch {
    /// Falls through.
    None,
    /// Direct unconditional jump.
    Jump,
    /// Direct conditional jump.
    Cond,
    /// Indirect jump.
    Indirect,
    /// Direct call.
    Call,
    /// Indirect call.
    IndirectCall,
    /// Return.
    Return,
    /// System call or software interrupt.
    Syscall,
    /// Raises an exception or stops.
    Exception,
}

impl Branch {
    fn from_raw(v: u32) -> Branch {
        match v {
            BRANCH_JUMP => Branch::Jump,
            BRANCH_COND => Branch::Cond,
            BRANCH_INDIRECT => Branch::Indirect,
            BRANCH_CALL => Branch::Call,
            BRANCH_INDIRECT_CALL => Branch::IndirectCall,
            BRANCH_RETURN => Branch::Return,
            BRANCH_SYSCALL => Branch::Syscall,
            BRANCH_EXCEPTION => Branch::Exception,
            _ => Branch::None,
        }
    }
    /// Whether it is a call (direct or indirect).
    pub fn is_call(self) -> bool {
        matches!(self, Branch::Call | Branch::IndirectCall)
    }
}

/// The read-only view of a block being translated.
#[derive(Clone, Copy)]
pub struct TbView<'a> {
    raw: &'a TbRaw<'a>,
    host: Host,
}

impl<'a> TbView<'a> {
    /// Wrap a raw view.
    pub fn new(raw: &'a TbRaw<'a>, host: Host) -> Self {
        TbView { raw, host }
    }
    /// Address of the first instruction.
    pub fn pc(&self) -> u64 {
        self.raw.pc
    }
    /// End of the first contiguous run of instructions: the address after the last one,
    /// unless the block goes on at the target of a direct `jmp` (it then has several
    /// runs; each instruction's `pc` and `len` say where it is).
    pub fn end(&self) -> u64 {
        self.raw.end
    }
    /// The block's contiguous runs of code `(start, bytes)`, in block order: one unless the
    /// block goes on at the target of a direct `jmp` (a drcov-style range per run).
    pub fn runs(&self) -> Vec<(u64, u32)> {
        let mut out: Vec<(u64, u32)> = Vec::new();
        for i in self.insns() {
            match out.last_mut() {
                Some((s, n)) if *s + *n as u64 == i.pc() => *n += i.len() as u32,
                _ => out.push((i.pc(), i.len() as u32)),
            }
        }
        out
    }
    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.raw.insns.len()
    }
    /// Whether the block has no instructions (a fetch fault at its start).
    pub fn is_empty(&self) -> bool {
        self.raw.insns.is_empty()
    }
    /// Instruction `i`.
    pub fn insn(&self, i: usize) -> InsnView<'a> {
        InsnView { raw: &self.raw.insns.as_slice()[i], tb: *self, index: i as u32 }
    }
    /// The instructions in order.
    pub fn insns(&self) -> impl Iterator<Item = InsnView<'a>> + '_ {
        (0..self.len()).map(|i| self.insn(i))
    }
}

/// One instruction of a [`TbView`].
#[derive(Clone, Copy)]
pub struct InsnView<'a> {
    raw: &'a InsnRaw,
    tb: TbView<'a>,
    index: u32,
}

impl<'a> InsnView<'a> {
    /// Index in the block.
    pub fn index(&self) -> usize {
        self.index as usize
    }
    /// Guest address.
    pub fn pc(&self) -> u64 {
        self.raw.pc
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len as usize
    }
    /// Always false (instructions have at least one byte).
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }
    /// The encoding.
    pub fn bytes(&self) -> &'a [u8] {
        &self.raw.bytes[..(self.raw.len as usize).min(16)]
    }
    /// Lowercase mnemonic.
    pub fn mnemonic(&self) -> &'static str {
        rstr(self.raw.mnemonic)
    }
    /// Control-flow kind.
    pub fn branch(&self) -> Branch {
        Branch::from_raw(self.raw.branch)
    }
    /// Direct branch target (0 if none).
    pub fn target(&self) -> u64 {
        self.raw.target
    }
    /// Memory operands as decoded.
    pub fn mem_operands(&self) -> &'a [MemOperandRaw] {
        let s = self.tb.raw.mem_operands.as_slice();
        let a = (self.raw.mem_first as usize).min(s.len());
        let b = (a + self.raw.mem_count as usize).min(s.len());
        &s[a..b]
    }
    /// The memory accesses the emulator performs for it, in order (attach points).
    pub fn accesses(&self) -> &'a [AccessRaw] {
        let s = self.tb.raw.accesses.as_slice();
        let a = (self.raw.access_first as usize).min(s.len());
        let b = (a + self.raw.access_count as usize).min(s.len());
        &s[a..b]
    }
    /// Intel-syntax disassembly.
    pub fn disas(&self) -> String {
        let api = self.tb.host.api;
        let mut buf = vec![0u8; 96];
        let n = (api.insn_disas)(api.plugin, self.index, RSliceMut::from_mut_slice(&mut buf));
        if n as usize > buf.len() {
            buf = vec![0u8; n as usize];
            (api.insn_disas)(api.plugin, self.index, RSliceMut::from_mut_slice(&mut buf));
        }
        buf.truncate(n as usize);
        String::from_utf8_lossy(&buf).into_owned()
    }
    /// The module and symbol containing it.
    pub fn symbol(&self) -> Option<Symbol> {
        self.tb.host.symbolize(self.raw.pc)
    }
}

/// A value computed by injected ops, usable at the point where it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value(pub u32);

/// Binary operations for [`Emit::bin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// Wrapping add.
    Add = BIN_ADD as isize,
    /// Wrapping subtract.
    Sub = BIN_SUB as isize,
    /// And.
    And = BIN_AND as isize,
    /// Or.
    Or = BIN_OR as isize,
    /// Xor.
    Xor = BIN_XOR as isize,
    /// Shift left.
    Shl = BIN_SHL as isize,
    /// Logical shift right.
    Shr = BIN_SHR as isize,
    /// Arithmetic shift right.
    Sar = BIN_SAR as isize,
    /// Wrapping multiply.
    Mul = BIN_MUL as isize,
}

/// Comparisons for [`Emit::cmp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Eq = CMP_EQ as isize,
    /// Not equal.
    Ne = CMP_NE as isize,
    /// Unsigned less.
    Ult = CMP_ULT as isize,
    /// Unsigned less or equal.
    Ule = CMP_ULE as isize,
    /// Unsigned greater.
    Ugt = CMP_UGT as isize,
    /// Unsigned greater or equal.
    Uge = CMP_UGE as isize,
    /// Signed less.
    Slt = CMP_SLT as isize,
    /// Signed less or equal.
    Sle = CMP_SLE as isize,
    /// Signed greater.
    Sgt = CMP_SGT as isize,
    /// Signed greater or equal.
    Sge = CMP_SGE as isize,
}

/// A readable guest register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// GPR n (0..16, encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15).
    Gpr(u8),
    /// FS base.
    FsBase,
    /// GS base.
    GsBase,
    /// Low 64 bits of xmm n.
    XmmLo(u8),
    /// High 64 bits of xmm n.
    XmmHi(u8),
}

impl Reg {
    /// rax
    pub const RAX: Reg = Reg::Gpr(0);
    /// rcx
    pub const RCX: Reg = Reg::Gpr(1);
    /// rdx
    pub const RDX: Reg = Reg::Gpr(2);
    /// rsp
    pub const RSP: Reg = Reg::Gpr(4);
    /// rsi
    pub const RSI: Reg = Reg::Gpr(6);
    /// rdi
    pub const RDI: Reg = Reg::Gpr(7);

    /// The ABI number (`REG_*`).
    pub fn raw(self) -> u32 {
        match self {
            Reg::Gpr(n) => n as u32,
            Reg::FsBase => REG_FS_BASE,
            Reg::GsBase => REG_GS_BASE,
            Reg::XmmLo(n) => REG_XMM0_LO + 2 * n as u32,
            Reg::XmmHi(n) => REG_XMM0_LO + 2 * n as u32 + 1,
        }
    }
}

/// Collects the ops a plugin injects into one block.
pub struct Injector<'a, P> {
    ops: Vec<PluginOp>,
    tb: &'a TbRaw<'a>,
    _plugin: PhantomData<fn(&P)>,
}

impl<'a, P: Plugin> Injector<'a, P> {
    /// An empty injector for `tb`.
    pub fn new(tb: &'a TbRaw<'a>) -> Self {
        Injector { ops: Vec::new(), tb, _plugin: PhantomData }
    }
    /// Ops that run once per execution of the block, before its first instruction.
    pub fn block_entry(&mut self) -> Emit<'_, 'a, P> {
        Emit { inj: self, point: Point { kind: POINT_BLOCK_ENTRY, insn: 0, access: 0 } }
    }
    /// Ops that run before instruction `insn`.
    pub fn before(&mut self, insn: usize) -> Emit<'_, 'a, P> {
        let insn = insn as u32;
        Emit { inj: self, point: Point { kind: POINT_BEFORE_INSN, insn, access: 0 } }
    }
    /// Ops that run after memory access `access` of instruction `insn` completed.
    pub fn after_access(&mut self, insn: usize, access: usize) -> Emit<'_, 'a, P> {
        let point = Point { kind: POINT_AFTER_ACCESS, insn: insn as u32, access: access as u32 };
        Emit { inj: self, point }
    }
    /// The ops collected so far.
    pub fn ops(&self) -> &[PluginOp] {
        &self.ops
    }
    /// Number of instructions of the block.
    pub fn block_len(&self) -> usize {
        self.tb.insns.len()
    }
}

/// Builds ops at one point of a block.
pub struct Emit<'i, 'a, P> {
    inj: &'i mut Injector<'a, P>,
    point: Point,
}

impl<P: Plugin> Emit<'_, '_, P> {
    /// Append a raw op (its `point` is set to this emitter's point).
    pub fn raw(&mut self, mut op: PluginOp) -> Value {
        op.point = self.point;
        self.inj.ops.push(op);
        Value(self.inj.ops.len() as u32 - 1)
    }
    fn op(&mut self, kind: u32) -> PluginOp {
        PluginOp::new(self.point, kind)
    }
    /// A constant.
    pub fn constant(&mut self, v: u64) -> Value {
        let mut o = self.op(OP_CONST);
        o.imm = v;
        self.raw(o)
    }
    /// The current value of a guest register.
    pub fn reg(&mut self, r: Reg) -> Value {
        let mut o = self.op(OP_REG);
        o.sub = r.raw();
        self.raw(o)
    }
    /// The address of the current memory access (only after an access).
    pub fn mem_addr(&mut self) -> Value {
        let o = self.op(OP_MEM_ADDR);
        self.raw(o)
    }
    /// The value of the current memory access (only after an access).
    pub fn mem_value(&mut self) -> Value {
        let o = self.op(OP_MEM_VALUE);
        self.raw(o)
    }
    /// `a op b` on 64 bits.
    pub fn bin(&mut self, op: BinOp, a: Value, b: Value) -> Value {
        self.bin_w(op, 8, a, b)
    }
    /// `a op b` on `bytes` (1, 2, 4, 8) bytes; the result is zero-extended.
    pub fn bin_w(&mut self, op: BinOp, bytes: u32, a: Value, b: Value) -> Value {
        let mut o = self.op(OP_BIN);
        (o.sub, o.width, o.a, o.b) = (op as u32, bytes, a.0, b.0);
        self.raw(o)
    }
    /// `a + b`.
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.bin(BinOp::Add, a, b)
    }
    /// `a ^ b`.
    pub fn xor(&mut self, a: Value, b: Value) -> Value {
        self.bin(BinOp::Xor, a, b)
    }
    /// `(a cc b) ? 1 : 0` on 64 bits.
    pub fn cmp(&mut self, cc: CmpOp, a: Value, b: Value) -> Value {
        let mut o = self.op(OP_CMP);
        (o.sub, o.a, o.b) = (cc as u32, a.0, b.0);
        self.raw(o)
    }
    /// `c != 0 ? t : f`.
    pub fn select(&mut self, c: Value, t: Value, f: Value) -> Value {
        let mut o = self.op(OP_SELECT);
        (o.a, o.b, o.c) = (c.0, t.0, f.0);
        self.raw(o)
    }
    /// Entry `entry (+ index)` of the running vCPU's copy of `sb`. A dynamic index wraps
    /// within the scoreboard (its size rounded up to a power of two).
    pub fn sb_load(&mut self, sb: &Scoreboard, entry: u32, index: Option<Value>) -> Value {
        let mut o = self.op(OP_SB_LOAD);
        (o.sub, o.imm, o.a) = (sb.id, entry as u64, index.map_or(NONE, |v| v.0));
        self.raw(o)
    }
    /// Store `v` into entry `entry (+ index)` of the running vCPU's copy of `sb`.
    pub fn sb_store(&mut self, sb: &Scoreboard, entry: u32, index: Option<Value>, v: Value) {
        let mut o = self.op(OP_SB_STORE);
        (o.sub, o.imm, o.a, o.b) = (sb.id, entry as u64, index.map_or(NONE, |v| v.0), v.0);
        self.raw(o);
    }
    /// Add `n` to entry `entry (+ index)`: an inline counter (no call).
    pub fn sb_add(&mut self, sb: &Scoreboard, entry: u32, index: Option<Value>, n: u64) {
        let mut o = self.op(OP_SB_ADD);
        (o.sub, o.imm, o.a, o.imm2) = (sb.id, entry as u64, index.map_or(NONE, |v| v.0), n);
        self.raw(o);
    }
    /// Add value `v` to entry `entry (+ index)`.
    pub fn sb_add_value(&mut self, sb: &Scoreboard, entry: u32, index: Option<Value>, v: Value) {
        let mut o = self.op(OP_SB_ADD);
        (o.sub, o.imm, o.a, o.b) = (sb.id, entry as u64, index.map_or(NONE, |v| v.0), v.0);
        self.raw(o);
    }
    /// Call `f(plugin, Call { vcpu, udata, args })` (up to four argument values).
    pub fn call(&mut self, f: Callback<P>, udata: u64, args: &[Value]) {
        self.call_cond(None, f, udata, args)
    }
    /// Call `f` only when `cond` is non-zero.
    pub fn call_if(&mut self, cond: Value, f: Callback<P>, udata: u64, args: &[Value]) {
        self.call_cond(Some(cond), f, udata, args)
    }
    fn call_cond(&mut self, cond: Option<Value>, f: Callback<P>, udata: u64, args: &[Value]) {
        assert!(args.len() <= 4, "a plugin call takes at most four arguments");
        let mut o = self.op(OP_CALL);
        o.func = Some(crate::glue::trampoline::<P>);
        o.imm = f as usize as u64;
        o.imm2 = udata;
        o.c = cond.map_or(NONE, |v| v.0);
        o.nargs = args.len() as u32;
        for (i, a) in args.iter().enumerate() {
            o.args[i] = a.0;
        }
        self.raw(o);
    }
}
