//! The JIT tier inside the exec loop: real machine code (hand-assembled) run through
//! `run_snippet` / `Vcpu` under `--tier interp`, `jit` and `auto` must end in identical
//! states; chains, the indirect table, invalidation (a guest patching a jump target in a
//! hot loop, code unmapped and remapped with other contents) and cache flushes must keep
//! it that way.

use blockscope::config::{Config, Tier};
use blockscope::cpu::{slot, CpuState, Fault, Width};
use blockscope::exec::{run_snippet, Engine, Exit, SnippetExit, Vcpu};
use blockscope::frontend::full_rflags;
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};
use std::sync::atomic::Ordering;
use std::sync::Arc;

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Auto];

/// Run until the final `hlt`, which is #GP at CPL 3.
fn run_to_hlt<M: GuestMemory>(v: &mut Vcpu<M>) {
    match v.run() {
        Exit::Fault { fault: Fault::GeneralProtection(0), .. } => {}
        other => panic!("expected #GP from the final hlt, got {other:?}"),
    }
}

/// Map `code` on a fresh RWX page (plus two data pages after it) and return the memory,
/// the code address and the data address.
fn setup(code: &[u8]) -> (Direct, u64, u64) {
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    let page = shared.mmap_anon(0, 3 * 4096, Prot(7), false).expect("mmap");
    for (i, b) in code.iter().enumerate() {
        mem.store(page + i as u64, Width::W8, *b as u64).unwrap();
    }
    (mem, page, page + 8192)
}

/// Run in every tier from the same mapping (re-initialised each time); all must agree on
/// the exit and every guest slot.
fn all_tiers(code: &[u8], init: impl Fn(&mut CpuState, u64)) -> Box<CpuState> {
    let (mut mem, start, data) = setup(code);
    let mut first: Option<(Box<CpuState>, SnippetExit)> = None;
    for tier in TIERS {
        for (i, b) in code.iter().enumerate() {
            mem.store(start + i as u64, Width::W8, *b as u64).unwrap();
        }
        for a in (data..data + 4096).step_by(8) {
            mem.store(a, Width::W64, 0).unwrap();
        }
        // Writes to watched code pages are pending invalidations for the previous engine.
        mem.take_code_writes();
        let mut cpu = CpuState::new_user();
        cpu.set_rip(start);
        init(&mut cpu, data);
        let r = run_snippet(&mut cpu, &mut mem, start + code.len() as u64, tier);
        match &first {
            None => {
                assert_eq!(r, SnippetExit::Reached, "interpreter did not finish");
                first = Some((cpu, r));
            }
            Some((base, r0)) => {
                assert_eq!(r, *r0, "exit under {tier:?}");
                for s in 0..64 {
                    assert_eq!(cpu.slots[s], base.slots[s], "slot {s} under {tier:?}");
                }
            }
        }
    }
    first.expect("ran").0
}

// l: add rax, rcx ; mov rdx, rax ; and rdx, 0xff ; add rbx, rdx ; dec ecx ; jnz l
const LOOP: [u8; 20] = [
    0x48, 0x01, 0xc8, 0x48, 0x89, 0xc2, 0x48, 0x81, 0xe2, 0xff, 0, 0, 0, 0x48, 0x01, 0xd3, 0xff,
    0xc9, 0x75, 0xec,
];

#[test]
fn hot_loop_agrees_in_every_tier() {
    let cpu = all_tiers(&LOOP, |c, _| c.set_gpr(1, 100_000));
    assert_eq!(cpu.gpr(0), 100_000 * 100_001 / 2);
}

/// Entries from the run loop into compiled code while running `code` under `--tier jit`.
fn jit_entries(code: &[u8], init: impl Fn(&mut CpuState, u64)) -> u64 {
    let (mut mem, start, data) = setup(&[code, &[0xf4]].concat());
    // `stats`: entries are counted only then.
    let engine = Engine::new(Config { tier: Tier::Jit, stats: true, ..Config::default() });
    let mut cpu = CpuState::new_user();
    cpu.set_rip(start);
    init(&mut cpu, data);
    let mut vcpu = Vcpu::new(engine.clone(), cpu, &mut mem);
    run_to_hlt(&mut vcpu);
    assert!(engine.jit.compiled.load(Ordering::Relaxed) >= 1);
    engine.jit.entries.load(Ordering::Relaxed)
}

