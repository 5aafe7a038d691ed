/* Integer edge cases: division, shifts, overflow, 128-bit products, bit tricks. */
#include <stdio.h>
#include <stdint.h>
#include <limits.h>

static volatile int64_t vals[] = {0, 1, -1, 2, -2, 7, -7, 127, -128, 255, 32767, -32768,
    65535, INT32_MAX, INT32_MIN, UINT32_MAX, INT64_MAX, INT64_MIN, 0x123456789abcdefLL,
    -0x5555555555555555LL};
#define N (sizeof(vals) / sizeof(vals[0]))

/* Flag consumers fused with the producer in one block: NEG's and MUL's carry and
   overflow read by SBB, SETcc, CMOVcc and Jcc. */
static uint64_t flag_pairs(int64_t a, int64_t b) {
    uint64_t t, m, c = 0, o = 0, n = 0, j = 0;
    __asm__("mov %[a],%[t]\n\tneg %w[t]\n\tsbb %[m],%[m]" : [t] "=&r"(t), [m] "=&r"(m) : [a] "r"(a) : "cc");
    uint64_t h = m;
    __asm__("mov %[a],%[t]\n\tneg %[t]\n\tsetc %b[c]" : [t] "=&r"(t), [c] "+q"(c) : [a] "r"(a) : "cc");
    h = h * 31 + c + t;
    __asm__("mov %[a],%[t]\n\tneg %k[t]\n\tmov $5,%k[n]\n\tcmovae %k[b],%k[n]"
            : [t] "=&r"(t), [n] "=&r"(n) : [a] "r"(a), [b] "r"(b) : "cc");
    h = h * 31 + n;
    __asm__("mov %[a],%[t]\n\tneg %b[t]\n\tjc 1f\n\tmov $7,%[j]\n1:"
            : [t] "=&q"(t), [j] "+r"(j) : [a] "r"(a) : "cc");
    h = h * 31 + j;
    uint64_t lo, hi;
    c = o = 0;
    __asm__("mulq %[b]\n\tsetc %b[c]\n\tseto %b[o]"
            : "=a"(lo), "=d"(hi), [c] "+q"(c), [o] "+q"(o) : "a"(a), [b] "r"(b) : "cc");
    h = h * 31 + c * 2 + o + lo + hi;
    c = 0;
    __asm__("imul %[b],%[t]\n\tsetno %b[c]" : [t] "=r"(t), [c] "+q"(c) : "0"(a), [b] "r"(b) : "cc");
    h = h * 31 + c + t;
    m = 0;
    __asm__("imul %k[b],%k[t]\n\tsbb %[m],%[m]" : [t] "=r"(t), [m] "+r"(m) : "0"(a), [b] "r"(b) : "cc");
    return h * 31 + m + t;
}

int main(void) {
    uint64_t h = 1469598103934665603ULL;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ULL)
    for (unsigned i = 0; i < N; i++) {
        for (unsigned j = 0; j < N; j++) {
            int64_t a = vals[i], b = vals[j];
            MIX(flag_pairs(a, b));
            MIX(a + b); MIX(a - b); MIX(a * b); MIX(a & b); MIX(a | b); MIX(a ^ b);
            MIX((uint64_t)a >> (b & 63)); MIX(a >> (b & 63)); MIX((uint64_t)a << (b & 63));
            if (b != 0 && !(a == INT64_MIN && b == -1)) { MIX(a / b); MIX(a % b); }
            if (b != 0) { MIX((uint64_t)a / (uint64_t)b); MIX((uint64_t)a % (uint64_t)b); }
            int32_t a32 = (int32_t)a, b32 = (int32_t)b;
            if (b32 != 0 && !(a32 == INT32_MIN && b32 == -1)) { MIX(a32 / b32); MIX(a32 % b32); }
            MIX((uint32_t)a32 * (uint32_t)b32);
            MIX((int16_t)a * (int16_t)b); MIX((int8_t)a + (int8_t)b);
            unsigned __int128 p = (unsigned __int128)(uint64_t)a * (uint64_t)b;
            MIX((uint64_t)(p >> 64)); MIX((uint64_t)p);
            __int128 sp = (__int128)a * b;
            MIX((uint64_t)(sp >> 64));
            MIX(a < b); MIX((uint64_t)a < (uint64_t)b); MIX(a == b);
            int64_t r; MIX(__builtin_add_overflow(a, b, &r)); MIX(r);
            MIX(__builtin_mul_overflow(a, b, &r)); MIX(r);
        }
        uint64_t u = (uint64_t)vals[i];
        MIX(__builtin_popcountll(u));
        if (u) { MIX(__builtin_clzll(u)); MIX(__builtin_ctzll(u)); }
        MIX(__builtin_bswap64(u)); MIX(__builtin_bswap32((uint32_t)u));
        MIX((u << 13) | (u >> 51));
    }
    printf("intmath hash %016llx\n", (unsigned long long)h);
    printf("div: %lld %lld %lld\n", (long long)(vals[19] / 3), (long long)(vals[18] % 1000), (long long)(-7 / 2));
    printf("limits: %d %d %lld %llu\n", INT_MAX, INT_MIN, (long long)INT64_MIN, (unsigned long long)UINT64_MAX);
    return 0;
}
