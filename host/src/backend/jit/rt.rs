//! The runtime shims compiled code calls: guest memory access and helpers.
//!
//! Every call from generated code into Rust goes through one `extern "C"` shim declared in
//! the `runtime_fns!` list below; the list also gives the lowering each shim's address and
//! Cranelift signature, so a shim cannot be called with the wrong arity. Shims follow
//! wasmtime's libcall rules:
//! - arguments and results are raw scalars: the context pointer, then `u64`s; the result is
//!   an `RtPair` (value, status) returned in rax:rdx;
//! - a shim never unwinds: a panic is caught, parked in `JitCtx::panic`, reported as
//!   `status::PANIC`, and re-raised by `entry` after the compiled code has returned;
//! - a guest fault is written to `JitCtx::fault` and reported as `status::FAULT`; the
//!   generated code then branches to a cold exit that runs the fix-ups and returns.
//! - `status::CODE_WRITTEN` means the access (or helper) succeeded and
//!   `GuestMemory::code_written` is now true; the value is valid.
//!
//! Safety contract. `JitCtx` is built by `entry::CompiledTb::run` from a live
//! `&mut CpuState` and `&mut dyn GuestMemory` and lives on its stack for the whole call; the
//! compiled code passes the pointer back unchanged. While a shim runs, the compiled code is
//! suspended, so the shim's temporary `&mut` to the context, the CPU and the memory are the
//! only live references to them.
#![allow(unsafe_code)] // extern "C" shims dereference the context pointer; see the contract

use super::chain::{ExitSlot, IndEntry};
use super::exits::FaultSite;
use crate::cpu::{CpuState, Fault, Width};
use crate::ir::{HelperCx, HelperDesc};
use crate::mem::{GuestMemory, RmwOp};
use cranelift_codegen::ir::{types, AbiParam, Signature};
use cranelift_codegen::isa::CallConv;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Status codes returned by shims in `RtPair::status`.
pub(crate) mod status {
    /// Success.
    pub const OK: u64 = 0;
    /// A guest fault, stored in `JitCtx::fault`.
    pub const FAULT: u64 = 1;
    /// Success, and translated code has been written since the last `take_code_writes`.
    pub const CODE_WRITTEN: u64 = 2;
    /// A host panic, stored in `JitCtx::panic`.
    pub const PANIC: u64 = 3;
}

/// What the shims and the generated code work on during one run of compiled code. The
/// fields named by the `CTX_*` offsets are read or written by generated code.
#[repr(C)]
pub(crate) struct JitCtx<'a> {
    /// The vCPU state (the compiled code gets the same pointer as its second argument).
    pub cpu: *mut CpuState,
    /// Chained transfers allowed before returning to the dispatcher.
    pub budget: u64,
    /// The vCPU's indirect table (`chain::IND_SIZE` entries).
    pub ind_table: *const IndEntry,
    /// Set by an unlinked direct exit: the `ExitSlot` it left through.
    pub last_exit: *const ExitSlot,
    /// Set by a fault exit: its `FaultSite`.
    pub fault_site: *const FaultSite,
    /// Guest memory.
    pub mem: *mut (dyn GuestMemory + 'a),
    /// The fault reported by the last shim that returned `status::FAULT`.
    pub fault: Option<Fault>,
    /// A panic caught in a shim, re-raised once the compiled code has returned.
    pub panic: Option<Box<dyn Any + Send>>,
    /// A preserve-all wrapper's result (`Jit`'s `compile_preserve_all`): the shim's value
    /// and status, read back by the generated code after the call.
    pub ret_value: u64,
    /// See `ret_value`.
    pub ret_status: u64,
    /// Set when the budget ran out on a loop edge inside a function (a hot region or a
    /// looping block): the loop is already one function.
    pub spent_in_loop: u64,
    /// Set by an indirect exit that returns to the run loop: the guest pc of its block.
    pub ind_src: u64,
    /// Set by a resume exit: the block the interpreter finishes (kept alive by the code
    /// generation, `ExitData::blocks`).
    pub resume: *const crate::ir::Block,
}

