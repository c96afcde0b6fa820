/*
 * Processes writing and following numbered records, for the fencing
 * tests (issue 21). Usage:
 *
 *   fence <pbd> <hostid> pair <records>
 *       Mounts RDWR as <hostid>, then forks: the parent ("p") and the
 *       child ("c", which mounts again with a cluster connection of its
 *       own at its first call) each write records to /<pbd>/rec-<tag> as
 *       below. The parent waits for the child. Only the parent keeps
 *       PFS_TEST_STOP_AT: the child drops it before its first call.
 *   fence <pbd> <hostid> write <tag> <records>
 *       Mounts RDWR as <hostid> and writes records to /<pbd>/rec-<tag>.
 *   fence <pbd> <hostid> follow <name>...
 *       Mounts RD as <hostid> and every 50 ms prints "seen <name> <size>"
 *       for each of the files /<pbd>/<name> whose size changed, until
 *       killed.
 *
 * A writer prints "pid <tag> <pid>", opens /<pbd>/rec-<tag> and writes
 * record i (4096 bytes, see record()) at offset i*4096, fsyncs it and
 * prints "ack <tag> <i>", for i from 0 to <records>-1, 10 ms apart. The
 * first call that fails prints "fail <tag> <i> <call> <errno>" and ends
 * that writer. Every line is flushed at once; the exit status is 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "common.h"

#define REC 4096

/* Record i of process tag: "<tag> <i>\n", then 'a' + i % 26. */
static void
record(unsigned char *buf, char tag, int i)
{
	char head[32];
	int n = snprintf(head, sizeof head, "%c %d\n", tag, i);
	CHECK(n > 0 && n < (int)sizeof head);
	memset(buf, 'a' + i % 26, REC);
	memcpy(buf, head, n);
}

static void
writer(const char *pbd, char tag, int records)
{
	unsigned char buf[REC];
	printf("pid %c %d\n", tag, (int)getpid());
	int fd = pfsd_open(pathf("/%s/rec-%c", pbd, tag), O_CREAT | O_RDWR, 0644);
	if (fd < 0) {
		printf("fail %c 0 open %d\n", tag, errno);
		return;
	}
	for (int i = 0; i < records; i++) {
		record(buf, tag, i);
		if (pfsd_pwrite(fd, buf, REC, (off_t)i * REC) != REC) {
			printf("fail %c %d pwrite %d\n", tag, i, errno);
			return;
		}
		if (pfsd_fsync(fd) != 0) {
			printf("fail %c %d fsync %d\n", tag, i, errno);
			return;
		}
		printf("ack %c %d\n", tag, i);
		usleep(10000);
	}
	pfsd_close(fd);
}

static void
follow(const char *pbd, int n, char **names)
{
	long long last[64];
	CHECK(n <= 64);
	for (int k = 0; k < n; k++)
		last[k] = -1;
	for (;;) {
		for (int k = 0; k < n; k++) {
			struct stat st;
			if (pfsd_stat(pathf("/%s/%s", pbd, names[k]), &st) != 0)
				continue;
			if (st.st_size != last[k]) {
				last[k] = st.st_size;
				printf("seen %s %lld\n", names[k], last[k]);
			}
		}
		usleep(50000);
	}
}

int
main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: fence <pbd> <hostid> pair|write|follow ...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *pbd = argv[1], *mode = argv[3];
	int host = atoi(argv[2]);
	if (strcmp(mode, "follow") == 0) {
		CHECK(pfsd_mount("polarstore", pbd, host, PFS_RD) == 0);
		follow(pbd, argc - 4, argv + 4);
		return 0;
	}
	CHECK(pfsd_mount("polarstore", pbd, host, PFS_RDWR) == 0);
	if (strcmp(mode, "write") == 0 && argc == 6) {
		writer(pbd, argv[4][0], atoi(argv[5]));
		return 0;
	}
	CHECK(strcmp(mode, "pair") == 0 && argc == 5);
	int records = atoi(argv[4]);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		unsetenv("PFS_TEST_STOP_AT");
		writer(pbd, 'c', records);
		_exit(0);
	}
	writer(pbd, 'p', records);
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	return 0;
}
