/* A libc-free static guest for the plugin tests (run in-process, no user mode needed):
 * sum() is the hot function, my_malloc() is called with three sizes, then exit(0) by a
 * raw syscall. Built with -g so coverage can map it to source lines. */
static volatile long sink;

__attribute__((noinline)) long my_malloc(unsigned long n) {
    sink += n;
    return (long)n;
}

__attribute__((noinline)) long sum(int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += i;
    return s;
}

__attribute__((noinline)) void never_called(void) {
    sink = -1;
}

void _start(void) {
    long t = 0;
    for (int i = 0; i < 10; i++)
        t += sum(100);
    my_malloc(8);
    my_malloc(100);
    my_malloc(5000);
    sink = t;
    if (sink == 12345)
        never_called();
    __asm__ volatile("syscall" : : "a"(60L), "D"(0L));
    for (;;) {
    }
}
