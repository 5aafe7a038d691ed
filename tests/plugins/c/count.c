/*
 * A C plugin for the tests: counts executed instructions with an inline scoreboard
 * counter and executed blocks with a callback, and writes "insns=N\ntbs=M\n" to the file
 * named by the `out` argument at exit. Build with:
 *     gcc -shared -fPIC -I plugin-api/include -o libccount.so count.c
 * -DBS_TEST_MAJOR=N makes it claim another ABI major (the loading-error test);
 * -DBS_TEST_MINOR=N another minor (an older one loads, a newer one is refused);
 * -DBS_TEST_NO_ENTRY leaves out the entry point (a library that is not a plugin).
 */
#include <blockscope.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BS_TEST_MAJOR
#define BS_TEST_MAJOR BS_ABI_MAJOR
#endif
#ifndef BS_TEST_MINOR
#define BS_TEST_MINOR BS_ABI_MINOR
#endif

struct state {
    const bs_host *host;
    uint32_t sb;
    char out[512];
    uint64_t tbs; /* one guest thread in the tests: no atomics needed */
};

static void on_tb(const bs_call_site *site, uint32_t vcpu, uint64_t a0, uint64_t a1, uint64_t a2,
                  uint64_t a3) {
    struct state *s = (struct state *)(uintptr_t)site->instance;
    (void)vcpu, (void)a0, (void)a1, (void)a2, (void)a3;
    s->tbs += site->udata;
}

static bool install(const bs_host *host, bs_key_value_slice args, uint64_t *instance) {
    struct state *s = calloc(1, sizeof *s);
    s->host = host;
    for (size_t i = 0; i < args.len; i++) {
        if (args.ptr[i].key.len == 3 && memcmp(args.ptr[i].key.ptr, "out", 3) == 0) {
            size_t n = args.ptr[i].value.len < sizeof s->out - 1 ? args.ptr[i].value.len : sizeof s->out - 1;
            memcpy(s->out, args.ptr[i].value.ptr, n);
        }
    }
    if (!s->out[0]) {
        host->message(host->plugin, BS_LEVEL_ERROR, BS_STR("the out argument is required"));
        return false;
    }
    int64_t sb = host->scoreboard_new(host->plugin, 8, 1);
    if (sb < 0)
        return false;
    s->sb = (uint32_t)sb;
    *instance = (uint64_t)(uintptr_t)s;
    return true;
}

static void translate(uint64_t instance, const bs_tb *tb) {
    struct state *s = (struct state *)(uintptr_t)instance;
    bs_op ops[2];
    bs_point entry = {BS_POINT_BLOCK_ENTRY, 0, 0};
    ops[0] = bs_op_new(entry, BS_OP_SB_ADD);
    ops[0].sub = s->sb;
    ops[0].imm = 0;
    ops[0].imm2 = tb->insns.len; /* all instructions of the block, at entry */
    ops[1] = bs_op_new(entry, BS_OP_CALL);
    ops[1].func = on_tb;
    ops[1].imm2 = 1; /* udata: blocks per call */
    bs_op_slice sl = {ops, 2};
    s->host->inject(s->host->plugin, sl);
}

static void on_exit_(uint64_t instance) {
    struct state *s = (struct state *)(uintptr_t)instance;
    uint64_t insns = 0;
    for (uint32_t v = 0; v < s->host->vcpu_count(s->host->plugin); v++)
        insns += s->host->scoreboard_read(s->host->plugin, s->sb, v, 0);
    FILE *f = fopen(s->out, "w");
    if (!f)
        return;
    fprintf(f, "insns=%llu\ntbs=%llu\n", (unsigned long long)insns, (unsigned long long)s->tbs);
    fclose(f);
}

static const bs_arg_spec args[] = {
    {BS_STR("out"), BS_STR("file to write the counts to"), BS_STR("")},
};

static const bs_plugin_vtable vtable = {
    BS_TEST_MAJOR, BS_TEST_MINOR, BS_STR("ccount"), BS_STR("C test plugin: counts instructions"),
    {args, 1}, install, NULL, NULL, translate, NULL, NULL, on_exit_,
};

#ifndef BS_TEST_NO_ENTRY
const bs_plugin_vtable *blockscope_plugin_entry(void) { return &vtable; }
#else
const bs_plugin_vtable *not_the_entry(void) { return &vtable; }
#endif
