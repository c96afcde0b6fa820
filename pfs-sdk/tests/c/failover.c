/*
 * Processes for the failover tests (issue 17): a writer to pause, and
 * holders to kill, fork or stop.
 *
 *   failover <pbd> writer <hostid> <byte> <seed>
 *       mount RDWR, write 4 MiB of 'F' to /<pbd>/F, fsync, print "ready",
 *       then forever: sleep 50-200 ms, pwrite 4 KiB of <byte> at offset 0
 *       of F (the descriptor stays open), fsync it, create /<pbd>/late-N
 *       and close it. Every call is logged before and after (see below)
 *       and the loop goes on whatever a call returns.
 *   failover <pbd> crash <hostid>
 *       mount RDWR, create /<pbd>/crash, pwrite, fsync, raise(SIGKILL).
 *   failover <pbd> fork <hostid>
 *       mount RDWR and write nothing; a forked child creates
 *       /<pbd>/from-child, writes and closes it and exits; the parent
 *       waits, calls pfsd_umount and exits 0 (a postmaster in miniature).
 *   failover <pbd> hold <hostid>
 *       mount RDWR, create and fsync /<pbd>/held, print "held", then sleep
 *       until killed.
 *
 * Compiled with -DFAILOVER_POSIX it needs no libpfsd and has one mode,
 *   failover <dir> writer - <byte> <seed>
 * the same writer with plain POSIX calls on files under <dir> (a FUSE
 * mount point).
 *
 * Log lines of the writer, on stdout, flushed one by one; times are
 * CLOCK_MONOTONIC nanoseconds (the clock the tests read too):
 *   ready <t>
 *   S <seq> <op> <arg> <t_start>          before call <seq>
 *   E <seq> ok|err <errno> <t_end>        after it returned
 * <op> is pwrite, fsync, create or close; <arg> is the file name.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#ifdef FAILOVER_POSIX
#define X_OPEN open
#define X_PWRITE pwrite
#define X_FSYNC fsync
#define X_CLOSE close
#else
#include "pfsd_sdk.h"
#define X_OPEN pfsd_open
#define X_PWRITE pfsd_pwrite
#define X_FSYNC pfsd_fsync
#define X_CLOSE pfsd_close
#endif

#define MIB (1024 * 1024)

/* Where the files are: "/<pbd>" through the SDK, a directory otherwise. */
static const char *root;

static long long
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static unsigned long seq;

static void
before(const char *op, const char *arg)
{
	say("S %lu %s %s %lld\n", seq, op, arg, now_ns());
}

/* Logs the end of call <seq>; `ok` says whether it succeeded. */
static void
after(int ok)
{
	int e = errno;
	long long t = now_ns();
	say("E %lu %s %d %lld\n", seq, ok ? "ok" : "err", ok ? 0 : e, t);
	seq++;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int
writer(int byte, unsigned seed)
{
	static char big[4 * MIB];
	char small[4096];
	memset(big, 'F', sizeof big);
	memset(small, byte, sizeof small);

	int fd = X_OPEN(pathf("%s/F", root), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	CHECK(X_PWRITE(fd, big, sizeof big, 0) == (ssize_t)sizeof big);
	CHECK(X_FSYNC(fd) == 0);
	say("ready %lld\n", now_ns());

	for (unsigned long n = 0;; n++) {
		sleep_ms(50 + rand_r(&seed) % 151);
		before("pwrite", "F");
		after(X_PWRITE(fd, small, sizeof small, 0) == (ssize_t)sizeof small);
		before("fsync", "F");
		after(X_FSYNC(fd) == 0);
		const char *name = pathf("late-%lu", n);
		before("create", name);
		int late = X_OPEN(pathf("%s/%s", root, name), O_CREAT | O_WRONLY, 0644);
		after(late >= 0);
		if (late >= 0) {
			before("close", name);
			after(X_CLOSE(late) == 0);
		}
	}
}

#ifndef FAILOVER_POSIX

static int
crash(void)
{
	char buf[65536];
	fill((unsigned char *)buf, sizeof buf, 17);
	int fd = pfsd_open(pathf("%s/crash", root), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	CHECK(pfsd_pwrite(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf);
	CHECK(pfsd_fsync(fd) == 0);
	raise(SIGKILL);
	return 1;
}

static int
forker(const char *pbd)
{
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		int fd = pfsd_open(pathf("%s/from-child", root), O_CREAT | O_RDWR, 0644);
		CHECK(fd >= 0);
		CHECK(pfsd_pwrite(fd, "child", 5, 0) == 5);
		CHECK(pfsd_close(fd) == 0);
		exit(0);
	}
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(pfsd_umount(pbd) == 0);
	say("ok\n");
	return 0;
}

static int
hold(void)
{
	int fd = pfsd_open(pathf("%s/held", root), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	CHECK(pfsd_pwrite(fd, "held", 4, 0) == 4);
	CHECK(pfsd_fsync(fd) == 0);
	say("held\n");
	for (;;)
		pause();
}

#endif

int
main(int argc, char **argv)
{
	CHECK(argc >= 4);
	const char *mode = argv[2];
#ifdef FAILOVER_POSIX
	root = argv[1];
	CHECK(strcmp(mode, "writer") == 0 && argc == 6);
	return writer(argv[4][0], (unsigned)strtoul(argv[5], NULL, 0));
#else
	const char *pbd = argv[1];
	root = pathf("/%s", pbd);
	/* pathf's buffers rotate: keep our own copy. */
	static char rootbuf[4200];
	snprintf(rootbuf, sizeof rootbuf, "%s", root);
	root = rootbuf;
	CHECK(pfsd_mount(NULL, pbd, atoi(argv[3]), PFS_RDWR) == 0);
	if (strcmp(mode, "writer") == 0 && argc == 6)
		return writer(argv[4][0], (unsigned)strtoul(argv[5], NULL, 0));
	if (strcmp(mode, "crash") == 0)
		return crash();
	if (strcmp(mode, "fork") == 0)
		return forker(pbd);
	if (strcmp(mode, "hold") == 0)
		return hold();
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
#endif
}
