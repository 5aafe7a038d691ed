/* fork, exit status, waitpid, pipes between processes. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
#include <string.h>

int main(void) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        const char *msg = "child says hi";
        write(fds[1], msg, strlen(msg));
        _exit(42);
    }
    close(fds[1]);
    char buf[64] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    int st = 0;
    waitpid(pid, &st, 0);
    printf("read %zd bytes: %s\n", n, buf);
    printf("child exited: %d status %d\n", WIFEXITED(st), WEXITSTATUS(st));
    for (int i = 0; i < 3; i++) {
        fflush(stdout);
        pid_t p = fork();
        if (p == 0) { printf("grandchild %d\n", i); fflush(stdout); exit(i); }
        waitpid(p, &st, 0);
        printf("reaped %d -> %d\n", i, WEXITSTATUS(st));
    }
    return 0;
}
