/*
 * libpfsd benchmark (not a test): 8 KiB random pread/pwrite through the
 * SDK next to the same IO on a raw device, and metadata calls per second
 * from 1 and 8 processes. Run by benches/run.sh, which sets up the devices.
 *
 *   sdk_bench <pbd> <raw device> <threads> <seconds>
 *
 * The second form measures one figure of libpfsd alone, for a script that
 * alternates it with another program's (scripts/rbd-bench.sh and `rbd
 * bench`): 8 KiB random reads or writes by <threads> threads for
 * <seconds> over the first 1 GiB of file /<pbd>/bench, which is made and
 * written whole first when it is shorter, and kept. It prints one line,
 * "<IOPS> <ops>". A `randread` process first writes 8 KiB of the file (the
 * same bytes again), so it holds the writer lease, as a database that
 * writes does; `randread-nolease` writes nothing, so its mount does not
 * hold the lease and checks the journal's head around every read (a
 * reader's reads: another host may be writing).
 *
 *   sdk_bench io <pbd> <randread|randread-nolease|randwrite> <threads> <seconds>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "bench.h"

#define IO 8192
#define SPAN (1ull << 30)

static const char *pbd;
static double secs;

struct job {
	int fd;
	int sdk;
	int write;
	unsigned seed;
	long ops;
};

static void *
run_io(void *arg)
{
	struct job *j = arg;
	void *buf;
	CHECK(posix_memalign(&buf, 4096, IO) == 0);
	fill(buf, IO, j->seed);
	unsigned x = j->seed * 2654435761u + 7;
	double end = now() + secs;
	long ops = 0;
	while ((ops & 63) != 0 || now() < end) {
		x = x * 1103515245u + 12345u;
		unsigned long long r = ((unsigned long long)x << 16) ^ (unsigned long long)(x >> 7);
		off_t off = (off_t)((r % (SPAN / IO)) * IO);
		ssize_t n;
		if (j->sdk)
			n = j->write ? pfsd_pwrite(j->fd, buf, IO, off) : pfsd_pread(j->fd, buf, IO, off);
		else
			n = j->write ? pwrite(j->fd, buf, IO, off) : pread(j->fd, buf, IO, off);
		CHECK(n == IO);
		ops++;
	}
	j->ops = ops;
	free(buf);
	return NULL;
}

static double
iops(int fd, int sdk, int write, int threads)
{
	pthread_t t[MAX_THREADS];
	struct job j[MAX_THREADS];
	double start = now();
	for (int i = 0; i < threads; i++) {
		j[i] = (struct job){.fd = fd, .sdk = sdk, .write = write, .seed = (unsigned)i + 1};
		CHECK(pthread_create(&t[i], NULL, run_io, &j[i]) == 0);
	}
	long total = 0;
	for (int i = 0; i < threads; i++) {
		CHECK(pthread_join(t[i], NULL) == 0);
		total += j[i].ops;
	}
	return total / (now() - start);
}

/* Writes the first SPAN bytes so reads hit written data. */
static void
prefill(int fd, int sdk)
{
	size_t chunk = 4 << 20;
	void *buf;
	CHECK(posix_memalign(&buf, 4096, chunk) == 0);
	fill(buf, chunk, 3);
	for (unsigned long long off = 0; off < SPAN; off += chunk) {
		ssize_t n = sdk ? pfsd_pwrite(fd, buf, chunk, off) : pwrite(fd, buf, chunk, off);
		CHECK(n == (ssize_t)chunk);
	}
	free(buf);
}

/* Metadata calls in directory /<pbd>/m<id> for secs: returns calls/s of
 * create+close, stat, rename (in that order in out[]). */
/* A 10 GiB chunk has 2048 inodes: the processes share 1600 files. */
static int maxfiles = 1600;

static void
meta(int id, double out[3])
{
	char dir[256], a[300], b[300];
	snprintf(dir, sizeof dir, "/%s/m%d", pbd, id);
	if (pfsd_mkdir(dir, 0755) != 0)
		CHECK(errno == EEXIST);
	struct stat st;
	int n = 0;
	double t0 = now();
	while (now() - t0 < secs && n < maxfiles) {
		snprintf(a, sizeof a, "%s/f%d", dir, n++);
		int fd = pfsd_open(a, O_CREAT | O_RDWR, 0644);
		CHECK(fd >= 0 && pfsd_close(fd) == 0);
	}
	out[0] = n / (now() - t0);
	int k = 0;
	t0 = now();
	while (now() - t0 < secs) {
		snprintf(a, sizeof a, "%s/f%d", dir, k++ % n);
		CHECK(pfsd_stat(a, &st) == 0);
	}
	out[1] = k / (now() - t0);
	k = 0;
	t0 = now();
	while (now() - t0 < secs && k < n) {
		snprintf(a, sizeof a, "%s/f%d", dir, k);
		snprintf(b, sizeof b, "%s/r%d", dir, k);
		CHECK(pfsd_rename(a, b) == 0);
		k++;
	}
	out[2] = k / (now() - t0);
	for (int i = 0; i < n; i++) {
		snprintf(a, sizeof a, "%s/%c%d", dir, i < k ? 'r' : 'f', i);
		CHECK(pfsd_unlink(a) == 0);
	}
}

