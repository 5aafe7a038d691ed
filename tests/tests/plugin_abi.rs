//! The C header `plugin-api/include/blockscope.h` describes exactly the Rust ABI: every
//! struct's size and alignment and every field's offset, as compiled by gcc, equal the
//! Rust layout; and the header's constants equal the Rust ones.

mod plugin_common;

use blockscope_plugin_api::abi::*;
use std::mem::{align_of, offset_of, size_of};
use std::process::Command;

/// (C expression, Rust value) pairs.
fn expected() -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = Vec::new();
    macro_rules! ty {
        ($c:literal, $r:ty, [$($cf:ident => $rf:ident),* $(,)?]) => {
            v.push((format!("sizeof({})", $c), size_of::<$r>() as u64));
            v.push((format!("_Alignof({})", $c), align_of::<$r>() as u64));
            $(v.push((format!("offsetof({}, {})", $c, stringify!($cf)), offset_of!($r, $rf) as u64));)*
        };
    }
    ty!("bs_call_site", CallSite, [instance => instance, fdata => fdata, udata => udata]);
    ty!("bs_point", Point, [kind => kind, insn => insn, access => access]);
    ty!("bs_op", PluginOp, [point => point, kind => kind, sub => sub, width => width, a => a,
        b => b, c => c, nargs => nargs, args => args, imm => imm, imm2 => imm2, func => func]);
    ty!("bs_mem_operand", MemOperandRaw, [base => base, index => index, scale => scale,
        size => size, disp => disp, access => access, segment => segment]);
    ty!("bs_access", AccessRaw, [size => size, kind => kind]);
    ty!("bs_insn", InsnRaw, [pc => pc, bytes => bytes, len => len, branch => branch,
        target => target, mnemonic => mnemonic, mem_first => mem_first, mem_count => mem_count,
        access_first => access_first, access_count => access_count]);
    ty!("bs_tb", TbRaw<'static>, [pc => pc, end => end, insns => insns,
        mem_operands => mem_operands, accesses => accesses]);
    ty!("bs_symbol", SymbolRaw, [module => module, module_base => module_base,
        module_bias => module_bias, symbol => symbol, symbol_addr => symbol_addr,
        symbol_size => symbol_size]);
    ty!("bs_module", ModuleRaw, [path => path, start => start, end => end, bias => bias,
        entry => entry]);
    ty!("bs_key_value", KeyValue<'static>, [key => key, value => value]);
    ty!("bs_arg_spec", ArgSpec, [name => name, help => help, def => default]);
    ty!("bs_host", HostApi, [abi_major => abi_major, abi_minor => abi_minor, plugin => plugin,
        scoreboard_new => scoreboard_new, scoreboard_read => scoreboard_read,
        scoreboard_read_all => scoreboard_read_all, vcpu_count => vcpu_count,
        message => message, inject => inject, insn_disas => insn_disas,
        symbolize => symbolize, module => module, expand_rep_strings => expand_rep_strings,
        rep_strings_expanded => rep_strings_expanded]);
    ty!("bs_plugin_vtable", PluginVTable, [abi_major => abi_major, abi_minor => abi_minor,
        name => name, description => description, args => args, install => install,
        vcpu_init => vcpu_init, vcpu_exit => vcpu_exit, translate => translate,
        syscall => syscall, syscall_ret => syscall_ret, exit => exit]);
    ty!("bs_str", blockscope_plugin_api::abi_stable::std_types::RStr<'static>, []);
    ty!("bs_op_slice", blockscope_plugin_api::abi_stable::std_types::RSlice<'static, PluginOp>, []);
    let consts: &[(&str, u32)] = &[
        ("BS_ABI_MAJOR", ABI_MAJOR),
        ("BS_ABI_MINOR", ABI_MINOR),
        ("BS_NONE", NONE),
        ("BS_POINT_BLOCK_ENTRY", POINT_BLOCK_ENTRY),
        ("BS_POINT_BEFORE_INSN", POINT_BEFORE_INSN),
        ("BS_POINT_AFTER_ACCESS", POINT_AFTER_ACCESS),
        ("BS_OP_CONST", OP_CONST),
        ("BS_OP_REG", OP_REG),
        ("BS_OP_MEM_ADDR", OP_MEM_ADDR),
        ("BS_OP_MEM_VALUE", OP_MEM_VALUE),
        ("BS_OP_BIN", OP_BIN),
        ("BS_OP_CMP", OP_CMP),
        ("BS_OP_SELECT", OP_SELECT),
        ("BS_OP_SB_LOAD", OP_SB_LOAD),
        ("BS_OP_SB_STORE", OP_SB_STORE),
        ("BS_OP_SB_ADD", OP_SB_ADD),
        ("BS_OP_CALL", OP_CALL),
        ("BS_BIN_MUL", BIN_MUL),
        ("BS_CMP_SGE", CMP_SGE),
        ("BS_REG_FS_BASE", REG_FS_BASE),
        ("BS_REG_GS_BASE", REG_GS_BASE),
        ("BS_REG_RIP", REG_RIP),
        ("BS_REG_XMM0_LO", REG_XMM0_LO),
        ("BS_BRANCH_RETURN", BRANCH_RETURN),
        ("BS_BRANCH_EXCEPTION", BRANCH_EXCEPTION),
        ("BS_ACCESS_RMW", ACCESS_RMW),
        ("BS_LEVEL_FATAL", LEVEL_FATAL),
    ];
    for (c, r) in consts {
        v.push((c.to_string(), *r as u64));
    }
    v
}

#[test]
fn c_header_matches_the_rust_layout() {
    let exp = expected();
    let dir = plugin_common::scratch("abi-layout");
    let mut src = String::from("#include <blockscope.h>\n#include <stdio.h>\nint main(void) {\n");
    for (expr, _) in &exp {
        src.push_str(&format!("    printf(\"%llu\\n\", (unsigned long long)({expr}));\n"));
    }
    src.push_str("    return 0;\n}\n");
    let c = dir.join("layout.c");
    std::fs::write(&c, src).unwrap();
    let exe = dir.join("layout");
    let include = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api/include");
    let Ok(o) = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Werror", "-include", "stddef.h", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&exe)
        .arg(&c)
        .output()
    else {
        eprintln!("skipped: gcc not found");
        return;
    };
    assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
    let out = Command::new(&exe).output().unwrap();
    let got: Vec<u64> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got.len(), exp.len());
    let bad: Vec<String> = exp
        .iter()
        .zip(&got)
        .filter(|((_, r), c)| r != *c)
        .map(|((e, r), c)| format!("{e}: C {c}, Rust {r}"))
        .collect();
    assert!(bad.is_empty(), "header and Rust ABI differ:\n{}", bad.join("\n"));
    assert!(exp.len() > 100, "checked {} facts", exp.len());
}
