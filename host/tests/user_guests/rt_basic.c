/* Process start-up and simple syscalls: argv, envp, auxv, alignment, exit status,
   brk, readlink /proc/self/exe, arch_prctl. */
#include "nolibc.h"

extern char _start[];
int cmain(u64 *sp) {
    u64 argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    u64 *auxv;
    u64 i, pagesz = 0, random = 0, execfn = 0, entry = 0, phdr = 0, hwcap = 0, platform = 0;
    char **e = envp;
    CHECK(((u64)sp & 15) == 0);
    out("argc="); outn((i64)argc); out("\n");
    for (i = 0; i < argc; i++) { out("argv: "); out(argv[i]); out("\n"); }
    while (*e) {
        if (seq(*e, "BS_TEST_VAR=hello world")) out("env ok\n");
        e++;
    }
    auxv = (u64 *)(e + 1);
    for (i = 0; auxv[i] != 0; i += 2) {
        u64 k = auxv[i], v = auxv[i + 1];
        if (k == 6) pagesz = v;
        if (k == 25) random = v;
        if (k == 31) execfn = v;
        if (k == 9) entry = v;
        if (k == 3) phdr = v;
        if (k == 16) hwcap = v;
        if (k == 15) platform = v;
    }
    CHECK(pagesz == 4096);
    CHECK(random != 0);
    CHECK(entry == (u64)_start);
    CHECK(phdr != 0 && (*(u32 *)phdr == 6 || *(u32 *)phdr == 1)); /* PT_PHDR or PT_LOAD first */
    CHECK((hwcap & 0x06000000) == 0x06000000); /* SSE, SSE2 */
    CHECK(seq((char *)platform, "x86_64"));
    out("execfn: "); out((char *)execfn); out("\n");
    {
        char buf[256];
        long n = sys3(NR_readlink, "/proc/self/exe", buf, 255);
        CHECK(n > 0);
        buf[n] = 0;
        out("exe: "); out(buf); out("\n");
    }
    {
        u64 b0 = (u64)sys1(NR_brk, 0);
        u64 b1 = (u64)sys1(NR_brk, b0 + 100000);
        char *p = (char *)b0;
        CHECK(b1 == b0 + 100000);
        p[0] = 1; p[99999] = 2;
        CHECK(p[0] + p[99999] == 3);
        CHECK((u64)sys1(NR_brk, b0) == b0);
        out("brk ok\n");
    }
    {
        u64 fs = 0, x = 0x1234;
        CHECK(sys2(NR_arch_prctl, 0x1002, &x) == 0);
        CHECK(sys2(NR_arch_prctl, 0x1003, &fs) == 0);
        CHECK(fs == (u64)&x);
        {
            u64 v;
            __asm__ volatile("mov %%fs:0, %0" : "=r"(v));
            CHECK(v == 0x1234);
        }
        out("fs ok\n");
    }
    return argc == 3 ? 42 : 0;
}
