/* String and memory functions over many sizes and alignments (glibc's SIMD paths). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int main(void) {
    static char src[4096 + 64], dst[4096 + 64];
    uint64_t h = 0;
    for (int i = 0; i < (int)sizeof src; i++) src[i] = (char)('a' + (i * 7) % 26);
    for (int len = 0; len < 300; len += (len < 40 ? 1 : 17)) {
        for (int off = 0; off < 16; off += 3) {
            memset(dst, 0, sizeof dst);
            memcpy(dst + off, src + (15 - off), len);
            dst[off + len] = 0;
            h = h * 31 + strlen(dst + off);
            h = h * 31 + (uint64_t)(memcmp(dst + off, src + (15 - off), len) == 0);
            memmove(dst + off + 1, dst + off, len);
            h = h * 31 + (unsigned char)dst[off + len / 2 + 1];
            char *p = strchr(dst + off + 1, 'q');
            h = h * 31 + (p ? (uint64_t)(p - dst) : 999);
            p = memchr(dst, 'z', sizeof dst);
            h = h * 31 + (p ? (uint64_t)(p - dst) : 999);
            h = h * 31 + (uint64_t)(strcmp(dst + off + 1, src + (15 - off)) > 0);
            h = h * 31 + (uint64_t)(strncmp(dst + off + 1, "abc", 3) != 0);
        }
    }
    printf("mem hash %016llx\n", (unsigned long long)h);
    const char *hay = "the quick brown fox jumps over the lazy dog";
    printf("strstr: %s | %s\n", strstr(hay, "fox"), strstr(hay, "lazy"));
    printf("strrchr: %s, strspn %zu, strcspn %zu\n", strrchr(hay, 'o'), strspn(hay, "the "), strcspn(hay, "xyz"));
    char *dup = strdup(hay);
    for (char *t = strtok(dup, " "); t; t = strtok(NULL, " ")) printf("[%s]", t);
    printf("\n");
    free(dup);
    int arr[1000];
    unsigned s = 12345;
    for (int i = 0; i < 1000; i++) { s = s * 1103515245 + 12345; arr[i] = (int)(s >> 8) % 10000 - 5000; }
    qsort(arr, 1000, sizeof arr[0], cmp_int);
    printf("qsort: %d %d %d %d\n", arr[0], arr[1], arr[500], arr[999]);
    char num[32];
    for (int i = -3; i < 3; i++) { snprintf(num, sizeof num, "%08x|%-5d|%+d", i * 77777, i, i); printf("%s\n", num); }
    printf("atoi %d strtol %ld strtoul %lu\n", atoi("  -1234x"), strtol("0x7fff", NULL, 16), strtoul("777", NULL, 8));
    return 0;
}
