/*
 * Every function of pfsd_sdk.h and the errno cases of the contract, on one
 * freshly formatted PBD. Usage: api <pbd>
 */
#define _GNU_SOURCE
#include <dirent.h>
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

static void
constants(void)
{
	CHECK(PFS_RD == 0x11);
	CHECK(PFS_RDWR == 0x13);
	CHECK(PFS_TOOL == 0x1000);
	CHECK(PFS_PAXOS_BYFORCE == 0x200000);
	CHECK(MNTFLG_RD == 0x1 && MNTFLG_WR == 0x2 && MNTFLG_LOG == 0x10);
	CHECK(MNTFLG_TOOL == 0x1000 && MNTFLG_PAXOS_BYFORCE == 0x200000);
	CHECK(PFSD_SDK_THREADS == 0 && PFSD_SDK_PROCESS == 1);
	CHECK(PFS_MAX_NAMELEN == 256 && PFS_MAX_PATHLEN == 4096 && PFS_MAX_PBDLEN == 64);
	CHECK(PFSD_FD_MAKE(5) == (5 | (1 << 30)));
	CHECK(PFSD_FD_ISVALID(PFSD_FD_MAKE(5)) && !PFSD_FD_ISVALID(5));
	CHECK(PFSD_FD_RAW(PFSD_FD_MAKE(5)) == 5);
	CHECK(PFSD_PATH_ISVALID("/1-1/x") && !PFSD_PATH_ISVALID("/tmp/x"));
}

