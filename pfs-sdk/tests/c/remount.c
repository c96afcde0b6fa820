/*
 * A read-only mount refuses changes with EROFS; pfsd_remount makes it
 * writable, for this process and for a child forked before the remount.
 * Descriptors inherited by a child are invalid there (EBADF).
 * Usage: remount <pbd>   (the PBD holds /<pbd>/w)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "common.h"

static const char *pbd;

/* "/<pbd>/<rel>". */
#define P(rel) pathf("/%s/%s", pbd, (rel))

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	pbd = argv[1];
	CHECK(pfsd_mount(NULL, pbd, 1, PFS_RD) == 0);
	struct stat st;
	CHECK(pfsd_stat(P("w"), &st) == 0 && S_ISDIR(st.st_mode));

	FAILS(pfsd_open(P("w/new"), O_CREAT | O_RDWR, 0644), EROFS);
	FAILS(pfsd_creat(P("w/new"), 0644), EROFS);
	FAILS(pfsd_mkdir(P("ro"), 0755), EROFS);
	FAILS(pfsd_rmdir(P("w")), EROFS);
	FAILS(pfsd_rename(P("w"), P("w2")), EROFS);
	FAILS(pfsd_access(P("w"), W_OK), EROFS);
	CHECK(pfsd_access(P("w"), R_OK) == 0);
	FAILS(pfsd_remount(NULL, pbd, 2, PFS_RDWR), EINVAL);

	/* A child forked before the remount waits for it, then writes. */
	int go[2], done[2];
	CHECK(pipe(go) == 0 && pipe(done) == 0);
	int ro_fd = pfsd_open(P("w"), O_RDONLY, 0);
	CHECK(ro_fd >= 0);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		char c;
		close(go[1]);
		close(done[0]);
		/* The inherited descriptor is not valid in the child. */
		FAILS(pfsd_fstat(ro_fd, &st), EBADF);
		CHECK(read(go[0], &c, 1) == 1);
		CHECK(pfsd_mkdir(P("from-child"), 0755) == 0);
		int fd = pfsd_creat(P("from-child/f"), 0644);
		CHECK(fd >= 0);
		CHECK(pfsd_write(fd, "child", 5) == 5);
		CHECK(pfsd_close(fd) == 0);
		CHECK(write(done[1], "x", 1) == 1);
		_exit(0);
	}
	close(go[0]);
	close(done[1]);
	CHECK(pfsd_fstat(ro_fd, &st) == 0);

	CHECK(pfsd_remount(NULL, pbd, 1, PFS_RDWR) == 0);
	FAILS(pfsd_remount(NULL, pbd, 1, PFS_RDWR), EINVAL);
	/* The descriptor opened before the remount still works. */
	CHECK(pfsd_fstat(ro_fd, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK(pfsd_close(ro_fd) == 0);
	CHECK(pfsd_mkdir(P("from-parent"), 0755) == 0);
	CHECK(write(go[1], "x", 1) == 1);
	char c;
	CHECK(read(done[0], &c, 1) == 1);
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The parent sees the child's change at once. */
	int fd = pfsd_open(P("from-child/f"), O_RDONLY, 0);
	CHECK(fd >= 0);
	char b[8] = {0};
	CHECK(pfsd_read(fd, b, sizeof b) == 5 && memcmp(b, "child", 5) == 0);
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_umount(pbd) == 0);
	printf("ok\n");
	return 0;
}
