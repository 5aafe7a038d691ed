/* pthreads: a mutex, a condition variable, a producer/consumer queue, thread-local data. */
#include <stdio.h>
#include <pthread.h>

#define ITEMS 20000
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int queue[64], head, tail, done;
static long long total;
static __thread int tls_counter;

static void *producer(void *arg) {
    int base = *(int *)arg;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&mu);
        while ((tail + 1) % 64 == head) pthread_cond_wait(&cv, &mu);
        queue[tail] = base + i;
        tail = (tail + 1) % 64;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        tls_counter++;
    }
    return (void *)(long)tls_counter;
}

static void *consumer(void *arg) {
    (void)arg;
    long long sum = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (head == tail && !done) pthread_cond_wait(&cv, &mu);
        if (head == tail && done) { pthread_mutex_unlock(&mu); break; }
        sum += queue[head];
        head = (head + 1) % 64;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    total += sum;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(void) {
    pthread_t p[3], c[2];
    int bases[3] = {0, 100000, 200000};
    for (int i = 0; i < 2; i++) pthread_create(&c[i], NULL, consumer, NULL);
    for (int i = 0; i < 3; i++) pthread_create(&p[i], NULL, producer, &bases[i]);
    long produced = 0;
    for (int i = 0; i < 3; i++) { void *r; pthread_join(p[i], &r); produced += (long)r; }
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 2; i++) pthread_join(c[i], NULL);
    printf("produced %ld, total %lld, main tls %d\n", produced, total, tls_counter);
    return 0;
}
