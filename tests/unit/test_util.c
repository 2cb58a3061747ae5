/*
 * Tests for util: duration parsing (accepted forms, refusals, overflow),
 * strbuf, xasprintf, ISO-8601 time, whole-file reads with a size cap,
 * mkdir -p, and an rm -rf that never follows a symlink out of its tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct fixture {
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/drover-test-util-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->dir);
	int rc = system(cmd);
	free(cmd);
	free(f);
	return rc == 0 ? 0 : -1;
}

static bool path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* ---- durations ---- */

static void test_duration_accepts(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int64_t ms;
	} cases[] = {
	    {"500ms", 500},
	    {"30s", 30 * 1000},
	    {"10m", 10 * 60 * 1000},
	    {"2h", 2 * 3600 * 1000},
	    {"1h30m", 90 * 60 * 1000},
	    {"1d", 86400 * 1000},
	    {"45", 45 * 1000},
	    {"0", 0},
	    {"0s", 0},
	    {"1m30s", 90 * 1000},
	    {"1s500ms", 1500},
	    {"2d3h", (2 * 24 + 3) * 3600 * 1000LL},
	    /* the largest whole number of hours that fits in int64 milliseconds */
	    {"2562047788015h", 2562047788015LL * 3600 * 1000},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		int64_t ms = -12345;
		int rc = duration_parse_ms(cases[i].text, &ms);
		if (rc != 0 || ms != cases[i].ms)
			fail_msg("duration_parse_ms(\"%s\") = %d, %lld; want 0, %lld",
				 cases[i].text, rc, (long long)ms, (long long)cases[i].ms);
	}
}

static void test_duration_refuses(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "-1",
	    "-5s",
	    "10x",
	    "m",
	    "ms",
	    "s10",
	    " 5s",
	    "5s ",
	    "5 s",
	    "1.5s",
	    "1h30", /* a bare number after a unit is not seconds */
	    "10sm",
	    "+3s",
	    "99999999999999999999s",
	    "99999999999999999999",
	    "2562047788016h",	/* one hour more than int64 milliseconds hold */
	    "2562047788015h1h", /* the sum overflows */
	    "106751991168d",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t ms = 777;
		int rc = duration_parse_ms(bad[i], &ms);
		if (rc != -1)
			fail_msg("duration_parse_ms(\"%s\") accepted it as %lld ms", bad[i],
				 (long long)ms);
	}
	int64_t ms = 0;
	assert_int_equal(duration_parse_ms(NULL, &ms), -1);
}

/* ---- strings ---- */

static void test_strbuf(void **state)
{
	(void)state;
	struct strbuf sb;
	strbuf_init(&sb);
	assert_int_equal(sb.len, 0);

	/* detach of an empty buffer still gives an owned empty string */
	char *empty = strbuf_detach(&sb);
	assert_non_null(empty);
	assert_string_equal(empty, "");
	free(empty);

	strbuf_adds(&sb, "abc");
	strbuf_add(&sb, "\0x\0", 3);
	assert_int_equal(sb.len, 6);
	assert_memory_equal(sb.data, "abc\0x\0", 7); /* and the terminating NUL */
	strbuf_addf(&sb, "[%d:%s]", 42, "z");
	assert_int_equal(sb.len, 12);
	assert_memory_equal(sb.data + 6, "[42:z]", 7);

	strbuf_reset(&sb);
	assert_int_equal(sb.len, 0);
	assert_string_equal(sb.data, "");

	/* reserve: room for that many more bytes and the NUL; contents kept */
	strbuf_adds(&sb, "keep");
	strbuf_reserve(&sb, 1000);
	assert_true(sb.cap >= sb.len + 1000 + 1);
	assert_int_equal(sb.len, 4);
	assert_string_equal(sb.data, "keep");
	char *before = sb.data;
	strbuf_add(&sb, "", 0);
	for (int i = 0; i < 1000; i++)
		strbuf_add(&sb, "y", 1);
	assert_ptr_equal(sb.data, before); /* no allocation within the reserve */
	strbuf_reset(&sb);

	/* growth well past the first allocation, byte-exact */
	for (int i = 0; i < 10000; i++)
		strbuf_addf(&sb, "%c", 'a' + i % 26);
	assert_int_equal(sb.len, 10000);
	assert_true(sb.cap > sb.len);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(sb.data[i], 'a' + i % 26);
	assert_int_equal(sb.data[10000], '\0');

	char *owned = strbuf_detach(&sb);
	assert_int_equal(sb.len, 0);
	assert_null(sb.data);
	assert_int_equal(strlen(owned), 10000);
	free(owned);

	strbuf_adds(&sb, "again");
	assert_string_equal(sb.data, "again");
	strbuf_free(&sb);
	assert_null(sb.data);
	assert_int_equal(sb.len, 0);
	strbuf_free(&sb); /* twice is harmless */
}

