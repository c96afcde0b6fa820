/*
 * pfsd_sdk.h: the C API of libpfsd, PolarDB's file-system SDK, as built by
 * pfs-rs (crate pfs-sdk). Programs written against the PolarDB-FileSystem
 * SDK header compile against this one unchanged.
 *
 * Each process mounts the PBD itself; there is no daemon. Paths are
 * "/<pbd>/<path>"; relative paths start at the directory set by pfsd_chdir.
 * Every function sets errno and returns -1 (or NULL) on failure.
 *
 * Licensed under the Apache License, Version 2.0.
 */

#ifndef PFSD_SDK_H
#define PFSD_SDK_H

#include <ctype.h>
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Size limits, each counting the terminating NUL. */
#define PFS_OBJDATA_SIZE      88
#define PFS_MAX_NAMELEN       256
#define PFS_MAX_PATHLEN       4096
#define PFS_MAX_PBDLEN        64

/* Mount flag bits. */
#define MNTFLG_RD             0x0001
#define MNTFLG_WR             0x0002
#define MNTFLG_LOG            0x0010
#define MNTFLG_INITED         0x0100
#define MNTFLG_TOOL           0x1000
#define MNTFLG_PAXOS_BYFORCE  0x200000

/* The flags pfsd_mount takes. */
#define PFS_RD                (MNTFLG_RD | MNTFLG_LOG)                  /* 0x11 */
#define PFS_RDWR              (MNTFLG_RD | MNTFLG_WR | MNTFLG_LOG)      /* 0x13 */
#define PFS_TOOL              MNTFLG_TOOL
#define PFS_PAXOS_BYFORCE     MNTFLG_PAXOS_BYFORCE

#ifdef __cplusplus
extern "C" {
#endif

/* SDK modes (pfsd_set_mode, pfsd_sdk_init). */
enum {
	PFSD_SDK_THREADS = 0, /* one process; a forked child has no mount */
	PFSD_SDK_PROCESS = 1  /* default: a forked child mounts again itself */
};

/* Setup. The server address and timeout are accepted and unused. */
void pfsd_set_mode(int mode);
void pfsd_set_svr_addr(const char *svraddr, size_t len);
void pfsd_set_connect_timeout(int timeout_ms);
int pfsd_sdk_init(int mode, const char *svraddr, int timeout_ms,
    const char *cluster, const char *pbdname, int hostid, int flags);

/* Mounting. cluster may be NULL; hostid 0 (or PFS_TOOL) takes the
 * filesystem's default host id. */
int pfsd_mount(const char *cluster, const char *pbdname, int hostid, int flags);
int pfsd_umount(const char *pbdname);
int pfsd_umount_force(const char *pbdname);
int pfsd_remount(const char *cluster, const char *pbdname, int hostid,
    int flags);
int pfsd_abort_request(pid_t pid);
int pfsd_mount_growfs(const char *pbdname);

/* Files and directories. */
int pfsd_rename(const char *oldpbdpath, const char *newpbdpath);
int pfsd_creat(const char *pbdpath, mode_t mode);
int pfsd_open(const char *pbdpath, int flags, mode_t mode);
ssize_t pfsd_read(int fd, void *buf, size_t len);
ssize_t pfsd_write(int fd, const void *buf, size_t len);
ssize_t pfsd_pread(int fd, void *buf, size_t len, off_t off);
ssize_t pfsd_pwrite(int fd, const void *buf, size_t len, off_t off);
int pfsd_truncate(const char *pbdpath, off_t len);
int pfsd_ftruncate(int fd, off_t len);
int pfsd_unlink(const char *pbdpath);
int pfsd_stat(const char *pbdpath, struct stat *buf);
int pfsd_fstat(int fd, struct stat *buf);
int pfsd_posix_fallocate(int fd, off_t offset, off_t len);
int pfsd_fallocate(int fd, int mode, off_t offset, off_t len);
off_t pfsd_lseek(int fd, off_t offset, int whence);
int pfsd_close(int fd);
int pfsd_fsync(int fd);

int pfsd_mkdir(const char *pbdpath, mode_t mode);
DIR *pfsd_opendir(const char *pbdpath);
struct dirent *pfsd_readdir(DIR *dir);
int pfsd_readdir_r(DIR *dir, struct dirent *entry, struct dirent **result);
int pfsd_closedir(DIR *dir);
int pfsd_rmdir(const char *pbdpath);
int pfsd_chdir(const char *pbdpath);
char *pfsd_getwd(char *buf);
char *pfsd_getcwd(char *buf, size_t size);
int pfsd_access(const char *pbdpath, int amode);

/* PFS has no links, modes or owners: readlink fails with EINVAL, the
 * others succeed and change nothing. */
ssize_t pfsd_readlink(const char *pbdpath, char *buf, size_t bufsize);
int pfsd_chmod(const char *pbdpath, mode_t mode);
int pfsd_fchmod(int fd, mode_t mode);
int pfsd_chown(const char *pbdpath, uid_t owner, gid_t group);

unsigned long pfsd_meta_version_get(void);
const char *pfsd_build_version_get(void);

#ifdef __cplusplus
}
#endif

/* Descriptors returned by pfsd_open carry bit 30, so a caller can tell
 * them from its own system descriptors. */
#define PFSD_FD_VALIDBIT      30
#define PFSD_FD_ISVALID(fd) \
	((fd) >= 0 && (((unsigned int)(fd)) & (1U << PFSD_FD_VALIDBIT)))
#define PFSD_FD_RAW(fd) \
	((int)(((unsigned int)(fd)) & ~(1U << PFSD_FD_VALIDBIT)))
#define PFSD_FD_MAKE(fd) \
	((int)(((unsigned int)(fd)) | (1U << PFSD_FD_VALIDBIT)))

/* DIR handles returned by pfsd_opendir have their lowest bit set. */
#define PFSD_DIR_RAW(dir)     ((DIR *)(((uint64_t)(dir)) & ~(uint64_t)1))
#define PFSD_DIR_MAKE(dir)    ((DIR *)(((uint64_t)(dir)) | (uint64_t)1))
#define PFSD_DIR_ISVALID(dir) ((dir) != NULL && (((intptr_t)(dir)) & 1))

/* Whether a path names a PFS file: "/<digit>...", "/pangu-..." or ".". */
#define PFSD_PATH_ISVALID(path) \
	((path) != NULL && \
	 (((path)[0] == '/' && isdigit((unsigned char)(path)[1])) || \
	  (path)[0] == '.' || strncmp((path), "/pangu-", 7) == 0))

#endif /* PFSD_SDK_H */
