/* Signals: synchronous faults with siginfo/ucontext, kill to self, masks and pending,
   sigaltstack, timers with pause/sigsuspend, SA_RESTART, int3, ud2. */
#include "nolibc.h"

#define SIGILL 4
#define SIGTRAP 5
#define SIGUSR1 10
#define SIGSEGV 11
#define SIGUSR2 12
#define SIGALRM 14

static volatile int got;
static volatile u64 last_code, last_addr, handler_sp, saw_mask;

extern char load_insn[], load_recover[], store_insn[], store_recover[];
extern char trap_after[], ud_insn[], ud_after[];

static u64 load_at(u64 addr) {
    u64 r;
    __asm__ volatile("mov %1, %%rax\n"
                     ".globl load_insn\nload_insn: mov (%%rax), %%rax\n"
                     ".globl load_recover\nload_recover: mov %%rax, %0"
                     : "=r"(r) : "r"(addr) : "rax", "memory");
    return r;
}
static u64 store_at(u64 addr) {
    u64 r;
    __asm__ volatile("mov %1, %%rax\n"
                     ".globl store_insn\nstore_insn: movb $1, (%%rax)\n"
                     ".globl store_recover\nstore_recover: mov %%rax, %0"
                     : "=r"(r) : "r"(addr) : "rax", "memory");
    return r;
}

static void on_segv(int sig, u64 *info, char *uc) {
    u64 *g = (u64 *)(uc + 40);
    CHECK(sig == SIGSEGV);
    CHECK(g[16] == (u64)load_insn || g[16] == (u64)store_insn); /* REG_RIP */
    CHECK(g[20] == 14);                        /* REG_TRAPNO: #PF */
    CHECK(g[22] == last_addr);                 /* REG_CR2 */
    last_code = info[1] & 0xffffffff;
    CHECK(info[2] == last_addr);               /* si_addr */
    g[16] = g[16] == (u64)load_insn ? (u64)load_recover : (u64)store_recover;
    g[13] = 0xdead;                            /* REG_RAX */
    got++;
}

static void on_usr(int sig, u64 *info, char *uc) {
    u64 local, m = 0;
    (void)info; (void)uc;
    handler_sp = (u64)&local;
    got += sig;
    sys4(NR_rt_sigprocmask, 0, 0, &m, 8);
    saw_mask = m;
}

static void on_trap(int sig, u64 *info, char *uc) {
    u64 *g = (u64 *)(uc + 40);
    last_code = info[1] & 0xffffffff;
    if (sig == SIGTRAP) {
        CHECK(g[16] == (u64)trap_after);
    } else {
        CHECK(sig == SIGILL);
        CHECK(g[16] == (u64)ud_insn);
        CHECK(info[2] == (u64)ud_insn);
        g[16] = (u64)ud_after;
    }
    got++;
}

struct itimerval { u64 isec, iusec, sec, usec; };
static void timer_ms(u64 ms) {
    struct itimerval t;
    t.isec = 0; t.iusec = 0; t.sec = 0; t.usec = 0;
    while (ms >= 1000) { ms -= 1000; t.sec++; }
    while (ms > 0) { ms--; t.usec += 1000; }
    sys3(NR_setitimer, 0, &t, 0);
}

