/*
 * libpfsd benchmark (not a test): how long a forked child's first call
 * takes, as a PostgreSQL backend's first file access after the postmaster
 * forked it. The parent mounts and writes a little between forks, so each
 * child has the journal since the fork to read. Run by benches/run.sh.
 *
 *   fork_bench <pbd> <children>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "bench.h"

static int
by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	CHECK(argc == 3);
	const char *pbd = argv[1];
	int n = atoi(argv[2]);
	CHECK(n > 0 && n <= 1000);
	CHECK(pfsd_mount(NULL, pbd, 1, PFS_RDWR) == 0);
	char path[256];
	struct stat st;
	snprintf(path, sizeof path, "/%s/", pbd);
	CHECK(pfsd_stat(path, &st) == 0);
	double *ms = calloc(n, sizeof *ms);
	CHECK(ms != NULL);
	for (int i = 0; i < n; i++) {
		/* A commit between forks, as a running database makes them. */
		snprintf(path, sizeof path, "/%s/f%d", pbd, i);
		int fd = pfsd_open(path, O_CREAT | O_RDWR, 0644);
		CHECK(fd >= 0 && pfsd_close(fd) == 0);
		int p[2];
		CHECK(pipe(p) == 0);
		pid_t c = fork();
		CHECK(c >= 0);
		if (c == 0) {
			double t0 = now();
			CHECK(pfsd_stat(path, &st) == 0);
			double t = (now() - t0) * 1e3;
			CHECK(write(p[1], &t, sizeof t) == sizeof t);
			_exit(0);
		}
		close(p[1]);
		CHECK(read(p[0], &ms[i], sizeof ms[i]) == sizeof ms[i]);
		close(p[0]);
		CHECK(waitpid(c, NULL, 0) == c);
		/* The parent goes on committing while children run. */
		CHECK(pfsd_unlink(path) == 0);
	}
	qsort(ms, n, sizeof *ms, by_value);
	printf("first call of a forked child: median %.2f ms, max %.2f ms (%d children)\n",
	    ms[n / 2], ms[n - 1], n);
	CHECK(pfsd_umount(pbd) == 0);
	return 0;
}
