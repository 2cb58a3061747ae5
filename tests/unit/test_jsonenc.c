/*
 * Tests for jsonenc: its text must be byte for byte json_dumps(v,
 * JSON_COMPACT | JSON_ENCODE_ANY), which is what the store wrote before.
 * Compared on canonical events, on every escaped byte, on UTF-8 of each
 * length, on reals of every magnitude (and 100,000 random bit patterns),
 * on integers at their limits; and it refuses what jansson refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonenc.h"
#include "util.h"

/* Encodes v both ways and compares the bytes. */
static void assert_same_as_jansson(const json_t *v)
{
	char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(want);
	struct strbuf got;
	strbuf_init(&got);
	strbuf_adds(&got, "prefix"); /* appends: what was there stays */
	assert_int_equal(jsonenc_compact(v, &got), 0);
	if (strcmp(got.data + 6, want) != 0)
		fail_msg("jsonenc: %s\njansson: %s", got.data + 6, want);
	assert_memory_equal(got.data, "prefix", 6);
	assert_int_equal(got.len, 6 + strlen(want));
	free(want);
	strbuf_free(&got);
}

static void test_canonical_event(void **state)
{
	(void)state;
	const char *text =
	    "{\"id\":\"bench-ce-1\",\"kind\":\"drift\",\"action\":\"detected\",\"source\":"
	    "\"drover\",\"repo\":\"bench/repo-0\",\"clone_url\":null,\"paths\":[\"a/b.c\","
	    "\"d\"],\"pr\":{\"number\":42,\"base\":\"main\",\"draft\":false,\"merged\":true},"
	    "\"drift\":{\"model\":\"m\",\"value\":0.27,\"threshold\":0.2,\"n\":-7},"
	    "\"message\":\"fix: \\\"quotes\\\", back\\\\slash, tab\\t, "
	    "\\u00e9\\u4e2d\\ud83d\\ude00 "
	    "and / slash\",\"empty\":{},\"none\":[],\"kafka\":{\"topic\":\"t\",\"offset\":0}}";
	json_error_t err;
	json_t *ev = json_loads(text, 0, &err);
	assert_non_null(ev);
	assert_same_as_jansson(ev);
	/* Insertion order is kept, as jansson keeps it. */
	json_object_set_new(ev, "aaa", json_string("last"));
	assert_same_as_jansson(ev);
	json_decref(ev);
}

static void test_every_byte_escaped_as_jansson(void **state)
{
	(void)state;
	for (int c = 0; c < 0x80; c++) {
		char s[4] = {'x', (char)c, 'y', 0};
		json_t *v = json_stringn(s, 3);
		assert_non_null(v);
		assert_same_as_jansson(v);
		json_decref(v);
	}
	/* A string made of nothing but escapes, NUL included. */
	json_t *v = json_stringn("\0\x01\x1f\"\\\b\f\n\r\t", 10);
	assert_same_as_jansson(v);
	json_decref(v);
	/* Keys are escaped too. */
	json_t *o = json_object();
	json_object_set_new(o, "a\"b\n\x02", json_integer(1));
	assert_same_as_jansson(o);
	json_decref(o);
}

static void test_utf8(void **state)
{
	(void)state;
	const char *valid[] = {"\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
			       "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80"};
	for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
		json_t *v = json_string(valid[i]);
		assert_non_null(v);
		assert_same_as_jansson(v);
		json_decref(v);
	}
	/* Invalid UTF-8 (only json_stringn_nocheck makes such a string):
	 * jansson cannot encode it, and neither can jsonenc. */
	const char *invalid[] = {
	    "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
	    "\x80",	"\xc3",		"\xe4\xb8",	"ok\xffok"};
	for (size_t i = 0; i < ARRAY_LEN(invalid); i++) {
		json_t *v = json_stringn_nocheck(invalid[i], strlen(invalid[i]));
		char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		assert_null(want);
		struct strbuf got;
		strbuf_init(&got);
		assert_int_equal(jsonenc_compact(v, &got), -1);
		strbuf_free(&got);
		json_decref(v);
	}
}

static void test_numbers(void **state)
{
	(void)state;
	const double reals[] = {
	    0.0,    -0.0,	1.0,  -1.0,	 0.1,	0.27,  1e-5,
	    1e-7,   1.5e-300,	1e16, 1e17,	 1e20,	1e100, 1.7976931348623157e308,
	    5e-324, 123456.789, 2.5,  -3.25e-10, 100.0, 1e21,  4.9e-7};
	for (size_t i = 0; i < ARRAY_LEN(reals); i++) {
		json_t *v = json_real(reals[i]);
		assert_same_as_jansson(v);
		json_decref(v);
	}
	/* Random bit patterns: every finite double is printed as jansson does. */
	srand(4);
	for (int i = 0; i < 100000; i++) {
		uint64_t bits = 0;
		for (int k = 0; k < 4; k++)
			bits = (bits << 16) ^ (uint64_t)(rand() & 0xffff);
		double d;
		memcpy(&d, &bits, sizeof d);
		if (!isfinite(d))
			continue;
		json_t *v = json_real(d);
		char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		struct strbuf got;
		strbuf_init(&got);
		assert_int_equal(jsonenc_compact(v, &got), 0);
		if (strcmp(got.data, want) != 0)
			fail_msg("%a: jsonenc %s, jansson %s", d, got.data, want);
		strbuf_free(&got);
		free(want);
		json_decref(v);
	}
	const json_int_t ints[] = {0, 1, -1, 42, INT64_MAX, INT64_MIN, 1000000000000LL};
	for (size_t i = 0; i < ARRAY_LEN(ints); i++) {
		json_t *v = json_integer(ints[i]);
		assert_same_as_jansson(v);
		json_decref(v);
	}
	json_t *a = json_pack("[bbn[]{}]", 1, 0);
	assert_same_as_jansson(a);
	json_decref(a);
}

static void test_refusals(void **state)
{
	(void)state;
	struct strbuf got;
	strbuf_init(&got);
	assert_int_equal(jsonenc_compact(NULL, &got), -1);
	/* A value inside itself would never end: cut, like jansson's loop check. */
	json_t *outer = json_array();
	json_t *inner = json_array();
	json_array_append(outer, inner);
	json_array_append(inner, outer);
	assert_null(json_dumps(outer, JSON_COMPACT));
	assert_int_equal(jsonenc_compact(outer, &got), -1);
	json_array_clear(inner);
	json_decref(inner);
	json_decref(outer);
	strbuf_free(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canonical_event),
	    cmocka_unit_test(test_every_byte_escaped_as_jansson),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