static void test_xasprintf_and_xstrndup(void **state)
{
	(void)state;
	char *s = xasprintf("%s-%d-%05.1f", "run", 42, 3.5);
	assert_string_equal(s, "run-42-003.5");
	free(s);

	char *big = xmalloc(20001);
	memset(big, 'q', 20000);
	big[20000] = '\0';
	s = xasprintf("<%s>", big);
	assert_int_equal(strlen(s), 20002);
	assert_int_equal(s[0], '<');
	assert_int_equal(s[20001], '>');
	free(s);
	free(big);

	s = xasprintf("%s", "");
	assert_string_equal(s, "");
	free(s);

	s = xstrndup("hello", 3);
	assert_string_equal(s, "hel");
	free(s);
	s = xstrndup("hi", 10); /* n larger than the string: stops at its end */
	assert_string_equal(s, "hi");
	free(s);
}

/* ---- time ---- */

static void test_time_format_iso8601(void **state)
{
	(void)state;
	char buf[32];
	time_format_iso8601(0, buf, sizeof buf);
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	time_format_iso8601(1795941300123LL, buf, sizeof buf);
	assert_string_equal(buf, "2026-11-29T08:35:00.123Z");
	time_format_iso8601(951782400007LL, buf, sizeof buf); /* a leap day, 7 ms */
	assert_string_equal(buf, "2000-02-29T00:00:00.007Z");
	time_format_iso8601(1795941300999LL, buf, sizeof buf);
	assert_string_equal(buf, "2026-11-29T08:35:00.999Z");

	/* a short buffer is cut and stays terminated */
	char small[11];
	memset(small, 'X', sizeof small);
	time_format_iso8601(0, small, sizeof small);
	assert_string_equal(small, "1970-01-01");

	/* now_ms is the wall clock, mono_ms does not go backwards */
	int64_t now = now_ms();
	assert_true(now > 1700000000000LL);
	int64_t m1 = mono_ms(), m2 = mono_ms();
	assert_true(m2 >= m1);
}

/* ---- files ---- */

static void test_file_read_all(void **state)
{
	struct fixture *f = *state;
	char *path = xasprintf("%s/data.bin", f->dir);
	char data[5000];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)(i % 251); /* includes NUL bytes */
	write_file(path, data, sizeof data);

	size_t len = 0;
	char *text = file_read_all(path, 0, &len); /* 0: no cap */
	assert_non_null(text);
	assert_int_equal(len, sizeof data);
	assert_memory_equal(text, data, sizeof data);
	assert_int_equal(text[len], '\0');
	free(text);

	text = file_read_all(path, sizeof data, &len); /* exactly at the cap */
	assert_non_null(text);
	assert_int_equal(len, sizeof data);
	free(text);

	errno = 0;
	text = file_read_all(path, sizeof data - 1, &len);
	assert_null(text);
	assert_int_equal(errno, EFBIG);

	errno = 0;
	text = file_read_all(path, 10, NULL);
	assert_null(text);
	assert_int_equal(errno, EFBIG);

	/* a file larger than the internal read size, uncapped */
	char *big_path = xasprintf("%s/big.txt", f->dir);
	size_t big_len = 3 * 4096 + 17;
	char *big = xmalloc(big_len);
	memset(big, 'b', big_len);
	write_file(big_path, big, big_len);
	text = file_read_all(big_path, big_len, &len);
	assert_non_null(text);
	assert_int_equal(len, big_len);
	assert_memory_equal(text, big, big_len);
	free(text);
	free(big);
	free(big_path);

	char *missing = xasprintf("%s/missing", f->dir);
	errno = 0;
	assert_null(file_read_all(missing, 0, NULL));
	assert_int_equal(errno, ENOENT);
	free(missing);

	/* a directory is not a file */
	assert_null(file_read_all(f->dir, 0, NULL));
	free(path);
}

/* An empty file reads as "" (terminated), like any other. The buffer is
 * reused from earlier allocations, so fill the heap with junk first. */
