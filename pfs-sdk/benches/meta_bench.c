/*
 * libpfsd benchmark (not a test): durable create+close per second from
 * 1 and 8 processes of one host, each with T threads, every thread
 * creating files in its own directory. All start together; the figure is
 * the files created by all of them over the wall time from the start to
 * the last one's end. Run by benches/meta.sh, which sets up the device.
 *
 *   meta_bench <pbd> <seconds> <threads per process> <files in all>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "bench.h"

static const char *pbd;
static double secs;
static int maxfiles;
/* The parent's pid: a run's directories are new on a used device. */
static int tag;

struct job {
	int id;
	int round;
	long made;
};

static void *
creates(void *arg)
{
	struct job *j = arg;
	char dir[256], a[300];
	snprintf(dir, sizeof dir, "/%s/c%d-%d-%d", pbd, tag, j->round, j->id);
	CHECK(pfsd_mkdir(dir, 0755) == 0);
	double end = now() + secs;
	long n = 0;
	while (n < maxfiles && now() < end) {
		snprintf(a, sizeof a, "%s/f%ld", dir, n++);
		int fd = pfsd_open(a, O_CREAT | O_RDWR, 0644);
		CHECK(fd >= 0 && pfsd_close(fd) == 0);
	}
	j->made = n;
	return NULL;
}

/* One process: its threads create files; returns how many. */
static long
process(int first, int threads, int round)
{
	pthread_t t[MAX_THREADS];
	struct job j[MAX_THREADS];
	for (int i = 0; i < threads; i++) {
		j[i] = (struct job){.id = first + i, .round = round};
		CHECK(pthread_create(&t[i], NULL, creates, &j[i]) == 0);
	}
	long made = 0;
	for (int i = 0; i < threads; i++) {
		CHECK(pthread_join(t[i], NULL) == 0);
		made += j[i].made;
	}
	return made;
}

/* Creates per second of `procs` processes with `threads` threads each. */
static double
run(int procs, int threads, int round, int total)
{
	int res[2], go[2];
	CHECK(pipe(res) == 0 && pipe(go) == 0);
	maxfiles = total / (procs * threads);
	fflush(stdout);
	for (int i = 0; i < procs; i++) {
		pid_t c = fork();
		CHECK(c >= 0);
		if (c == 0) {
			char b;
			close(go[1]);
			CHECK(read(go[0], &b, 1) == 1);
			long made = process(i * threads, threads, round);
			CHECK(write(res[1], &made, sizeof made) == sizeof made);
			_exit(0);
		}
	}
	close(res[1]);
	close(go[0]);
	/* Let every child get to its read (and its mount's first call). */
	usleep(200000);
	double t0 = now();
	char b[64] = {0};
	CHECK(write(go[1], b, procs) == procs);
	long made = 0;
	for (int i = 0; i < procs; i++) {
		long m;
		CHECK(read(res[0], &m, sizeof m) == sizeof m);
		made += m;
	}
	double dt = now() - t0;
	close(res[0]);
	close(go[1]);
	while (wait(NULL) > 0)
		;
	return made / dt;
}

int
main(int argc, char **argv)
{
	CHECK(argc == 5);
	pbd = argv[1];
	tag = getpid();
	secs = atof(argv[2]);
	int threads = threads_arg(argv[3]);
	int total = atoi(argv[4]);
	CHECK(total > 0);
	CHECK(pfsd_mount(NULL, pbd, 1, PFS_RDWR) == 0);
	int counts[2] = {1, 8};
	printf("%-10s %-8s %14s\n", "processes", "threads", "creates/s");
	for (int i = 0; i < 2; i++) {
		double r = run(counts[i], threads, i, total);
		printf("%-10d %-8d %14.0f\n", counts[i], threads, r);
	}
	CHECK(pfsd_umount(pbd) == 0);
	return 0;
}