/// Offsets of the `JitCtx` fields generated code uses.
pub(super) const CTX_BUDGET: i32 = std::mem::offset_of!(JitCtx<'static>, budget) as i32;
pub(super) const CTX_IND_TABLE: i32 = std::mem::offset_of!(JitCtx<'static>, ind_table) as i32;
pub(super) const CTX_LAST_EXIT: i32 = std::mem::offset_of!(JitCtx<'static>, last_exit) as i32;
pub(super) const CTX_FAULT_SITE: i32 = std::mem::offset_of!(JitCtx<'static>, fault_site) as i32;
pub(super) const CTX_RET_VALUE: i32 = std::mem::offset_of!(JitCtx<'static>, ret_value) as i32;
pub(super) const CTX_RET_STATUS: i32 = std::mem::offset_of!(JitCtx<'static>, ret_status) as i32;
pub(super) const CTX_IND_SRC: i32 = std::mem::offset_of!(JitCtx<'static>, ind_src) as i32;
pub(super) const CTX_RESUME: i32 = std::mem::offset_of!(JitCtx<'static>, resume) as i32;
pub(super) const CTX_SPENT_IN_LOOP: i32 =
    std::mem::offset_of!(JitCtx<'static>, spent_in_loop) as i32;

/// A shim's result: rax = value, rdx = status.
#[repr(C)]
pub(crate) struct RtPair {
    value: u64,
    status: u64,
}

/// What a shim body returns.
enum Outcome {
    Ok(u64),
    Fault(Fault),
}

macro_rules! count {
    () => { 0usize };
    ($x:ident $($rest:ident)*) => { 1usize + count!($($rest)*) };
}

/// Declares the shims: for each line `Name => rt_name(args) { body }` it generates the
/// `extern "C" fn rt_name(ctx, args...) -> RtPair` wrapper (panic catching, fault parking,
/// code-written check) and an `RtFn::Name` entry with its address and signature. `$cw`
/// says whether the shim checks `code_written` after success (stores, atomics, helpers).
macro_rules! runtime_fns {
    ($( $(#[$doc:meta])* $var:ident => fn $name:ident(
        $cx:ident $(, $arg:ident)*) cw=$cw:literal $body:block )*) => {
        /// The runtime functions callable from compiled code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum RtFn { $($(#[$doc])* $var),* }

        impl RtFn {
            /// The shim's address.
            pub(crate) fn addr(self) -> usize {
                match self { $(RtFn::$var => $name as *const () as usize),* }
            }
            /// Number of `u64` arguments after the context pointer.
            pub(crate) fn nargs(self) -> usize {
                match self { $(RtFn::$var => count!($($arg)*)),* }
            }
            /// The shim's name (for dumps).
            pub(crate) fn name(self) -> &'static str {
                match self { $(RtFn::$var => stringify!($name)),* }
            }
        }

        $(
            extern "C" fn $name(ctx: *mut JitCtx<'_> $(, $arg: u64)*) -> RtPair {
                // SAFETY: compiled code passes back the context pointer `entry` gave it; the
                // context outlives the call and nothing else references it meanwhile.
                let $cx = unsafe { &mut *ctx };
                let r = catch_unwind(AssertUnwindSafe(|| -> Outcome { $body }));
                finish($cx, r, $cw)
            }
        )*
    };
}

fn finish(cx: &mut JitCtx<'_>, r: std::thread::Result<Outcome>, check_cw: bool) -> RtPair {
    match r {
        Ok(Outcome::Ok(value)) => {
            // SAFETY: `mem` points to the live memory borrowed by `entry` for this run.
            let cw = check_cw && unsafe { (*cx.mem).code_written() };
            RtPair { value, status: if cw { status::CODE_WRITTEN } else { status::OK } }
        }
        Ok(Outcome::Fault(f)) => {
            cx.fault = Some(f);
            RtPair { value: 0, status: status::FAULT }
        }
        Err(p) => {
            cx.panic = Some(p);
            RtPair { value: 0, status: status::PANIC }
        }
    }
}

fn width(w: u64) -> Width {
    match w {
        0 => Width::W8,
        1 => Width::W16,
        2 => Width::W32,
        _ => Width::W64,
    }
}

fn rmw(op: u64) -> RmwOp {
    match op {
        0 => RmwOp::Xchg,
        1 => RmwOp::Add,
        2 => RmwOp::And,
        3 => RmwOp::Or,
        _ => RmwOp::Xor,
    }
}

/// The `op` argument `rt_atomic_rmw` expects for an IR atomic op.
pub(crate) fn rmw_code(op: crate::ir::AtomicOp) -> u64 {
    use crate::ir::AtomicOp as A;
    match op {
        A::Xchg => 0,
        A::Add => 1,
        A::And => 2,
        A::Or => 3,
        A::Xor => 4,
    }
}

fn out(r: Result<u64, Fault>) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(v),
        Err(f) => Outcome::Fault(f),
    }
}

/// The memory behind the context.
fn mem<'c>(cx: &'c mut JitCtx<'_>) -> &'c mut dyn GuestMemory {
    // SAFETY: `mem` points to the memory `entry` borrowed mutably for this run.
    unsafe { &mut *cx.mem }
}

runtime_fns! {
    /// `mem.load(addr, w)`.
    Load => fn rt_load(cx, addr, w) cw=false {
        out(mem(cx).load(addr, width(w)))
    }
    /// `mem.store(addr, w, val)`.
    Store => fn rt_store(cx, addr, w, val) cw=true {
        out(mem(cx).store(addr, width(w), val).map(|()| 0))
    }
    /// `mem.atomic_rmw(op, addr, w, val)`.
    AtomicRmw => fn rt_atomic_rmw(cx, op, addr, w, val) cw=true {
        out(mem(cx).atomic_rmw(rmw(op), addr, width(w), val))
    }
    /// `mem.atomic_cas(addr, w, expected, new)`.
    AtomicCas => fn rt_atomic_cas(cx, addr, w, expected, new) cw=true {
        out(mem(cx).atomic_cas(addr, width(w), expected, new))
    }
    /// `(desc.func)(cx, [a0, a1, a2, a3])`.
    CallHelper => fn rt_call_helper(cx, desc, a0, a1, a2, a3) cw=true {
        // SAFETY: `desc` is the address of a `&'static HelperDesc` embedded by the lowering.
        let h = unsafe { &*(desc as usize as *const HelperDesc) };
        // SAFETY: `cpu` points to the state `entry` borrowed mutably for this run; the
        // compiled code wrote back the slots the helper may read before the call.
        let cpu = unsafe { &mut *cx.cpu };
        let mut hcx = HelperCx { cpu, mem: mem(cx) };
        out((h.func)(&mut hcx, [a0, a1, a2, a3]))
    }
}

impl RtFn {
    /// The Cranelift signature: `(ctx, u64 × nargs) -> (value, status)`.
    pub(crate) fn signature(self, call_conv: CallConv) -> Signature {
        let mut sig = Signature::new(call_conv);
        sig.params.push(AbiParam::new(types::I64));
        for _ in 0..self.nargs() {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig.returns.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));
        sig
    }
}
