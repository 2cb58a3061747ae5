/*
 * glob: matches branch, tag, path and model patterns. A pattern is compiled
 * into a short token list and run as a set of states over the text, so the
 * cost is bounded by len(pattern) * len(text) whatever the pattern looks like.
 */
#include "glob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum glob_token_kind {
	TOKEN_LITERAL, /* one byte */
	TOKEN_ONE,     /* `?`: one byte but '/' */
	TOKEN_CLASS,   /* `[...]`: one byte of a set, never '/' */
	TOKEN_STAR,    /* `*`: any run of bytes without '/' */
	TOKEN_ANY,     /* `**`: any run of bytes */
	/* A double star and a slash at a segment start: nothing, or a run ending in '/'.
	 * HEAD is the state before any byte of that run, TAIL after one or more. */
	TOKEN_DIR_HEAD,
	TOKEN_DIR_TAIL,
};

struct glob_token {
	enum glob_token_kind kind;
	unsigned char byte;
	uint8_t set[32]; /* TOKEN_CLASS: bit per byte value */
};

static void set_add(uint8_t *set, unsigned char c)
{
	set[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool set_has(const uint8_t *set, unsigned char c)
{
	return (set[c >> 3] >> (c & 7)) & 1;
}

/*
 * Parses the class that starts at p (just after '['), filling set. Returns
 * the position after the closing ']', or NULL when the class is unclosed,
 * empty or has a range that runs backwards.
 */
static const char *class_parse(const char *p, uint8_t *set)
{
	bool is_negated = false;
	if (*p == '!' || *p == '^') {
		is_negated = true;
		p++;
	}
	memset(set, 0, 32);
	bool is_first = true;
	while (*p != ']' || is_first) {
		if (*p == '\0')
			return NULL;
		unsigned char lo = (unsigned char)*p++;
		if (lo == '\\') {
			if (*p == '\0')
				return NULL;
			lo = (unsigned char)*p++;
		}
		unsigned char hi = lo;
		if (p[0] == '-' && p[1] != ']' && p[1] != '\0') {
			p++;
			hi = (unsigned char)*p++;
			if (hi == '\\') {
				if (*p == '\0')
					return NULL;
				hi = (unsigned char)*p++;
			}
			if (hi < lo)
				return NULL;
		}
		for (unsigned c = lo; c <= hi; c++)
			set_add(set, (unsigned char)c);
		is_first = false;
	}
	if (is_negated)
		for (size_t i = 0; i < 32; i++)
			set[i] = (uint8_t)~set[i];
	set[(unsigned char)'/' >> 3] &= (uint8_t) ~(1u << ('/' & 7));
	set[0] &= (uint8_t)~1u; /* never the NUL byte */
	return p + 1;
}

/*
 * Compiles pattern into tokens (the caller frees *out). Returns the number
 * of tokens, or -1 when the pattern is malformed.
 */
static long glob_compile(const char *pattern, struct glob_token **out)
{
	size_t cap = strlen(pattern) + 1;
	struct glob_token *t = xcalloc(cap, sizeof *t);
	size_t n = 0;
	const char *p = pattern;
	while (*p != '\0') {
		bool is_segment_start = p == pattern || p[-1] == '/';
		if (p[0] == '*' && p[1] == '*') {
			while (*p == '*')
				p++;
			if (*p == '/' && is_segment_start) {
				t[n++].kind = TOKEN_DIR_HEAD;
				t[n++].kind = TOKEN_DIR_TAIL;
				p++;
			} else {
				t[n++].kind = TOKEN_ANY;
			}
		} else if (*p == '*') {
			t[n++].kind = TOKEN_STAR;
			p++;
		} else if (*p == '?') {
			t[n++].kind = TOKEN_ONE;
			p++;
		} else if (*p == '[') {
			t[n].kind = TOKEN_CLASS;
			p = class_parse(p + 1, t[n].set);
			if (p == NULL) {
				free(t);
				return -1;
			}
			n++;
		} else if (*p == '\\') {
			if (p[1] == '\0') {
				free(t);
				return -1;
			}
			t[n].kind = TOKEN_LITERAL;
			t[n++].byte = (unsigned char)p[1];
			p += 2;
		} else {
			t[n].kind = TOKEN_LITERAL;
			t[n++].byte = (unsigned char)*p++;
		}
	}
	*out = t;
	return (long)n;
}

/* Adds the states reachable without reading a byte (skippable tokens). */
static void states_close(const struct glob_token *t, size_t n, bool *on)
{
	for (size_t i = 0; i < n; i++) {
		if (!on[i])
			continue;
		if (t[i].kind == TOKEN_STAR || t[i].kind == TOKEN_ANY)
			on[i + 1] = true;
		else if (t[i].kind == TOKEN_DIR_HEAD)
			on[i + 2] = true;
	}
}

/*
 * True when the whole text matches the whole pattern. A malformed pattern
 * matches nothing.
 */
bool glob_match(const char *pattern, const char *text)
{
	if (pattern == NULL || text == NULL)
		return false;
	struct glob_token *t;
	long compiled = glob_compile(pattern, &t);
	if (compiled < 0)
		return false;
	size_t n = (size_t)compiled;
	bool *on = xcalloc(n + 1, sizeof *on);
	bool *next = xcalloc(n + 1, sizeof *next);
	on[0] = true;
	states_close(t, n, on);
	bool is_alive = true;
	for (const char *s = text; *s != '\0' && is_alive; s++) {
		unsigned char c = (unsigned char)*s;
		memset(next, 0, (n + 1) * sizeof *next);
		is_alive = false;
		for (size_t i = 0; i < n; i++) {
			if (!on[i])
				continue;
			switch (t[i].kind) {
			case TOKEN_LITERAL:
				next[i + 1] |= c == t[i].byte;
				break;
			case TOKEN_ONE:
				next[i + 1] |= c != '/';
				break;
			case TOKEN_CLASS:
				next[i + 1] |= set_has(t[i].set, c);
				break;
			case TOKEN_STAR:
				next[i] |= c != '/';
				break;
			case TOKEN_ANY:
				next[i] = true;
				break;
			case TOKEN_DIR_HEAD:
			case TOKEN_DIR_TAIL:
				/* The head's tail is always the next slot. */
				next[t[i].kind == TOKEN_DIR_HEAD ? i + 1 : i] = true;
				next[t[i].kind == TOKEN_DIR_HEAD ? i + 2 : i + 1] |= c == '/';
				break;
			}
		}
		states_close(t, n, next);
		for (size_t i = 0; i <= n; i++)
			is_alive |= next[i];
		bool *swap = on;
		on = next;
		next = swap;
	}
	bool is_match = is_alive && on[n];
	free(on);
	free(next);
	free(t);
	return is_match;
}

/* Well formed: not empty, every class closed and sane, no trailing '\'. */
bool glob_is_valid(const char *pattern)
{
	if (pattern == NULL || *pattern == '\0')
		return false;
	struct glob_token *t;
	if (glob_compile(pattern, &t) < 0)
		return false;
	free(t);
	return true;
}
