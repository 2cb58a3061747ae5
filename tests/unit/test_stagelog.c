/*
 * Tests for stagelog: secret masking (several secrets, the longest match,
 * overlaps, secrets split across writes), partial lines at close, the size
 * cap with its single note, and drover's own "[drover] " lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stagelog.h"
#include "util.h"

#define TRUNCATED_NOTE "[drover] log truncated"

struct fixture {
	char dir[64];
	char *path;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/drover-test-stagelog-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->path = xasprintf("%s/stage.1.log", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = rm_rf(f->dir);
	free(f->path);
	free(f);
	return rc;
}

/* The whole log file (caller frees). An empty file reads as "". */
static char *read_log(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "re");
	assert_non_null(fp);
	struct strbuf sb;
	strbuf_init(&sb);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
		strbuf_add(&sb, chunk, n);
	fclose(fp);
	if (len != NULL)
		*len = sb.len;
	return strbuf_detach(&sb);
}

static size_t count(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static char *mask(const char *line, char *const *secrets, size_t n)
{
	size_t out_len = 0;
	char *out = stagelog_mask(line, strlen(line), secrets, n, &out_len);
	assert_non_null(out);
	assert_int_equal(strlen(out), out_len);
	return out;
}

/* ---- stagelog_mask ---- */

static void test_mask_several_secrets(void **state)
{
	(void)state;
	char *secrets[] = {"hunter2", "tok-123", "s3cr3t"};
	char *out =
	    mask("user=bob pass=hunter2 token=tok-123 again hunter2hunter2 s3cr3t\n", secrets, 3);
	assert_string_equal(out, "user=bob pass=*** token=*** again ****** ***\n");
	free(out);

	out = mask("nothing to hide here\n", secrets, 3);
	assert_string_equal(out, "nothing to hide here\n");
	free(out);

	out = mask("", secrets, 3);
	assert_string_equal(out, "");
	free(out);

	out = mask("hunter2", NULL, 0);
	assert_string_equal(out, "hunter2");
	free(out);

	/* an empty secret would match everywhere: it is ignored */
	char *with_empty[] = {"", "abc"};
	out = mask("xabcx", with_empty, 2);
	assert_string_equal(out, "x***x");
	free(out);

	/* a secret that is only a prefix of the text at the end does not match */
	out = mask("pass=hunter", secrets, 3);
	assert_string_equal(out, "pass=hunter");
	free(out);
}

static void test_mask_binary_line(void **state)
{
	(void)state;
	char *secrets[] = {"key"};
	const char line[] = {'a', '\0', 'k', 'e', 'y', '\0', 'b'};
	size_t out_len = 0;
	char *out = stagelog_mask(line, sizeof line, secrets, 1, &out_len);
	assert_int_equal(out_len, 7);
	assert_memory_equal(out, "a\0***\0b", 7);
	free(out);
}

/* Where one secret is a prefix of another, the longer one wins, in either order. */
static void test_mask_longest_wins(void **state)
{
	(void)state;
	char *short_first[] = {"tok", "token-abcdef"};
	char *out = mask("x token-abcdef y tok z", short_first, 2);
	assert_string_equal(out, "x *** y *** z");
	free(out);
	char *long_first[] = {"token-abcdef", "tok"};
	out = mask("x token-abcdef y tok z", long_first, 2);
	assert_string_equal(out, "x *** y *** z");
	free(out);
}

/* Two secrets that overlap (the end of one is the start of the other): no
 * byte of either may be shown. */
static void test_mask_overlapping_secrets_leak_nothing(void **state)
{
	(void)state;
	char *secrets[] = {"abc123", "123xyz"};
	char *out = mask("<abc123xyz>", secrets, 2);
	bool is_leaking =
	    strstr(out, "xyz") != NULL || strstr(out, "abc") != NULL || strstr(out, "123") != NULL;
	if (is_leaking)
		print_error("masked: %s\n", out);
	assert_int_equal(out[0], '<');
	assert_int_equal(out[strlen(out) - 1], '>');
	free(out);
	assert_false(is_leaking);
}

/* ---- the log file ---- */

static void test_log_masks_lines(void **state)
{
	struct fixture *f = *state;
	char *secrets[] = {"hunter2", "longer-secret-value"};
	struct stagelog *l = stagelog_open(f->path, 1 << 20, secrets, 2);
	assert_non_null(l);
	const char *text = "one hunter2\ntwo longer-secret-value three\nfour\n";
	stagelog_write(l, text, strlen(text));
	stagelog_close(l);
	char *got = read_log(f->path, NULL);
	assert_string_equal(got, "one ***\ntwo *** three\nfour\n");
	free(got);
}

/* Output arrives in chunks, not lines: a secret cut between two writes
 * (even byte by byte) is still masked. */
static void test_log_masks_split_secret(void **state)
{
	struct fixture *f = *state;
	char *secrets[] = {"hunter2", "longer-secret-value"};
	struct stagelog *l = stagelog_open(f->path, 1 << 20, secrets, 2);
	assert_non_null(l);
	stagelog_write(l, "pass=hun", 8);
	stagelog_write(l, "ter2 ok\nnext=longer-sec", 23);
	const char *rest = "ret-value!\n";
	for (const char *p = rest; *p != '\0'; p++)
		stagelog_write(l, p, 1);
	stagelog_close(l);
	char *got = read_log(f->path, NULL);
	assert_string_equal(got, "pass=*** ok\nnext=***!\n");
	free(got);
}

static void test_log_partial_line_flushed_at_close(void **state)
{
	struct fixture *f = *state;
	char *secrets[] = {"hunter2"};
	struct stagelog *l = stagelog_open(f->path, 1 << 20, secrets, 1);
	assert_non_null(l);
	stagelog_write(l, "done\nlast words hunt", 20);
	stagelog_write(l, "er2", 3);
	/* before close, only whole lines are in the file */
	char *got = read_log(f->path, NULL);
	assert_string_equal(got, "done\n");
	free(got);
	stagelog_close(l);
	got = read_log(f->path, NULL);
	assert_string_equal(got, "done\nlast words ***");
	free(got);
	stagelog_close(NULL); /* harmless */
}

static void test_log_printf_lines(void **state)
{
	struct fixture *f = *state;
	char *secrets[] = {"hunter2"};
	struct stagelog *l = stagelog_open(f->path, 1 << 20, secrets, 1);
	assert_non_null(l);
	stagelog_printf(l, "stage %s attempt %d", "unit", 2);
	stagelog_write(l, "half a line", 11);
	/* drover's line never glues onto the stage's partial line */
	stagelog_printf(l, "password is %s", "hunter2");
	stagelog_write(l, "after\n", 6);
	stagelog_close(l);
	char *got = read_log(f->path, NULL);
	assert_string_equal(got, "[drover] stage unit attempt 2\n"
				 "half a line\n"
				 "[drover] password is ***\n"
				 "after\n");
	free(got);
}

static void test_log_appends_to_existing_file(void **state)
{
	struct fixture *f = *state;
	struct stagelog *l = stagelog_open(f->path, 1 << 20, NULL, 0);
	assert_non_null(l);
	stagelog_write(l, "first\n", 6);
	stagelog_close(l);
	l = stagelog_open(f->path, 1 << 20, NULL, 0);
	assert_non_null(l);
	stagelog_write(l, "second\n", 7);
	stagelog_close(l);
	char *got = read_log(f->path, NULL);
	assert_string_equal(got, "first\nsecond\n");
	free(got);
}

static void test_log_open_fails_cleanly(void **state)
{
	struct fixture *f = *state;
	char *path = xasprintf("%s/no/such/dir/x.log", f->dir);
	errno = 0;
	assert_null(stagelog_open(path, 100, NULL, 0));
	assert_int_equal(errno, ENOENT);
	free(path);
}

/* The file stops growing at max_bytes: whole lines up to the cap, then one
 * note, then nothing (neither stage output nor drover's own lines). */
static void test_log_size_cap(void **state)
{
	struct fixture *f = *state;
	struct stagelog *l = stagelog_open(f->path, 100, NULL, 0);
	assert_non_null(l);
	const char *line = "0123456789012345678901234567\n"; /* 29 bytes */
	for (int i = 0; i < 20; i++)
		stagelog_write(l, line, strlen(line));
	stagelog_printf(l, "stage x attempt 1 succeeded");
	stagelog_write(l, "tail without newline", 20);
	stagelog_close(l);
	size_t len;
	char *got = read_log(f->path, &len);
	assert_int_equal(count(got, TRUNCATED_NOTE), 1);
	/* three whole lines fit in 100 bytes; the note comes right after them */
	assert_int_equal(strncmp(got,
				 "0123456789012345678901234567\n"
				 "0123456789012345678901234567\n"
				 "0123456789012345678901234567\n" TRUNCATED_NOTE,
				 3 * 29 + strlen(TRUNCATED_NOTE)),
			 0);
	assert_int_equal(got[len - 1], '\n');
	assert_null(strstr(got, "succeeded"));
	assert_null(strstr(got, "tail"));
	/* the note is one line */
	const char *note = strstr(got, TRUNCATED_NOTE);
	assert_ptr_equal(strchr(note, '\n'), got + len - 1);
	assert_true(len < 100 + 200);
	free(got);
}

/* The cap counts what the file already held (a stage attempt's log that a
 * restart reopens). */
static void test_log_size_cap_counts_existing_bytes(void **state)
{
	struct fixture *f = *state;
	struct stagelog *l = stagelog_open(f->path, 1000, NULL, 0);
	char block[91];
	memset(block, 'p', 89);
	block[89] = '\n';
	block[90] = '\0';
	stagelog_write(l, block, 90);
	stagelog_close(l);
	l = stagelog_open(f->path, 100, NULL, 0);
	assert_non_null(l);
	stagelog_write(l, "twenty bytes long..\n", 20);
	stagelog_close(l);
	char *got = read_log(f->path, NULL);
	assert_null(strstr(got, "twenty"));
	assert_int_equal(count(got, TRUNCATED_NOTE), 1);
	free(got);
}

/* A single line larger than the cap is not written in part. */
static void test_log_size_cap_huge_line(void **state)
{
	struct fixture *f = *state;
	char *secrets[] = {"hunter2"};
	struct stagelog *l = stagelog_open(f->path, 1000, secrets, 1);
	assert_non_null(l);
	stagelog_write(l, "ok\n", 3);
	size_t big = 200 * 1024;
	char *data = xmalloc(big);
	memset(data, 'y', big);
	memcpy(data + 10, "hunter2", 7);
	stagelog_write(l, data, big);
	stagelog_write(l, "\n", 1);
	free(data);
	stagelog_close(l);
	size_t len;
	char *got = read_log(f->path, &len);
	assert_true(len < 1000 + 200);
	assert_int_equal(strncmp(got, "ok\n" TRUNCATED_NOTE, 3 + strlen(TRUNCATED_NOTE)), 0);
	assert_null(strstr(got, "hunter2"));
	assert_int_equal(count(got, TRUNCATED_NOTE), 1);
	free(got);
}

/* Without a newline for a long time the output is still written (in pieces),
 * and secrets inside the pieces are masked. */
static void test_log_long_line_is_written(void **state)
{
	struct fixture *f = *state;
	char *secrets[] = {"hunter2"};
	struct stagelog *l = stagelog_open(f->path, 10 << 20, secrets, 1);
	assert_non_null(l);
	size_t big = 300 * 1000;
	char *data = xmalloc(big);
	memset(data, 'y', big);
	memcpy(data + 1000, "hunter2", 7);
	memcpy(data + big - 100, "hunter2", 7);
	for (size_t off = 0; off < big; off += 1000)
		stagelog_write(l, data + off, 1000);
	free(data);
	/* before close: at least the first 64 KiB piece is in the file */
	size_t len;
	char *got = read_log(f->path, &len);
	assert_true(len >= 64 * 1024);
	free(got);
	stagelog_close(l);
	got = read_log(f->path, &len);
	assert_int_equal(len, big - 2 * 7 + 2 * 3);
	assert_null(strstr(got, "hunter2"));
	assert_int_equal(count(got, "***"), 2);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mask_several_secrets),
	    cmocka_unit_test(test_mask_binary_line),
	    cmocka_unit_test(test_mask_longest_wins),
	    cmocka_unit_test(test_mask_overlapping_secrets_leak_nothing),
	    cmocka_unit_test_setup_teardown(test_log_masks_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_masks_split_secret, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_partial_line_flushed_at_close, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_log_printf_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_appends_to_existing_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_open_fails_cleanly, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_size_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_size_cap_counts_existing_bytes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_log_size_cap_huge_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_log_long_line_is_written, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
