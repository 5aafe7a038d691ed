/* File I/O through mmap: write a file, map it shared, change it, read it back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>

int main(void) {
    char path[] = "/tmp/blockscope-mmapio-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 1; }
    const size_t len = 3 * 4096 + 100;
    if (ftruncate(fd, (off_t)len) != 0) return 1;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t i = 0; i < len; i++) m[i] = (char)('A' + i % 23);
    msync(m, len, MS_SYNC);
    munmap(m, len);
    char buf[16] = {0};
    pread(fd, buf, 10, 4096 * 2 + 5);
    printf("pread: %s\n", buf);
    m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    unsigned long sum = 0;
    for (size_t i = 0; i < len; i++) sum += (unsigned char)m[i];
    printf("sum %lu last %c\n", sum, m[len - 1]);
    munmap(m, len);
    close(fd);
    unlink(path);
    return 0;
}