static void test_file_read_all_empty_file(void **state)
{
	struct fixture *f = *state;
	char *junk = xmalloc(8192);
	memset(junk, 'b', 8192);
	free(junk);
	char *empty_path = xasprintf("%s/empty", f->dir);
	write_file(empty_path, "", 0);
	size_t len = 99;
	char *text = file_read_all(empty_path, 100, &len);
	free(empty_path);
	assert_non_null(text);
	assert_int_equal(len, 0);
	char first = text[0];
	free(text);
	assert_int_equal(first, '\0');
}

static void test_mkdir_p(void **state)
{
	struct fixture *f = *state;
	char *deep = xasprintf("%s/a/b/c/d", f->dir);
	assert_int_equal(mkdir_p(deep, 0750), 0);
	assert_true(is_dir(deep));
	struct stat st;
	assert_int_equal(stat(deep, &st), 0);
	assert_int_equal(st.st_mode & 0777 & ~0750, 0);
	assert_int_equal(mkdir_p(deep, 0750), 0); /* already there */
	free(deep);

	char *slash = xasprintf("%s/x//y/", f->dir);
	assert_int_equal(mkdir_p(slash, 0755), 0);
	char *y = xasprintf("%s/x/y", f->dir);
	assert_true(is_dir(y));
	free(y);
	free(slash);

	/* through a regular file: impossible */
	char *file = xasprintf("%s/plain", f->dir);
	write_file(file, "x", 1);
	char *under = xasprintf("%s/plain/sub", f->dir);
	errno = 0;
	assert_int_equal(mkdir_p(under, 0755), -1);
	assert_int_equal(errno, ENOTDIR);
	free(under);
	free(file);
}

/* mkdir -p of a path that exists as a regular file fails ("File exists"):
 * the caller asked for a directory and did not get one. */
static void test_mkdir_p_refuses_existing_file(void **state)
{
	struct fixture *f = *state;
	char *file = xasprintf("%s/not-a-dir", f->dir);
	write_file(file, "x", 1);
	errno = 0;
	int rc = mkdir_p(file, 0755);
	bool is_directory = is_dir(file);
	free(file);
	assert_false(is_directory);
	assert_int_equal(rc, -1);
	assert_int_equal(errno, EEXIST);
}

/* mkdir -p tries the whole path first and walks up only for what is
 * missing: each case below ends as `mkdir -p` would. */
static void test_mkdir_p_walks_up_only_when_needed(void **state)
{
	struct fixture *f = *state;
	/* the parent exists: one level */
	char *one = xasprintf("%s/one", f->dir);
	assert_int_equal(mkdir_p(one, 0750), 0);
	assert_true(is_dir(one));
	/* several levels missing, with doubled and trailing slashes */
	char *messy = xasprintf("%s/one/m//n///o/", f->dir);
	assert_int_equal(mkdir_p(messy, 0750), 0);
	char *o = xasprintf("%s/one/m/n/o", f->dir);
	assert_true(is_dir(o));
	/* the input is left as it was */
	char *messy_copy = xasprintf("%s/one/m//n///o/", f->dir);
	assert_string_equal(messy, messy_copy);
	/* the root and a directory that exists */
	assert_int_equal(mkdir_p("/", 0750), 0);
	assert_int_equal(mkdir_p(o, 0750), 0);
	/* through a symbolic link to a directory */
	char *link = xasprintf("%s/link", f->dir);
	assert_int_equal(symlink(one, link), 0);
	char *via = xasprintf("%s/link/p/q", f->dir);
	assert_int_equal(mkdir_p(via, 0750), 0);
	char *pq = xasprintf("%s/one/p/q", f->dir);
	assert_true(is_dir(pq));
	/* a dangling link on the way: ENOENT, and it stops */
	char *dangling = xasprintf("%s/dangling", f->dir);
	assert_int_equal(symlink("/nonexistent/drover/nothing", dangling), 0);
	char *under_dangling = xasprintf("%s/dangling/x/y", f->dir);
	errno = 0;
	assert_int_equal(mkdir_p(under_dangling, 0750), -1);
	assert_int_equal(errno, ENOENT);
	/* a regular file two levels up: ENOTDIR, nothing made */
	char *file = xasprintf("%s/one/plain", f->dir);
	write_file(file, "x", 1);
	char *under_file = xasprintf("%s/one/plain/x/y", f->dir);
	errno = 0;
	assert_int_equal(mkdir_p(under_file, 0750), -1);
	assert_int_equal(errno, ENOTDIR);
	/* relative to the working directory */
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(f->dir), 0);
	int rc = mkdir_p("rel/a/b", 0750);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(rc, 0);
	char *rel = xasprintf("%s/rel/a/b", f->dir);
	assert_true(is_dir(rel));
	free(rel);
	free(under_file);
	free(file);
	free(under_dangling);
	free(dangling);
	free(pq);
	free(via);
	free(link);
	free(messy_copy);
	free(o);
	free(messy);
	free(one);
}

