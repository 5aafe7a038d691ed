/*
 * blockscope.h - the blockscope plugin ABI for C plugins.
 *
 * This header mirrors, field for field, the #[repr(C)] types of the Rust crate
 * blockscope-plugin-api (module `abi`); a test compiles it and compares every size and
 * offset with the Rust side. A C plugin is a shared library that exports
 *
 *     const bs_plugin_vtable *blockscope_plugin_entry(void);
 *
 * returning a pointer to a table that lives as long as the library. The host checks
 * abi_major (must equal BS_ABI_MAJOR) and abi_minor (must not exceed the host's) before
 * using anything else. Then it calls install() once per --plugin occurrence.
 *
 * Rules (as in QEMU's plugin API): plugins observe and never change guest state; a view
 * (bs_tb) and the inject/insn_disas functions are valid only during translate(); strings
 * (bs_str) are pointer + length, not NUL-terminated; callbacks must not longjmp or throw.
 */
#ifndef BLOCKSCOPE_H
#define BLOCKSCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BS_ABI_MAJOR 1u
#define BS_ABI_MINOR 1u
#define BS_NONE 0xffffffffu

/* Points (bs_point.kind). */
#define BS_POINT_BLOCK_ENTRY 0u
#define BS_POINT_BEFORE_INSN 1u
#define BS_POINT_AFTER_ACCESS 2u

/* Op kinds (bs_op.kind). */
#define BS_OP_CONST 0u
#define BS_OP_REG 1u
#define BS_OP_MEM_ADDR 2u
#define BS_OP_MEM_VALUE 3u
#define BS_OP_BIN 4u
#define BS_OP_CMP 5u
#define BS_OP_SELECT 6u
#define BS_OP_SB_LOAD 7u
#define BS_OP_SB_STORE 8u
#define BS_OP_SB_ADD 9u
#define BS_OP_CALL 10u

/* Binary operations (bs_op.sub of BS_OP_BIN). */
#define BS_BIN_ADD 0u
#define BS_BIN_SUB 1u
#define BS_BIN_AND 2u
#define BS_BIN_OR 3u
#define BS_BIN_XOR 4u
#define BS_BIN_SHL 5u
#define BS_BIN_SHR 6u
#define BS_BIN_SAR 7u
#define BS_BIN_MUL 8u

/* Comparisons (bs_op.sub of BS_OP_CMP). */
#define BS_CMP_EQ 0u
#define BS_CMP_NE 1u
#define BS_CMP_ULT 2u
#define BS_CMP_ULE 3u
#define BS_CMP_UGT 4u
#define BS_CMP_UGE 5u
#define BS_CMP_SLT 6u
#define BS_CMP_SLE 7u
#define BS_CMP_SGT 8u
#define BS_CMP_SGE 9u

/* Registers: GPRs 0..15 in encoding order, then these; xmm n = BS_REG_XMM0_LO + 2n (+1: high). */
#define BS_REG_RAX 0u
#define BS_REG_RSP 4u
#define BS_REG_RDI 7u
#define BS_REG_FS_BASE 16u
#define BS_REG_GS_BASE 17u
#define BS_REG_RIP 18u /* memory operands only; not readable */
#define BS_REG_XMM0_LO 32u

/* Control flow (bs_insn.branch). */
#define BS_BRANCH_NONE 0u
#define BS_BRANCH_JUMP 1u
#define BS_BRANCH_COND 2u
#define BS_BRANCH_INDIRECT 3u
#define BS_BRANCH_CALL 4u
#define BS_BRANCH_INDIRECT_CALL 5u
#define BS_BRANCH_RETURN 6u
#define BS_BRANCH_SYSCALL 7u
#define BS_BRANCH_EXCEPTION 8u

/* Memory access kinds. */
#define BS_ACCESS_LOAD 1u
#define BS_ACCESS_STORE 2u
#define BS_ACCESS_RMW 3u

/* Message levels. */
#define BS_LEVEL_INFO 0u
#define BS_LEVEL_WARN 1u
#define BS_LEVEL_ERROR 2u
#define BS_LEVEL_FATAL 3u

typedef struct bs_str {
    const char *ptr;
    size_t len;
} bs_str;
#define BS_STR(lit) ((bs_str){(lit), sizeof(lit) - 1})

/* Slices: pointer + element count (abi_stable's RSlice / RSliceMut). */
#define BS_SLICE(name, type) typedef struct name { type *ptr; size_t len; } name
struct bs_insn;
struct bs_mem_operand;
struct bs_access;
struct bs_op;
struct bs_key_value;
struct bs_arg_spec;
BS_SLICE(bs_insn_slice, const struct bs_insn);
BS_SLICE(bs_mem_operand_slice, const struct bs_mem_operand);
BS_SLICE(bs_access_slice, const struct bs_access);
BS_SLICE(bs_op_slice, const struct bs_op);
BS_SLICE(bs_key_value_slice, const struct bs_key_value);
BS_SLICE(bs_arg_spec_slice, const struct bs_arg_spec);
BS_SLICE(bs_u64_slice_mut, uint64_t);
BS_SLICE(bs_u8_slice_mut, uint8_t);

