/* Compiled code accesses guest memory inline after checking a page map; these are the
 * cases that map must get right. A hot loop (compiled in the jit tiers) reads and writes
 * near the end of a page; then the next page, or the page itself, loses its permission
 * (munmap, mprotect) and the same loop must fault exactly where the CPU faults: a load
 * crossing into an inaccessible page, a store to a read-only page, a load from an
 * unmapped page. The fault address and the data seen before it are printed. */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf env;
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    siglongjmp(env, (int)((uintptr_t)si->si_addr & 0xfff) + 1);
}

/* Sum 8-byte loads at p + off for n rounds; store the sum at q (if q). */
static __attribute__((noinline)) uint64_t work(volatile char *p, long off, volatile uint64_t *q,
                                               int n) {
    uint64_t s = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)p + off, 8);
        s = s * 31 + v + (uint64_t)i;
        if (q)
            *q = s;
    }
    return s;
}

/* A hot loop over an array on the stack (compiled code caches the page such a site last
 * found allowed): 8-byte loads and 1-byte stores wander over its pages and across page
 * boundaries; on the last round the load goes to `far` bytes from the array (a page
 * that is not mapped), which must fault as natively. */
static __attribute__((noinline)) uint64_t stack_walk(volatile char *target, int n) {
    volatile char buf[3 * 4096 + 64];
    for (long i = 0; i < (long)sizeof buf; i++)
        buf[i] = (char)(i * 13 + 5);
    long far = target ? (long)((uintptr_t)target - (uintptr_t)buf) : 0;
    uint64_t s = 0;
    for (int i = 0; i < n; i++) {
        long at = (long)((i * 8L + 3) % (long)(sizeof buf - 8));
        if (target && i == n - 1)
            at = far;
        uint64_t v;
        memcpy(&v, (const char *)buf + at, 8);
        s = s * 31 + v;
        buf[(i * 5L) % (long)sizeof buf] = (char)s;
    }
    return s;
}

static void attempt(const char *what, volatile char *p, long off, volatile uint64_t *q) {
    int r = sigsetjmp(env, 1);
    if (r == 0) {
        uint64_t s = work(p, off, q, 1);
        printf("%s: ok %llx\n", what, (unsigned long long)s);
    } else {
        printf("%s: SIGSEGV at page offset %#x\n", what, r - 1);
    }
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    long ps = sysconf(_SC_PAGESIZE);
    char *m = mmap(0, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    for (long i = 0; i < 4 * ps; i++)
        m[i] = (char)(i * 7 + 1);
    volatile uint64_t *slot = (volatile uint64_t *)(m + 2 * ps + 64);
    /* Hot: crossing from page 0 into page 1, both readable; stores to page 2. */
    printf("warm %llx\n", (unsigned long long)work(m, ps - 4, slot, 200000));
    /* Page 1 becomes inaccessible: the crossing load must fault at page 1's start. */
    mprotect(m + ps, ps, PROT_NONE);
    attempt("crossing into PROT_NONE", m, ps - 4, 0);
    attempt("inside page 0", m, ps - 8, 0);
    /* Page 2 read-only: the store faults, the loads before it happened. */
    mprotect(m + 2 * ps, ps, PROT_READ);
    attempt("store to read-only", m, 8, slot);
    mprotect(m + 2 * ps, ps, PROT_READ | PROT_WRITE);
    attempt("store after re-enabling", m, 8, slot);
    printf("hot again %llx\n", (unsigned long long)work(m, 16, slot, 100000));
    /* Page 3 unmapped: a load from it faults; a crossing load from page 2 too. */
    munmap(m + 3 * ps, ps);
    attempt("load from unmapped", m + 3 * ps, 100, 0);
    attempt("crossing into unmapped", m + 2 * ps, ps - 2, 0);
    /* Page 1 back, readable: crossing is fine again. */
    mprotect(m + ps, ps, PROT_READ);
    attempt("crossing into readable", m, ps - 4, 0);
    /* Stack arrays: hot, then a last load from the unmapped page 3. */
    printf("stack %llx\n", (unsigned long long)stack_walk(0, 300000));
    if (sigsetjmp(env, 1) == 0)
        printf("stack far: ok %llx\n", (unsigned long long)stack_walk(m + 3 * ps + 40, 300000));
    else
        printf("stack far: SIGSEGV\n");
    printf("done %llx\n", (unsigned long long)*slot);
    return 0;
}
