/* The demo guest: a prime sieve, a word count and a floating-point sum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    char *sieve = calloc(n + 1, 1);
    int primes = 0;
    for (int i = 2; i <= n; i++) {
        if (sieve[i]) continue;
        primes++;
        for (long j = (long)i * i; j <= n; j += i) sieve[j] = 1;
    }
    const char *text = "the emulator lifts each block then runs it and plugins watch every block";
    int words = 0;
    for (const char *p = text; *p; p++) words += (*p != ' ' && (p == text || p[-1] == ' '));
    double s = 0;
    for (int k = 1; k <= 1000; k++) s += 1.0 / sqrt((double)k);
    printf("primes up to %d: %d\nwords: %d\nsum 1/sqrt(k): %.6f\n", n, primes, words, s);
    free(sieve);
    return 0;
}
