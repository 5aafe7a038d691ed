//! The raw ABI: `#[repr(C)]` types shared by the host, Rust plugins (through abi_stable,
//! whose layout check refuses a mismatched plugin) and C plugins (through
//! `include/blockscope.h`, which mirrors every type here field for field; a test compiles
//! the header and compares sizes and offsets).
//!
//! Rules that keep the ABI stable and checkable:
//! - Every "enum" travelling across the boundary is a `u32` with named constants, never a
//!   Rust enum: the host validates each value, so a bad value from a C plugin is an error
//!   message, not undefined behaviour.
//! - Opaque words are `u64` (`instance`, `fdata`, `udata`); no Rust-only types.
//! - Strings are `RStr` (`{ptr, len}`, not NUL-terminated); the host never trusts them to
//!   be UTF-8.
//! - Plugin ops are plain data ([`PluginOp`]); the host turns them into its own IR after a
//!   verifier has checked them. Nothing here names a host IR type or a TB pointer.
//!
//! Versioning: [`ABI_MAJOR`] changes on any incompatible change and the host refuses other
//! majors; [`ABI_MINOR`] grows when fields are appended to the end of a table. A C plugin
//! built for an older minor loads (it never reads the appended fields). A Rust plugin is
//! also checked by abi_stable, which compares the whole layout of the types it shares
//! with the host, [`HostApi`] included: one built against an older plugin-api is refused
//! ("its plugin-api types have a different layout") and must be rebuilt.

use abi_stable::std_types::{RSlice, RSliceMut, RStr};
use abi_stable::StableAbi;

/// ABI major version: a plugin built for another major is refused at load time.
pub const ABI_MAJOR: u32 = 1;
/// ABI minor version: grows when fields are appended; a plugin with a newer minor than the
/// host is refused too (it may rely on fields the host does not fill).
pub const ABI_MINOR: u32 = 1;
/// Symbol a C plugin exports: `const bs_plugin_vtable *blockscope_plugin_entry(void)`.
pub const C_ENTRY_SYMBOL: &str = "blockscope_plugin_entry";

/// "No value" in a value reference of a [`PluginOp`], and "no register" in a
/// [`MemOperandRaw`].
pub const NONE: u32 = u32::MAX;

/// The per-call-site record the host passes to a callback. Host-owned and immutable.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallSite {
    /// The word the plugin's `install` returned (its instance).
    pub instance: u64,
    /// The function-data word given with the call (language glue; C plugins may use it
    /// as a second user word).
    pub fdata: u64,
    /// The user word given with the call.
    pub udata: u64,
}

/// A plugin callback: the call site, the vCPU index and up to four argument values
/// (unused arguments are 0). Called on the guest's thread; must not unwind.
pub type CallbackFn = extern "C" fn(site: &CallSite, vcpu: u32, a0: u64, a1: u64, a2: u64, a3: u64);

/// Where injected ops run.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Point {
    /// `POINT_*`.
    pub kind: u32,
    /// Instruction index in the block (`POINT_BEFORE_INSN`, `POINT_AFTER_ACCESS`).
    pub insn: u32,
    /// Memory-access index within the instruction (`POINT_AFTER_ACCESS`).
    pub access: u32,
}

/// Once per execution of the block, before its first instruction.
pub const POINT_BLOCK_ENTRY: u32 = 0;
/// Before instruction `insn` executes (after the previous one completed).
pub const POINT_BEFORE_INSN: u32 = 1;
/// Right after memory access `access` of instruction `insn` completed; only here may ops
/// read the access's address and value.
pub const POINT_AFTER_ACCESS: u32 = 2;

