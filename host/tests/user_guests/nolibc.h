/* Minimal freestanding runtime for blockscope user-mode tests: raw syscalls, no libc.
   Built with -O0 -mgeneral-regs-only so the guest uses only basic integer instructions. */
typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef unsigned char u8;

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}
#define sys0(n) sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

enum {
    NR_read = 0, NR_write = 1, NR_open = 2, NR_close = 3, NR_mmap = 9, NR_mprotect = 10,
    NR_munmap = 11, NR_brk = 12, NR_rt_sigaction = 13, NR_rt_sigprocmask = 14,
    NR_rt_sigreturn = 15, NR_pipe = 22, NR_sched_yield = 24, NR_pause = 34, NR_nanosleep = 35,
    NR_alarm = 37, NR_setitimer = 38, NR_getpid = 39, NR_clone = 56, NR_fork = 57,
    NR_vfork = 58, NR_execve = 59, NR_exit = 60, NR_wait4 = 61, NR_kill = 62,
    NR_readlink = 89, NR_sigaltstack = 131, NR_arch_prctl = 158, NR_gettid = 186,
    NR_tkill = 200, NR_futex = 202, NR_set_tid_address = 218, NR_exit_group = 231,
    NR_tgkill = 234, NR_rt_sigsuspend = 130, NR_rt_sigpending = 127,
};

/* v+v without letting gcc turn it into a shift. */
static u64 dbl(u64 v) { volatile u64 t = v; return v + t; }
static u64 slen(const char *s) { u64 n = 0; while (s[n]) n++; return n; }
static void out(const char *s) { sys3(NR_write, 1, s, slen(s)); }
static int seq(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}
/* Decimal and hex without DIV or shifts (the runtime tests must not depend on them). */
static void outn(i64 v) {
    char buf[24];
    int i = 0, k;
    u64 u, p10[20];
    if (v < 0) { buf[i++] = '-'; u = (u64)0 - (u64)v; } else u = (u64)v;
    p10[0] = 1;
    for (k = 1; k < 20; k++) {
        int j;
        p10[k] = 0;
        for (j = 0; j < 10; j++) p10[k] += p10[k - 1];
    }
    k = 19;
    while (k > 0 && p10[k] > u) k--;
    for (; k >= 0; k--) {
        char d = '0';
        while (u >= p10[k]) { u -= p10[k]; d++; }
        buf[i++] = d;
    }
    buf[i] = 0;
    out(buf);
}
static void outx(u64 v) {
    char buf[19], b[64];
    int j, n;
    u64 bit = 1;
    for (j = 0; j < 64; j++) { b[j] = (v & bit) != 0; bit = dbl(bit); }
    buf[0] = '0'; buf[1] = 'x'; buf[18] = 0;
    for (n = 0; n < 16; n++) {
        int base = 0, d = 0, w = 1, q;
        for (q = 0; q < n; q++) base += 4;
        for (q = 0; q < 4; q++) { if (b[base + q]) d += w; w = (int)dbl((u64)w); }
        buf[17 - n] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    }
    out(buf);
}
static void fail(const char *what) { out("FAIL: "); out(what); out("\n"); sys1(NR_exit_group, 99); }
#define CHECK(c) do { if (!(c)) fail(#c); } while (0)

/* Signals. */
struct ksigaction { u64 handler, flags, restorer, mask; };
#define SA_SIGINFO 4
#define SA_ONSTACK 0x08000000
#define SA_RESTART 0x10000000
#define SA_NODEFER 0x40000000
#define SA_RESTORER 0x04000000
extern void restorer(void);
__asm__(".text\n.globl restorer\nrestorer:\n mov $15, %eax\n syscall\n hlt\n");
static long sigact(int sig, void *h, u64 flags, u64 mask) {
    struct ksigaction a;
    a.handler = (u64)h; a.flags = flags | SA_RESTORER; a.restorer = (u64)restorer; a.mask = mask;
    return sys4(NR_rt_sigaction, sig, &a, 0, 8);
}
static u64 sigbit(int s) { u64 b = 1; while (--s > 0) b = dbl(b); return b; }

/* _start: rdi = initial stack pointer. */
int cmain(u64 *sp);
__asm__(".text\n.globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n mov %eax, %edi\n mov $231, %eax\n syscall\n hlt\n");
