/*
 * log: formats and escapes one line per message onto stderr. Holds no state:
 * the threshold is read from the environment on each call (cheap, and it
 * keeps the one-context rule).
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static enum log_level log_threshold(void)
{
	const char *s = getenv("DROVER_LOG_LEVEL");
	if (s == NULL)
		return LOG_INFO;
	if (strcmp(s, "debug") == 0)
		return LOG_DEBUG;
	if (strcmp(s, "warn") == 0)
		return LOG_WARN;
	if (strcmp(s, "error") == 0)
		return LOG_ERROR;
	return LOG_INFO;
}

char *log_escape(const char *s, char *buf, size_t buf_len)
{
	static const char hex[] = "0123456789abcdef";
	if (buf_len == 0)
		return buf;
	struct strbuf out;
	strbuf_init(&out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		char tmp[4];
		size_t n;
		if (*p == '\n') {
			tmp[0] = '\\', tmp[1] = 'n', n = 2;
		} else if (*p == '\r') {
			tmp[0] = '\\', tmp[1] = 'r', n = 2;
		} else if (*p == '\t') {
			tmp[0] = '\\', tmp[1] = 't', n = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			tmp[0] = '\\', tmp[1] = 'x', tmp[2] = hex[*p >> 4], tmp[3] = hex[*p & 15];
			n = 4;
		} else {
			tmp[0] = (char)*p, n = 1;
		}
		strbuf_add(&out, tmp, n);
		if (out.len >= buf_len)
			break; /* it will be cut anyway */
	}
	if (out.len < buf_len) {
		memcpy(buf, out.data != NULL ? out.data : "", out.len + 1);
	} else {
		/* Cut, and say so with "..." (as much of it as fits). */
		size_t dots = buf_len - 1 < 3 ? buf_len - 1 : 3;
		size_t keep = buf_len - 1 - dots;
		memcpy(buf, out.data, keep);
		memcpy(buf + keep, "...", dots);
		buf[keep + dots] = '\0';
	}
	strbuf_free(&out);
	return buf;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
	if (level < log_threshold())
		return;
	va_list ap;
	va_start(ap, fmt);
	char *raw = xvasprintf(fmt, ap);
	va_end(ap);
	/* Long foreign strings are cut, not allowed to flood the log. */
	char line[4096];
	log_escape(raw, line, sizeof line);
	free(raw);
	char ts[32];
	time_format_iso8601(now_ms(), ts, sizeof ts);
	fprintf(stderr, "%s %-5s %s\n", ts, names[level], line);
}
