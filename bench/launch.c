/*
 * launch: run a command and report its wall time, CPU time and peak RSS as
 * one line of key=value pairs on stderr. Exports KESTREL_STARTUP_T0 (the
 * CLOCK_MONOTONIC time just before exec, in ns) so kestrel can report the
 * time from exec to its first KVM_RUN.
 *
 *   launch [-q] -- COMMAND [ARGS...]     (-q: send the command's stdout/stderr to /dev/null)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double ms(struct timeval tv)
{
	return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct rusage ru;
	char t0s[32];
	int quiet = 0, i = 1, status;
	pid_t pid;

	if (i < argc && !strcmp(argv[i], "-q")) {
		quiet = 1;
		i++;
	}
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc) {
		fprintf(stderr, "usage: launch [-q] -- COMMAND [ARGS...]\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	snprintf(t0s, sizeof(t0s), "%lld", (long long)t0.tv_sec * 1000000000ll + t0.tv_nsec);
	setenv("KESTREL_STARTUP_T0", t0s, 1);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		if (quiet) {
			int fd = open("/dev/null", O_WRONLY);

			dup2(fd, 1);
		}
		execvp(argv[i], argv + i);
		perror(argv[i]);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("wait4");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "launch: wall_ms=%.3f user_ms=%.3f sys_ms=%.3f maxrss_kib=%ld status=%d\n",
		(double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
		ms(ru.ru_utime), ms(ru.ru_stime), ru.ru_maxrss,
		WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}
