/* Self-modifying code: write machine code to an RWX page, call it, rewrite it, call again. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef int (*fn_t)(int);

int main(void) {
    unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 1;
    /* lea eax, [rdi + imm8]; ret */
    unsigned char add_code[] = {0x8d, 0x47, 0x05, 0xc3};
    memcpy(page, add_code, sizeof add_code);
    if (mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) return 1;
    fn_t f = (fn_t)page;
    int total = 0;
    for (int i = 0; i < 100; i++) total += f(i);
    printf("add 5: %d %d\n", f(10), total);
    page[2] = 0x20; /* now adds 32 */
    printf("add 32: %d\n", f(10));
    /* imul eax, edi, imm8; ret */
    unsigned char mul_code[] = {0x6b, 0xc7, 0x07, 0xc3};
    memcpy(page, mul_code, sizeof mul_code);
    total = 0;
    for (int i = 0; i < 100; i++) total += f(i);
    printf("mul 7: %d %d\n", f(6), total);
    /* rewrite inside a loop: the code patches its own immediate each call */
    for (int k = 0; k < 5; k++) { page[2] = (unsigned char)k; printf("k=%d -> %d\n", k, f(3)); }
    return 0;
}