#[test]
fn chained_loop_stays_in_compiled_code() {
    // 100k iterations of a self-looping block: linked after the first exit, then only the
    // chain budget brings it back to the run loop.
    let n = jit_entries(&LOOP, |c, _| c.set_gpr(1, 100_000));
    assert!((1..100).contains(&n), "{n} entries into compiled code for 100k iterations");
}

#[test]
fn calls_and_returns_through_the_indirect_table() {
    // mov ecx, 5000; l: call f; dec ecx; jnz l; jmp end; f: add rax, rcx; ret; end:
    let code = [
        0xb9, 0x88, 0x13, 0, 0, // mov ecx, 5000
        0xe8, 0x06, 0, 0, 0, // call f (+6)
        0xff, 0xc9, // dec ecx
        0x75, 0xf7, // jnz l (-9)
        0xeb, 0x04, // jmp end (+4)
        0x48, 0x01, 0xc8, // f: add rax, rcx
        0xc3, // ret
    ];
    let cpu = all_tiers(&code, |c, data| c.set_gpr(4, data + 4000));
    assert_eq!(cpu.gpr(0), 5000 * 5001 / 2);
    // Returns find their target in the vCPU's indirect table instead of leaving.
    let n = jit_entries(&code, |c, data| c.set_gpr(4, data + 4000));
    assert!((1..100).contains(&n), "{n} entries into compiled code for 5000 calls and returns");
}

#[test]
fn memory_loop_uses_loads_and_stores() {
    // rdi = data; ecx = 1000; l: mov rax, [rdi]; add rax, rcx; mov [rdi+8], rax;
    // add [rdi], rax; dec ecx; jnz l
    let code = [
        0x48, 0x8b, 0x07, // mov rax, [rdi]
        0x48, 0x01, 0xc8, // add rax, rcx
        0x48, 0x89, 0x47, 0x08, // mov [rdi+8], rax
        0x48, 0x01, 0x07, // add [rdi], rax
        0xff, 0xc9, // dec ecx
        0x75, 0xef, // jnz l (-17)
    ];
    let cpu = all_tiers(&code, |c, data| {
        c.set_gpr(7, data);
        c.set_gpr(1, 1000);
    });
    assert_ne!(cpu.gpr(0), 0);
}

#[test]
fn guest_patching_a_jump_target_in_a_hot_loop() {
    // A hot loop whose body jumps to `a` (rbx += 1) until the loop counter reaches 500;
    // then the guest rewrites that jump's displacement so it goes to `b` (rbx += 1000).
    //   l:   cmp ecx, 500 ; jne skip ; mov byte [rsi], DISP_B ; skip:
    //        jmp a            <- the patched instruction (rsi points at its rel8)
    //   a:   inc rbx ; jmp next
    //   b:   add rbx, 1000
    //   next: dec ecx ; jnz l
    let code: Vec<u8> = vec![
        0x81, 0xf9, 0xf4, 0x01, 0, 0, // 0: cmp ecx, 500
        0x75, 0x03, // 6: jne skip (+3)
        0xc6, 0x06, 0x05, // 8: mov byte [rsi], 5  (jmp a -> jmp b)
        0xeb, 0x00, // 11: jmp a (+0)        rel8 at offset 12
        0x48, 0xff, 0xc3, // 13: a: inc rbx
        0xeb, 0x07, // 16: jmp next (+7)
        0x48, 0x81, 0xc3, 0xe8, 0x03, 0, 0, // 18: b: add rbx, 1000
        0xff, 0xc9, // 25: next: dec ecx
        0x75, 0xe3, // 27: jnz l (-29)
    ];
    let cpu = all_tiers(&code, |c, _| {
        c.set_gpr(1, 1000);
        c.set_gpr(6, c.rip() + 12);
    });
    // 500 iterations (ecx 1000..501) through a, then 500 through b.
    assert_eq!(cpu.gpr(3), 500 + 500 * 1000);
}

