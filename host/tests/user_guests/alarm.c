/* SIGALRM interrupts a busy loop and a blocking read. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <errno.h>
static volatile sig_atomic_t ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }
int main(void) {
    struct sigaction sa;
    struct itimerval it;
    volatile unsigned long spins = 0;
    int fds[2];
    char c;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);
    memset(&it, 0, sizeof it);
    it.it_value.tv_usec = 20000;
    setitimer(ITIMER_REAL, &it, 0);
    while (!ticks) spins++;
    printf("busy loop interrupted: ticks=%d spun=%d\n", (int)ticks, spins > 0);
    pipe(fds);
    alarm(1);
    ssize_t n = read(fds[0], &c, 1);
    printf("read=%zd errno=%s ticks=%d\n", n, n < 0 && errno == EINTR ? "EINTR" : "?", (int)ticks);
    return 0;
}