static void
file_io(void)
{
	size_t big = (5u << 20) + 123;
	unsigned char *a = malloc(big), *b = malloc(big);
	CHECK(a && b);
	fill(a, big, 1);

	CHECK(pfsd_mkdir(P("d"), 0755) == 0);
	FAILS(pfsd_mkdir(P("d"), 0755), EEXIST);
	int fd = pfsd_creat(P("d/f"), 0644);
	CHECK(fd >= 0 && PFSD_FD_ISVALID(fd));
	/* One call of more than 4 MiB each way. */
	CHECK(pfsd_write(fd, a, big) == (ssize_t)big);
	CHECK(pfsd_lseek(fd, 0, SEEK_CUR) == (off_t)big);
	CHECK(pfsd_lseek(fd, 0, SEEK_END) == (off_t)big);
	CHECK(pfsd_lseek(fd, 10, SEEK_SET) == 10);
	CHECK(pfsd_lseek(fd, -4, SEEK_CUR) == 6);
	FAILS(pfsd_lseek(fd, -1, SEEK_SET), EINVAL);
	FAILS(pfsd_lseek(fd, 0, 99), EINVAL);
	FAILS(pfsd_pread(fd, b, 10, 0), EBADF); /* opened O_WRONLY */
	CHECK(pfsd_fsync(fd) == 0);
	CHECK(pfsd_close(fd) == 0);
	FAILS(pfsd_close(fd), EBADF);

	fd = pfsd_open(P("d/f"), O_RDONLY, 0);
	CHECK(fd >= 0);
	memset(b, 0, big);
	CHECK(pfsd_pread(fd, b, big, 0) == (ssize_t)big);
	CHECK(memcmp(a, b, big) == 0);
	memset(b, 0, big);
	CHECK(pfsd_read(fd, b, 1000) == 1000);
	CHECK(pfsd_read(fd, b + 1000, big) == (ssize_t)big - 1000);
	CHECK(memcmp(a, b, big) == 0);
	CHECK(pfsd_read(fd, b, 10) == 0);
	FAILS(pfsd_pwrite(fd, a, 10, 0), EBADF);
	FAILS(pfsd_write(fd, a, 10), EBADF);
	FAILS(pfsd_pread(fd, b, 10, -1), EINVAL);
	FAILS(pfsd_pread(fd, NULL, 10, 0), EINVAL);

	struct stat st;
	CHECK(pfsd_fstat(fd, &st) == 0);
	CHECK(S_ISREG(st.st_mode) && st.st_size == (off_t)big);
	CHECK(pfsd_stat(P("d"), &st) == 0 && S_ISDIR(st.st_mode));
	/* As the reference's pfsd_stat: 4 MiB blocks, every permission. */
	CHECK(st.st_blksize == 4 << 20 && (st.st_mode & 07777) == 0777);
	/* /<pbd> alone is the root. */
	CHECK(pfsd_stat(pathf("/%s", pbd), &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == 0);
	CHECK(pfsd_close(fd) == 0);

	/* O_APPEND, O_TRUNC, O_EXCL. */
	fd = pfsd_open(P("d/f"), O_WRONLY | O_APPEND, 0);
	CHECK(fd >= 0);
	CHECK(pfsd_pwrite(fd, "xyz", 3, 0) == 3);
	CHECK(pfsd_write(fd, "uvw", 3) == 3);
	CHECK(pfsd_stat(P("d/f"), &st) == 0 && st.st_size == (off_t)big + 6);
	int rfd = pfsd_open(P("d/f"), O_RDONLY, 0);
	CHECK(rfd >= 0 && pfsd_pread(rfd, b, 6, big) == 6);
	CHECK(memcmp(b, "xyzuvw", 6) == 0);
	CHECK(pfsd_close(rfd) == 0);
	CHECK(pfsd_close(fd) == 0);
	FAILS(pfsd_open(P("d/f"), O_CREAT | O_EXCL | O_RDWR, 0644), EEXIST);
	fd = pfsd_open(P("d/f"), O_RDWR | O_TRUNC, 0);
	CHECK(fd >= 0);
	CHECK(pfsd_fstat(fd, &st) == 0 && st.st_size == 0);
	/* A write at an offset leaves a hole that reads as zeros. */
	CHECK(pfsd_pwrite(fd, "end", 3, 100000) == 3);
	CHECK(pfsd_pread(fd, b, 16, 99990) == 13);
	CHECK(b[0] == 0 && b[9] == 0 && memcmp(b + 10, "end", 3) == 0);

	/* truncate, ftruncate. */
	CHECK(pfsd_truncate(P("d/f"), 10000) == 0);
	CHECK(pfsd_fstat(fd, &st) == 0 && st.st_size == 10000);
	CHECK(pfsd_ftruncate(fd, 5) == 0);
	CHECK(pfsd_stat(P("d/f"), &st) == 0 && st.st_size == 5);
	FAILS(pfsd_truncate(P("d/f"), -1), EINVAL);
	FAILS(pfsd_ftruncate(fd, -1), EINVAL);
	FAILS(pfsd_truncate(P("d/nothing"), 0), ENOENT);

	/* fallocate modes. */
	CHECK(pfsd_fallocate(fd, 0, 0, 8 << 20) == 0);
	CHECK(pfsd_fstat(fd, &st) == 0 && st.st_size == 8 << 20);
	CHECK(pfsd_fallocate(fd, FALLOC_FL_KEEP_SIZE, 8 << 20, 4 << 20) == 0);
	CHECK(pfsd_fstat(fd, &st) == 0 && st.st_size == 8 << 20);
	CHECK(pfsd_fallocate(fd, 0x04, 0, 12 << 20) == 0);
	CHECK(pfsd_fstat(fd, &st) == 0 && st.st_size == 12 << 20);
	CHECK(pfsd_posix_fallocate(fd, 0, 13 << 20) == 0);
	CHECK(pfsd_fstat(fd, &st) == 0 && st.st_size == 13 << 20);
	FAILS(pfsd_fallocate(fd, 0, 0, 0), EINVAL);
	FAILS(pfsd_fallocate(fd, 0, -1, 10), EINVAL);
	FAILS(pfsd_fallocate(-1, 0, 0, 10), EBADF);
	FAILS(pfsd_fallocate(fd, 0x10, 0, 10), EOPNOTSUPP);
	CHECK(pfsd_fchmod(fd, 0600) == 0);
	CHECK(pfsd_close(fd) == 0);
	free(a);
	free(b);
}

static void
errors(void)
{
	struct stat st;
	char name[300];
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';

	FAILS(pfsd_open(P("d/missing"), O_RDONLY, 0), ENOENT);
	FAILS(pfsd_stat(P("missing/x"), &st), ENOENT);
	FAILS(pfsd_open(P("d/f/x"), O_RDONLY, 0), ENOTDIR);
	FAILS(pfsd_mkdir(P("d/f/x"), 0755), ENOTDIR);
	FAILS(pfsd_open(P(name), O_CREAT | O_RDWR, 0644), ENAMETOOLONG);
	FAILS(pfsd_mkdir(P(name), 0755), ENAMETOOLONG);
	char *longpath = malloc(PFS_MAX_PATHLEN + 10);
	CHECK(longpath);
	memset(longpath, 'a', PFS_MAX_PATHLEN + 9);
	longpath[0] = '/';
	longpath[PFS_MAX_PATHLEN + 9] = '\0';
	FAILS(pfsd_stat(longpath, &st), ENAMETOOLONG);
	free(longpath);
	FAILS(pfsd_rmdir(P("d")), ENOTEMPTY);
	FAILS(pfsd_rmdir(P("d/f")), ENOTDIR);
	FAILS(pfsd_unlink(P("d")), EISDIR);
	FAILS(pfsd_open("/otherpbd/x", O_RDONLY, 0), ENODEV);
	FAILS(pfsd_mkdir("/otherpbd/x", 0755), ENODEV);
	FAILS(pfsd_stat("/otherpbd/x", &st), ENODEV);
	FAILS_NULL(pfsd_opendir("/otherpbd/"), ENODEV);
	FAILS(pfsd_rename(P("d/f"), "/otherpbd/f"), EXDEV);
	FAILS(pfsd_open(NULL, O_RDONLY, 0), EINVAL);
	FAILS(pfsd_open("", O_RDONLY, 0), EINVAL);
	FAILS(pfsd_pread(12345, &st, 1, 0), EBADF);
	FAILS(pfsd_pread(PFSD_FD_MAKE(99999), &st, 1, 0), EBADF);
	FAILS(pfsd_close(-1), EBADF);
	FAILS(pfsd_fstat(PFSD_FD_MAKE(7777), &st), EBADF);
	FAILS(pfsd_readlink(P("d/f"), name, sizeof name), EINVAL);
	FAILS(pfsd_access(P("d/f"), 0x100), EINVAL);
	FAILS(pfsd_access(P("d/zz"), F_OK), ENOENT);
	CHECK(pfsd_access(P("d/f"), F_OK) == 0);
	CHECK(pfsd_access(P("d/f"), R_OK | W_OK) == 0);
	CHECK(pfsd_chmod(P("d/f"), 0600) == 0);
	CHECK(pfsd_chown(P("d/f"), 0, 0) == 0);
	FAILS(pfsd_remount(NULL, pbd, 1, PFS_RDWR), EINVAL);
	FAILS(pfsd_remount(NULL, pbd, 2, PFS_RDWR), EINVAL);
	FAILS(pfsd_remount(NULL, "otherpbd", 1, PFS_RDWR), ENODEV);
}

static void
directories(void)
{
	/* A directory opens read-only; reading it is EISDIR. */
	int fd = pfsd_open(P("d"), O_RDONLY, 0);
	CHECK(fd >= 0);
	char c;
	FAILS(pfsd_read(fd, &c, 1), EISDIR);
	CHECK(pfsd_close(fd) == 0);
	FAILS(pfsd_open(P("d"), O_RDWR, 0), EISDIR);
	FAILS(pfsd_open(P("d/f"), O_RDONLY | O_DIRECTORY, 0), ENOTDIR);

	CHECK(pfsd_mkdir(P("d/sub"), 0755) == 0);
	DIR *dir = pfsd_opendir(P("d"));
	CHECK(dir != NULL && PFSD_DIR_ISVALID(dir));
	int seen_f = 0, seen_sub = 0, n = 0;
	struct dirent *e;
	errno = 0;
	while ((e = pfsd_readdir(dir)) != NULL) {
		n++;
		if (strcmp(e->d_name, "f") == 0 && e->d_type == DT_REG)
			seen_f++;
		if (strcmp(e->d_name, "sub") == 0 && e->d_type == DT_DIR)
			seen_sub++;
	}
	CHECK(errno == 0);
	CHECK(n == 2 && seen_f == 1 && seen_sub == 1);
	CHECK(pfsd_readdir(dir) == NULL && errno == 0);
	CHECK(pfsd_closedir(dir) == 0);

	dir = pfsd_opendir(P("d/"));
	CHECK(dir != NULL);
	struct dirent ent, *res;
	n = 0;
	for (;;) {
		CHECK(pfsd_readdir_r(dir, &ent, &res) == 0);
		if (res == NULL)
			break;
		CHECK(res == &ent);
		n++;
	}
	CHECK(n == 2);
	CHECK(pfsd_closedir(dir) == 0);
	/* A closed stream is a bad handle, as a closed descriptor is: never
	 * touched again, however it is used. */
	FAILS(pfsd_closedir(dir), EBADF);
	FAILS_NULL(pfsd_readdir(dir), EBADF);
	FAILS(pfsd_readdir_r(dir, &ent, &res), EBADF);
	/* Streams opened later do not revive it. */
	DIR *dirs[8];
	for (int i = 0; i < 8; i++) {
		dirs[i] = pfsd_opendir(P("d"));
		CHECK(dirs[i] != NULL && dirs[i] != dir);
	}
	FAILS_NULL(pfsd_readdir(dir), EBADF);
	for (int i = 0; i < 8; i++) {
		CHECK(pfsd_readdir(dirs[i]) != NULL);
		CHECK(pfsd_closedir(dirs[i]) == 0);
		FAILS(pfsd_closedir(dirs[i]), EBADF);
	}
	/* A handle the SDK never gave out, marked as its handles are. */
	DIR *forged = PFSD_DIR_MAKE((DIR *)(uintptr_t)0x7f0000001000);
	FAILS_NULL(pfsd_readdir(forged), EBADF);
	FAILS(pfsd_readdir_r(forged, &ent, &res), EBADF);
	FAILS(pfsd_closedir(forged), EBADF);
	FAILS_NULL(pfsd_opendir(P("nodir")), ENOENT);
	FAILS_NULL(pfsd_opendir(P("d/f")), ENOTDIR);
	FAILS_NULL(pfsd_readdir(NULL), EINVAL);
	FAILS(pfsd_closedir(NULL), EINVAL);

	/* Working directory and relative paths. */
	char buf[PFS_MAX_PATHLEN];
	FAILS_NULL(pfsd_getcwd(buf, sizeof buf), ENOENT);
	FAILS(pfsd_open("f", O_RDONLY, 0), ENOENT);
	CHECK(pfsd_chdir(P("d/sub/..")) == 0);
	CHECK(pfsd_getcwd(buf, sizeof buf) == buf);
	char want[128];
	snprintf(want, sizeof want, "/%s/d", pbd);
	CHECK(strcmp(buf, want) == 0);
	CHECK(pfsd_getwd(buf) == buf && strcmp(buf, want) == 0);
	FAILS_NULL(pfsd_getcwd(buf, 3), ERANGE);
	FAILS_NULL(pfsd_getcwd(NULL, 10), EINVAL);
	fd = pfsd_open("f", O_RDONLY, 0);
	CHECK(fd >= 0);
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_mkdir("sub/rel", 0755) == 0);
	CHECK(pfsd_rmdir("sub/rel") == 0);
	FAILS(pfsd_chdir(P("d/f")), ENOTDIR);
	FAILS(pfsd_chdir(P("d/none")), ENOENT);
	CHECK(pfsd_chdir("sub") == 0);
	CHECK(pfsd_getcwd(buf, sizeof buf) == buf);
	snprintf(want, sizeof want, "/%s/d/sub", pbd);
	CHECK(strcmp(buf, want) == 0);
	/* .. is followed through the namespace: a file has none. */
	FAILS(pfsd_chdir(P("d/f/..")), ENOTDIR);
	CHECK(pfsd_chdir(pathf("/%s", pbd)) == 0);
	snprintf(want, sizeof want, "/%s/", pbd);
	CHECK(pfsd_getcwd(buf, sizeof buf) == buf && strcmp(buf, want) == 0);
	CHECK(pfsd_chdir("d/../..") == 0);
	CHECK(pfsd_getcwd(buf, sizeof buf) == buf && strcmp(buf, want) == 0);
	CHECK(pfsd_chdir(P("")) == 0);
}