#[test]
fn a_write_to_code_a_block_reached_through_an_elided_jmp_invalidates_it() {
    // The block at `a+11` goes on through `jmp b` into code four pages away and back
    // through `jmp a2`; at ecx = 500 the guest rewrites the `add rbx, 1` there to
    // `add rbx, 2`. The block was translated before (with +1): a write to its far run
    // must invalidate it like one to its start. (Nothing else of the block is on that
    // page: its successors, which the flag lookahead reads, are back on `a`'s.)
    //   a:    cmp ecx, 500 ; jne a+11 ; mov byte [rsi], 2 ; jmp b
    //   a2:   dec ecx ; jnz a ; hlt
    //   b:    add rbx, 1 (imm8 at b+3) ; jmp a2
    for tier in TIERS {
        let shared = DirectShared::new();
        let mut mem = Direct::new(shared.clone());
        let a = shared.mmap_anon(0, 6 * 4096, Prot(7), false).unwrap();
        let b = a + 0x4000;
        let rel = |from: u64, to: u64| (to.wrapping_sub(from) as i32).to_le_bytes();
        let mut ca = vec![0x81, 0xf9, 0xf4, 0x01, 0, 0, 0x75, 0x03, 0xc6, 0x06, 0x02, 0xe9];
        ca.extend_from_slice(&rel(a + 16, b));
        ca.extend_from_slice(&[0xff, 0xc9, 0x0f, 0x85]);
        ca.extend_from_slice(&rel(a + 24, a));
        ca.push(0xf4);
        let mut cb = vec![0x48, 0x83, 0xc3, 0x01, 0xe9];
        cb.extend_from_slice(&rel(b + 9, a + 16));
        for (base, code) in [(a, &ca), (b, &cb)] {
            for (i, x) in code.iter().enumerate() {
                mem.store(base + i as u64, Width::W8, *x as u64).unwrap();
            }
        }
        let engine = Engine::new(Config { tier, hot_threshold: 8, ..Config::default() });
        let mut cpu = CpuState::new_user();
        cpu.set_rip(a);
        cpu.set_gpr(1, 1000);
        cpu.set_gpr(6, b + 3);
        let mut vcpu = Vcpu::new(engine.clone(), cpu, &mut mem);
        run_to_hlt(&mut vcpu);
        assert_eq!(vcpu.cpu.gpr(3), 500 + 500 * 2, "{tier:?} ran stale code");
    }
}

/// Run the loop at `page` once, then unmap the code, map other code at the same address
/// and run again: the second run must execute the new code in every tier.
#[test]
fn code_unmapped_and_remapped_runs_the_new_contents() {
    for tier in TIERS {
        let shared = DirectShared::new();
        let mut mem = Direct::new(shared.clone());
        let page = shared.mmap_anon(0, 4096, Prot(7), false).unwrap();
        let write = |mem: &mut Direct, code: &[u8]| {
            for (i, b) in code.iter().enumerate() {
                mem.store(page + i as u64, Width::W8, *b as u64).unwrap();
            }
        };
        let mut v1 = LOOP.to_vec();
        v1.push(0xf4); // hlt
        write(&mut mem, &v1);
        let engine = Engine::new(Config { tier, hot_threshold: 8, ..Config::default() });
        let mut cpu = CpuState::new_user();
        cpu.set_rip(page);
        cpu.set_gpr(1, 1000);
        let mut vcpu = Vcpu::new(engine.clone(), cpu, &mut mem);
        run_to_hlt(&mut vcpu);
        assert_eq!(vcpu.cpu.gpr(0), 1000 * 1001 / 2);
        // munmap + mmap at the same address with different code: `sub` instead of `add`.
        let pages = vcpu.mem.shared().unmap(page, 4096);
        vcpu.engine.invalidate_pages(&pages);
        assert_eq!(shared.mmap_anon(page, 4096, Prot(7), true), Ok(page));
        let mut v2 = v1.clone();
        v2[1] = 0x29; // add rax, rcx -> sub rax, rcx
        write(&mut *vcpu.mem, &v2);
        vcpu.cpu.set_rip(page);
        vcpu.cpu.set_gpr(0, 0);
        vcpu.cpu.set_gpr(1, 1000);
        run_to_hlt(&mut vcpu);
        assert_eq!(vcpu.cpu.gpr(0), (1000u64 * 1001 / 2).wrapping_neg(), "{tier:?} ran stale code");
        if tier == Tier::Jit {
            assert!(engine.jit.compiled.load(Ordering::Relaxed) >= 4, "jit tier compiled blocks");
        }
    }
}

