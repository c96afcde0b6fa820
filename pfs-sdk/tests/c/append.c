/*
 * Appends from several processes to one file opened with O_APPEND. Each
 * writer appends records of its own, of sizes that make many of them
 * straddle a 4 MiB block; the checker reads the file back and finds every
 * record of every writer whole, exactly once, and nothing else.
 *
 *   append <pbd> write <hostid> <flags> <tag> <count>
 *       append <count> records tagged <tag> (one letter) to /<pbd>/log
 *   append <pbd> check <hostid> <flags> <tags> <count>
 *       check that /<pbd>/log holds <count> records of each tag in <tags>
 *
 * A record: the tag, its number ("%05u"), its body length ("%05u"), then
 * the body, bytes derived from tag and number.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pfsd_sdk.h"
#include "common.h"

#define HEADER 11

static const char *pbd;

static unsigned
body_len(unsigned seq)
{
	return 1000 + (seq * 7919u) % 9000u;
}

static unsigned
seed(char tag, unsigned seq)
{
	return (unsigned)(unsigned char)tag * 100000u + seq;
}

static int
writer(char tag, unsigned count)
{
	int fd = pfsd_open(pathf("/%s/log", pbd), O_CREAT | O_WRONLY | O_APPEND, 0644);
	CHECK(fd >= 0);
	unsigned char *rec = malloc(HEADER + 10000);
	CHECK(rec);
	for (unsigned i = 0; i < count; i++) {
		unsigned len = body_len(i);
		char head[32];
		snprintf(head, sizeof head, "%c%05u%05u", tag, i % 100000u, len);
		memcpy(rec, head, HEADER);
		fill(rec + HEADER, len, seed(tag, i));
		CHECK(pfsd_write(fd, rec, HEADER + len) == (ssize_t)(HEADER + len));
	}
	CHECK(pfsd_close(fd) == 0);
	free(rec);
	return 0;
}

static int
checker(const char *tags, unsigned count)
{
	struct stat st;
	CHECK(pfsd_stat(pathf("/%s/log", pbd), &st) == 0);
	size_t size = (size_t)st.st_size;
	unsigned char *all = malloc(size + 1);
	CHECK(all);
	int fd = pfsd_open(pathf("/%s/log", pbd), O_RDONLY, 0);
	CHECK(fd >= 0);
	CHECK(pfsd_pread(fd, all, size, 0) == (ssize_t)size);
	CHECK(pfsd_close(fd) == 0);

	size_t ntags = strlen(tags);
	unsigned char *seen = calloc(ntags * count, 1);
	unsigned char *want = malloc(10000);
	CHECK(seen && want);
	size_t pos = 0, records = 0;
	while (pos < size) {
		if (size - pos < HEADER) {
			fprintf(stderr, "a torn header at %zu of %zu\n", pos, size);
			return 1;
		}
		char head[HEADER + 1];
		memcpy(head, all + pos, HEADER);
		head[HEADER] = 0;
		const char *t = strchr(tags, head[0]);
		unsigned seq, len;
		if (head[0] == 0 || t == NULL || sscanf(head + 1, "%5u%5u", &seq, &len) != 2 ||
		    seq >= count || len != body_len(seq) || size - pos - HEADER < len) {
			fprintf(stderr, "no record at %zu of %zu: %.11s\n", pos, size, head);
			return 1;
		}
		fill(want, len, seed(head[0], seq));
		if (memcmp(all + pos + HEADER, want, len) != 0) {
			fprintf(stderr, "record %c%u at %zu: body overwritten\n", head[0], seq, pos);
			return 1;
		}
		unsigned char *s = &seen[(size_t)(t - tags) * count + seq];
		if (*s) {
			fprintf(stderr, "record %c%u twice (again at %zu)\n", head[0], seq, pos);
			return 1;
		}
		*s = 1;
		records++;
		pos += HEADER + len;
	}
	if (records != ntags * count) {
		fprintf(stderr, "%zu records, %zu expected\n", records, ntags * count);
		return 1;
	}
	printf("%zu records in %zu bytes\n", records, size);
	return 0;
}

int
main(int argc, char **argv)
{
	CHECK(argc == 7);
	pbd = argv[1];
	const char *mode = argv[2];
	CHECK(pfsd_mount(NULL, pbd, atoi(argv[3]), (int)strtol(argv[4], NULL, 0)) == 0);
	unsigned count = (unsigned)strtoul(argv[6], NULL, 0);
	int r;
	if (strcmp(mode, "write") == 0)
		r = writer(argv[5][0], count);
	else if (strcmp(mode, "check") == 0)
		r = checker(argv[5], count);
	else {
		fprintf(stderr, "unknown mode %s\n", mode);
		r = 2;
	}
	CHECK(pfsd_umount(pbd) == 0);
	return r;
}
