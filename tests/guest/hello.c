/* The smallest guest: argv, environment and exit status. */
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("hello from %s with %d args\n", argc > 0 ? "guest" : "?", argc);
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    const char *v = getenv("BLOCKSCOPE_TEST_VAR");
    printf("env: %s\n", v ? v : "(unset)");
    fprintf(stderr, "to stderr\n");
    return argc > 2 ? 3 : 0;
}
