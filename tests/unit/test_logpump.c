/*
 * Tests for logpump, the reading side of a followed stage log, against a
 * real file the test appends to and a scripted probe standing in for the
 * store: waiting before the attempt starts, bounded chunks, waiting at the
 * end of what was written, the bytes written just before the attempt ends
 * (never lost), an attempt that ends without a log or never starts, and a
 * log that cannot be read. Also where an attempt is (logpump_classify).
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
#include <unistd.h>

#include "logpump.h"
#include "util.h"

/* The scripted store: where the attempt is, and what the writer appends
 * just before the next probe answers (a stage's last words before its end
 * is recorded). */
struct fake {
	char dir[64];
	char *path;
	enum logpump_attempt where;
	const char *append_on_probe; /* NULL: nothing */
	int n_probes;
};

static void fake_append(const struct fake *f, const char *text)
{
	int fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static enum logpump_attempt fake_probe(void *arg)
{
	struct fake *f = arg;
	f->n_probes++;
	if (f->append_on_probe != NULL) {
		fake_append(f, f->append_on_probe);
		f->append_on_probe = NULL;
	}
	return f->where;
}

static int setup(void **state)
{
	struct fake *f = xcalloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/drover-test-logpump-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->path = xasprintf("%s/stage.1.log", f->dir);
	f->where = LOGPUMP_PENDING;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	int rc = rm_rf(f->dir);
	free(f->path);
	free(f);
	return rc;
}

/* Drains DATA results into out until something else comes; returns that. */
static enum logpump_result drain(struct logpump *p, size_t max, struct strbuf *out)
{
	char buf[4096];
	assert_true(max <= sizeof buf);
	for (;;) {
		size_t len = 99;
		enum logpump_result r = logpump_next(p, buf, max, &len);
		if (r != LOGPUMP_DATA) {
			assert_int_equal(len, 0);
			return r;
		}
		assert_true(len > 0 && len <= max);
		strbuf_add(out, buf, len);
	}
}

/* Pending: no open, no read; then it runs and the log streams as it grows. */
static void test_follows_a_growing_log(void **state)
{
	struct fake *f = *state;
	struct logpump p;
	logpump_init(&p, f->path, fake_probe, f);
	struct strbuf out;
	strbuf_init(&out);
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_WAIT);
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_WAIT);
	assert_int_equal(p.fd, -1);

	f->where = LOGPUMP_RUNNING; /* recorded as running; its log is opened next */
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_WAIT);
	fake_append(f, "line 1\n");
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_WAIT);
	assert_string_equal(out.data, "line 1\n");

	/* 100 bytes come in chunks of at most 16 */
	char big[101];
	memset(big, 'x', 100);
	big[100] = '\0';
	fake_append(f, big);
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_WAIT);
	assert_int_equal(out.len, 107);

	/* the stage writes its last line, then its end is recorded */
	fake_append(f, "last\n");
	f->where = LOGPUMP_OVER;
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_END);
	assert_int_equal(out.len, 112);
	assert_memory_equal(out.data + 107, "last\n", 5);
	assert_int_equal(drain(&p, 16, &out), LOGPUMP_END); /* and stays ended */
	strbuf_free(&out);
	logpump_close(&p);
}

/* The file is at its end, the writer appends and ends before the probe
 * answers OVER: those bytes still come before the end. */
static void test_last_words_are_not_lost(void **state)
{
	struct fake *f = *state;
	f->where = LOGPUMP_RUNNING;
	fake_append(f, "first\n");
	struct logpump p;
	logpump_init(&p, f->path, fake_probe, f);
	struct strbuf out;
	strbuf_init(&out);
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_WAIT);
	f->append_on_probe = "written just before the end\n";
	f->where = LOGPUMP_OVER;
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_END);
	assert_string_equal(out.data, "first\nwritten just before the end\n");
	strbuf_free(&out);
	logpump_close(&p);
}

/* A finished attempt: the whole log, then the end, with one probe. */
static void test_finished_attempt(void **state)
{
	struct fake *f = *state;
	f->where = LOGPUMP_OVER;
	fake_append(f, "all of it\n");
	struct logpump p;
	logpump_init(&p, f->path, fake_probe, f);
	struct strbuf out;
	strbuf_init(&out);
	assert_int_equal(drain(&p, 4, &out), LOGPUMP_END);
	assert_string_equal(out.data, "all of it\n");
	assert_int_equal(f->n_probes, 1);
	strbuf_free(&out);
	logpump_close(&p);
}

/* Over without a log (it could not be opened), or never to start: the end. */
static void test_no_log(void **state)
{
	struct fake *f = *state;
	struct strbuf out;
	strbuf_init(&out);
	struct logpump p;
	f->where = LOGPUMP_RUNNING;
	logpump_init(&p, f->path, fake_probe, f);
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_WAIT);
	f->where = LOGPUMP_OVER;
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_END);
	logpump_close(&p);

	f->where = LOGPUMP_NEVER;
	logpump_init(&p, f->path, fake_probe, f);
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_END);
	logpump_close(&p);
	assert_int_equal(out.len, 0);
	strbuf_free(&out);
}

/* A log that cannot be read ends the stream with an error. */
static void test_unreadable(void **state)
{
	struct fake *f = *state;
	assert_int_equal(mkdir(f->path, 0750), 0); /* a directory where the log should be */
	f->where = LOGPUMP_RUNNING;
	struct logpump p;
	logpump_init(&p, f->path, fake_probe, f);
	struct strbuf out;
	strbuf_init(&out);
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_ERROR);
	assert_int_equal(drain(&p, 64, &out), LOGPUMP_END);
	strbuf_free(&out);
	logpump_close(&p);
	assert_int_equal(rmdir(f->path), 0);
}

static void test_classify(void **state)
{
	(void)state;
	const enum status Q = STATUS_QUEUED, R = STATUS_RUNNING, S = STATUS_SUCCEEDED,
			  F = STATUS_FAILED, K = STATUS_SKIPPED;
	/* wanted, stage attempt, stage status, run status */
	assert_int_equal(logpump_classify(1, 0, Q, Q), LOGPUMP_PENDING); /* run queued */
	assert_int_equal(logpump_classify(1, 0, Q, R), LOGPUMP_PENDING); /* needs not done */
	assert_int_equal(logpump_classify(1, 1, R, R), LOGPUMP_RUNNING);
	assert_int_equal(logpump_classify(1, 1, S, R), LOGPUMP_OVER);
	assert_int_equal(logpump_classify(1, 2, Q, R), LOGPUMP_OVER);	 /* retry waits */
	assert_int_equal(logpump_classify(2, 2, Q, R), LOGPUMP_PENDING); /* the retry itself */
	assert_int_equal(logpump_classify(2, 2, R, R), LOGPUMP_RUNNING);
	assert_int_equal(logpump_classify(1, 3, F, F), LOGPUMP_OVER);
	assert_int_equal(logpump_classify(1, 0, Q, F), LOGPUMP_NEVER); /* the run ended */
	assert_int_equal(logpump_classify(1, 0, K, R), LOGPUMP_NEVER); /* skipped */
	assert_int_equal(logpump_classify(2, 1, S, R), LOGPUMP_NEVER); /* no retry to come */
	assert_int_equal(logpump_classify(2, 1, S, S), LOGPUMP_NEVER);
	assert_int_equal(logpump_classify(3, 2, Q, STATUS_CANCELLED), LOGPUMP_NEVER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_follows_a_growing_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_last_words_are_not_lost, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_finished_attempt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
	    cmocka_unit_test(test_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
