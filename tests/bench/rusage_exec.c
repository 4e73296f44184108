/* rusage_exec OUTFILE COMMAND [ARGS...]: run COMMAND, then write its rusage to OUTFILE.
 *
 * Why this exists: on Linux a process's ru_maxrss never drops below the RSS of the process
 * it was forked from (exec folds the old address space's high-water mark into it), so
 * os.wait4() on a child of the benchmark reports at least the benchmark's own RSS.  This
 * launcher is small: its child starts from ~1 MB.  OUTFILE gets one line:
 *     <ru_maxrss KiB> <user CPU s> <system CPU s>
 * The exit status is COMMAND's (a signal is re-raised).  Build: cc -O2 -o rusage_exec ...
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rusage_exec OUTFILE COMMAND [ARGS...]\n");
        return 125;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("rusage_exec: fork");
        return 126;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("rusage_exec: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("rusage_exec: wait4");
            return 126;
        }
    }
    FILE *out = fopen(argv[1], "w");
    if (out == NULL) {
        perror("rusage_exec: OUTFILE");
        return 126;
    }
    fprintf(out, "%ld %ld.%06ld %ld.%06ld\n", ru.ru_maxrss, (long)ru.ru_utime.tv_sec,
            (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    fclose(out);
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}
