#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    int fds[2], st;
    char buf[64];
    pipe(fds);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        const char *m = "message from child";
        write(fds[1], m, strlen(m) + 1);
        _exit(3);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], buf, sizeof buf);
    waitpid(pid, &st, 0);
    printf("parent got %zd bytes: %s; child exit=%d\n", n, buf, WEXITSTATUS(st));
    pid = fork();
    if (pid == 0) {
        execlp("true", "true", (char *)0);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    printf("exec true: exit=%d\n", WEXITSTATUS(st));
    fflush(stdout);
    st = system("echo from system; exit 4");
    printf("system: exit=%d\n", WEXITSTATUS(st));
    return 0;
}
