/*
 * A PFS on an RBD image through libpfsd (PBD rbd:<pool>:<image>; the
 * cluster from PFS_RBD_CONF). Usage:
 *
 *   rbd <pbd> write   mount RDWR as host 1, make /d/f (5 MiB + 123 bytes)
 *                     and /d/small, rename, fsync, read back; a forked
 *                     child (which mounts again, with a cluster connection
 *                     of its own) makes /d/child; unmount
 *   rbd <pbd> check   mount RD as host 2 and check what `write` left
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "common.h"

static const char *pbd;

#define P(rel) pathf("/%s/%s", pbd, (rel))

static const size_t big = (5u << 20) + 123;

static void
write_files(void)
{
	unsigned char *a = malloc(big), *b = malloc(big);
	CHECK(a && b);
	fill(a, big, 7);
	/* Ceph's logging makes stderr non-blocking as a client starts; the
	 * mount puts the program's stdout and stderr back as they were. */
	int out_flags = fcntl(1, F_GETFL), err_flags = fcntl(2, F_GETFL);
	CHECK(pfsd_mount("polarstore", pbd, 1, PFS_RDWR) == 0);
	CHECK(fcntl(1, F_GETFL) == out_flags && fcntl(2, F_GETFL) == err_flags);
	CHECK(pfsd_mkdir(P("d"), 0755) == 0);
	int fd = pfsd_open(P("d/f.tmp"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	CHECK(pfsd_pwrite(fd, a, big, 0) == (ssize_t)big);
	CHECK(pfsd_fsync(fd) == 0);
	CHECK(pfsd_pread(fd, b, big, 0) == (ssize_t)big);
	CHECK(memcmp(a, b, big) == 0);
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_rename(P("d/f.tmp"), P("d/f")) == 0);
	fd = pfsd_creat(P("d/small"), 0644);
	CHECK(fd >= 0);
	CHECK(pfsd_write(fd, "rbd\n", 4) == 4);
	CHECK(pfsd_close(fd) == 0);
	FAILS(pfsd_open(P("d/f.tmp"), O_RDONLY, 0), ENOENT);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		int cfd = pfsd_creat(P("d/child"), 0644);
		CHECK(cfd >= 0);
		CHECK(pfsd_write(cfd, "from child", 10) == 10);
		CHECK(pfsd_close(cfd) == 0);
		_exit(0);
	}
	int status;
	CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	struct stat st;
	CHECK(pfsd_stat(P("d/child"), &st) == 0 && st.st_size == 10);
	/* The parent writes on after the child. */
	fd = pfsd_open(P("d/small"), O_WRONLY | O_APPEND, 0);
	CHECK(fd >= 0);
	CHECK(pfsd_write(fd, "parent\n", 7) == 7);
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_umount(pbd) == 0);
	free(a);
	free(b);
}

static void
check_files(void)
{
	unsigned char *a = malloc(big), *b = malloc(big);
	CHECK(a && b);
	fill(a, big, 7);
	CHECK(pfsd_mount("polarstore", pbd, 2, PFS_RD) == 0);
	struct stat st;
	CHECK(pfsd_stat(P("d/f"), &st) == 0);
	CHECK(st.st_size == (off_t)big);
	int fd = pfsd_open(P("d/f"), O_RDONLY, 0);
	CHECK(fd >= 0);
	CHECK(pfsd_read(fd, b, big) == (ssize_t)big);
	CHECK(memcmp(a, b, big) == 0);
	CHECK(pfsd_close(fd) == 0);
	DIR *dir = pfsd_opendir(P("d"));
	CHECK(dir != NULL);
	int seen = 0;
	struct dirent *e;
	while ((e = pfsd_readdir(dir)) != NULL) {
		if (strcmp(e->d_name, "f") == 0)
			seen |= 1;
		else if (strcmp(e->d_name, "small") == 0)
			seen |= 2;
		else if (strcmp(e->d_name, "child") == 0)
			seen |= 8;
		else if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			seen |= 4;
	}
	CHECK(pfsd_closedir(dir) == 0);
	CHECK(seen == 11);
	FAILS(pfsd_mkdir(P("ro"), 0755), EROFS);
	CHECK(pfsd_umount(pbd) == 0);
	free(a);
	free(b);
}

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: rbd <pbd> write|check\n");
		return 2;
	}
	pbd = argv[1];
	if (strcmp(argv[2], "write") == 0)
		write_files();
	else if (strcmp(argv[2], "check") == 0)
		check_files();
	else
		return 2;
	printf("ok\n");
	return 0;
}
