/*
 * Concurrent workload through libpfsd. Workers create, extend, rename and
 * unlink files under /<pbd>/w and log each acknowledged change to a local
 * file; the verifier replays the logs and checks that every acknowledged
 * change is on the PFS, byte for byte, and nothing else is.
 *
 *   workload <pbd> fork   <hostid> <flags> <children> <ms> <logdir>
 *       mount, fork <children> workers, wait, verify through the parent
 *   workload <pbd> work   <hostid> <flags> <name> <ms> <logdir>
 *       one worker (ms 0: until killed)
 *   workload <pbd> verify <hostid> <flags> <logdir> [lenient-name...]
 *   workload <pbd> follow <hostid> <flags> <logdir> <writer-name>
 *       a read-only follower checking a running writer's acknowledged
 *       changes as they appear in its log
 *
 * Log lines: "? name" before an operation on name, then "F name size seed"
 * (created/renamed into place), "X name size" (extended), "U name"
 * (unlinked). A worker killed mid-operation leaves a "?" line without its
 * acknowledgement; the verifier exempts that name for lenient workers.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "common.h"

static const char *pbd;

static long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The byte at offset o of a file written with seed s. */
static unsigned char
pat(unsigned s, unsigned long long o)
{
	unsigned long long x = (o + 1) * 0x9E3779B97F4A7C15ull ^ ((unsigned long long)s << 17);
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return (unsigned char)x;
}

static void
pattern(unsigned char *b, size_t len, unsigned s, unsigned long long off)
{
	for (size_t i = 0; i < len; i++)
		b[i] = pat(s, off + i);
}

/* "/<pbd>/w/<name>". */
#define wpath(name) pathf("/%s/w/%s", pbd, (name))

static FILE *logf_;

static void
logline(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(logf_, fmt, ap);
	va_end(ap);
	fflush(logf_);
}

static void
write_all(int fd, unsigned s, unsigned long long off, size_t len)
{
	unsigned char *b = malloc(len);
	CHECK(b);
	pattern(b, len, s, off);
	CHECK(pfsd_pwrite(fd, b, len, off) == (ssize_t)len);
	free(b);
}

static void
worker(const char *name, long long ms, const char *logdir)
{
	char lp[512];
	snprintf(lp, sizeof lp, "%s/%s.log", logdir, name);
	logf_ = fopen(lp, "a");
	CHECK(logf_);
	long long end = now_ms() + ms;
	unsigned long long sizes[4096] = {0};
	for (int k = 0; ms == 0 || now_ms() < end; k++) {
		CHECK(k < 4096);
		char fname[128], tmp[140];
		snprintf(fname, sizeof fname, "%s_%d", name, k);
		snprintf(tmp, sizeof tmp, "%s.tmp", fname);
		unsigned seed = (unsigned)(k * 7919) ^ (unsigned)(uintptr_t)name[1] << 8;
		size_t size = 1000 + (size_t)((k * 104729) % 300000);

		logline("? %s\n", fname);
		int fd = pfsd_open(wpath(tmp), O_CREAT | O_EXCL | O_RDWR, 0644);
		CHECK(fd >= 0);
		write_all(fd, seed, 0, size / 2);
		write_all(fd, seed, size / 2, size - size / 2);
		CHECK(pfsd_close(fd) == 0);
		CHECK(pfsd_rename(wpath(tmp), wpath(fname)) == 0);
		logline("F %s %zu %u\n", fname, size, seed);
		sizes[k] = size;

		if (k % 4 == 3 && sizes[k - 1] != 0) {
			char prev[128];
			snprintf(prev, sizeof prev, "%s_%d", name, k - 1);
			unsigned pseed = (unsigned)((k - 1) * 7919) ^ (unsigned)(uintptr_t)name[1] << 8;
			logline("? %s\n", prev);
			fd = pfsd_open(wpath(prev), O_RDWR | O_APPEND, 0);
			CHECK(fd >= 0);
			size_t more = 5000 + (size_t)(k % 3) * (4 << 20);
			unsigned char *b = malloc(more);
			CHECK(b);
			pattern(b, more, pseed, sizes[k - 1]);
			CHECK(pfsd_write(fd, b, more) == (ssize_t)more);
			free(b);
			CHECK(pfsd_close(fd) == 0);
			sizes[k - 1] += more;
			logline("X %s %llu\n", prev, sizes[k - 1]);
		}
		if (k % 3 == 2) {
			char old[128];
			snprintf(old, sizeof old, "%s_%d", name, k - 2);
			logline("? %s\n", old);
			CHECK(pfsd_unlink(wpath(old)) == 0);
			sizes[k - 2] = 0;
			logline("U %s\n", old);
		}
	}
	logline("END\n");
	fclose(logf_);
}

