/* Floating-point environment: rounding modes, exception flags, trapping exceptions (SIGFPE
 * with its si_code), long double (x87) math and conversions. */
#define _GNU_SOURCE
#include <fenv.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile double vd[] = {1.0, 3.0, 0.0, 1e308, 1e-308, -2.5, 0.1};
static volatile long double vl[] = {1.0L, 3.0L, 0.0L, 1e4000L, 1e-4000L, -2.5L, 0.1L};
static sigjmp_buf jb;
static volatile int got_code;

static void on_fpe(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    got_code = si->si_code;
    siglongjmp(jb, 1);
}

static void flags(const char *what) {
    int f = fetestexcept(FE_ALL_EXCEPT);
    printf("%s:%s%s%s%s%s\n", what, f & FE_INVALID ? " invalid" : "", f & FE_DIVBYZERO ? " divbyzero" : "",
           f & FE_OVERFLOW ? " overflow" : "", f & FE_UNDERFLOW ? " underflow" : "", f & FE_INEXACT ? " inexact" : "");
}

static void trap(const char *what, int exc, int x87) {
    feclearexcept(FE_ALL_EXCEPT);
    feenableexcept(exc);
    got_code = 0;
    if (sigsetjmp(jb, 1) == 0) {
        if (x87) {
            volatile long double r = exc == FE_DIVBYZERO ? vl[0] / vl[2] : exc == FE_OVERFLOW ? vl[3] * vl[3] : vl[2] / vl[2];
            (void)r;
            /* the #MF is raised by the next waiting x87 instruction */
            volatile long double s = vl[0] + vl[1];
            (void)s;
        } else {
            volatile double r = exc == FE_DIVBYZERO ? vd[0] / vd[2] : exc == FE_OVERFLOW ? vd[3] * vd[3] : vd[2] / vd[2];
            (void)r;
        }
        printf("%s: no trap\n", what);
    } else {
        printf("%s: SIGFPE code %d\n", what, got_code);
    }
    fedisableexcept(FE_ALL_EXCEPT);
}

int main(void) {
    const int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    const char *names[] = {"nearest", "upward", "downward", "towardzero"};
    for (int m = 0; m < 4; m++) {
        fesetround(modes[m]);
        double q = vd[0] / vd[1];
        long double ql = vl[0] / vl[1];
        float qf = (float)vd[6];
        printf("%-10s %.17g %a %.21Lg %La %a %ld %lld %.3f\n", names[m], q, q, ql, ql, qf, lrint(-2.5),
               llrintl(vl[5]), rint(vd[5]) + nearbyint(vd[6] * 25));
        printf("           %.17g %.17g %.21Lg\n", sqrt(vd[6]), vd[3] * 10, sqrtl(vl[6]));
    }
    fesetround(FE_TONEAREST);
    feclearexcept(FE_ALL_EXCEPT);
    volatile double z = vd[0] / vd[2];
    flags("div by zero");
    feclearexcept(FE_ALL_EXCEPT);
    z = vd[3] * vd[3];
    flags("overflow");
    feclearexcept(FE_ALL_EXCEPT);
    z = vd[4] * vd[4];
    flags("underflow");
    feclearexcept(FE_ALL_EXCEPT);
    z = sqrt(-vd[0]);
    flags("invalid");
    feclearexcept(FE_ALL_EXCEPT);
    volatile long double zl = vl[0] / vl[2];
    flags("x87 div by zero");
    feclearexcept(FE_ALL_EXCEPT);
    zl = vl[3] * vl[3];
    flags("x87 overflow");
    (void)z; (void)zl;
    printf("ld: %.21Lg %.21Lg %.21Lg %.21Lg\n", expl(vl[5]), logl(vl[1]), powl(vl[1], vl[6]), sinl(vl[1]));
    printf("ld: %.21Lg %.21Lg %.21Lg %.21Lg\n", fmodl(vl[3], vl[1]), atan2l(vl[0], vl[5]), cbrtl(vl[1]), tanl(vl[0]));
    printf("ld: %Lf %Le %.30Lg %Lg\n", vl[3], vl[4], vl[6], (long double)vd[6]);
    printf("conv: %lld %llu %d %.21Lg\n", (long long)vl[5], (unsigned long long)(vl[1] * 1e18L), (int)vl[6], (long double)(unsigned long long)-1);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fpe;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGFPE, &sa, NULL);
    trap("sse divbyzero", FE_DIVBYZERO, 0);
    trap("sse overflow", FE_OVERFLOW, 0);
    trap("sse invalid", FE_INVALID, 0);
    trap("x87 divbyzero", FE_DIVBYZERO, 1);
    trap("x87 overflow", FE_OVERFLOW, 1);
    trap("x87 invalid", FE_INVALID, 1);
    flags("after traps");
    return 0;
}
