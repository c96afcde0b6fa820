/*
 * Two processes of one host writing numbered records, for the fencing
 * tests (issue 21). Usage:
 *
 *   fence <pbd> <hostid> <records>
 *
 * Mounts RDWR as <hostid>, then forks: the parent ("p") and the child
 * ("c", which mounts again with a cluster connection of its own at its
 * first call) each print "pid <tag> <pid>", open /<pbd>/rec-<tag> and
 * write record i (4096 bytes, see record()) at offset i*4096, fsync it
 * and print "ack <tag> <i>", for i from 0 to <records>-1, 10 ms apart.
 * The first call that fails prints "fail <tag> <i> <call> <errno>" and
 * ends that process's writing. The parent waits for the child and exits
 * 0. Every line is flushed at once. Only the parent keeps
 * PFS_TEST_STOP_AT: the child drops it before its first call.
 */
#define _GNU_SOURCE
#include <fcntl.h>
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

int
main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: fence <pbd> <hostid> <records>\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *pbd = argv[1];
	int host = atoi(argv[2]), records = atoi(argv[3]);
	CHECK(pfsd_mount("polarstore", pbd, host, PFS_RDWR) == 0);
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