/// `dst = imm`.
pub const OP_CONST: u32 = 0;
/// `dst = guest register sub` (`REG_*`).
pub const OP_REG: u32 = 1;
/// `dst = address of the current memory access`.
pub const OP_MEM_ADDR: u32 = 2;
/// `dst = value of the current memory access` (loaded or stored, zero-extended).
pub const OP_MEM_VALUE: u32 = 3;
/// `dst = a sub b` at `width` (`BIN_*`).
pub const OP_BIN: u32 = 4;
/// `dst = (a sub b) ? 1 : 0` at `width` (`CMP_*`).
pub const OP_CMP: u32 = 5;
/// `dst = a != 0 ? b : c`.
pub const OP_SELECT: u32 = 6;
/// `dst = scoreboard sub [imm + a]` (`a` optional; the index wraps within the scoreboard).
pub const OP_SB_LOAD: u32 = 7;
/// `scoreboard sub [imm + a] = b`.
pub const OP_SB_STORE: u32 = 8;
/// `scoreboard sub [imm + a] += (b, or imm2 when b is NONE)`: an inline counter.
pub const OP_SB_ADD: u32 = 9;
/// Call `func(site{instance, fdata: imm, udata: imm2}, vcpu, args...)`, only when value
/// `c` is non-zero if `c` is not NONE.
pub const OP_CALL: u32 = 10;

/// Wrapping addition.
pub const BIN_ADD: u32 = 0;
/// Wrapping subtraction.
pub const BIN_SUB: u32 = 1;
/// Bitwise and.
pub const BIN_AND: u32 = 2;
/// Bitwise or.
pub const BIN_OR: u32 = 3;
/// Bitwise xor.
pub const BIN_XOR: u32 = 4;
/// Shift left (count modulo 64).
pub const BIN_SHL: u32 = 5;
/// Logical shift right (count modulo 64).
pub const BIN_SHR: u32 = 6;
/// Arithmetic shift right (count modulo 64).
pub const BIN_SAR: u32 = 7;
/// Wrapping multiplication (low half).
pub const BIN_MUL: u32 = 8;

/// Equal.
pub const CMP_EQ: u32 = 0;
/// Not equal.
pub const CMP_NE: u32 = 1;
/// Unsigned less than.
pub const CMP_ULT: u32 = 2;
/// Unsigned less or equal.
pub const CMP_ULE: u32 = 3;
/// Unsigned greater than.
pub const CMP_UGT: u32 = 4;
/// Unsigned greater or equal.
pub const CMP_UGE: u32 = 5;
/// Signed less than.
pub const CMP_SLT: u32 = 6;
/// Signed less or equal.
pub const CMP_SLE: u32 = 7;
/// Signed greater than.
pub const CMP_SGT: u32 = 8;
/// Signed greater or equal.
pub const CMP_SGE: u32 = 9;

/// rax; the 16 GPRs are 0..16 in encoding order (rax rcx rdx rbx rsp rbp rsi rdi r8..r15).
pub const REG_RAX: u32 = 0;
/// FS segment base.
pub const REG_FS_BASE: u32 = 16;
/// GS segment base.
pub const REG_GS_BASE: u32 = 17;
/// The instruction pointer: appears in memory operands (RIP-relative); not readable by
/// `OP_REG` (use the instruction's address, a constant).
pub const REG_RIP: u32 = 18;
/// Low 64 bits of xmm0; xmm n is `REG_XMM0_LO + 2n` (low) and `+ 2n + 1` (high).
pub const REG_XMM0_LO: u32 = 32;

/// Control flow of an instruction: not a branch.
pub const BRANCH_NONE: u32 = 0;
/// Unconditional direct jump.
pub const BRANCH_JUMP: u32 = 1;
/// Conditional direct jump.
pub const BRANCH_COND: u32 = 2;
/// Indirect jump.
pub const BRANCH_INDIRECT: u32 = 3;
/// Direct call.
pub const BRANCH_CALL: u32 = 4;
/// Indirect call.
pub const BRANCH_INDIRECT_CALL: u32 = 5;
/// Return.
pub const BRANCH_RETURN: u32 = 6;
/// SYSCALL, INT, and other transfers to the environment.
pub const BRANCH_SYSCALL: u32 = 7;
/// An instruction that raises an exception or stops (UD2, INT3, HLT, undecodable).
pub const BRANCH_EXCEPTION: u32 = 8;

/// Memory access kind: load.
pub const ACCESS_LOAD: u32 = 1;
/// Memory access kind: store.
pub const ACCESS_STORE: u32 = 2;
/// Memory access kind: atomic read-modify-write (the value is the old memory value).
pub const ACCESS_RMW: u32 = 3;

