/* argv, envp and the auxiliary vector as a program sees them through glibc. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    int i, n = 0;
    printf("argc=%d\n", argc);
    for (i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++) n++;
    printf("env BS_A=%s BS_B=%s count>0=%d\n", getenv("BS_A"), getenv("BS_B"), n > 0);
    printf("pagesz=%lu secure=%lu clktck=%lu\n", getauxval(AT_PAGESZ), getauxval(AT_SECURE),
           getauxval(AT_CLKTCK));
    printf("execfn=%s platform=%s\n", (char *)getauxval(AT_EXECFN), (char *)getauxval(AT_PLATFORM));
    printf("random=%d phdr=%d entry=%d\n", getauxval(AT_RANDOM) != 0, getauxval(AT_PHDR) != 0,
           getauxval(AT_ENTRY) != 0);
    printf("uid match=%d\n", getauxval(AT_UID) == (unsigned long)getuid());
    return argc;
}