/* The state a log describes. */
struct entry {
	char name[128];
	unsigned long long size;
	unsigned seed;
	int live;
	int exempt;
};

struct state {
	struct entry *e;
	int n;
	int ended;
};

static struct entry *
find(struct state *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->e[i].name, name) == 0)
			return &s->e[i];
	return NULL;
}

static struct entry *
get(struct state *s, const char *name)
{
	struct entry *e = find(s, name);
	if (e)
		return e;
	s->e = realloc(s->e, sizeof(*s->e) * (s->n + 1));
	CHECK(s->e);
	e = &s->e[s->n++];
	memset(e, 0, sizeof *e);
	snprintf(e->name, sizeof e->name, "%s", name);
	return e;
}

/* Reads a log; with lenient, a trailing unacknowledged name is exempt. */
static void
read_log(const char *path, struct state *s, int lenient)
{
	FILE *f = fopen(path, "r");
	CHECK(f);
	char line[512], pending[128] = "";
	while (fgets(line, sizeof line, f)) {
		if (line[strlen(line) - 1] != '\n')
			break; /* torn last line of a killed worker */
		char name[128];
		unsigned long long size;
		unsigned seed;
		if (sscanf(line, "? %127s", name) == 1) {
			snprintf(pending, sizeof pending, "%s", name);
		} else if (sscanf(line, "F %127s %llu %u", name, &size, &seed) == 3) {
			struct entry *e = get(s, name);
			e->size = size;
			e->seed = seed;
			e->live = 1;
			pending[0] = '\0';
		} else if (sscanf(line, "X %127s %llu", name, &size) == 2) {
			get(s, name)->size = size;
			pending[0] = '\0';
		} else if (sscanf(line, "U %127s", name) == 1) {
			get(s, name)->live = 0;
			pending[0] = '\0';
		} else if (strcmp(line, "END\n") == 0) {
			s->ended = 1;
		}
	}
	fclose(f);
	if (pending[0] != '\0' && lenient)
		get(s, pending)->exempt = 1;
}

/* Checks that file e is on the PFS with its logged bytes (a longer file
 * is allowed when at_least: a follower may see later appends). Returns 0,
 * or -1 with errno if it cannot be opened. */
static int
check_file(struct entry *e, int at_least)
{
	int fd = pfsd_open(wpath(e->name), O_RDONLY, 0);
	if (fd < 0)
		return -1;
	struct stat st;
	CHECK(pfsd_fstat(fd, &st) == 0);
	if (at_least ? (unsigned long long)st.st_size < e->size
		     : (unsigned long long)st.st_size != e->size) {
		fprintf(stderr, "%s: size %lld, logged %llu\n", e->name,
		    (long long)st.st_size, e->size);
		exit(1);
	}
	unsigned char *b = malloc(e->size + 1), *w = malloc(e->size + 1);
	CHECK(b && w);
	CHECK(pfsd_pread(fd, b, e->size, 0) == (ssize_t)e->size);
	pattern(w, e->size, e->seed, 0);
	if (memcmp(b, w, e->size) != 0) {
		fprintf(stderr, "%s: bytes differ from what was acknowledged\n", e->name);
		exit(1);
	}
	free(b);
	free(w);
	CHECK(pfsd_close(fd) == 0);
	return 0;
}

static int
is_lenient(const char *worker, char **lenient, int nlenient)
{
	for (int i = 0; i < nlenient; i++)
		if (strcmp(worker, lenient[i]) == 0)
			return 1;
	return 0;
}

