/* /proc/self/exe names the program; re-executing it stays the program. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[PATH_MAX], real[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = 0;
    realpath(argv[0], real);
    printf("exe matches argv[0]: %d\n", strcmp(buf, real) == 0);
    if (argc > 1) {
        printf("child run: %s\n", argv[1]);
        return 0;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "again", (char *)0);
        _exit(99);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child exit=%d\n", WEXITSTATUS(st));
    return 0;
}
