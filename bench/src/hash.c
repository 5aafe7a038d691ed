/* CPU-bound: FNV-1a and a 64-bit multiply-xorshift hash over a 1 MiB buffer, many rounds. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 150;
    static uint8_t buf[1 << 20];
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < sizeof buf; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; buf[i] = (uint8_t)x; }
    uint64_t h1 = 1469598103934665603ULL, h2 = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < sizeof buf; i++) h1 = (h1 ^ buf[i]) * 1099511628211ULL;
        const uint64_t *w = (const uint64_t *)buf;
        for (size_t i = 0; i < sizeof buf / 8; i++) {
            uint64_t k = w[i] * 0x9E3779B97F4A7C15ULL;
            h2 ^= k ^ (k >> 29);
            h2 = ((h2 << 7) | (h2 >> 57)) + (uint64_t)r;
        }
    }
    printf("%016llx %016llx\n", (unsigned long long)h1, (unsigned long long)h2);
    return 0;
}
