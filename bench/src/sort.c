/* CPU-bound: quicksort and merge sort of 2M pseudo-random 32-bit keys. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static void quick(uint32_t *a, long lo, long hi) {
    while (lo < hi) {
        uint32_t p = a[(lo + hi) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { uint32_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { quick(a, lo, j); lo = i; } else { quick(a, i, hi); hi = j; }
    }
}
static void merge(uint32_t *a, uint32_t *t, long n) {
    for (long w = 1; w < n; w *= 2) {
        for (long lo = 0; lo < n; lo += 2 * w) {
            long mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            long i = lo, j = mid, k = lo;
            while (i < mid && j < hi) t[k++] = a[i] <= a[j] ? a[i++] : a[j++];
            while (i < mid) t[k++] = a[i++];
            while (j < hi) t[k++] = a[j++];
        }
        memcpy(a, t, n * sizeof *a);
    }
}
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    uint32_t *a = malloc(n * 4), *b = malloc(n * 4), *t = malloc(n * 4);
    uint32_t x = 2463534242u;
    for (long i = 0; i < n; i++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; a[i] = b[i] = x; }
    quick(a, 0, n - 1);
    merge(b, t, n);
    uint64_t h = 0;
    for (long i = 0; i < n; i++) { if (a[i] != b[i]) { puts("mismatch"); return 1; } h = h * 31 + a[i]; }
    printf("%llu %u %u\n", (unsigned long long)h, a[0], a[n - 1]);
    return 0;
}
