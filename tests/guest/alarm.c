/* SIGALRM interrupts a busy loop and a pause(). */
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <string.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    volatile unsigned long spin = 0;
    while (ticks == 0) spin++;
    printf("first alarm seen after spinning: %s\n", spin > 0 ? "yes" : "no");
    ualarm(100000, 0);
    pause();
    printf("ticks: %d\n", (int)ticks);
    return 0;
}
