#define _GNU_SOURCE
/* File I/O through mmap: write, map shared, modify, msync, read back; private COW. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "mmapio.tmp";
    char buf[10000];
    for (int i = 0; i < 10000; i++) buf[i] = 'a' + i % 26;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(fd, buf, sizeof buf);
    char *m = mmap(0, sizeof buf, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    printf("m[5000]=%c m[9999]=%c\n", m[5000], m[9999]);
    memcpy(m + 4096, "HELLO", 5);
    msync(m, sizeof buf, MS_SYNC);
    munmap(m, sizeof buf);
    pread(fd, buf, 5, 4096);
    printf("after shared write: %.5s\n", buf);
    char *pm = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    pm[0] = 'X';
    pread(fd, buf, 1, 0);
    printf("private write stays private: %c %c\n", pm[0], buf[0]);
    munmap(pm, 4096);
    char *big = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    big[(1 << 20) - 1] = 7;
    big = mremap(big, 1 << 20, 4 << 20, MREMAP_MAYMOVE);
    printf("mremap kept data: %d, tail zero: %d\n", big[(1 << 20) - 1], big[(4 << 20) - 1]);
    close(fd);
    unlink(path);
    return 0;
}