/// Message level: information (printed as `blockscope: plugin NAME: msg`).
pub const LEVEL_INFO: u32 = 0;
/// Message level: warning.
pub const LEVEL_WARN: u32 = 1;
/// Message level: error (during install: the reason install failed).
pub const LEVEL_ERROR: u32 = 2;
/// Message level: the plugin panicked or failed; the host disables it.
pub const LEVEL_FATAL: u32 = 3;

/// One injected operation. Plain data; which fields matter depends on `kind`.
/// Values are referenced by the index of the op that defined them, counted over all ops
/// this plugin injected into the current block; an op may only use values defined earlier
/// at the same [`Point`].
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct PluginOp {
    /// Where it runs.
    pub point: Point,
    /// `OP_*`.
    pub kind: u32,
    /// `BIN_*`, `CMP_*`, `REG_*` or a scoreboard id, depending on `kind`.
    pub sub: u32,
    /// Operand width in bytes for `OP_BIN`/`OP_CMP` (1, 2, 4 or 8).
    pub width: u32,
    /// First value operand (or NONE).
    pub a: u32,
    /// Second value operand (or NONE).
    pub b: u32,
    /// Third value operand (or NONE); the condition of `OP_CALL`.
    pub c: u32,
    /// Number of call arguments used.
    pub nargs: u32,
    /// Call arguments (values).
    pub args: [u32; 4],
    /// Immediate: constant, scoreboard entry, or call `fdata`.
    pub imm: u64,
    /// Second immediate: addend of `OP_SB_ADD`, or call `udata`.
    pub imm2: u64,
    /// The callback of `OP_CALL` (a [`CallbackFn`]; spelled out for the layout derive).
    pub func: Option<extern "C" fn(site: &CallSite, vcpu: u32, a0: u64, a1: u64, a2: u64, a3: u64)>,
}

impl PluginOp {
    /// An op of `kind` at `point` with every other field empty.
    pub const fn new(point: Point, kind: u32) -> PluginOp {
        PluginOp {
            point,
            kind,
            sub: 0,
            width: 8,
            a: NONE,
            b: NONE,
            c: NONE,
            nargs: 0,
            args: [NONE; 4],
            imm: 0,
            imm2: 0,
            func: None,
        }
    }
}

/// A memory operand of an instruction, as decoded.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperandRaw {
    /// Base register (`REG_*`, `REG_RIP`) or NONE.
    pub base: u32,
    /// Index register or NONE.
    pub index: u32,
    /// Scale (1, 2, 4, 8).
    pub scale: u32,
    /// Access size in bytes (0 when unknown, e.g. LEA).
    pub size: u32,
    /// Displacement (for RIP-relative operands: the absolute target address).
    pub disp: i64,
    /// `ACCESS_LOAD` | `ACCESS_STORE` bits; 0 for LEA-like operands that do not access.
    pub access: u32,
    /// Segment override: 0 none, 4 FS, 5 GS (x86 segment numbers).
    pub segment: u32,
}

/// A memory access of an instruction as the emulator performs it (an attach point for
/// `POINT_AFTER_ACCESS`), in program order.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessRaw {
    /// Size in bytes.
    pub size: u32,
    /// `ACCESS_*`.
    pub kind: u32,
}

/// One guest instruction of a block being translated.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct InsnRaw {
    /// Guest address.
    pub pc: u64,
    /// Encoding (first `len` bytes valid).
    pub bytes: [u8; 16],
    /// Length in bytes.
    pub len: u32,
    /// `BRANCH_*`.
    pub branch: u32,
    /// Direct branch or call target, 0 otherwise.
    pub target: u64,
    /// Lowercase mnemonic (`"add"`, `"rep movsb"` is `"movsb"`).
    pub mnemonic: RStr<'static>,
    /// Index of the first memory operand in `TbRaw::mem_operands`.
    pub mem_first: u32,
    /// Number of memory operands.
    pub mem_count: u32,
    /// Index of the first access in `TbRaw::accesses`.
    pub access_first: u32,
    /// Number of memory accesses (attach points).
    pub access_count: u32,
}