static void
rename_unlink(void)
{
	struct stat st;
	int fd = pfsd_open(P("d/g"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	CHECK(pfsd_pwrite(fd, "hello", 5, 0) == 5);
	/* Unlinked while open: gone by name, readable through fd. */
	CHECK(pfsd_unlink(P("d/g")) == 0);
	FAILS(pfsd_stat(P("d/g"), &st), ENOENT);
	FAILS(pfsd_unlink(P("d/g")), ENOENT);
	char b[8] = {0};
	CHECK(pfsd_pread(fd, b, 8, 0) == 5 && memcmp(b, "hello", 5) == 0);
	CHECK(pfsd_close(fd) == 0);

	CHECK(pfsd_rename(P("d/f"), P("d/f2")) == 0);
	FAILS(pfsd_stat(P("d/f"), &st), ENOENT);
	CHECK(pfsd_stat(P("d/f2"), &st) == 0 && st.st_size == 13 << 20);
	FAILS(pfsd_rename(P("d/f"), P("d/f3")), ENOENT);
	/* Rename over an existing file replaces it. */
	fd = pfsd_creat(P("d/f3"), 0644);
	CHECK(fd >= 0 && pfsd_close(fd) == 0);
	CHECK(pfsd_rename(P("d/f3"), P("d/f2")) == 0);
	CHECK(pfsd_stat(P("d/f2"), &st) == 0 && st.st_size == 0);
	CHECK(pfsd_unlink(P("d/f2")) == 0);
	CHECK(pfsd_rmdir(P("d/sub")) == 0);
	CHECK(pfsd_rmdir(P("d")) == 0);
}

static void
emfile(void)
{
	int fd = pfsd_creat(P("many"), 0644);
	CHECK(fd >= 0 && pfsd_close(fd) == 0);
	int *fds = malloc(sizeof(int) * 110000);
	CHECK(fds);
	int n = 0;
	for (;;) {
		fd = pfsd_open(P("many"), O_RDONLY, 0);
		if (fd < 0)
			break;
		fds[n++] = fd;
		CHECK(n < 110000);
	}
	CHECK(errno == EMFILE);
	CHECK(n == 102400);
	for (int i = 0; i < n; i++)
		CHECK(pfsd_close(fds[i]) == 0);
	free(fds);
	fd = pfsd_open(P("many"), O_RDONLY, 0);
	CHECK(fd >= 0 && pfsd_close(fd) == 0);
	CHECK(pfsd_unlink(P("many")) == 0);
}

static void
enospc(void)
{
	/* A 10 GiB device has 2048 inodes; directories run out of them. */
	int n = 0;
	char rel[32];
	for (;;) {
		snprintf(rel, sizeof rel, "sp%d", n);
		if (pfsd_mkdir(P(rel), 0755) != 0)
			break;
		n++;
		CHECK(n < 5000);
	}
	CHECK(errno == ENOSPC);
	CHECK(n > 1000);
	while (n-- > 0) {
		snprintf(rel, sizeof rel, "sp%d", n);
		CHECK(pfsd_rmdir(P(rel)) == 0);
	}
}

static void
forked_children(void)
{
	struct stat st;
	int status;
	/* PFSD_SDK_THREADS: a child has no mount. */
	pfsd_set_mode(PFSD_SDK_THREADS);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		FAILS(pfsd_stat(P(""), &st), ENODEV);
		_exit(0);
	}
	CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	pfsd_set_mode(PFSD_SDK_PROCESS);
	/* PFSD_SDK_PROCESS: a child mounts again; inherited descriptors are
	 * invalid there; the parent sees the child's change at once. */
	int fd = pfsd_creat(P("parent-file"), 0644);
	CHECK(fd >= 0);
	DIR *dir = pfsd_opendir(P(""));
	CHECK(dir != NULL);
	c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		FAILS(pfsd_write(fd, "x", 1), EBADF);
		FAILS_NULL(pfsd_readdir(dir), EBADF);
		FAILS(pfsd_closedir(dir), EBADF);
		int cfd = pfsd_creat(P("child-file"), 0644);
		CHECK(cfd >= 0);
		CHECK(pfsd_write(cfd, "from child", 10) == 10);
		CHECK(pfsd_close(cfd) == 0);
		_exit(0);
	}
	CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(pfsd_write(fd, "parent", 6) == 6);
	CHECK(pfsd_close(fd) == 0);
	CHECK(pfsd_readdir(dir) != NULL);
	CHECK(pfsd_closedir(dir) == 0);
	CHECK(pfsd_stat(P("child-file"), &st) == 0 && st.st_size == 10);
	CHECK(pfsd_unlink(P("child-file")) == 0);
	CHECK(pfsd_unlink(P("parent-file")) == 0);
}

