/* cputime: runs a command and appends the CPU time it used to a file.
 *
 *   cputime OUTFILE COMMAND [ARGS...]
 *
 * When COMMAND ends, appends "cpu_s=X user_s=U sys_s=S" (seconds, every thread of
 * the command and of the children it waited for; getrusage(RUSAGE_CHILDREN)) to
 * OUTFILE and exits with the command's status (128 + N when signal N ended it).
 * scripts/bench wraps both ends of every bandwidth run with it, so that perftest,
 * rstream and ibstack_bench are charged alike: the whole process, setup included. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static double secs(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec * 1e-6; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cputime OUTFILE COMMAND [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("cputime: fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        fprintf(stderr, "cputime: cannot run %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("cputime: waitpid");
            return 1;
        }
    }
    struct rusage u;
    getrusage(RUSAGE_CHILDREN, &u);
    FILE *f = fopen(argv[1], "a");
    if (!f) {
        fprintf(stderr, "cputime: cannot open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    fprintf(f, "cpu_s=%.4f user_s=%.4f sys_s=%.4f\n", secs(u.ru_utime) + secs(u.ru_stime), secs(u.ru_utime),
            secs(u.ru_stime));
    fclose(f);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 1;
}
