/* pfsd_stat of one path, printed: `stat PBD HOSTID PATH` mounts PBD
 * read-only as HOSTID (next to a writer, say a FUSE mount) and prints the
 * fields of the path's struct stat that a FUSE mount reports too. */

#include <fcntl.h>
#include <sys/stat.h>

#include "pfsd_sdk.h"
#include "common.h"

int
main(int argc, char **argv)
{
	CHECK(argc == 4);
	const char *pbd = argv[1];
	CHECK(pfsd_mount("polarstore", pbd, atoi(argv[2]), PFS_RD) == 0);
	struct stat st;
	CHECK(pfsd_stat(pathf("/%s/%s", pbd, argv[3]), &st) == 0);
	printf("type=%s size=%lld blocks=%lld blksize=%lld nlink=%llu "
	    "atime=%lld mtime=%lld ctime=%lld\n",
	    S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : "other",
	    (long long)st.st_size, (long long)st.st_blocks,
	    (long long)st.st_blksize, (unsigned long long)st.st_nlink,
	    (long long)st.st_atime, (long long)st.st_mtime,
	    (long long)st.st_ctime);
	CHECK(pfsd_umount(pbd) == 0);
	return 0;
}
