/* setjmp/longjmp, and a SIGSEGV handler that recovers with siglongjmp. */
#include <stdio.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

static jmp_buf jb;
static sigjmp_buf sjb;
static volatile int depth;

static void dive(int n) {
    depth = n;
    if (n == 5) longjmp(jb, n * 10);
    dive(n + 1);
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    printf("caught signal %d at %s address\n", sig, si->si_addr == (void *)16 ? "the expected" : "another");
    siglongjmp(sjb, 1);
}

int main(void) {
    int r = setjmp(jb);
    if (r == 0) dive(0);
    printf("longjmp returned %d at depth %d\n", r, depth);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    for (int k = 0; k < 3; k++) {
        if (sigsetjmp(sjb, 1) == 0) {
            volatile int *p = (int *)16;
            *p = 1;
            printf("not reached\n");
        } else {
            printf("recovered %d\n", k);
        }
    }
    return 0;
}