typedef struct bs_call_site {
    uint64_t instance;
    uint64_t fdata;
    uint64_t udata;
} bs_call_site;

typedef void (*bs_callback)(const bs_call_site *site, uint32_t vcpu, uint64_t a0, uint64_t a1,
                            uint64_t a2, uint64_t a3);

typedef struct bs_point {
    uint32_t kind;
    uint32_t insn;
    uint32_t access;
} bs_point;

typedef struct bs_op {
    bs_point point;
    uint32_t kind;
    uint32_t sub;
    uint32_t width;
    uint32_t a, b, c;
    uint32_t nargs;
    uint32_t args[4];
    uint64_t imm;
    uint64_t imm2;
    bs_callback func;
} bs_op;

typedef struct bs_mem_operand {
    uint32_t base;
    uint32_t index;
    uint32_t scale;
    uint32_t size;
    int64_t disp;
    uint32_t access;
    uint32_t segment;
} bs_mem_operand;

typedef struct bs_access {
    uint32_t size;
    uint32_t kind;
} bs_access;

typedef struct bs_insn {
    uint64_t pc;
    uint8_t bytes[16];
    uint32_t len;
    uint32_t branch;
    uint64_t target;
    bs_str mnemonic;
    uint32_t mem_first;
    uint32_t mem_count;
    uint32_t access_first;
    uint32_t access_count;
} bs_insn;

typedef struct bs_tb {
    uint64_t pc;
    /* End of the first run of instructions: a block may go on at the target of a
       direct jmp (which stays one of its instructions); each insn's pc/len say where. */
    uint64_t end;
    bs_insn_slice insns;
    bs_mem_operand_slice mem_operands;
    bs_access_slice accesses;
} bs_tb;

typedef struct bs_symbol {
    bs_str module;
    uint64_t module_base;
    uint64_t module_bias;
    bs_str symbol;
    uint64_t symbol_addr;
    uint64_t symbol_size;
} bs_symbol;

typedef struct bs_module {
    bs_str path;
    uint64_t start;
    uint64_t end;
    uint64_t bias;
    uint64_t entry;
} bs_module;

typedef struct bs_key_value {
    bs_str key;
    bs_str value;
} bs_key_value;

typedef struct bs_arg_spec {
    bs_str name;
    bs_str help;
    bs_str def; /* default value shown by `blockscope plugins` */
} bs_arg_spec;

typedef struct bs_host {
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t plugin;
    int64_t (*scoreboard_new)(uint32_t plugin, uint32_t entry_bytes, uint32_t entries);
    uint64_t (*scoreboard_read)(uint32_t plugin, uint32_t sb, uint32_t vcpu, uint32_t entry);
    uint32_t (*scoreboard_read_all)(uint32_t plugin, uint32_t sb, uint32_t vcpu,
                                    bs_u64_slice_mut out);
    uint32_t (*vcpu_count)(uint32_t plugin);
    void (*message)(uint32_t plugin, uint32_t level, bs_str msg);
    void (*inject)(uint32_t plugin, bs_op_slice ops);
    uint32_t (*insn_disas)(uint32_t plugin, uint32_t insn, bs_u8_slice_mut out);
    bool (*symbolize)(uint32_t plugin, uint64_t pc, bs_symbol *out);
    bool (*module)(uint32_t plugin, uint32_t index, bs_module *out);
    /* Minor 1: expand REP string instructions for the whole run (one element per run,
     * each element's accesses are ordinary attach points; the instruction executes once
     * per iteration plus once for the final count test). Only during install. */
    bool (*expand_rep_strings)(uint32_t plugin);
    /* Minor 1: whether REP string instructions are expanded (some plugin asked). */
    bool (*rep_strings_expanded)(uint32_t plugin);
} bs_host;

typedef struct bs_plugin_vtable {
    uint32_t abi_major;
    uint32_t abi_minor;
    bs_str name;
    bs_str description;
    bs_arg_spec_slice args;
    bool (*install)(const bs_host *host, bs_key_value_slice args, uint64_t *instance);
    void (*vcpu_init)(uint64_t instance, uint32_t vcpu);
    void (*vcpu_exit)(uint64_t instance, uint32_t vcpu);
    void (*translate)(uint64_t instance, const bs_tb *tb);
    void (*syscall)(uint64_t instance, uint32_t vcpu, uint64_t nr, const uint64_t args[6]);
    void (*syscall_ret)(uint64_t instance, uint32_t vcpu, uint64_t nr, uint64_t ret);
    void (*exit)(uint64_t instance);
} bs_plugin_vtable;

/* The entry point every C plugin exports. */
const bs_plugin_vtable *blockscope_plugin_entry(void);

/* A fresh op at a point, with every other field empty. */
static inline bs_op bs_op_new(bs_point point, uint32_t kind) {
    bs_op o = {point, kind, 0, 8, BS_NONE, BS_NONE, BS_NONE, 0, {BS_NONE, BS_NONE, BS_NONE, BS_NONE},
               0, 0, 0};
    return o;
}

#ifdef __cplusplus
}
#endif

#endif /* BLOCKSCOPE_H */
