/* Memory-bound: chase a random cyclic permutation of 4M 64-bit slots. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long n = 1 << 20, steps = argc > 1 ? atol(argv[1]) : 4000000;
    uint64_t *next = malloc(n * sizeof *next);
    uint32_t *perm = malloc(n * sizeof *perm);
    for (long i = 0; i < n; i++) perm[i] = (uint32_t)i;
    uint64_t x = 0x243F6A8885A308D3ULL;
    for (long i = n - 1; i > 0; i--) {
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        long j = (long)((x * 2685821657736338717ULL) % (uint64_t)(i + 1));
        uint32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    for (long i = 0; i < n; i++) next[perm[i]] = perm[(i + 1) % n];
    uint64_t p = 0, sum = 0;
    for (long s = 0; s < steps; s++) { p = next[p]; sum += p; }
    printf("%llu %llu\n", (unsigned long long)p, (unsigned long long)sum);
    return 0;
}
