/*
 * One write or one truncate through libpfsd, for the data-lock failover
 * test (pfs-sdk/tests/failover.rs). Usage:
 *
 *   datalock <pbd> <hostid> overwrite <name>
 *       Mounts RDWR, prints "pid <pid>", writes 4096 bytes of 'w' at
 *       offset 0 of /<pbd>/<name> (which must exist) and prints
 *       "write <result> <errno>".
 *   datalock <pbd> <hostid> truncate <name>
 *       Mounts RDWR taking the writer lease over by force, cuts
 *       /<pbd>/<name> to 0 bytes and prints "truncate <result> <errno>".
 *
 * Every line is flushed at once; the exit status is 0 unless the mount or
 * the open fails.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "common.h"

int
main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: datalock <pbd> <hostid> overwrite|truncate <name>\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *pbd = argv[1], *mode = argv[3], *name = argv[4];
	int host = atoi(argv[2]);
	const char *path = pathf("/%s/%s", pbd, name);
	if (strcmp(mode, "truncate") == 0) {
		CHECK(pfsd_mount("polarstore", pbd, host, PFS_RDWR | PFS_PAXOS_BYFORCE) == 0);
		errno = 0;
		int r = pfsd_truncate(path, 0);
		printf("truncate %d %d\n", r, r == 0 ? 0 : errno);
		return 0;
	}
	CHECK(strcmp(mode, "overwrite") == 0);
	CHECK(pfsd_mount("polarstore", pbd, host, PFS_RDWR) == 0);
	printf("pid %d\n", (int)getpid());
	int fd = pfsd_open(path, O_RDWR, 0);
	CHECK(fd >= 0);
	char buf[4096];
	memset(buf, 'w', sizeof buf);
	errno = 0;
	ssize_t n = pfsd_pwrite(fd, buf, sizeof buf, 0);
	printf("write %zd %d\n", n, n == (ssize_t)sizeof buf ? 0 : errno);
	pfsd_close(fd);
	return 0;
}
