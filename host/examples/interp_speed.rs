//! Measures interpreter throughput on a small hand-assembled loop (guest instructions per
//! second). Not a test; `cargo run --release -p blockscope --example interp_speed`.

use blockscope::config::Tier;
use blockscope::cpu::{CpuState, Width};
use blockscope::exec::{run_snippet, SnippetExit};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};

fn main() {
    // mov ecx, N; xor eax, eax; l: add rax, rcx; xor rdx, rax; shl rdx, 1 ... (see below)
    // l: add rax, rcx ; mov rdx, rax ; and rdx, 0xff ; add rbx, rdx ; dec ecx ; jnz l
    let n: u32 = 50_000_000;
    let mut code = vec![0xb9];
    code.extend_from_slice(&n.to_le_bytes());
    code.extend_from_slice(&[0x31, 0xc0]); // xor eax, eax
    let body = [
        0x48, 0x01, 0xc8, // add rax, rcx
        0x48, 0x89, 0xc2, // mov rdx, rax
        0x48, 0x81, 0xe2, 0xff, 0, 0, 0, // and rdx, 0xff
        0x48, 0x01, 0xd3, // add rbx, rdx
        0xff, 0xc9, // dec ecx
    ];
    code.extend_from_slice(&body);
    let back = -(body.len() as i32 + 2);
    code.extend_from_slice(&[0x75, back as i8 as u8]); // jnz l
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    let page = shared.mmap_anon(0, 4096, Prot(7), false).unwrap();
    for (i, b) in code.iter().enumerate() {
        mem.store(page + i as u64, Width::W8, *b as u64).unwrap();
    }
    let mut cpu = CpuState::new_user();
    cpu.set_rip(page);
    let t = std::time::Instant::now();
    let r = run_snippet(&mut cpu, &mut mem, page + code.len() as u64, Tier::Interp);
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(r, SnippetExit::Reached);
    let insns = 2.0 + 6.0 * n as f64;
    println!("{:.0} M guest insns/s ({:.2}s, rbx={:#x})", insns / dt / 1e6, dt, cpu.gpr(3));
}
