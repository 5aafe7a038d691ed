/* Floating point: arithmetic, conversions, libm, printf/strtod of double and long double. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <float.h>
#include <string.h>

static volatile double dv[] = {0.0, -0.0, 1.0, -1.5, 0.1, 1e-310, 3.141592653589793, 1e300,
    -2.5e-5, 123456789.123, DBL_MAX, DBL_MIN, 0.5, 2.0 / 3.0};
#define N (sizeof(dv) / sizeof(dv[0]))

int main(void) {
    for (unsigned i = 0; i < N; i++) {
        double a = dv[i], b = dv[(i * 7 + 3) % N];
        printf("%u: %.17g %.17g %.17g %a\n", i, a + b, a * b, b != 0 ? a / b : 0.0, a - b);
        printf("   %.6e %g %.3f %d %lld %u\n", sqrt(fabs(a)), floor(a), ceil(a * 10) / 10,
               (int)(a > 2e9 || a < -2e9 ? 0 : a), (long long)(fabs(a) > 9e18 ? 0 : a),
               (unsigned)(a < 0 || a > 4e9 ? 0 : a));
        float f = (float)a;
        printf("   float %.9g %a %.9g\n", f, f * 3.0f, (float)sqrt(fabs(f)));
    }
    printf("libm: %.15g %.15g %.15g %.15g %.15g\n", sin(1.0), cos(2.0), exp(1.5), log(10.0), pow(2.0, 0.5));
    printf("libm: %.15g %.15g %.15g %.15g\n", atan2(1.0, -1.0), fmod(10.5, 3.0), tanh(0.5), cbrt(27.0));
    printf("special: %f %f %f %d %d\n", INFINITY, -INFINITY, NAN, isnan(NAN), isinf(-INFINITY));
    long double l = 1.0L / 3.0L;
    printf("long double: %.21Lg %La\n", l, l);
    long double e = strtold("2.718281828459045235360287471352662498", NULL);
    printf("strtold: %.21Lg\n", e);
    printf("ld ops: %.21Lg %.21Lg %.21Lg\n", e * l, e - l, sqrtl(e));
    printf("strtod: %.17g %.17g %.17g\n", strtod("1e-320", NULL), strtod("0x1.8p3", NULL), strtod("-12.5e2", NULL));
    char buf[64];
    snprintf(buf, sizeof buf, "%.3Lf", (long double)12345.6789L);
    printf("snprintf: %s %zu\n", buf, strlen(buf));
    double acc = 0;
    for (int k = 1; k < 20000; k++) acc += 1.0 / ((double)k * k);
    printf("basel: %.15f\n", acc);
    return 0;
}