#[test]
fn auto_tier_compiles_hot_blocks_in_the_background() {
    let (mut mem, start, _) = setup(&[&LOOP[..], &[0xf4]].concat());
    let engine = Engine::new(Config { tier: Tier::Auto, hot_threshold: 16, ..Config::default() });
    let mut cpu = CpuState::new_user();
    cpu.set_rip(start);
    cpu.set_gpr(1, 3_000_000);
    let mut vcpu = Vcpu::new(engine.clone(), cpu, &mut mem);
    run_to_hlt(&mut vcpu);
    assert_eq!(vcpu.cpu.gpr(0), 3_000_000u64 * 3_000_001 / 2);
    assert!(
        engine.jit.compiled.load(Ordering::Relaxed) >= 1,
        "3M iterations are enough for the compile thread to deliver the loop"
    );
}

#[test]
fn tiny_code_cache_is_flushed_and_refilled() {
    // Many distinct blocks (a chain of 2000 `inc rax; jmp next` pairs) through a cache
    // that holds a fraction of them.
    let mut code = Vec::new();
    for _ in 0..2000 {
        code.extend_from_slice(&[0x48, 0xff, 0xc0, 0xeb, 0x00]); // inc rax; jmp +0
    }
    code.push(0xf4);
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    let page = shared.mmap_anon(0, 16 * 4096, Prot(7), false).unwrap();
    for (i, b) in code.iter().enumerate() {
        mem.store(page + i as u64, Width::W8, *b as u64).unwrap();
    }
    let cfg = Config { tier: Tier::Jit, jit_cache_size: 64 << 10, ..Config::default() };
    let engine = Engine::new(cfg);
    for round in 0..3 {
        let mut cpu = CpuState::new_user();
        cpu.set_rip(page);
        let mut vcpu = Vcpu::new(engine.clone(), cpu, &mut mem);
        run_to_hlt(&mut vcpu);
        assert_eq!(vcpu.cpu.gpr(0), 2000, "round {round}");
    }
    assert!(engine.jit.flushes.load(Ordering::Relaxed) >= 1, "the cache must have been flushed");
}

#[test]
fn threads_share_compiled_code() {
    let code = [&LOOP[..], &[0xf4]].concat();
    let shared = DirectShared::new();
    let mut mem = Direct::new(shared.clone());
    let page = shared.mmap_anon(0, 4096, Prot(7), false).unwrap();
    for (i, b) in code.iter().enumerate() {
        mem.store(page + i as u64, Width::W8, *b as u64).unwrap();
    }
    let engine = Engine::new(Config { tier: Tier::Jit, ..Config::default() });
    let handles: Vec<_> = (1..=4u64)
        .map(|k| {
            let (engine, shared) = (engine.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut cpu = CpuState::new_user();
                cpu.set_rip(page);
                cpu.set_gpr(1, 50_000 * k);
                let mut vcpu = Vcpu::new(engine, cpu, Direct::new(shared));
                run_to_hlt(&mut vcpu);
                vcpu.cpu.gpr(0)
            })
        })
        .collect();
    for (k, h) in (1..=4u64).zip(handles) {
        let n = 50_000 * k;
        assert_eq!(h.join().unwrap(), n * (n + 1) / 2);
    }
    assert!(engine.jit.compiled.load(Ordering::Relaxed) >= 1);
}

