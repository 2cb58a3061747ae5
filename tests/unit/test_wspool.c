/*
 * Tests for wspool on a real directory: an empty workspace put back is
 * renamed into the pool and the next take gets that very directory (same
 * inode, mode 0750 and a fresh mtime again); a workspace with files is
 * removed, never pooled; the pool holds at most cap; a new pool takes up
 * what an earlier agent left and removes what is not an empty directory.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "wspool.h"

struct harness {
	char dir[64];
	char *pool_dir;
};

static int setup(void **state)
{
	struct harness *h = xcalloc(1, sizeof *h);
	snprintf(h->dir, sizeof h->dir, "/tmp/drover-test-wspool-XXXXXX");
	if (mkdtemp(h->dir) == NULL)
		return -1;
	h->pool_dir = xasprintf("%s/.free", h->dir);
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	rm_rf(h->dir);
	free(h->pool_dir);
	free(h);
	return 0;
}

static ino_t inode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static void touch(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	free(path);
}

/* Put back empty, taken again: the same directory, not a new inode. */
static void test_empty_workspace_is_reused(void **state)
{
	struct harness *h = *state;
	struct wspool *p = wspool_new(h->pool_dir, 4);
	char *ws1 = xasprintf("%s/1", h->dir);
	char *ws2 = xasprintf("%s/2", h->dir);
	assert_int_equal(wspool_take(p, ws1), 0);
	ino_t ino = inode_of(ws1);
	/* a stage may leave its workspace wide open and old */
	assert_int_equal(chmod(ws1, 0777), 0);
	struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
	assert_int_equal(utimensat(AT_FDCWD, ws1, old, 0), 0);
	wspool_put(p, ws1);
	assert_int_not_equal(access(ws1, F_OK), 0);
	assert_int_equal(wspool_count(p), 1);

	assert_int_equal(wspool_take(p, ws2), 0);
	assert_int_equal(wspool_count(p), 0);
	struct stat st;
	assert_int_equal(stat(ws2, &st), 0);
	if (st.st_ino != ino)
		fail_msg("the second workspace is inode %lu, not the pooled %lu",
			 (unsigned long)st.st_ino, (unsigned long)ino);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_true(st.st_mtime > time(NULL) - 60);
	wspool_put(p, ws2);
	wspool_free(p);
	free(ws1);
	free(ws2);
}

/* A workspace with anything in it goes, with its contents; the pool is unchanged. */
static void test_used_workspace_is_removed(void **state)
{
	struct harness *h = *state;
	struct wspool *p = wspool_new(h->pool_dir, 4);
	char *ws = xasprintf("%s/7", h->dir);
	assert_int_equal(wspool_take(p, ws), 0);
	touch(ws, "f");
	wspool_put(p, ws);
	assert_int_not_equal(access(ws, F_OK), 0);
	assert_int_equal(wspool_count(p), 0);
	/* a take over a leftover (a crash) starts from an empty directory */
	assert_int_equal(mkdir(ws, 0700), 0);
	touch(ws, "stale");
	assert_int_equal(wspool_take(p, ws), 0);
	char *stale = xasprintf("%s/stale", ws);
	assert_int_not_equal(access(stale, F_OK), 0);
	free(stale);
	wspool_free(p);
	free(ws);
}

/* At most cap directories wait; the others are removed. */
static void test_cap(void **state)
{
	struct harness *h = *state;
	struct wspool *p = wspool_new(h->pool_dir, 2);
	char *ws[3];
	for (int i = 0; i < 3; i++) {
		ws[i] = xasprintf("%s/%d", h->dir, 10 + i);
		assert_int_equal(wspool_take(p, ws[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		wspool_put(p, ws[i]);
		assert_int_not_equal(access(ws[i], F_OK), 0);
		free(ws[i]);
	}
	assert_int_equal(wspool_count(p), 2);
	wspool_free(p);
}

/* A pool left by an earlier agent: its empty numbered directories are taken
 * up (up to cap); a non-empty one, a foreign name or a file is removed. */
static void test_restart_takes_up_the_pool(void **state)
{
	struct harness *h = *state;
	assert_int_equal(mkdir_p(h->pool_dir, 0750), 0);
	char *d;
	for (int i = 0; i < 3; i++) {
		d = xasprintf("%s/%d", h->pool_dir, i);
		assert_int_equal(mkdir(d, 0750), 0);
		free(d);
	}
	d = xasprintf("%s/5", h->pool_dir);
	assert_int_equal(mkdir(d, 0750), 0);
	touch(d, "left");
	free(d);
	d = xasprintf("%s/x", h->pool_dir);
	assert_int_equal(mkdir(d, 0750), 0);
	free(d);
	touch(h->pool_dir, "9");

	struct wspool *p = wspool_new(h->pool_dir, 2);
	assert_int_equal(wspool_count(p), 2);
	static const char *const gone[] = {"5", "x", "9"};
	for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
		d = xasprintf("%s/%s", h->pool_dir, gone[i]);
		if (access(d, F_OK) == 0)
			fail_msg("%s is still in the pool", d);
		free(d);
	}
	/* a put after that does not clash with a name taken up */
	char *ws = xasprintf("%s/w", h->dir);
	assert_int_equal(wspool_take(p, ws), 0);
	wspool_put(p, ws);
	assert_int_equal(wspool_count(p), 2);
	free(ws);
	wspool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_empty_workspace_is_reused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_used_workspace_is_removed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_takes_up_the_pool, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
