/* Helpers shared by the libpfsd benchmarks: the checks of the C tests, a
 * clock, and the thread-count argument. */
#ifndef SDK_BENCH_H
#define SDK_BENCH_H

#include <stdlib.h>
#include <time.h>

#include "../tests/c/common.h"

/* The most threads one process of a benchmark runs. */
#define MAX_THREADS 64

/* Seconds on the monotonic clock. */
static inline double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A thread count given as argument `s`: 1 to MAX_THREADS, else the
 * program stops. */
static inline int
threads_arg(const char *s)
{
	int n = atoi(s);
	CHECK(n > 0 && n <= MAX_THREADS);
	return n;
}

#endif