/// Run `code` (ending in `hlt`) on a Vcpu with `cfg`; returns the CPU and the engine.
fn run_cfg(
    code: &[u8],
    cfg: Config,
    init: impl Fn(&mut CpuState, u64),
) -> (Box<CpuState>, Arc<Engine>) {
    let (mut mem, start, data) = setup(&[code, &[0xf4]].concat());
    let engine = Engine::new(cfg);
    let mut cpu = CpuState::new_user();
    cpu.set_rip(start);
    init(&mut cpu, data);
    let mut vcpu = Vcpu::new(engine.clone(), cpu, &mut mem);
    run_to_hlt(&mut vcpu);
    (vcpu.cpu.clone(), engine)
}

// l: test ecx, 1 ; jz even ; add rax, rcx ; jmp next ; even: add rbx, rcx ;
// next: dec ecx ; jnz l
const DIAMOND: [u8; 20] = [
    0xf7, 0xc1, 1, 0, 0, 0, 0x74, 0x05, 0x48, 0x01, 0xc8, 0xeb, 0x03, 0x48, 0x01, 0xcb, 0xff, 0xc9,
    0x75, 0xec,
];

#[test]
fn loop_with_a_branch_becomes_a_hot_region() {
    let n = 200_000u64;
    let init = |c: &mut CpuState, _| c.set_gpr(1, n);
    let (want, _) = run_cfg(&DIAMOND, Config { tier: Tier::Interp, ..Config::default() }, init);
    let odd: u64 = (1..=n).filter(|i| i % 2 == 1).sum();
    assert_eq!((want.gpr(0), want.gpr(3)), (odd, n * (n + 1) / 2 - odd));
    for tier in [Tier::Jit, Tier::Auto] {
        let cfg = Config { tier, jit_chain_budget: 64, hot_threshold: 4, ..Config::default() };
        let (cpu, engine) = run_cfg(&DIAMOND, cfg, init);
        for s in (0..64).filter(|&s| s != 16) {
            assert_eq!(cpu.slots[s], want.slots[s], "slot {s} under {tier:?}");
        }
        if tier == Tier::Jit {
            assert!(engine.jit.regions.load(Ordering::Relaxed) >= 1, "a region was compiled");
        }
    }
}

#[test]
fn patching_a_block_inside_a_hot_region_kills_the_region() {
    // The jump-patching loop of `guest_patching_a_jump_target_in_a_hot_loop`, with a small
    // chain budget so the loop becomes a region before the patch.
    let code: Vec<u8> = vec![
        0x81, 0xf9, 0xf4, 0x01, 0, 0, 0x75, 0x03, 0xc6, 0x06, 0x05, 0xeb, 0x00, 0x48, 0xff, 0xc3,
        0xeb, 0x07, 0x48, 0x81, 0xc3, 0xe8, 0x03, 0, 0, 0xff, 0xc9, 0x75, 0xe3,
    ];
    let init = |c: &mut CpuState, _| {
        c.set_gpr(1, 20_000);
        c.set_gpr(6, c.rip() + 12);
    };
    for tier in TIERS {
        let cfg = Config { tier, jit_chain_budget: 32, hot_threshold: 4, ..Config::default() };
        let (cpu, engine) = run_cfg(&code, cfg, init);
        assert_eq!(cpu.gpr(3), 19_500 + 500 * 1000, "{tier:?}");
        if tier == Tier::Jit {
            assert!(engine.jit.regions.load(Ordering::Relaxed) >= 1, "a region was compiled");
        }
    }
}

