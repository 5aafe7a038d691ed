/* Processes and threads: fork/wait4, raw clone threads (SETTLS, PARENT_SETTID,
   CHILD_CLEARTID + futex wake), a main thread that exits before the others, execve of
   /proc/self/exe, file mmap, self-modifying code. Usage: rt_proc TMPFILE [mode]. */
#include "nolibc.h"

#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_SETTLS 0x80000
#define CLONE_PARENT_SETTID 0x100000
#define CLONE_CHILD_CLEARTID 0x200000
#define THREAD_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | \
                      CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)

/* long spawn(flags, stack_top, ptid, ctid, tls, fn, arg) */
long spawn(u64 flags, void *stack, int *ptid, int *ctid, u64 tls, void (*fn)(void *), void *arg);
__asm__(".text\n.globl spawn\nspawn:\n"
        " mov %rcx, %r10\n"
        " mov 8(%rsp), %r11\n"
        " sub $16, %rsi\n"
        " mov %r9, (%rsi)\n"
        " mov %r11, 8(%rsi)\n"
        " mov $56, %eax\n"
        " syscall\n"
        " test %rax, %rax\n"
        " jnz 1f\n"
        " pop %rax\n"
        " pop %rdi\n"
        " call *%rax\n"
        " xor %edi, %edi\n"
        " mov $60, %eax\n"
        " syscall\n"
        " hlt\n"
        "1: ret\n");

static void nap(u64 ms) {
    struct { u64 s, ns; } ts;
    ts.s = 0; ts.ns = 0;
    while (ms > 0) { ms--; ts.ns += 1000000; }
    sys2(NR_nanosleep, &ts, 0);
}

static void wait_tid(int *ctid) {
    int v;
    while ((v = *(volatile int *)ctid) != 0) sys6(NR_futex, (long)ctid, 0, v, 0, 0, 0);
}

struct slot { u64 self; u64 index; u64 result; u64 tid; };
static struct slot slots[4];

static void worker(void *arg) {
    struct slot *s = (struct slot *)arg;
    u64 idx, i, sum = 0;
    __asm__ volatile("mov %%fs:8, %0" : "=r"(idx));  /* via CLONE_SETTLS */
    for (i = 0; i <= 1000; i++) sum += i + idx;
    s->result = sum;
    s->tid = (u64)sys0(NR_gettid);
}

static void late(void *arg) {
    (void)arg;
    nap(100);
    out("late thread ok\n");
    sys1(NR_exit_group, 23);
}

static char stacks[4][65536];

int cmain(u64 *sp) {
    u64 argc = sp[0];
    char **argv = (char **)(sp + 1);
    int i;
    if (argc >= 3 && seq(argv[2], "exec-child")) {
        out("exec child: "); out(argv[0]); out("\n");
        return 5;
    }
    if (argc >= 3 && seq(argv[2], "mainexit")) {
        int ptid = 0, ctid = 0;
        CHECK(spawn(THREAD_FLAGS, &stacks[1][0], &ptid, &ctid, (u64)&slots[0], late, 0) > 0);
        out("main exits\n");
        sys1(NR_exit, 0);
    }
    CHECK(argc >= 2);

    /* fork + wait4 */
    {
        long pid = sys0(NR_fork);
        int st = 0;
        if (pid == 0) sys1(NR_exit_group, 7);
        CHECK(pid > 0);
        CHECK(sys4(NR_wait4, pid, &st, 0, 0) == pid);
        CHECK(st == 7 * 256);
    }
    out("fork ok\n");

    /* threads (pointer walks only: indexing would need shifts, which this runtime test
       must not depend on) */
    {
        int ptid[4], ctid[4];
        int *pt = ptid, *ct = ctid;
        struct slot *s = slots;
        char *stack = &stacks[0][0];
        u64 main_tid = (u64)sys0(NR_gettid);
        for (i = 0; i < 4; i++, s++, pt++, ct++) {
            u64 k;
            s->self = (u64)s;
            s->index = (u64)i;
            *pt = 0;
            *ct = -1;
            for (k = 0; k < 65536; k += 4096) stack += 4096;
            CHECK(spawn(THREAD_FLAGS, stack, pt, ct, (u64)s, worker, s) > 0);
        }
        s = slots; pt = ptid; ct = ctid;
        for (i = 0; i < 4; i++, s++, pt++, ct++) {
            wait_tid(ct);
            CHECK(*pt > 0 && s->tid == (u64)*pt && s->tid != main_tid);
        }
        CHECK(slots[0].result == 500500);
        CHECK(slots[3].result == 500500 + 3003);
    }
    out("threads ok\n");

    /* file mmap */
    {
        static char buf[8192];
        int fd = (int)sys3(NR_open, argv[1], 0102 | 01000, 0600); /* O_RDWR|O_CREAT|O_TRUNC */
        char *m;
        CHECK(fd >= 0);
        for (i = 0; i < 8192; i++) buf[i] = (char)('a' + (i & 15));
        CHECK(sys3(NR_write, fd, buf, 8192) == 8192);
        m = (char *)sys6(NR_mmap, 0, 8192, 3, 1, fd, 0); /* PROT_RW, MAP_SHARED */
        CHECK((u64)m < (u64)-4096);
        CHECK(m[4097] == 'b');
        m[4097] = 'Z';
        CHECK(sys2(NR_munmap, m, 8192) == 0);
        CHECK(sys6(17, fd, (long)buf, 2, 4096, 0, 0) == 2); /* pread64 */
        CHECK(buf[0] == 'a' && buf[1] == 'Z');
        sys1(NR_close, fd);
    }
    out("mmap ok\n");

    /* self-modifying code */
    {
        u8 *code = (u8 *)sys6(NR_mmap, 0, 4096, 7, 0x22, -1, 0);
        int (*f)(void) = (int (*)(void))code;
        code[0] = 0xb8; code[1] = 11; code[2] = 0; code[3] = 0; code[4] = 0; code[5] = 0xc3;
        CHECK(f() == 11);
        code[1] = 22;
        CHECK(f() == 22);
        CHECK(sys3(NR_mprotect, code, 4096, 3) == 0);
        code[1] = 33;
        CHECK(sys3(NR_mprotect, code, 4096, 5) == 0);
        CHECK(f() == 33);
    }
    out("smc ok\n");

    /* execve of /proc/self/exe */
    {
        long pid = sys0(NR_fork);
        int st = 0;
        if (pid == 0) {
            char *av[4];
            char *ev[2];
            av[0] = "renamed"; av[1] = argv[1]; av[2] = "exec-child"; av[3] = 0;
            ev[0] = "X=1"; ev[1] = 0;
            sys3(NR_execve, "/proc/self/exe", av, ev);
            sys1(NR_exit, 100);
        }
        CHECK(sys4(NR_wait4, pid, &st, 0, 0) == pid);
        CHECK(st == 5 * 256);
    }
    out("exec ok\n");
    return 0;
}
