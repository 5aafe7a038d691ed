/* A SIGSEGV handler that recovers with siglongjmp, several times; SIGFPE likewise. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
static sigjmp_buf env;
static volatile sig_atomic_t hits;
static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    hits++;
    printf("caught %s code=%d addr=%p\n", sig == SIGSEGV ? "SIGSEGV" : "SIGFPE", si->si_code,
           sig == SIGSEGV ? si->si_addr : (void *)0);
    siglongjmp(env, sig);
}
int main(int argc, char **argv) {
    struct sigaction sa;
    volatile int zero = argc - 1;
    int i;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGFPE, &sa, 0);
    for (i = 0; i < 3; i++) {
        int r = sigsetjmp(env, 1);
        if (r == 0) {
            volatile int *p = (int *)(long)(16 * (i + 1));
            *p = 1;
            printf("not reached\n");
        } else {
            printf("recovered %d from signal %d\n", i, r);
        }
    }
    if (sigsetjmp(env, 1) == 0) {
        printf("%d\n", 10 / zero);
    } else {
        printf("recovered from division\n");
    }
    (void)argv;
    printf("hits=%d\n", (int)hits);
    return 0;
}
