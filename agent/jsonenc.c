/*
 * jsonenc: the compact encoder (jsonenc.h). json_dumps costs more than the
 * text it writes: a fresh buffer per call, a hash table of the containers
 * it is inside (to find loops) filled with a formatted key per object, and
 * a byte-by-byte copy of every string. Here runs of plain bytes are copied
 * at once into a buffer the caller keeps.
 */
#include "jsonenc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/*
 * Appends without the NUL strbuf_add writes each time: jsonenc_compact
 * terminates the text once at the end.
 */
static inline void jsonenc_put(struct strbuf *out, const void *data, size_t len)
{
	if (out->cap - out->len < len + 1)
		strbuf_reserve(out, len);
	memcpy(out->data + out->len, data, len);
	out->len += len;
}

static inline void jsonenc_putc(struct strbuf *out, char c)
{
	if (out->cap - out->len < 2)
		strbuf_reserve(out, 1);
	out->data[out->len++] = c;
}

/*
 * Length of the valid UTF-8 sequence at p (at most `left` bytes), by
 * jansson's rules (no overlong forms, no surrogates, at most U+10FFFF);
 * 0 when it is not valid.
 */
static size_t jsonenc_utf8_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t v;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, v = c & 0x1fu;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, v = c & 0x0fu;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, v = c & 0x07u;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3fu);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	return n;
}

/* A JSON string: '"', '\\' and control characters escaped, the rest as is. */
static int jsonenc_string(const char *s, size_t len, struct strbuf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0; /* p[run..i) is copied as is when the run ends */
	jsonenc_putc(out, '"');
	while (i < len) {
		unsigned char c = p[i];
		if (c >= 0x80) {
			size_t n = jsonenc_utf8_len(p + i, len - i);
			if (n == 0)
				return -1;
			i += n;
			continue;
		}
		if (c >= 0x20 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		jsonenc_put(out, p + run, i - run);
		char esc[6] = {'\\', 0};
		size_t esc_len = 2;
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			esc_len = 6;
			break;
		}
		jsonenc_put(out, esc, esc_len);
		i++;
		run = i;
	}
	jsonenc_put(out, p + run, i - run);
	jsonenc_putc(out, '"');
	return 0;
}

/*
 * A real as jansson prints it: 17 significant digits ("%.17g"), a ".0"
 * added when that reads like an integer, and the exponent without "+" or
 * leading zeros ("1e+20" is "1e20", "1e-05" is "1e-5").
 */
static void jsonenc_real(double d, struct strbuf *out)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%.17g", d);
	if (n < 0 || (size_t)n >= sizeof buf)
		n = 0;
	size_t len = (size_t)n;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == ',')
			buf[i] = '.'; /* a locale's decimal comma */
	char *e = memchr(buf, 'e', len);
	if (e == NULL && memchr(buf, '.', len) == NULL) {
		memcpy(buf + len, ".0", 3);
		len += 2;
	}
	if (e != NULL) {
		char *start = e + 1;
		if (*start == '-')
			start++;
		char *end = start;
		while (*end == '+' || *end == '0')
			end++;
		/* Keep one digit: jansson's "1e+00" cannot occur ("%g" prints 1). */
		memmove(start, end, (size_t)(buf + len - end) + 1);
		len -= (size_t)(end - start);
	}
	jsonenc_put(out, buf, len);
}

static int jsonenc_value(const json_t *v, struct strbuf *out, int depth)
{
	char num[32];
	if (v == NULL || depth > JSONENC_MAX_DEPTH)
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		const json_t *item;
		bool is_first = true;
		jsonenc_putc(out, '{');
		json_object_foreach((json_t *)v, key, item)
		{
			if (!is_first)
				jsonenc_putc(out, ',');
			is_first = false;
			if (jsonenc_string(key, strlen(key), out) != 0)
				return -1;
			jsonenc_putc(out, ':');
			if (jsonenc_value(item, out, depth + 1) != 0)
				return -1;
		}
		jsonenc_putc(out, '}');
		return 0;
	}
	case JSON_ARRAY:
		jsonenc_putc(out, '[');
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i > 0)
				jsonenc_putc(out, ',');
			if (jsonenc_value(json_array_get(v, i), out, depth + 1) != 0)
				return -1;
		}
		jsonenc_putc(out, ']');
		return 0;
	case JSON_STRING:
		return jsonenc_string(json_string_value(v), json_string_length(v), out);
	case JSON_INTEGER: {
		/* Digits from the right, as "%lld" prints them, without printf. */
		json_int_t i = json_integer_value(v);
		unsigned long long u = i < 0 ? 0ull - (unsigned long long)i : (unsigned long long)i;
		char *p = num + sizeof num;
		do {
			*--p = (char)('0' + u % 10);
			u /= 10;
		} while (u != 0);
		if (i < 0)
			*--p = '-';
		jsonenc_put(out, p, (size_t)(num + sizeof num - p));
		return 0;
	}
	case JSON_REAL:
		jsonenc_real(json_real_value(v), out);
		return 0;
	case JSON_TRUE:
		jsonenc_put(out, "true", 4);
		return 0;
	case JSON_FALSE:
		jsonenc_put(out, "false", 5);
		return 0;
	case JSON_NULL:
		jsonenc_put(out, "null", 4);
		return 0;
	}
	return -1;
}

int jsonenc_compact(const json_t *v, struct strbuf *out)
{
	int rc = jsonenc_value(v, out, 0);
	strbuf_reserve(out, 0);
	out->data[out->len] = '\0';
	return rc;
}
