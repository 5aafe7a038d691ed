/* Ways to end: rt_die exit N | segv | kill SIG | unimpl | ud2 | pipe | closefds */
#include "nolibc.h"

static long num(const char *s) {
    long n = 0;
    while (*s >= '0' && *s <= '9') {
        long t = n, k;
        for (k = 0; k < 9; k++) n += t;
        n += *s - '0';
        s++;
    }
    return n;
}

int cmain(u64 *sp) {
    char **argv = (char **)(sp + 1);
    const char *m = argv[1];
    out("start\n");
    if (seq(m, "exit")) return (int)num(argv[2]);
    if (seq(m, "segv")) return *(volatile int *)0x8;
    if (seq(m, "kill")) sys2(NR_kill, sys0(NR_getpid), num(argv[2]));
    if (seq(m, "pipe")) {
        int fds[2];
        long r;
        sys1(NR_pipe, fds);
        sys1(NR_close, fds[0]);
        r = sys3(NR_write, fds[1], "x", 1);
        out(r == -32 ? "EPIPE\n" : "?\n");
        return 3;
    }
    if (seq(m, "closefds")) {
        /* Use fd 1000 (where blockscope keeps its own copy of stderr) while it is not
           open natively, close stderr and everything above it, try to take fd 1000;
           print what each call returned. */
        long e = sys1(32 /* dup */, 1000);
        long f = sys3(72 /* fcntl */, 1000, 1 /* F_GETFD */, 0);
        long a = sys1(NR_close, 2);
        long b = sys2(33 /* dup2 */, 1, 1000);
        long c = sys1(NR_close, 1000);
        long d = sys3(436 /* close_range */, 3, ~0u, 0);
        out(e == -9 ? "dup1000=EBADF " : "dup1000=? ");
        out(f == -9 ? "fcntl1000=EBADF " : "fcntl1000=? ");
        out(a == 0 ? "close2=0 " : "close2=? ");
        out(b == 1000 ? "dup2=1000 " : b == -9 ? "dup2=EBADF " : "dup2=? ");
        out(c == 0 ? "close1000=0 " : c == -9 ? "close1000=EBADF " : "close1000=? ");
        out(d == 0 ? "range=0\n" : "range=?\n");
        return 0;
    }
    if (seq(m, "ud2")) __asm__ volatile("ud2");
    if (seq(m, "unimpl")) __asm__ volatile(".byte 0x62, 0xf1, 0x74, 0x48, 0x58, 0xc2"); /* vaddps zmm0,zmm1,zmm2 */
    out("still alive\n");
    return 1;
}
