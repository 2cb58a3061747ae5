/*
 * util: the small helpers every part uses. Owns nothing; holds no state.
 */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die_oom(size_t n)
{
	fprintf(stderr, "drover: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		die_oom(n);
	return p;
}

void *xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (p == NULL)
		die_oom(count * n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		die_oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void *xgrow(void *v, size_t *cap, size_t n, size_t elem_size)
{
	if (n < *cap)
		return v;
	*cap = *cap > 0 ? *cap * 2 : 16;
	return xrealloc(v, *cap * elem_size);
}

char *xvasprintf(const char *fmt, va_list ap)
{
	va_list copy;
	va_copy(copy, ap);
	int n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		die_oom(0);
	char *p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_format_iso8601(int64_t epoch_ms, char *buf, size_t buf_len)
{
	time_t secs = (time_t)(epoch_ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char base[24];
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, buf_len, "%s.%03dZ", base, (int)(epoch_ms % 1000));
}

int duration_parse_ms(const char *s, int64_t *out_ms)
{
	if (s == NULL || *s == '\0')
		return -1;
	int64_t total = 0;
	const char *p = s;
	while (*p != '\0') {
		if (*p < '0' || *p > '9')
			return -1;
		int64_t n = 0;
		while (*p >= '0' && *p <= '9') {
			if (n > INT64_MAX / 10 - 10)
				return -1;
			n = n * 10 + (*p - '0');
			p++;
		}
		int64_t unit;
		if (*p == '\0' && p == s + strspn(s, "0123456789"))
			unit = 1000; /* a bare number is seconds */
		else if (strncmp(p, "ms", 2) == 0)
			unit = 1, p += 2;
		else if (*p == 's')
			unit = 1000, p++;
		else if (*p == 'm')
			unit = 60 * 1000, p++;
		else if (*p == 'h')
			unit = 3600 * 1000, p++;
		else if (*p == 'd')
			unit = 86400 * 1000, p++;
		else
			return -1;
		if (n > (INT64_MAX - total) / unit)
			return -1;
		total += n * unit;
	}
	*out_ms = total;
	return 0;
}

void duration_format(int64_t ms, char *buf, size_t buf_len)
{
	long long s = (long long)(ms / 1000);
	if (ms < 1000)
		snprintf(buf, buf_len, "%lldms", (long long)ms);
	else if (s < 60)
		snprintf(buf, buf_len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, buf_len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, buf_len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, buf_len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

void strbuf_init(struct strbuf *sb)
{
	sb->data = NULL;
	sb->len = 0;
	sb->cap = 0;
}

static void strbuf_grow(struct strbuf *sb, size_t extra)
{
	if (sb->len + extra + 1 <= sb->cap)
		return;
	size_t cap = sb->cap ? sb->cap : 64;
	while (cap < sb->len + extra + 1)
		cap *= 2;
	sb->data = xrealloc(sb->data, cap);
	sb->cap = cap;
}

void strbuf_reserve(struct strbuf *sb, size_t extra)
{
	strbuf_grow(sb, extra);
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
	strbuf_grow(sb, len);
	memcpy(sb->data + sb->len, data, len);
	sb->len += len;
	sb->data[sb->len] = '\0';
}

void strbuf_adds(struct strbuf *sb, const char *s)
{
	strbuf_add(sb, s, strlen(s));
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	strbuf_adds(sb, s);
	free(s);
}

void strbuf_reset(struct strbuf *sb)
{
	sb->len = 0;
	if (sb->data != NULL)
		sb->data[0] = '\0';
}

char *strbuf_detach(struct strbuf *sb)
{
	char *p = sb->data != NULL ? sb->data : xstrdup("");
	strbuf_init(sb);
	return p;
}

void strbuf_free(struct strbuf *sb)
{
	free(sb->data);
	strbuf_init(sb);
}

char *file_read_all(const char *path, size_t max_bytes, size_t *out_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_grow(&sb, 4096);
	sb.data[0] = '\0';
	for (;;) {
		strbuf_grow(&sb, 4096);
		ssize_t n = read(fd, sb.data + sb.len, sb.cap - sb.len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int saved = errno;
			close(fd);
			strbuf_free(&sb);
			errno = saved;
			return NULL;
		}
		if (n == 0)
			break;
		sb.len += (size_t)n;
		sb.data[sb.len] = '\0';
		if (max_bytes > 0 && sb.len > max_bytes) {
			close(fd);
			strbuf_free(&sb);
			errno = EFBIG;
			return NULL;
		}
	}
	close(fd);
	if (out_len != NULL)
		*out_len = sb.len;
	return strbuf_detach(&sb);
}

/* mkdir of one directory; a directory already there is success. */
static int mkdir_one(const char *path, unsigned mode)
{
	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	return 0;
}

/*
 * The whole path first: usually its parent exists, and that is one mkdir.
 * Only on ENOENT does it walk up, cutting components off (in place) until
 * a mkdir succeeds or finds the directory, then back down, putting each cut
 * slash back and making that directory.
 */
int mkdir_p(const char *path, unsigned mode)
{
	char *copy = xstrdup(path);
	size_t len = strlen(copy);
	while (len > 1 && copy[len - 1] == '/')
		copy[--len] = '\0';
	int rc = mkdir_one(copy, mode);
	size_t n_cut = 0;
	while (rc != 0 && errno == ENOENT) {
		char *slash = strrchr(copy, '/');
		if (slash == NULL || slash == copy)
			break; /* the root or the working directory is missing */
		while (slash > copy + 1 && slash[-1] == '/')
			slash--; /* a//b: cut at the first of the slashes */
		*slash = '\0';
		n_cut++;
		rc = mkdir_one(copy, mode);
	}
	for (; rc == 0 && n_cut > 0; n_cut--) {
		char *p = copy + strlen(copy);
		while (p < copy + len && *p == '\0')
			*p++ = '/';
		rc = mkdir_one(copy, mode);
	}
	int saved = errno;
	free(copy);
	errno = saved;
	return rc;
}

int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *child = xasprintf("%s/%s", path, de->d_name);
		if (rm_rf(child) != 0)
			rc = -1;
		free(child);
	}
	closedir(d);
	if (rmdir(path) != 0)
		rc = -1;
	return rc;
}

int fd_set_flags(int fd, bool nonblock)
{
	int fdf = fcntl(fd, F_GETFD);
	if (fdf < 0 || fcntl(fd, F_SETFD, fdf | FD_CLOEXEC) < 0)
		return -1;
	if (nonblock) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -1;
	}
	return 0;
}
