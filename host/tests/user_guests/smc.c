/* Self-modifying code: write code into an RWX page, call it, rewrite it, call again;
   then the W^X way with mprotect. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
typedef int (*fn)(int);
static void emit(unsigned char *p, int k) {
    /* lea eax, [rdi + k]; ret */
    p[0] = 0x8d; p[1] = 0x87;
    memcpy(p + 2, &k, 4);
    p[6] = 0xc3;
}
int main(void) {
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fn f = (fn)p;
    int r = 0;
    for (int k = 1; k <= 5; k++) {
        emit(p, k * 100);
        r += f(k);
    }
    printf("rwx: %d\n", r);
    mprotect(p, 4096, PROT_READ | PROT_WRITE);
    emit(p, 7);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    printf("w^x: %d\n", f(1));
    mprotect(p, 4096, PROT_READ | PROT_WRITE);
    emit(p + 64, 9);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    printf("second function: %d, first still: %d\n", ((fn)(p + 64))(1), f(1));
    return 0;
}
