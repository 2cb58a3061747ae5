/*
 * Tests for log: escaping of foreign text (newlines, control bytes, UTF-8
 * kept), truncation that never writes past the buffer, and the one-line
 * output with its level threshold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static void check_escape(const char *in, const char *want)
{
	char buf[256];
	char *out = log_escape(in, buf, sizeof buf);
	assert_ptr_equal(out, buf);
	assert_string_equal(buf, want);
}

static void test_escape_control_bytes(void **state)
{
	(void)state;
	check_escape("", "");
	check_escape("plain text, 100% [ok] {x} \"q\" 'a' \\",
		     "plain text, 100% [ok] {x} \"q\" 'a' \\");
	check_escape("line1\nline2", "line1\\nline2");
	check_escape("a\r\nb\tc", "a\\r\\nb\\tc");
	check_escape("\x01\x1b[31mred\x7f", "\\x01\\x1b[31mred\\x7f");
	check_escape("\x1f\x0b\x0c", "\\x1f\\x0b\\x0c");
	check_escape("\n\n", "\\n\\n");
}

static void test_escape_keeps_utf8(void **state)
{
	(void)state;
	check_escape("café ✓ 日本 🚀", "café ✓ 日本 🚀");
	check_escape("branch/ünïcödé\n", "branch/ünïcödé\\n");
}

/* Truncation marks the cut with "..." and stays inside the buffer. */
static void test_escape_truncates(void **state)
{
	(void)state;
	char long_text[1000];
	memset(long_text, 'a', sizeof long_text - 1);
	long_text[sizeof long_text - 1] = '\0';
	char buf[32];
	log_escape(long_text, buf, sizeof buf);
	size_t n = strlen(buf);
	assert_true(n < sizeof buf);
	assert_true(n >= 3);
	assert_string_equal(buf + n - 3, "...");
	for (size_t i = 0; i < n - 3; i++)
		assert_int_equal(buf[i], 'a');

	/* an escape sequence is never cut in half */
	char newlines[100];
	memset(newlines, '\n', sizeof newlines - 1);
	newlines[sizeof newlines - 1] = '\0';
	log_escape(newlines, buf, sizeof buf);
	n = strlen(buf);
	assert_true(n < sizeof buf);
	assert_string_equal(buf + n - 3, "...");
	for (size_t i = 0; i + 3 < n; i += 2)
		assert_memory_equal(buf + i, "\\n", 2);
	assert_int_equal((n - 3) % 2, 0);
}

/* Every buffer size, down to 0 and 1: nothing is written past buf_len. The
 * buffer sits inside a larger one full of canaries. */
static void test_escape_tiny_buffers_do_not_overrun(void **state)
{
	(void)state;
	static const char *const inputs[] = {"", "x", "abcdef", "\n\n\n", "\x01\x02", "é✓"};
	char area[64];
	struct strbuf bad;
	strbuf_init(&bad);
	for (size_t in = 0; in < ARRAY_LEN(inputs); in++) {
		for (size_t len = 0; len <= 12; len++) {
			memset(area, 0x5a, sizeof area);
			log_escape(inputs[in], area, len);
			size_t last = 0;
			for (size_t i = len; i < sizeof area; i++)
				if ((unsigned char)area[i] != 0x5a)
					last = i + 1;
			if (last > 0)
				strbuf_addf(&bad, " [buf_len %zu, \"%s\": wrote up to byte %zu]",
					    len, inputs[in], last - 1);
			else if (len > 0 && memchr(area, '\0', len) == NULL)
				strbuf_addf(&bad, " [buf_len %zu: no terminator]", len);
		}
	}
	if (bad.len > 0) {
		print_error("overruns:%s\n", bad.data);
		strbuf_free(&bad);
		fail();
	}
	strbuf_free(&bad);
}

/* A text whose escaped form fits the buffer comes out whole. */
static void test_escape_exact_fit_is_not_cut(void **state)
{
	(void)state;
	char buf[8];
	log_escape("abcdefg", buf, sizeof buf); /* 7 bytes + NUL: fits */
	assert_string_equal(buf, "abcdefg");
	log_escape("ab\ncd", buf, sizeof buf); /* "ab\\ncd": 6 bytes + NUL */
	assert_string_equal(buf, "ab\\ncd");
}

/* What a terminal would act on is escaped too: a C1 control (U+009B, CSI),
 * a bidi override (U+202E) and bytes that are not UTF-8. */
