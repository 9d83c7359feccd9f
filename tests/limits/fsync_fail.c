/*
 * fsync_fail.c — LD_PRELOAD shim for tests/limits/run.sh: fsync() of a
 * file or directory whose path ends in $FSYNC_FAIL_SUFFIX fails with EIO
 * (every time); every other fsync goes through. strace cannot pick one
 * directory's flush out of several threads' fsyncs; this can.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fsync(int fd)
{
	static int (*real)(int);
	const char *suf = getenv("FSYNC_FAIL_SUFFIX");
	char link[64], path[4096];
	ssize_t n;

	if (real == NULL)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	if (suf && *suf) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, path, sizeof(path) - 1);
		if (n > 0) {
			size_t ls = strlen(suf);

			path[n] = '\0';
			if ((size_t)n >= ls && strcmp(path + n - ls, suf) == 0) {
				errno = EIO;
				return -1;
			}
		}
	}
	return real(fd);
}
