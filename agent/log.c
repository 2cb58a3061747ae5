/*
 * log: formats and escapes one line per message onto stderr. Holds no state:
 * the threshold is read from the environment on each call (cheap, and it
 * keeps the one-context rule).
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
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

/* Length of the valid UTF-8 sequence at p (1-4), with its code point; 0 when invalid. */
static size_t log_utf8_decode(const unsigned char *p, uint32_t *cp)
{
	unsigned char c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n;
	uint32_t v;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, v = c & 0x0f;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
			return 0; /* overlong, or a surrogate */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, v = c & 0x07;
		if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
			return 0; /* overlong, or past U+10FFFF */
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the terminating NUL */
		v = (v << 6) | (p[i] & 0x3f);
	}
	*cp = v;
	return n;
}

/* Code points a terminal would act on or that reorder what follows them. */
static bool log_is_unsafe_codepoint(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
	       cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

size_t log_escape_unit(const unsigned char *p, char unit[16], size_t *unit_len)
{
	static const char hex[] = "0123456789abcdef";
	uint32_t cp;
	size_t n = log_utf8_decode(p, &cp);
	*unit_len = 0;
	if (n == 1 && (cp == '\n' || cp == '\r' || cp == '\t')) {
		unit[(*unit_len)++] = '\\';
		unit[(*unit_len)++] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't';
		return 1;
	}
	if (n == 0 || (n == 1 && (cp < 0x20 || cp == 0x7f)) || log_is_unsafe_codepoint(cp)) {
		size_t bytes = n == 0 ? 1 : n;
		for (size_t i = 0; i < bytes; i++) {
			unit[(*unit_len)++] = '\\';
			unit[(*unit_len)++] = 'x';
			unit[(*unit_len)++] = hex[p[i] >> 4];
			unit[(*unit_len)++] = hex[p[i] & 15];
		}
		return bytes;
	}
	memcpy(unit, p, n);
	*unit_len = n;
	return n;
}

char *log_escape(const char *s, char *buf, size_t buf_len)
{
	if (buf_len == 0)
		return buf;
	struct strbuf out;
	strbuf_init(&out);
	const unsigned char *p = (const unsigned char *)s;
	while (*p != '\0' && out.len < buf_len) {
		char unit[16];
		size_t unit_len;
		p += log_escape_unit(p, unit, &unit_len);
		strbuf_add(&out, unit, unit_len);
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

bool log_is_enabled(enum log_level level)
{
	return level >= log_threshold();
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