/// The read-only view of a block passed to `translate`. Valid only during that call.
///
/// A block may go on through direct unconditional `jmp`s (they stay among its
/// instructions): its code is then several runs, and instruction addresses need not rise.
/// Each instruction's `pc` and `len` say where it is.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct TbRaw<'a> {
    /// Address of the first instruction.
    pub pc: u64,
    /// End of the first run of instructions (the block's end unless it goes on through a
    /// `jmp`).
    pub end: u64,
    /// The instructions.
    pub insns: RSlice<'a, InsnRaw>,
    /// Memory operands of all instructions.
    pub mem_operands: RSlice<'a, MemOperandRaw>,
    /// Memory accesses of all instructions.
    pub accesses: RSlice<'a, AccessRaw>,
}

/// Where a guest address lies: its module and symbol. Strings live as long as the process.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct SymbolRaw {
    /// Path of the module (ELF file) containing the address; empty if none.
    pub module: RStr<'static>,
    /// Load address of the module (its lowest mapped address).
    pub module_base: u64,
    /// Load bias: run-time address minus the address in the file.
    pub module_bias: u64,
    /// Symbol name (mangled as in the symbol table); empty if none.
    pub symbol: RStr<'static>,
    /// Run-time address of the symbol.
    pub symbol_addr: u64,
    /// Symbol size in bytes (0 if unknown).
    pub symbol_size: u64,
}

/// A module (ELF file) mapped into the guest.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ModuleRaw {
    /// Path of the file.
    pub path: RStr<'static>,
    /// Lowest mapped address.
    pub start: u64,
    /// End of the highest mapping.
    pub end: u64,
    /// Load bias (run-time address minus file address).
    pub bias: u64,
    /// Address of the entry point, 0 if unknown.
    pub entry: u64,
}

/// A `key=value` plugin argument.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct KeyValue<'a> {
    /// The key.
    pub key: RStr<'a>,
    /// The value.
    pub value: RStr<'a>,
}

/// An argument a plugin accepts (for `blockscope plugins` and the unknown-argument check).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ArgSpec {
    /// Key.
    pub name: RStr<'static>,
    /// One-line help.
    pub help: RStr<'static>,
    /// Default value shown in the listing (empty: none).
    pub default: RStr<'static>,
}

impl ArgSpec {
    /// Build an argument description in a `const`.
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Self {
        ArgSpec {
            name: RStr::from_str(name),
            help: RStr::from_str(help),
            default: RStr::from_str(default),
        }
    }
}