static void
meta_procs(int procs, double total[3])
{
	int p[2];
	CHECK(pipe(p) == 0);
	fflush(stdout);
	maxfiles = 1600 / procs;
	for (int i = 0; i < procs; i++) {
		pid_t c = fork();
		CHECK(c >= 0);
		if (c == 0) {
			double r[3];
			meta(i, r);
			CHECK(write(p[1], r, sizeof r) == sizeof r);
			_exit(0);
		}
	}
	close(p[1]);
	total[0] = total[1] = total[2] = 0;
	for (int i = 0; i < procs; i++) {
		double r[3];
		CHECK(read(p[0], r, sizeof r) == sizeof r);
		for (int k = 0; k < 3; k++)
			total[k] += r[k];
	}
	close(p[0]);
	while (wait(NULL) > 0)
		;
}

/* The second form (see the top). */
static int
io_only(int argc, char **argv)
{
	CHECK(argc == 6);
	pbd = argv[2];
	int write = strcmp(argv[3], "randwrite") == 0;
	int lease = strcmp(argv[3], "randread-nolease") != 0;
	CHECK(write || !lease || strcmp(argv[3], "randread") == 0);
	int threads = threads_arg(argv[4]);
	secs = atof(argv[5]);
	CHECK(secs > 0);
	CHECK(pfsd_mount(NULL, pbd, 1, PFS_RDWR) == 0);
	char path[256];
	snprintf(path, sizeof path, "/%s/bench", pbd);
	int fd = pfsd_open(path, O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	struct stat st;
	CHECK(pfsd_fstat(fd, &st) == 0);
	if ((unsigned long long)st.st_size < SPAN) {
		prefill(fd, 1);
		CHECK(pfsd_fsync(fd) == 0);
	} else if (lease) {
		unsigned char *buf = malloc(IO);
		CHECK(buf != NULL);
		fill(buf, IO, 3);
		CHECK(pfsd_pwrite(fd, buf, IO, 0) == IO);
		free(buf);
	}
	double start = now();
	double r = iops(fd, 1, write, threads);
	printf("%.0f %.0f\n", r, r * (now() - start));
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_umount(pbd) == 0);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "io") == 0)
		return io_only(argc, argv);
	CHECK(argc == 5);
	pbd = argv[1];
	int threads = threads_arg(argv[3]);
	secs = atof(argv[4]);

	CHECK(pfsd_mount(NULL, pbd, 1, PFS_RDWR) == 0);
	char path[256];
	snprintf(path, sizeof path, "/%s/bench", pbd);
	int fd = pfsd_open(path, O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	int raw = open(argv[2], O_RDWR | O_DIRECT);
	CHECK(raw >= 0);
	prefill(fd, 1);
	prefill(raw, 0);

	printf("8 KiB random IO, %d threads, %.0f s each, over 1 GiB\n", threads, secs);
	printf("%-10s %12s %12s %8s\n", "", "raw IOPS", "libpfsd IOPS", "ratio");
	for (int w = 0; w <= 1; w++) {
		double r = iops(raw, 0, w, threads);
		double s = iops(fd, 1, w, threads);
		printf("%-10s %12.0f %12.0f %8.2f\n", w ? "randwrite" : "randread", r, s, s / r);
	}
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_unlink(path) == 0);
	close(raw);

	printf("\nmetadata calls/s (%.0f s each)\n", secs);
	printf("%-12s %14s %10s %10s\n", "processes", "create+close", "stat", "rename");
	int counts[2] = {1, 8};
	for (int i = 0; i < 2; i++) {
		double t[3];
		meta_procs(counts[i], t);
		printf("%-12d %14.0f %10.0f %10.0f\n", counts[i], t[0], t[1], t[2]);
	}
	CHECK(pfsd_umount(pbd) == 0);
	return 0;
}
