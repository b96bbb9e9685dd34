/* Run a command from a small process and report its own peak RSS and wall time.
 *
 *   maxrss OUTFILE PROG ARGS...
 *
 * A child's ru_maxrss includes the RSS of the process it was forked from (the kernel carries
 * the old mm's high-water mark over exec), so a runtime started straight from the Python
 * benchmark would show at least the benchmark's own RSS. Started from this launcher it shows
 * at most the launcher's few hundred KiB. Writes "<exit code> <wall ns> <ru_maxrss KiB>\n"
 * to OUTFILE and exits with the command's exit code (128+signal when killed).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct rusage ru;
    int status, code;
    pid_t pid;
    FILE *out;

    if (argc < 3) {
        fprintf(stderr, "usage: maxrss OUTFILE PROG ARGS...\n");
        return 127;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = vfork();
    if (pid < 0) {
        perror("maxrss: vfork");
        return 127;
    }
    if (pid == 0) {
        execv(argv[2], argv + 2);
        _exit(127);
    }
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("maxrss: wait4");
            return 127;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    out = fopen(argv[1], "w");
    if (!out) {
        perror("maxrss: open OUTFILE");
        return 127;
    }
    fprintf(out, "%d %lld %ld\n", code,
            (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec), ru.ru_maxrss);
    fclose(out);
    return code;
}
