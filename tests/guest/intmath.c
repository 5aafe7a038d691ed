/* Integer edge cases: division, shifts, overflow, 128-bit products, bit tricks. */
#include <stdio.h>
#include <stdint.h>
#include <limits.h>

static volatile int64_t vals[] = {0, 1, -1, 2, -2, 7, -7, 127, -128, 255, 32767, -32768,
    65535, INT32_MAX, INT32_MIN, UINT32_MAX, INT64_MAX, INT64_MIN, 0x123456789abcdefLL,
    -0x5555555555555555LL};
#define N (sizeof(vals) / sizeof(vals[0]))

int main(void) {
    uint64_t h = 1469598103934665603ULL;
#define MIX(x) (h = (h ^ (uint64_t)(x)) * 1099511628211ULL)
    for (unsigned i = 0; i < N; i++) {
        for (unsigned j = 0; j < N; j++) {
            int64_t a = vals[i], b = vals[j];
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