static void test_escape_terminal_controls(void **state)
{
	(void)state;
	char buf[128];
	log_escape("a\xc2\x9b"
		   "31mb",
		   buf, sizeof buf);
	assert_string_equal(buf, "a\\xc2\\x9b31mb");
	log_escape("x\xe2\x80\xaey", buf, sizeof buf);
	assert_string_equal(buf, "x\\xe2\\x80\\xaey");
	log_escape("bad\xff\xfe", buf, sizeof buf);
	assert_string_equal(buf, "bad\\xff\\xfe");
	log_escape("caf\xc3\xa9", buf, sizeof buf); /* valid UTF-8 stays */
	assert_string_equal(buf, "caf\xc3\xa9");
}

/* Runs fn with stderr sent to a file; returns what was written (caller frees). */
static char *capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/drover-test-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	fflush(stderr);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fd);
	char *text = file_read_all(path, 1 << 20, NULL);
	unlink(path);
	assert_non_null(text);
	return text;
}

static void log_some(void)
{
	log_debug("debug %d", 1);
	log_info("info line\nsecond \x1b half");
	log_warn("warn %s", "w");
	log_error("error %s", "e");
}

static size_t count_lines(const char *text)
{
	size_t n = 0;
	for (const char *p = text; *p != '\0'; p++)
		n += *p == '\n';
	return n;
}

static void test_log_lines_and_threshold(void **state)
{
	(void)state;
	unsetenv("DROVER_LOG_LEVEL");
	char *text = capture_stderr(log_some);
	assert_int_equal(count_lines(text), 3); /* info, warn, error: one line each */
	assert_null(strstr(text, "debug 1"));
	assert_non_null(strstr(text, " INFO  info line\\nsecond \\x1b half\n"));
	assert_non_null(strstr(text, " WARN  warn w\n"));
	assert_non_null(strstr(text, " ERROR error e\n"));
	/* "2026-11-29T08:35:00.123Z LEVEL text" */
	assert_true(strlen(text) > 25);
	assert_int_equal(text[4], '-');
	assert_int_equal(text[10], 'T');
	assert_int_equal(text[23], 'Z');
	assert_int_equal(text[24], ' ');
	free(text);

	setenv("DROVER_LOG_LEVEL", "debug", 1);
	text = capture_stderr(log_some);
	assert_int_equal(count_lines(text), 4);
	assert_non_null(strstr(text, " DEBUG debug 1\n"));
	free(text);

	setenv("DROVER_LOG_LEVEL", "warn", 1);
	text = capture_stderr(log_some);
	assert_int_equal(count_lines(text), 2);
	assert_null(strstr(text, "info line"));
	free(text);

	setenv("DROVER_LOG_LEVEL", "error", 1);
	text = capture_stderr(log_some);
	assert_int_equal(count_lines(text), 1);
	assert_non_null(strstr(text, "error e"));
	free(text);
	unsetenv("DROVER_LOG_LEVEL");
}

/* log_is_enabled agrees with what log_msg writes, at each threshold. */
static void test_log_is_enabled(void **state)
{
	(void)state;
	unsetenv("DROVER_LOG_LEVEL");
	assert_false(log_is_enabled(LOG_DEBUG));
	assert_true(log_is_enabled(LOG_INFO));
	setenv("DROVER_LOG_LEVEL", "debug", 1);
	assert_true(log_is_enabled(LOG_DEBUG));
	setenv("DROVER_LOG_LEVEL", "warn", 1);
	assert_false(log_is_enabled(LOG_INFO));
	assert_true(log_is_enabled(LOG_WARN));
	setenv("DROVER_LOG_LEVEL", "error", 1);
	assert_false(log_is_enabled(LOG_WARN));
	assert_true(log_is_enabled(LOG_ERROR));
	unsetenv("DROVER_LOG_LEVEL");
}

static void log_huge(void)
{
	char *big = xmalloc(100000);
	memset(big, 'z', 99999);
	big[99999] = '\0';
	log_info("%s", big);
	free(big);
}

static void test_log_long_message_is_one_cut_line(void **state)
{
	(void)state;
	unsetenv("DROVER_LOG_LEVEL");
	char *text = capture_stderr(log_huge);
	assert_int_equal(count_lines(text), 1);
	assert_true(strlen(text) < 4200);
	assert_non_null(strstr(text, "zzz...\n"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_control_bytes),
	    cmocka_unit_test(test_escape_keeps_utf8),
	    cmocka_unit_test(test_escape_truncates),
	    cmocka_unit_test(test_escape_tiny_buffers_do_not_overrun),
	    cmocka_unit_test(test_escape_exact_fit_is_not_cut),
	    cmocka_unit_test(test_escape_terminal_controls),
	    cmocka_unit_test(test_log_lines_and_threshold),
	    cmocka_unit_test(test_log_is_enabled),
	    cmocka_unit_test(test_log_long_message_is_one_cut_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
