#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void bye(void) { printf("atexit handler\n"); }
int main(int argc, char **argv) {
    atexit(bye);
    if (argc > 1 && strcmp(argv[1], "abort") == 0) abort();
    if (argc > 1 && strcmp(argv[1], "quick") == 0) _Exit(9);
    return argc > 1 ? atoi(argv[1]) : 0;
}
