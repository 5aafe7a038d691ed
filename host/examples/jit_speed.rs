//! Measures guest instructions per second of two hand-assembled loops under each tier:
//! a straight loop with a store (one block looping to itself) and a loop with a branch
//! inside (a multi-block hot region). Not a test;
//! `cargo run --release -p blockscope --example jit_speed`.

use blockscope::config::{Config, Tier};
use blockscope::cpu::{CpuState, Width};
use blockscope::exec::{Engine, Vcpu};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};

fn run(name: &str, code: &[u8], insns: f64) {
    for tier in [Tier::Interp, Tier::Jit, Tier::Auto] {
        let shared = DirectShared::new();
        let mut mem = Direct::new(shared.clone());
        let page = shared.mmap_anon(0, 8192, Prot(7), false).expect("mmap");
        for (i, b) in code.iter().enumerate() {
            mem.store(page + i as u64, Width::W8, *b as u64).expect("store");
        }
        let mut cpu = CpuState::new_user();
        cpu.set_rip(page);
        cpu.set_gpr(7, page + 4096);
        let engine = Engine::new(Config { tier, ..Config::default() });
        let mut v = Vcpu::new(engine, cpu, &mut mem);
        let t = std::time::Instant::now();
        let exit = v.run(); // ends at the final hlt (#GP at CPL 3)
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{name:8} {tier:?}: {:6.0} M guest insns/s ({dt:.3}s, {exit:?})",
            insns / dt / 1e6
        );
    }
}

fn main() {
    let n: u32 = 20_000_000;
    // mov ecx, n ; xor eax, eax ;
    // l: add rax, rcx ; mov rdx, rax ; and rdx, 0xff ; add rbx, rdx ; mov [rdi], rdx ;
    //    dec ecx ; jnz l ; hlt
    let mut code = vec![0xb9];
    code.extend_from_slice(&n.to_le_bytes());
    code.extend_from_slice(&[0x31, 0xc0]);
    let body = [
        0x48, 0x01, 0xc8, 0x48, 0x89, 0xc2, 0x48, 0x81, 0xe2, 0xff, 0, 0, 0, 0x48, 0x01, 0xd3,
        0x48, 0x89, 0x17, 0xff, 0xc9,
    ];
    code.extend_from_slice(&body);
    code.extend_from_slice(&[0x75, (-(body.len() as i32 + 2)) as i8 as u8, 0xf4]);
    run("loop", &code, 7.0 * n as f64);
    // mov ecx, n ; l: test ecx, 1 ; jz even ; add rax, rcx ; jmp next ;
    // even: add rbx, rcx ; next: dec ecx ; jnz l ; hlt
    let mut code = vec![0xb9];
    code.extend_from_slice(&n.to_le_bytes());
    code.extend_from_slice(&[
        0xf7, 0xc1, 1, 0, 0, 0, 0x74, 0x05, 0x48, 0x01, 0xc8, 0xeb, 0x03, 0x48, 0x01, 0xcb, 0xff,
        0xc9, 0x75, 0xec, 0xf4,
    ]);
    run("diamond", &code, 5.5 * n as f64);
}