// A switch loop dispatching through `jmp rdx` to four 32-byte op bodies:
// l: mov edx, ecx ; and edx, 3 ; shl edx, 5 ; lea rdi, [rip + op0] ; add rdx, rdi ; jmp rdx
// op0: add rax, 1 ; jmp next          op1: add rax, 3 ; jmp next
// op2: xor rax, rcx ; jmp next
// op3: cmp ecx, 503 ; jne 1f ; mov byte [rsi], 5 (patches op0's immediate) ;
//      1: add rbx, rax ; jmp next
// next: dec ecx ; jnz l ; hlt
fn switch_loop() -> Vec<u8> {
    let mut c = vec![0x89, 0xca, 0x83, 0xe2, 0x03, 0xc1, 0xe2, 0x05];
    c.extend([0x48, 0x8d, 0x3d, 0x11, 0, 0, 0, 0x48, 0x01, 0xfa, 0xff, 0xe2]);
    c.resize(32, 0x90);
    c.extend([0x48, 0x83, 0xc0, 0x01, 0xe9, 0x77, 0, 0, 0]);
    c.resize(64, 0x90);
    c.extend([0x48, 0x83, 0xc0, 0x03, 0xe9, 0x57, 0, 0, 0]);
    c.resize(96, 0x90);
    c.extend([0x48, 0x31, 0xc8, 0xe9, 0x38, 0, 0, 0]);
    c.resize(128, 0x90);
    c.extend([0x81, 0xf9, 0xf7, 0x01, 0, 0, 0x75, 0x03, 0xc6, 0x06, 0x05]);
    c.extend([0x48, 0x01, 0xc3, 0xe9, 0x0d, 0, 0, 0]);
    c.resize(160, 0x90);
    c.extend([0xff, 0xc9, 0x0f, 0x85, 0x58, 0xff, 0xff, 0xff, 0xf4]);
    c
}

#[test]
fn switch_loop_through_an_indirect_jump_becomes_a_hot_region() {
    let n = 3_000_000u64;
    let init = |c: &mut CpuState, _| {
        c.set_gpr(1, n);
        c.set_gpr(6, c.rip() + 35);
    };
    let code = switch_loop();
    let (mut a, mut b, mut inc0) = (0u64, 0u64, 1u64);
    for c in (1..=n).rev() {
        match c & 3 {
            0 => a = a.wrapping_add(inc0),
            1 => a = a.wrapping_add(3),
            2 => a ^= c,
            _ => {
                if c == 503 {
                    inc0 = 5;
                }
                b = b.wrapping_add(a);
            }
        }
    }
    let (want, _) = run_cfg(&code, Config { tier: Tier::Interp, ..Config::default() }, init);
    assert_eq!((want.gpr(0), want.gpr(3)), (a, b), "interpreter");
    // Auto: the dispatch block is interpreted (profiling its targets) before it is
    // compiled; the region then holds the dispatch and the op bodies, and the patch of
    // op0 near the end must kill it (the results differ otherwise).
    let cfg =
        Config { tier: Tier::Auto, jit_chain_budget: 256, hot_threshold: 32, ..Config::default() };
    // The region is compiled on the background thread: on a loaded machine a run may end
    // before it is installed, so up to three runs (each must be exact) until one has it.
    let mut regions = 0;
    for _ in 0..3 {
        let (cpu, engine) = run_cfg(&code, cfg.clone(), init);
        // %rdx, %rsi, %rdi and %rip hold addresses in the (freshly mapped) code page, and
        // so may the lazy-flag slots the last flag op does not use (its operands are kept
        // only where needed): flags are compared as RFLAGS.
        let lazy = slot::CC_OP as usize..=slot::CC_C as usize;
        for s in (0..64).filter(|s| ![2, 6, 7, 16].contains(s) && !lazy.contains(s)) {
            assert_eq!(cpu.slots[s], want.slots[s], "slot {s}");
        }
        assert_eq!(full_rflags(&cpu), full_rflags(&want), "rflags");
        regions = engine.jit.regions.load(Ordering::Relaxed);
        if regions >= 1 {
            break;
        }
    }
    assert!(regions >= 1, "no region was compiled in three runs");
}
