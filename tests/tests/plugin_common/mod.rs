//! Shared helpers of the plugin tests: finding the plugin libraries built by cargo,
//! assembling small guest programs and running them in-process with plugins.
#![allow(dead_code, reason = "each test file uses a different subset")]

use blockscope::config::{Config, Tier};
use blockscope::cpu::CpuState;
use blockscope::exec::{Engine, Exit, Vcpu};
use blockscope::mem::{Direct, DirectShared, GuestMemory, Prot};
use blockscope::plugin::{PluginSpec, Plugins};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `target/<profile>`, where cargo puts the plugin libraries and the binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// Where cargo puts the plugin libraries it builds as dev-dependencies of this crate
/// (always fresh when the tests run; `target/<profile>` itself holds them only after a
/// `cargo build` of the plugin package).
pub fn plugin_dir() -> PathBuf {
    target_dir().join("deps")
}

/// The library of a workspace plugin crate (`lib` name `blockscope_<name>`).
pub fn plugin_lib(name: &str) -> PathBuf {
    let p = plugin_dir().join(format!("libblockscope_{name}.so"));
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// A scratch directory for this test.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Parse `--plugin` values.
pub fn specs(v: &[&str]) -> Vec<PluginSpec> {
    v.iter().map(|s| blockscope::plugin::parse_spec(s).expect("spec")).collect()
}

/// Load plugins given as `--plugin` values (names resolved in the target directory).
pub fn load(v: &[&str]) -> Result<Plugins, blockscope::plugin::PluginError> {
    Plugins::load(&specs(v), Some(&plugin_dir()), &[])
}

/// A guest program in memory: code at `code`, 32 KiB of data at `data`, a stack.
pub struct Guest {
    pub shared: Arc<DirectShared>,
    pub code: u64,
    pub data: u64,
    pub stack_top: u64,
}

/// Map memory and place `code` (built by `asm` at the address it is given).
pub fn guest(asm: impl FnOnce(u64, u64) -> Vec<u8>) -> Guest {
    let shared = DirectShared::new();
    let rwx = Prot(Prot::READ | Prot::WRITE | Prot::EXEC);
    let base = shared.mmap_anon(0, 0x20000, rwx, false).expect("mmap");
    let (code, data) = (base, base + 0x8000);
    let bytes = asm(code, data);
    let mut m = Direct::new(shared.clone());
    m.write_bytes(code, &bytes).expect("write code");
    Guest { shared, code, data, stack_top: base + 0x1f000 }
}

/// Run `g` from its code address until the first SYSCALL, with `plugins`, in `tier`.
/// Returns the CPU state at the syscall.
pub fn run(g: &Guest, plugins: Arc<Plugins>, tier: Tier) -> Box<CpuState> {
    let engine = Engine::with_plugins(Config { tier, ..Config::default() }, plugins);
    let mut cpu = CpuState::new_user();
    cpu.set_rip(g.code);
    cpu.set_gpr(4, g.stack_top);
    let mut v = Vcpu::new(engine.clone(), cpu, Direct::new(g.shared.clone()));
    let r = v.run();
    if tier == Tier::Jit {
        use std::sync::atomic::Ordering::Relaxed;
        assert!(engine.jit.compiled.load(Relaxed) > 0, "blocks were compiled");
        assert_eq!(engine.jit.failed.load(Relaxed), 0, "no block failed to compile");
    }
    match r {
        Exit::Syscall => v.cpu.clone(),
        other => panic!("guest stopped with {other:?} at {:#x}", v.cpu.rip()),
    }
}

/// Assemble with iced's code assembler at `ip`.
pub fn assemble(
    ip: u64,
    f: impl FnOnce(&mut iced_x86::code_asm::CodeAssembler) -> Result<(), iced_x86::IcedError>,
) -> Vec<u8> {
    let mut a = iced_x86::code_asm::CodeAssembler::new(64).unwrap();
    f(&mut a).expect("asm");
    a.assemble(ip).expect("assemble")
}

/// `key=value` lines into pairs.
pub fn parse_counts(text: &str) -> std::collections::HashMap<String, u64> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// Build the C test plugin (`tests/plugins/c/count.c`) with extra gcc flags; `None` when
/// gcc is missing.
pub fn build_c_plugin(name: &str, flags: &[&str]) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = scratch(&format!("c-{name}")).join(format!("lib{name}.so"));
    let o = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(root.join("../plugin-api/include"))
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(root.join("plugins/c/count.c"))
        .output()
        .ok()?;
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    Some(out)
}

/// The loop guest of the plugin tests: 100 iterations of load, add, store, byte store,
/// dec, jnz; then a syscall. 2 + 100*6 + 1 = 603 instructions, 300 memory accesses,
/// 101 blocks (entry block, 99 loop blocks, the syscall block).
pub fn loop_guest() -> Guest {
    use iced_x86::code_asm::*;
    guest(|code, data| {
        assemble(code, |a| {
            let mut top = a.create_label();
            a.mov(rcx, 100u64)?;
            a.mov(rdi, data)?;
            a.set_label(&mut top)?;
            a.mov(rax, qword_ptr(rdi + rcx * 8))?;
            a.add(rax, rcx)?;
            a.mov(qword_ptr(rdi + rcx * 8), rax)?;
            a.mov(byte_ptr(rdi + rcx + 0x1000), al)?;
            a.dec(rcx)?;
            a.jnz(top)?;
            a.syscall()?;
            Ok(())
        })
    })
}
