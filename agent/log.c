/*
 * log: formats and escapes one line per message onto stderr. Holds no state:
 * the threshold is read from the environment on each call (cheap, and it
 * keeps the one-context rule).
 */
#include "log.h"

#include <stdarg.h>
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
	size_t o = 0;
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
		if (o + n + 4 >= buf_len) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(buf + o, tmp, n);
		o += n;
	}
	buf[o] = '\0';
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