int cmain(u64 *sp) {
    u64 r, m;
    long n;
    (void)sp;
    /* 1. SIGSEGV, recovered by editing the ucontext (rip and rax). */
    CHECK(sigact(SIGSEGV, on_segv, SA_SIGINFO, 0) == 0);
    last_addr = 0x10;
    r = load_at(0x10);
    CHECK(r == 0xdead && got == 1 && last_code == 1);   /* SEGV_MAPERR */
    {
        char *p = (char *)sys6(NR_mmap, 0, 4096, 1, 0x22, -1, 0);
        last_addr = (u64)p;
        r = store_at((u64)p);
        CHECK(r == 0xdead && got == 2 && last_code == 2); /* SEGV_ACCERR */
    }
    out("segv ok\n");

    /* 2. kill to self is delivered before kill returns; the handler runs with the
       signal blocked; the mask is restored afterwards. */
    got = 0;
    CHECK(sigact(SIGUSR1, on_usr, SA_SIGINFO, 0) == 0);
    sys2(NR_kill, sys0(NR_getpid), SIGUSR1);
    CHECK(got == SIGUSR1);
    CHECK(saw_mask == sigbit(SIGUSR1));
    m = 1;
    sys4(NR_rt_sigprocmask, 0, 0, &m, 8);
    CHECK(m == 0);
    out("kill ok\n");

    /* 3. Blocked signals stay pending until unblocked. */
    got = 0;
    m = sigbit(SIGUSR1);
    sys4(NR_rt_sigprocmask, 0, &m, 0, 8);
    sys2(NR_tkill, sys0(NR_gettid), SIGUSR1);
    CHECK(got == 0);
    m = 0;
    sys2(NR_rt_sigpending, &m, 8);
    CHECK(m == sigbit(SIGUSR1));
    m = sigbit(SIGUSR1);
    sys4(NR_rt_sigprocmask, 1, &m, 0, 8);
    CHECK(got == SIGUSR1);
    out("mask ok\n");

    /* 4. sigaltstack + SA_ONSTACK. */
    {
        static char alt[16384];
        u64 ss[3];
        ss[0] = (u64)alt; ss[1] = 0; ss[2] = sizeof alt;
        CHECK(sys2(NR_sigaltstack, ss, 0) == 0);
        CHECK(sigact(SIGUSR2, on_usr, SA_SIGINFO | SA_ONSTACK, 0) == 0);
        got = 0;
        sys2(NR_kill, sys0(NR_getpid), SIGUSR2);
        CHECK(got == SIGUSR2);
        CHECK(handler_sp > (u64)alt && handler_sp < (u64)alt + sizeof alt);
        ss[1] = 2; /* SS_DISABLE */
        CHECK(sys2(NR_sigaltstack, ss, 0) == 0);
        CHECK(sys2(NR_sigaltstack, 0, ss) == 0 && ss[1] == 2);
    }
    out("altstack ok\n");

    /* 5. SIGALRM from a timer ends pause() with EINTR. */
    CHECK(sigact(SIGALRM, on_usr, SA_SIGINFO, 0) == 0);
    got = 0;
    timer_ms(20);
    n = sys0(NR_pause);
    CHECK(n == -4 && got == SIGALRM);
    out("pause ok\n");

    /* 6. sigsuspend with SIGALRM blocked outside it. */
    m = sigbit(SIGALRM);
    sys4(NR_rt_sigprocmask, 0, &m, 0, 8);
    got = 0;
    timer_ms(20);
    {
        u64 none = 0;
        n = sys2(NR_rt_sigsuspend, &none, 8);
    }
    CHECK(n == -4 && got == SIGALRM);
    CHECK(saw_mask == sigbit(SIGALRM));
    m = 0;
    sys4(NR_rt_sigprocmask, 0, 0, &m, 8);
    CHECK(m == sigbit(SIGALRM));
    m = sigbit(SIGALRM);
    sys4(NR_rt_sigprocmask, 1, &m, 0, 8);
    out("sigsuspend ok\n");

    /* 7. A blocking read: -EINTR without SA_RESTART, restarted with it. */
    {
        int fds[2];
        char c = 0;
        long pid;
        CHECK(sys1(NR_pipe, fds) == 0);
        pid = sys0(NR_fork);
        if (pid == 0) {
            struct { u64 s, ns; } ts;
            ts.s = 0; ts.ns = 300000000;
            sys2(NR_nanosleep, &ts, 0);
            sys3(NR_write, fds[1], "x", 1);
            sys1(NR_exit, 0);
        }
        CHECK(sigact(SIGALRM, on_usr, SA_SIGINFO, 0) == 0);
        got = 0;
        timer_ms(20);
        n = sys3(NR_read, fds[0], &c, 1);
        CHECK(n == -4 && got == SIGALRM);
        CHECK(sigact(SIGALRM, on_usr, SA_SIGINFO | SA_RESTART, 0) == 0);
        got = 0;
        timer_ms(20);
        n = sys3(NR_read, fds[0], &c, 1);
        CHECK(n == 1 && c == 'x' && got == SIGALRM);
        {
            int st = 0;
            CHECK(sys4(NR_wait4, pid, &st, 0, 0) == pid);
        }
    }
    out("restart ok\n");

    /* 8. int3 -> SIGTRAP after the instruction; ud2 -> SIGILL at it. */
    CHECK(sigact(SIGTRAP, on_trap, SA_SIGINFO, 0) == 0);
    CHECK(sigact(SIGILL, on_trap, SA_SIGINFO, 0) == 0);
    got = 0;
    __asm__ volatile("int3\n.globl trap_after\ntrap_after: nop" ::: "memory");
    CHECK(got == 1 && last_code == 0x80);
    __asm__ volatile(".globl ud_insn\nud_insn: ud2\n.globl ud_after\nud_after: nop" ::: "memory");
    CHECK(got == 2 && last_code == 2);
    out("trap ok\n");
    return 0;
}
