/* fork() while other threads run (they keep translating and running code). */
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void *spin(void *a) {
    volatile unsigned long x = (unsigned long)a;
    while (!stop) x = x * 6364136223846793005UL + 1442695040888963407UL;
    return 0;
}
int main(void) {
    pthread_t t[2];
    int ok = 0;
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, spin, (void *)i);
    for (int i = 0; i < 20; i++) {
        pid_t p = fork();
        if (p == 0) {
            /* the child has one thread and fresh code to run */
            unsigned long s = 0;
            for (int k = 0; k < 1000; k++) s += (unsigned long)k * k;
            _exit(s == 332833500UL ? 0 : 1);
        }
        int st;
        waitpid(p, &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("children ok: %d\n", ok);
    return 0;
}