static void test_rm_rf_stays_inside(void **state)
{
	struct fixture *f = *state;
	/* outside/: what the tree's symlinks point at; it must survive */
	char *outside = xasprintf("%s/outside", f->dir);
	char *outside_sub = xasprintf("%s/outside/sub", f->dir);
	char *outside_file = xasprintf("%s/outside/keep.txt", f->dir);
	char *outside_deep = xasprintf("%s/outside/sub/deep.txt", f->dir);
	assert_int_equal(mkdir_p(outside_sub, 0755), 0);
	write_file(outside_file, "keep", 4);
	write_file(outside_deep, "deep", 4);

	char *tree = xasprintf("%s/tree", f->dir);
	char *nested = xasprintf("%s/tree/a/b", f->dir);
	assert_int_equal(mkdir_p(nested, 0755), 0);
	char *p;
	p = xasprintf("%s/tree/top.txt", f->dir);
	write_file(p, "1", 1);
	free(p);
	p = xasprintf("%s/tree/a/b/leaf.txt", f->dir);
	write_file(p, "2", 1);
	free(p);
	p = xasprintf("%s/tree/a/.hidden", f->dir);
	write_file(p, "3", 1);
	free(p);
	p = xasprintf("%s/tree/a/link-to-dir", f->dir);
	assert_int_equal(symlink(outside, p), 0);
	free(p);
	p = xasprintf("%s/tree/link-to-file", f->dir);
	assert_int_equal(symlink(outside_file, p), 0);
	free(p);
	p = xasprintf("%s/tree/a/b/dangling", f->dir);
	assert_int_equal(symlink("/nonexistent/drover/nothing", p), 0);
	free(p);

	assert_int_equal(rm_rf(tree), 0);
	assert_false(path_exists(tree));
	assert_true(path_exists(outside_file));
	assert_true(path_exists(outside_deep));
	assert_true(is_dir(outside_sub));

	/* a missing path is already removed */
	assert_int_equal(rm_rf(tree), 0);

	/* a symlink given as the root is removed itself, never its target */
	char *root_link = xasprintf("%s/root-link", f->dir);
	assert_int_equal(symlink(outside, root_link), 0);
	assert_int_equal(rm_rf(root_link), 0);
	assert_false(path_exists(root_link));
	assert_true(path_exists(outside_file));
	free(root_link);

	/* a plain file */
	char *single = xasprintf("%s/single", f->dir);
	write_file(single, "s", 1);
	assert_int_equal(rm_rf(single), 0);
	assert_false(path_exists(single));
	free(single);

	free(outside);
	free(outside_sub);
	free(outside_file);
	free(outside_deep);
	free(tree);
	free(nested);
}

static void test_fd_set_flags(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(fd_set_flags(fds[0], false), 0);
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	assert_false(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
	assert_int_equal(fd_set_flags(fds[1], true), 0);
	assert_true(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(fd_set_flags(fds[0], false), -1); /* closed */
}

static void test_xgrow(void **state)
{
	(void)state;
	int *v = NULL;
	size_t cap = 0;
	for (size_t n = 0; n < 100; n++) {
		v = xgrow(v, &cap, n, sizeof *v);
		assert_true(cap > n); /* room for element n */
		v[n] = (int)n;
	}
	assert_int_equal(cap, 128); /* 16, doubled */
	for (size_t n = 0; n < 100; n++)
		assert_int_equal(v[n], (int)n);
	int *same = xgrow(v, &cap, 50, sizeof *v); /* room already */
	assert_ptr_equal(same, v);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_accepts),
	    cmocka_unit_test(test_duration_refuses),
	    cmocka_unit_test(test_strbuf),
	    cmocka_unit_test(test_xasprintf_and_xstrndup),
	    cmocka_unit_test(test_time_format_iso8601),
	    cmocka_unit_test_setup_teardown(test_file_read_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_read_all_empty_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mkdir_p, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mkdir_p_refuses_existing_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mkdir_p_walks_up_only_when_needed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_rm_rf_stays_inside, setup, teardown),
	    cmocka_unit_test(test_fd_set_flags),
	    cmocka_unit_test(test_xgrow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
