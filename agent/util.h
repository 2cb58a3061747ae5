/*
 * util: allocation that never returns NULL, time, durations, small strings.
 * Out-of-memory is not an error path here: the x* wrappers abort with a
 * message, so callers never test their result.
 */
#ifndef DROVER_UTIL_H
#define DROVER_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/*
 * Makes room for n + 1 elements of elem_size in v (capacity *cap, doubled
 * as needed, 16 at first): the usual "append one" of a growable array.
 */
void *xgrow(void *v, size_t *cap, size_t n, size_t elem_size);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* Milliseconds since the Unix epoch (wall clock), and a monotonic clock. */
int64_t now_ms(void);
int64_t mono_ms(void);

/* "2026-11-29T08:35:00.123Z" into buf (at least 32 bytes). */
void time_format_iso8601(int64_t epoch_ms, char *buf, size_t buf_len);

/*
 * Parses "500ms", "30s", "10m", "2h", "1h30m", "1d" or a bare number of
 * seconds. Returns 0 and the duration, or -1 for anything else (empty,
 * negative, unknown unit, overflow).
 */
int duration_parse_ms(const char *s, int64_t *out_ms);
/* The other way: "250ms", "42s", "3m05s", "2h10m", "1d03h" (ms >= 0). */
void duration_format(int64_t ms, char *buf, size_t buf_len);

/* A growable byte buffer, always NUL-terminated. */
struct strbuf {
	char *data;
	size_t len;
	size_t cap;
};
void strbuf_init(struct strbuf *sb);
void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_reset(struct strbuf *sb);
/* Room for extra more bytes (and the NUL) without another allocation. */
void strbuf_reserve(struct strbuf *sb, size_t extra);
char *strbuf_detach(struct strbuf *sb); /* caller owns the result; sb is empty again */
void strbuf_free(struct strbuf *sb);

/* Whole file into a NUL-terminated buffer (caller frees); NULL and errno on failure. */
char *file_read_all(const char *path, size_t max_bytes, size_t *out_len);
/* mkdir -p; 0 or -1 with errno. */
int mkdir_p(const char *path, unsigned mode);
/* rm -rf of a directory tree; 0 or -1. */
int rm_rf(const char *path);
/* Sets O_CLOEXEC (and O_NONBLOCK when asked) on fd. */
int fd_set_flags(int fd, bool nonblock);

#endif
