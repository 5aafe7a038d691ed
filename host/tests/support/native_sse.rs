//! Runs one instruction on the host CPU with a given register file (test support; the only
//! place in these tests with `unsafe`).
//!
//! `run` loads GPRs (all but rsp), the arithmetic flags and xmm0..15 from a `NativeCtx`,
//! calls the code at `ctx.code` (the instruction under test followed by `ret`), then
//! stores them back. The instruction must not touch rsp, fault, or change DF/TF.

/// Register file in and out of a native run. Offsets are fixed by the trampoline below.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeCtx {
    /// GPRs in encoding order (rsp is ignored).
    pub gpr: [u64; 16],
    /// RFLAGS (only status flags and bit 1 should be set).
    pub rflags: u64,
    /// Address of the code to call.
    pub code: u64,
    /// xmm0..15 as (lo, hi) pairs.
    pub xmm: [[u64; 2]; 16],
}

const _: () = {
    assert!(std::mem::offset_of!(NativeCtx, rflags) == 128);
    assert!(std::mem::offset_of!(NativeCtx, code) == 136);
    assert!(std::mem::offset_of!(NativeCtx, xmm) == 144);
};

std::arch::global_asm!(
    ".globl blockscope_sse_native_call",
    ".p2align 4",
    "blockscope_sse_native_call:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "push qword ptr [rdi + 136]",
    "movdqu xmm0, [rdi + 144]",
    "movdqu xmm1, [rdi + 160]",
    "movdqu xmm2, [rdi + 176]",
    "movdqu xmm3, [rdi + 192]",
    "movdqu xmm4, [rdi + 208]",
    "movdqu xmm5, [rdi + 224]",
    "movdqu xmm6, [rdi + 240]",
    "movdqu xmm7, [rdi + 256]",
    "movdqu xmm8, [rdi + 272]",
    "movdqu xmm9, [rdi + 288]",
    "movdqu xmm10, [rdi + 304]",
    "movdqu xmm11, [rdi + 320]",
    "movdqu xmm12, [rdi + 336]",
    "movdqu xmm13, [rdi + 352]",
    "movdqu xmm14, [rdi + 368]",
    "movdqu xmm15, [rdi + 384]",
    "push qword ptr [rdi + 128]",
    "popfq",
    "mov rax, [rdi + 0]",
    "mov rcx, [rdi + 8]",
    "mov rdx, [rdi + 16]",
    "mov rbx, [rdi + 24]",
    "mov rbp, [rdi + 40]",
    "mov rsi, [rdi + 48]",
    "mov r8, [rdi + 64]",
    "mov r9, [rdi + 72]",
    "mov r10, [rdi + 80]",
    "mov r11, [rdi + 88]",
    "mov r12, [rdi + 96]",
    "mov r13, [rdi + 104]",
    "mov r14, [rdi + 112]",
    "mov r15, [rdi + 120]",
    "mov rdi, [rdi + 56]",
    "call qword ptr [rsp]",
    "pushfq",
    "xchg rdi, [rsp + 16]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rcx",
    "mov [rdi + 16], rdx",
    "mov [rdi + 24], rbx",
    "mov [rdi + 40], rbp",
    "mov [rdi + 48], rsi",
    "mov [rdi + 64], r8",
    "mov [rdi + 72], r9",
    "mov [rdi + 80], r10",
    "mov [rdi + 88], r11",
    "mov [rdi + 96], r12",
    "mov [rdi + 104], r13",
    "mov [rdi + 112], r14",
    "mov [rdi + 120], r15",
    "pop rax",
    "mov [rdi + 128], rax",
    "pop rax",
    "pop rax",
    "mov [rdi + 56], rax",
    "movdqu [rdi + 144], xmm0",
    "movdqu [rdi + 160], xmm1",
    "movdqu [rdi + 176], xmm2",
    "movdqu [rdi + 192], xmm3",
    "movdqu [rdi + 208], xmm4",
    "movdqu [rdi + 224], xmm5",
    "movdqu [rdi + 240], xmm6",
    "movdqu [rdi + 256], xmm7",
    "movdqu [rdi + 272], xmm8",
    "movdqu [rdi + 288], xmm9",
    "movdqu [rdi + 304], xmm10",
    "movdqu [rdi + 320], xmm11",
    "movdqu [rdi + 336], xmm12",
    "movdqu [rdi + 352], xmm13",
    "movdqu [rdi + 368], xmm14",
    "movdqu [rdi + 384], xmm15",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
);

extern "C" {
    fn blockscope_sse_native_call(ctx: *mut NativeCtx);
}

/// Run `ctx.code` natively with the register file in `ctx`, updating it in place.
///
/// The caller guarantees that `ctx.code` points to executable memory holding one
/// instruction that neither faults nor uses rsp, followed by `ret`, and that any memory the
/// instruction accesses is mapped.
pub fn run(ctx: &mut NativeCtx) {
    // SAFETY: the trampoline saves and restores every callee-saved register and the stack
    // pointer, and only touches `*ctx`; the code it calls is the caller's single
    // non-faulting instruction plus `ret`, as documented above.
    unsafe { blockscope_sse_native_call(ctx) }
}
