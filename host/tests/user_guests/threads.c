/* pthreads: a bounded queue with a mutex and two condition variables. */
#include <pthread.h>
#include <stdio.h>
#define N 4
#define ITEMS 2000
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;
static int q[16], head, tail, count;
static long total;
static __thread int tls_counter;
static void *producer(void *arg) {
    long base = (long)arg;
    for (int i = 1; i <= ITEMS; i++) {
        pthread_mutex_lock(&mu);
        while (count == 16) pthread_cond_wait(&not_full, &mu);
        q[tail] = (int)(base + i);
        tail = (tail + 1) % 16;
        count++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&mu);
        tls_counter++;
    }
    return (void *)(long)tls_counter;
}
static void *consumer(void *arg) {
    (void)arg;
    long sum = 0;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&mu);
        while (count == 0) pthread_cond_wait(&not_empty, &mu);
        sum += q[head];
        head = (head + 1) % 16;
        count--;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    total += sum;
    pthread_mutex_unlock(&mu);
    return 0;
}
int main(void) {
    pthread_t p[N], c[N];
    long per = 0;
    for (long i = 0; i < N; i++) {
        pthread_create(&p[i], 0, producer, (void *)(i * 100000));
        pthread_create(&c[i], 0, consumer, 0);
    }
    for (int i = 0; i < N; i++) {
        void *r;
        pthread_join(p[i], &r);
        per += (long)r;
        pthread_join(c[i], 0);
    }
    long want = 0;
    for (long i = 0; i < N; i++) want += i * 100000 * ITEMS + (long)ITEMS * (ITEMS + 1) / 2;
    printf("total=%ld want=%ld per-thread tls=%ld main tls=%d\n", total, want, per, tls_counter);
    return total == want ? 0 : 1;
}
