/*
 * Tests for store_check_writable, the store half of /readyz: it says yes on
 * a healthy database, no (quickly, with SQLite's reason) while another
 * process holds the write lock, no when the write itself fails at the file
 * system (RLIMIT_FSIZE makes the WAL append fail with EFBIG, as a full disk
 * would with ENOSPC), and yes again once the cause is gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "store.h"
#include "store_fixture.h"
#include "util.h"

struct fixture {
	struct store_fixture base; /* first: the store and its directory */
	sqlite3 *other;		   /* a second connection, as another process would hold */
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	*state = f;
	if (store_fixture_open(&f->base, "writable") != 0)
		return -1;
	char *path = xasprintf("%s/drover.db", f->base.dir);
	int rc = sqlite3_open(path, &f->other);
	free(path);
	return rc == SQLITE_OK ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	sqlite3_close(f->other);
	store_fixture_close(&f->base);
	free(f);
	return 0;
}

static void test_writable_when_healthy(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	assert_int_equal(store_check_writable(f->base.store, err, sizeof err), 0);
	assert_int_equal(store_check_writable(f->base.store, err, sizeof err), 0);
	/* It really wrote: the probe row is there for another connection to read. */
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(f->other, "SELECT checked_at FROM probe WHERE id = 1",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_true(sqlite3_column_int64(st, 0) > 0);
	sqlite3_finalize(st);
}

/* Another process holds the write lock: not writable, said within the probe's short wait. */
static void test_not_writable_while_locked(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	assert_int_equal(sqlite3_exec(f->other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	int64_t start = mono_ms();
	assert_int_equal(store_check_writable(f->base.store, err, sizeof err), -1);
	int64_t waited = mono_ms() - start;
	assert_non_null(strstr(err, "locked"));
	/* The usual busy timeout (5 s) is not what the probe waits. */
	assert_true(waited < 4000);
	assert_int_equal(sqlite3_exec(f->other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(store_check_writable(f->base.store, err, sizeof err), 0);
	/* And the store's own transactions still work. */
	assert_int_equal(store_begin(f->base.store), 0);
	assert_int_equal(store_commit(f->base.store), 0);
}

/* The file system refuses the write (the WAL cannot grow): not writable, then writable again. */
static void test_not_writable_when_writes_fail(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	/* An empty WAL, so the probe's commit must grow it. */
	assert_int_equal(
	    sqlite3_exec(f->other, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
	struct rlimit old, none;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	none = old;
	none.rlim_cur = 0;
	void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &none), 0);
	int rc = store_check_writable(f->base.store, err, sizeof err);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, old_handler);
	assert_int_equal(rc, -1);
	assert_true(strlen(err) > 0);
	assert_int_equal(store_check_writable(f->base.store, err, sizeof err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_writable_when_healthy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_writable_while_locked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_writable_when_writes_fail, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