/// The functions the host offers a plugin. Every function takes the plugin id the host
/// gave this plugin (`plugin`), so one table serves every plugin.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostApi {
    /// The host's ABI major.
    pub abi_major: u32,
    /// The host's ABI minor.
    pub abi_minor: u32,
    /// This plugin's id.
    pub plugin: u32,
    /// Allocate a per-vCPU scoreboard of `entries` entries of `entry_bytes` (1, 2, 4 or 8)
    /// bytes, zeroed. Only during install. Returns the scoreboard id, or -1 (and a message
    /// saying why).
    pub scoreboard_new: extern "C" fn(plugin: u32, entry_bytes: u32, entries: u32) -> i64,
    /// Read entry `entry` of scoreboard `sb` for `vcpu` (0 if out of range).
    pub scoreboard_read: extern "C" fn(plugin: u32, sb: u32, vcpu: u32, entry: u32) -> u64,
    /// Copy entries `0..out.len()` of scoreboard `sb` for `vcpu` into `out`, widened to
    /// u64; returns how many were copied.
    pub scoreboard_read_all:
        extern "C" fn(plugin: u32, sb: u32, vcpu: u32, out: RSliceMut<'_, u64>) -> u32,
    /// Number of vCPUs (guest threads) started so far.
    pub vcpu_count: extern "C" fn(plugin: u32) -> u32,
    /// Print a message (`LEVEL_*`), prefixed with the plugin name. `LEVEL_FATAL` disables
    /// the plugin and makes the run fail.
    pub message: extern "C" fn(plugin: u32, level: u32, msg: RStr<'_>),
    /// Inject ops into the block being translated; only during `translate`.
    pub inject: extern "C" fn(plugin: u32, ops: RSlice<'_, PluginOp>),
    /// Disassembly (Intel syntax) of instruction `insn` of the block being translated,
    /// written into `out`; returns the full length. Only during `translate`.
    pub insn_disas: extern "C" fn(plugin: u32, insn: u32, out: RSliceMut<'_, u8>) -> u32,
    /// Find the module and symbol containing `pc`. Returns false if no module maps it.
    pub symbolize: extern "C" fn(plugin: u32, pc: u64, out: &mut SymbolRaw) -> bool,
    /// Module number `index` in load order (0 is the main program). False past the end.
    pub module: extern "C" fn(plugin: u32, index: u32, out: &mut ModuleRaw) -> bool,
    /// Minor 1. Ask for REP-prefixed string instructions (`rep movsb`, `repne scasb`...)
    /// to be expanded for the whole run, as DynamoRIO's `drutil_expand_rep_string` and
    /// Valgrind do: each run of such an instruction then moves one element and its
    /// accesses are ordinary memory accesses with attach points (otherwise the host runs
    /// the whole operation in one step whose accesses no plugin sees). The instruction
    /// is then executed once per iteration plus once for the final test of the count
    /// register, and ends its block. Only during install; returns false otherwise.
    pub expand_rep_strings: extern "C" fn(plugin: u32) -> bool,
    /// Minor 1. Whether REP string instructions are expanded (some plugin asked). Settled
    /// once every plugin is installed, before the first block is translated.
    pub rep_strings_expanded: extern "C" fn(plugin: u32) -> bool,
}

/// What a plugin provides. Rust plugins build it with `declare_plugin!`; C plugins return
/// a pointer to a static one from `blockscope_plugin_entry`.
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginVTable {
    /// The ABI major the plugin was built for.
    pub abi_major: u32,
    /// The ABI minor the plugin was built for.
    pub abi_minor: u32,
    /// Short name (`count`).
    pub name: RStr<'static>,
    /// One-line description.
    pub description: RStr<'static>,
    /// The arguments it accepts; any other key is refused before `install`.
    pub args: RSlice<'static, ArgSpec>,
    /// Set up with the given arguments. On success store the instance word in `instance`
    /// (passed back to every hook and callback) and return true; on failure report the
    /// reason with `message(LEVEL_ERROR)` and return false.
    pub install: extern "C" fn(
        host: &'static HostApi,
        args: RSlice<'_, KeyValue<'_>>,
        instance: &mut u64,
    ) -> bool,
    /// A vCPU (guest thread) starts.
    pub vcpu_init: Option<extern "C" fn(instance: u64, vcpu: u32)>,
    /// A vCPU (guest thread) exits.
    pub vcpu_exit: Option<extern "C" fn(instance: u64, vcpu: u32)>,
    /// A block is translated: inspect it and inject ops (through `HostApi::inject`).
    pub translate: Option<extern "C" fn(instance: u64, tb: &TbRaw<'_>)>,
    /// A system call is about to run.
    pub syscall: Option<extern "C" fn(instance: u64, vcpu: u32, nr: u64, args: &[u64; 6])>,
    /// A system call returned.
    pub syscall_ret: Option<extern "C" fn(instance: u64, vcpu: u32, nr: u64, ret: u64)>,
    /// The guest exits: flush outputs.
    pub exit: Option<extern "C" fn(instance: u64)>,
}

/// The root module a Rust plugin exports through abi_stable (a prefix type, so later
/// minors may append fields after `vtable`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(panic))]
pub struct PluginRoot {
    /// The ABI major the plugin was built for (checked before anything else is used).
    pub abi_major: u32,
    /// The ABI minor the plugin was built for.
    pub abi_minor: u32,
    /// The plugin's table.
    #[sabi(last_prefix_field)]
    pub vtable: &'static PluginVTable,
}

impl abi_stable::library::RootModule for PluginRootRef {
    abi_stable::declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "blockscope_plugin";
    const NAME: &'static str = "blockscope_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings =
        abi_stable::package_version_strings!();
}
