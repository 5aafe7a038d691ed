#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    printf("hello, world %d %s\n", 42, "str");
    fprintf(stderr, "to stderr\n");
    puts(strchr("abc:def", ':'));
    fflush(stdout);
    write(1, "raw\n", 4);
    return 0;
}
