//! End-to-end smoke test of the spine: real machine code, lifted and interpreted.

use blockscope::config::Tier;
use blockscope::cpu::CpuState;
use blockscope::cpu::Width;
use blockscope::exec::{run_snippet, SnippetExit};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};

fn setup(code: &[u8]) -> (Direct, u64, u64) {
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    let page = shared.mmap_anon(0, 8192, Prot(7), false).expect("mmap");
    for (i, b) in code.iter().enumerate() {
        mem.store(page + i as u64, Width::W8, *b as u64).unwrap();
    }
    (mem, page, page + code.len() as u64)
}

#[test]
fn sums_a_loop() {
    // mov ecx, 10; xor eax, eax; l: add rax, rcx; dec ecx; jnz l
    let code = [0xb9, 10, 0, 0, 0, 0x31, 0xc0, 0x48, 0x01, 0xc8, 0xff, 0xc9, 0x75, 0xf9];
    let (mut mem, start, end) = setup(&code);
    let mut cpu = CpuState::new_user();
    cpu.set_rip(start);
    let r = run_snippet(&mut cpu, &mut mem, end, Tier::Interp);
    assert_eq!(r, SnippetExit::Reached);
    assert_eq!(cpu.gpr(0), 55);
    assert_eq!(cpu.gpr(1), 0);
}

#[test]
fn null_load_is_a_page_fault_with_state_intact() {
    // mov rbx, 7; mov rax, [0]
    let code = [0x48, 0xc7, 0xc3, 7, 0, 0, 0, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];
    let (mut mem, start, end) = setup(&code);
    let mut cpu = CpuState::new_user();
    cpu.set_rip(start);
    cpu.set_gpr(0, 0x1234);
    let r = run_snippet(&mut cpu, &mut mem, end, Tier::Interp);
    match r {
        SnippetExit::Fault { fault: blockscope::cpu::Fault::PageFault { addr, .. }, pc } => {
            assert_eq!(addr, 0);
            assert_eq!(pc, start + 7);
        }
        other => panic!("expected a page fault, got {other:?}"),
    }
    assert_eq!(cpu.gpr(3), 7);
    assert_eq!(cpu.gpr(0), 0x1234);
}

#[test]
fn loop_block_ir_is_compact() {
    // l: add rax, rcx ; mov rdx, rax ; and rdx, 0xff ; add rbx, rdx ; dec ecx ; jnz l
    let code = [
        0x48, 0x01, 0xc8, 0x48, 0x89, 0xc2, 0x48, 0x81, 0xe2, 0xff, 0, 0, 0, 0x48, 0x01, 0xd3,
        0xff, 0xc9, 0x75, 0xee,
    ];
    let (mut mem, start, _end) = setup(&code);
    let t = blockscope::frontend::translate(start, &mut mem, 64, u64::MAX).unwrap();
    let text = t.block.to_string();
    if std::env::var_os("BLOCKSCOPE_SHOW_IR").is_some() {
        eprintln!("{text}");
    }
    // Flags of add/and are dead (overwritten before read); dec+jnz fuse into one compare.
    assert!(!text.contains("flags_"), "no flag helpers expected:\n{text}");
    assert!(text.contains("icmp.ne.i32"), "jnz should be one compare:\n{text}");
    assert!(t.block.ops.len() <= 12, "too many ops:\n{text}");
}