static void
verify(const char *logdir, char **lenient, int nlenient)
{
	struct state s = {0};
	DIR *ld = opendir(logdir);
	CHECK(ld);
	struct dirent *de;
	char worker_names[64][64];
	int nworkers = 0;
	while ((de = readdir(ld)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".log") != 0)
			continue;
		CHECK(nworkers < 64);
		snprintf(worker_names[nworkers], 64, "%.*s", (int)(l - 4), de->d_name);
		char p[1024];
		snprintf(p, sizeof p, "%s/%s", logdir, de->d_name);
		read_log(p, &s, is_lenient(worker_names[nworkers], lenient, nlenient));
		nworkers++;
	}
	closedir(ld);

	int checked = 0;
	for (int i = 0; i < s.n; i++) {
		struct entry *e = &s.e[i];
		if (e->exempt)
			continue;
		struct stat st;
		if (e->live) {
			if (check_file(e, 0) != 0) {
				fprintf(stderr, "%s: acknowledged, but open fails: %s\n",
				    e->name, strerror(errno));
				exit(1);
			}
			checked++;
		} else if (pfsd_stat(wpath(e->name), &st) == 0) {
			fprintf(stderr, "%s: unlinked, but still there\n", e->name);
			exit(1);
		}
	}
	/* Nothing else is in the directory, except in-flight files of
	 * lenient workers. */
	char wdir[256];
	snprintf(wdir, sizeof wdir, "/%s/w", pbd);
	DIR *d = pfsd_opendir(wdir);
	CHECK(d);
	int listed = 0;
	errno = 0;
	struct dirent *pe;
	while ((pe = pfsd_readdir(d)) != NULL) {
		CHECK(pe->d_type == DT_REG);
		struct entry *e = find(&s, pe->d_name);
		if (e && (e->live || e->exempt)) {
			listed++;
			continue;
		}
		char owner[256];
		snprintf(owner, sizeof owner, "%s", pe->d_name);
		char *us = strchr(owner, '_');
		if (us)
			*us = '\0';
		if (is_lenient(owner, lenient, nlenient) && strstr(pe->d_name, ".tmp"))
			continue;
		fprintf(stderr, "%s: on the PFS, but not acknowledged\n", pe->d_name);
		exit(1);
	}
	CHECK(errno == 0);
	CHECK(pfsd_closedir(d) == 0);
	CHECK(listed >= checked);
	printf("verified %d files of %d workers\n", checked, nworkers);
}

static void
follow(const char *logdir, const char *writer)
{
	char lp[512];
	snprintf(lp, sizeof lp, "%s/%s.log", logdir, writer);
	long long deadline = now_ms() + 120000;
	int rounds = 0, seen = 0;
	for (;;) {
		CHECK(now_ms() < deadline);
		if (access(lp, F_OK) != 0) {
			usleep(10000);
			continue;
		}
		struct state s = {0};
		read_log(lp, &s, 0);
		int ended = s.ended;
		seen = 0;
		for (int i = 0; i < s.n; i++) {
			struct entry *e = &s.e[i];
			if (!e->live)
				continue;
			if (check_file(e, 1) != 0) {
				/* Unlinked since we read the log (or being
				 * unlinked: its intent is the last line)? */
				int err = errno;
				struct state again = {0};
				read_log(lp, &again, 1);
				struct entry *a = find(&again, e->name);
				if (err != ENOENT || !a || (a->live && !a->exempt)) {
					fprintf(stderr, "%s: acknowledged, but the follower cannot open it\n",
					    e->name);
					exit(1);
				}
				free(again.e);
			}
			seen++;
		}
		free(s.e);
		rounds++;
		if (ended)
			break;
	}
	CHECK(rounds > 1);
	printf("followed %d rounds, %d files at the end\n", rounds, seen);
}

int
main(int argc, char **argv)
{
	CHECK(argc >= 5);
	pbd = argv[1];
	const char *mode = argv[2];
	int hostid = atoi(argv[3]);
	int flags = (int)strtol(argv[4], NULL, 0);
	CHECK(pfsd_mount(NULL, pbd, hostid, flags) == 0);
	char wdir[256];
	snprintf(wdir, sizeof wdir, "/%s/w", pbd);
	if (flags & MNTFLG_WR) {
		if (pfsd_mkdir(wdir, 0755) != 0)
			CHECK(errno == EEXIST);
	}

	if (strcmp(mode, "fork") == 0) {
		CHECK(argc == 8);
		int n = atoi(argv[5]);
		long long ms = atoll(argv[6]);
		pid_t pids[64];
		CHECK(n <= 64);
		for (int i = 0; i < n; i++) {
			pids[i] = fork();
			CHECK(pids[i] >= 0);
			if (pids[i] == 0) {
				char name[16];
				snprintf(name, sizeof name, "c%d", i);
				worker(name, ms, argv[7]);
				_exit(0);
			}
		}
		int failed = 0;
		for (int i = 0; i < n; i++) {
			int st;
			CHECK(waitpid(pids[i], &st, 0) == pids[i]);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				fprintf(stderr, "child %d failed (status %#x)\n", i, st);
				failed = 1;
			}
		}
		CHECK(!failed);
		verify(argv[7], NULL, 0);
	} else if (strcmp(mode, "work") == 0) {
		CHECK(argc == 8);
		worker(argv[5], atoll(argv[6]), argv[7]);
	} else if (strcmp(mode, "verify") == 0) {
		CHECK(argc >= 6);
		verify(argv[5], argv + 6, argc - 6);
	} else if (strcmp(mode, "follow") == 0) {
		CHECK(argc == 7);
		follow(argv[5], argv[6]);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	CHECK(pfsd_umount(pbd) == 0);
	return 0;
}