int
main(int argc, char **argv)
{
	CHECK(argc == 2);
	pbd = argv[1];
	constants();

	/* Nothing works before the mount. */
	FAILS(pfsd_open(P("x"), O_RDONLY, 0), ENODEV);
	FAILS(pfsd_close(PFSD_FD_MAKE(0)), EBADF);
	FAILS(pfsd_umount(pbd), ENODEV);

	pfsd_set_svr_addr("/var/run/pfsd", 13);
	pfsd_set_connect_timeout(1000);
	pfsd_set_mode(PFSD_SDK_PROCESS);
	FAILS(pfsd_mount(NULL, NULL, 1, PFS_RDWR), EINVAL);
	CHECK(pfsd_mount("polarstore", pbd, 1, PFS_RDWR) == 0);
	CHECK(pfsd_mount(NULL, pbd, 1, PFS_RDWR) == 0); /* already mounted */
	CHECK(pfsd_meta_version_get() == 2);
	CHECK(strncmp(pfsd_build_version_get(), "libpfs_version_", 15) == 0);
	CHECK(pfsd_abort_request(getpid()) == 0);
	CHECK(pfsd_mount_growfs(pbd) == 0);

	file_io();
	errors();
	directories();
	rename_unlink();
	forked_children();
	emfile();
	enospc();

	/* A stream left open is freed by the unmount. */
	DIR *left_open = pfsd_opendir(P(""));
	CHECK(left_open != NULL);
	FAILS(pfsd_umount("otherpbd"), ENODEV);
	CHECK(pfsd_umount(pbd) == 0);
	FAILS_NULL(pfsd_readdir(left_open), EBADF);
	FAILS(pfsd_closedir(left_open), EBADF);
	FAILS(pfsd_stat(P("x"), NULL), EINVAL);
	struct stat st;
	FAILS(pfsd_stat(P(""), &st), ENODEV);
	/* Mount again, as a tool, and see the (empty) root. */
	CHECK(pfsd_mount(NULL, pbd, 0, PFS_TOOL | PFS_RDWR) == 0);
	CHECK(pfsd_stat(P(""), &st) == 0 && S_ISDIR(st.st_mode));
	CHECK(pfsd_umount_force(pbd) == 0);
	printf("ok\n");
	return 0;
}
