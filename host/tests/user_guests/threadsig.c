/* Signals and threads: pthread_kill to one thread, sigwait in a thread, pthread_cancel
   of a thread blocked in read (SIGCANCEL), setuid broadcast to all threads (SIGSETXID). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static pthread_t target;
static volatile int hit_right_thread = -1;
static void on_usr1(int s) { (void)s; hit_right_thread = pthread_equal(pthread_self(), target); }
static void *sleeper(void *a) {
    (void)a;
    while (hit_right_thread < 0) usleep(1000);
    return 0;
}
static void *waiter(void *a) {
    sigset_t set;
    int sig = 0;
    (void)a;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigwait(&set, &sig);
    return (void *)(long)sig;
}
static int fds[2];
static void *reader(void *a) {
    char c;
    (void)a;
    read(fds[0], &c, 1);
    return (void *)1;
}
int main(void) {
    struct sigaction sa;
    sigset_t set;
    void *r;
    pthread_t t;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    pthread_create(&target, 0, sleeper, 0);
    pthread_kill(target, SIGUSR1);
    pthread_join(target, 0);
    printf("pthread_kill reached the right thread: %d\n", hit_right_thread);

    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, 0);
    pthread_create(&t, 0, waiter, 0);
    usleep(20000);
    kill(getpid(), SIGUSR2);
    pthread_join(t, &r);
    printf("sigwait got %ld\n", (long)r);

    pipe(fds);
    pthread_create(&t, 0, reader, 0);
    usleep(20000);
    pthread_cancel(t);
    pthread_join(t, &r);
    printf("cancelled: %d\n", r == PTHREAD_CANCELED);

    pthread_create(&t, 0, sleeper, 0);
    printf("setuid in a threaded process: %d\n", setuid(getuid()));
    pthread_join(t, 0);
    return 0;
}
