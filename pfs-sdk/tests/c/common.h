/* Helpers shared by the C test programs. */
#ifndef SDK_TEST_COMMON_H
#define SDK_TEST_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: check failed: %s (errno %d %s)\n", \
			    __FILE__, __LINE__, #cond, errno, strerror(errno)); \
			exit(1);                                           \
		}                                                          \
	} while (0)

/* The call returns `bad` and sets errno to e. */
#define FAILS_AS(call, bad, e)                                             \
	do {                                                               \
		errno = 0;                                                 \
		int ok_ = ((call) == (bad));                               \
		int err_ = errno;                                          \
		if (!ok_ || err_ != (e)) {                                 \
			fprintf(stderr, "%s:%d: %s: %s, errno %d (%s), expected %d (%s)\n", \
			    __FILE__, __LINE__, #call,                     \
			    ok_ ? "failed" : "did not fail", err_,         \
			    strerror(err_), (e), strerror(e));             \
			exit(1);                                           \
		}                                                          \
	} while (0)

/* An int/ssize_t/off_t call returns -1 with errno e. */
#define FAILS(call, e) FAILS_AS(call, -1, e)
/* A pointer call returns NULL with errno e. */
#define FAILS_NULL(call, e) FAILS_AS(call, NULL, e)

/* Fills buf with bytes derived from seed. */
static inline void
fill(unsigned char *buf, size_t len, unsigned seed)
{
	unsigned x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}
}

/* A path formatted printf-style into one of a few rotating buffers, so a
 * call can take several at once. */
static inline const char *
pathf(const char *fmt, ...)
{
	static char bufs[4][4096 + 64];
	static int n;
	char *b = bufs[n++ % 4];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof bufs[0], fmt, ap);
	va_end(ap);
	return b;
}

#endif
