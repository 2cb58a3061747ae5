/*
 * Tests of store: schema and WAL on open, durability across reopen, refusal
 * of a newer schema, events, runs, stages and their attempt history, outputs,
 * the API JSON shapes, list filters, nested transactions, the outbox (bytes
 * keys, null values, deletes in one transaction), the process groups of
 * running stages, and the migrations that added them and made outbox keys
 * bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_fixture.h"
#include "util.h"

static int setup(void **state)
{
	struct store_fixture *f = xcalloc(1, sizeof *f);
	*state = f;
	return store_fixture_open(f, "store");
}

static int teardown(void **state)
{
	struct store_fixture *f = *state;
	int rc = store_fixture_close(f);
	free(f);
	return rc;
}

static void reopen(struct store_fixture *f)
{
	char err[256] = "";
	store_close(f->store);
	f->store = store_open(f->dir, err, sizeof err);
	if (f->store == NULL)
		fail_msg("reopen failed: %s", err);
}

/* A second, plain SQLite connection to the same database, as an operator would use. */
static sqlite3 *raw_open(const struct store_fixture *f)
{
	char *path = xasprintf("%s/drover.db", f->dir);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	free(path);
	return db;
}

/* The first column of the first row as text (caller frees), or NULL. */
static char *raw_text(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	char *out = NULL;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		out = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void assert_raw_text(sqlite3 *db, const char *sql, const char *expected)
{
	char *got = raw_text(db, sql);
	if (expected == NULL) {
		assert_null(got);
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, expected);
	free(got);
}

static struct store_run sample_run(void)
{
	struct store_run run = {
	    .pipeline = "pr",
	    .status = STATUS_QUEUED,
	    .repo = "acme/model",
	    .sha = "abc123",
	    .branch = "feature/x",
	    .event_id = "ev-1",
	    .event_kind = "pull_request",
	    .concurrency_group = "pr-acme/model-7",
	    .lock_name = NULL,
	    .definition = "{\"name\":\"pr\"}",
	    .workspace = NULL,
	};
	return run;
}

static struct store_stage sample_stage(int64_t run_id, const char *name, int idx)
{
	struct store_stage stage = {
	    .run_id = run_id,
	    .name = (char *)name,
	    .idx = idx,
	    .status = STATUS_QUEUED,
	    .attempt = 0,
	    .exit_code = -1,
	};
	return stage;
}

static int64_t insert_run(struct store *s, const char *pipeline, enum status status,
			  const char *repo)
{
	struct store_run run = sample_run();
	run.pipeline = (char *)pipeline;
	run.status = status;
	run.repo = (char *)repo;
	assert_int_equal(store_run_insert(s, &run), 0);
	return run.id;
}

static void iso(int64_t ms, char *buf, size_t len)
{
	time_format_iso8601(ms, buf, len);
}

/* ---- open ---- */

/* Takes a database back to schema 6 (before replay commands); the caller sets the version. */
#define UNDO_MIGRATION_7 "DROP TABLE replay_commands;"

/* Takes a database back to schema 4 (before replays); the caller sets the version. */
#define UNDO_MIGRATION_5                                                                           \
	"DROP TABLE run_attempts; ALTER TABLE stages DROP COLUMN run_attempt;"                     \
	" ALTER TABLE stages DROP COLUMN first_attempt;"                                           \
	" ALTER TABLE stage_attempts DROP COLUMN run_attempt;"

static void test_open_creates_schema_and_wal(void **state)
{
	struct store_fixture *f = *state;
	sqlite3 *db = raw_open(f);
	assert_raw_text(db, "PRAGMA journal_mode", "wal");
	assert_int_equal(raw_int(db, "PRAGMA user_version"), 7);
	const char *tables[] = {"events",  "runs",   "stages",	   "stage_attempts",
				"outputs", "outbox", "stage_procs"};
	for (size_t i = 0; i < ARRAY_LEN(tables); i++) {
		char *sql = xasprintf(
		    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s'",
		    tables[i]);
		assert_int_equal(raw_int(db, sql), 1);
		free(sql);
	}
	assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
				     " AND tbl_name = 'runs' AND sql IS NOT NULL"),
			 4);
	sqlite3_close(db);
}

static void test_open_makes_nested_state_dir(void **state)
{
	struct store_fixture *f = *state;
	char err[256] = "";
	char *nested = xasprintf("%s/a/b/c", f->dir);
	struct store *s = store_open(nested, err, sizeof err);
	assert_non_null(s);
	store_close(s);
	char *db = xasprintf("%s/drover.db", nested);
	FILE *fp = fopen(db, "r");
	assert_non_null(fp);
	fclose(fp);
	free(db);
	free(nested);
}

static void test_reopen_keeps_data(void **state)
{
	struct store_fixture *f = *state;
	json_t *body = json_pack("{s:s, s:s}", "id", "ev-1", "kind", "push");
	assert_int_equal(
	    store_event_insert(f->store, "ev-1", body, "accepted", NULL, "drover.events", 0, 42),
	    0);
	int64_t id = insert_run(f->store, "release", STATUS_RUNNING, "acme/model");
	struct store_stage stage = sample_stage(id, "train", 0);
	stage.attempt = 1;
	stage.status = STATUS_RUNNING;
	stage.resume_token = "job-run-99";
	assert_int_equal(store_stage_insert(f->store, &stage), 0);
	assert_int_equal(store_output_set(f->store, id, "train", "model_version", "7"), 0);
	assert_true(store_outbox_add(f->store, "drover.results", "acme/model", "{}", 2) > 0);

	reopen(f);

	assert_true(store_event_exists(f->store, "ev-1"));
	json_t *got = store_event_get(f->store, "ev-1");
	assert_true(json_equal(got, body));
	json_decref(got);
	json_decref(body);

	struct store_run run;
	struct store_stage *stages;
	size_t n;
	assert_int_equal(store_run_load(f->store, id, &run, &stages, &n), 0);
	assert_string_equal(run.pipeline, "release");
	assert_int_equal(run.status, STATUS_RUNNING);
	assert_int_equal(n, 1);
	assert_string_equal(stages[0].resume_token, "job-run-99");
	assert_int_equal(stages[0].attempt, 1);
	store_run_clear(&run);
	store_stages_free(stages, n);

	int64_t *ids;
	assert_int_equal(store_runs_unfinished(f->store, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], id);
	free(ids);

	json_t *outputs = store_outputs_get(f->store, id);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(outputs, "train"), "model_version")),
	    "7");
	json_decref(outputs);
	assert_int_equal(store_outbox_count(f->store), 1);

	/* A fresh run after the restart continues the id sequence. */
	assert_true(insert_run(f->store, "pr", STATUS_QUEUED, NULL) > id);
}

static void test_newer_schema_refused(void **state)
{
	struct store_fixture *f = *state;
	store_close(f->store);
	f->store = NULL;
	sqlite3 *db = raw_open(f);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	char err[256] = "";
	assert_null(store_open(f->dir, err, sizeof err));
	assert_non_null(strstr(err, "newer"));
	assert_non_null(strstr(err, "99"));

	/* Left untouched. */
	db = raw_open(f);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), 99);
	sqlite3_close(db);
}

static void test_not_a_database_refused(void **state)
{
	struct store_fixture *f = *state;
	char *dir = xasprintf("%s/junk", f->dir);
	char *path = xasprintf("%s/drover.db", dir);
	assert_int_equal(mkdir_p(dir, 0700), 0);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database at all\n", fp);
	fclose(fp);
	char err[256] = "";
	assert_null(store_open(dir, err, sizeof err));
	assert_true(strlen(err) > 0);
	free(path);
	free(dir);
}

/* ---- events ---- */

static void test_event_insert_and_duplicate(void **state)
{
	struct store_fixture *f = *state;
	json_t *body =
	    json_pack("{s:s, s:s, s:s, s:s, s:{s:i}}", "id", "d-1", "kind", "pull_request",
		      "source", "github", "repo", "acme/model", "pr", "number", 7);
	json_t *other = json_pack("{s:s, s:s}", "id", "d-1", "kind", "push");

	assert_false(store_event_exists(f->store, "d-1"));
	assert_null(store_event_get(f->store, "d-1"));
	assert_int_equal(
	    store_event_insert(f->store, "d-1", body, "accepted", NULL, "drover.events", 3, 1000),
	    0);
	assert_int_equal(
	    store_event_insert(f->store, "d-1", other, "accepted", NULL, "drover.events", 3, 1001),
	    1);
	assert_true(store_event_exists(f->store, "d-1"));

	json_t *got = store_event_get(f->store, "d-1");
	assert_true(json_equal(got, body)); /* the first body stays */
	json_decref(got);

	sqlite3 *db = raw_open(f);
	assert_raw_text(db, "SELECT kind FROM events WHERE id = 'd-1'", "pull_request");
	assert_raw_text(db, "SELECT source FROM events WHERE id = 'd-1'", "github");
	assert_raw_text(db, "SELECT repo FROM events WHERE id = 'd-1'", "acme/model");
	assert_raw_text(db, "SELECT outcome FROM events WHERE id = 'd-1'", "accepted");
	assert_raw_text(db, "SELECT topic FROM events WHERE id = 'd-1'", "drover.events");
	assert_int_equal(raw_int(db, "SELECT partition FROM events WHERE id = 'd-1'"), 3);
	assert_int_equal(raw_int(db, "SELECT \"offset\" FROM events WHERE id = 'd-1'"), 1000);
	assert_true(raw_int(db, "SELECT received_at FROM events WHERE id = 'd-1'") > 0);
	/* Compact JSON text. */
	char *text = raw_text(db, "SELECT body FROM events WHERE id = 'd-1'");
	assert_null(strchr(text, ' '));
	assert_null(strchr(text, '\n'));
	free(text);

	/* No body, no Kafka origin: NULL columns, and an error text. */
	assert_int_equal(
	    store_event_insert(f->store, "bad-1", NULL, "dead-lettered", "not JSON", NULL, -1, -1),
	    0);
	assert_null(store_event_get(f->store, "bad-1"));
	assert_true(store_event_exists(f->store, "bad-1"));
	assert_raw_text(db, "SELECT kind FROM events WHERE id = 'bad-1'", NULL);
	assert_raw_text(db, "SELECT body FROM events WHERE id = 'bad-1'", NULL);
	assert_raw_text(db, "SELECT partition FROM events WHERE id = 'bad-1'", NULL);
	assert_raw_text(db, "SELECT error FROM events WHERE id = 'bad-1'", "not JSON");

	/* A body that is not an object: stored, but no columns come from it. */
	json_t *arr = json_pack("[i, s]", 1, "kind");
	assert_int_equal(store_event_insert(f->store, "arr-1", arr, "refused", NULL, NULL, -1, -1),
			 0);
	assert_raw_text(db, "SELECT kind FROM events WHERE id = 'arr-1'", NULL);
	got = store_event_get(f->store, "arr-1");
	assert_true(json_equal(got, arr));
	json_decref(got);
	json_decref(arr);

	/* A non-string kind is not copied. */
	json_t *odd = json_pack("{s:i}", "kind", 5);
	assert_int_equal(store_event_insert(f->store, "odd-1", odd, "refused", NULL, NULL, -1, -1),
			 0);
	assert_raw_text(db, "SELECT kind FROM events WHERE id = 'odd-1'", NULL);
	json_decref(odd);

	/* outcome is required: an error, not a silent "duplicate". */
	assert_int_equal(store_event_insert(f->store, "no-outcome", body, NULL, NULL, NULL, -1, -1),
			 -1);
	assert_false(store_event_exists(f->store, "no-outcome"));
	sqlite3_close(db);
	json_decref(body);
	json_decref(other);
}

/* ---- runs and stages ---- */

static void test_run_and_stages(void **state)
{
	struct store_fixture *f = *state;
	struct store_run in = sample_run();
	assert_int_equal(store_run_insert(f->store, &in), 0);
	assert_true(in.id > 0);
	assert_true(in.created_at > 0); /* defaulted to now */
	assert_int_equal(in.attempt, 1);

	/* Inserted out of order: loaded by idx. */
	struct store_stage integration = sample_stage(in.id, "integration", 1);
	struct store_stage unit = sample_stage(in.id, "unit", 0);
	assert_int_equal(store_stage_insert(f->store, &integration), 0);
	assert_int_equal(store_stage_insert(f->store, &unit), 0);
	assert_int_equal(store_stage_insert(f->store, &unit), -1); /* (run, name) is unique */

	/* A stage of a run that does not exist: foreign key. */
	struct store_stage orphan = sample_stage(in.id + 100, "unit", 0);
	assert_int_equal(store_stage_insert(f->store, &orphan), -1);

	in.status = STATUS_RUNNING;
	in.started_at = 1700000000123;
	in.sha = "def456";
	in.workspace = "/var/lib/drover/ws/1";
	in.attempt = 2;
	assert_int_equal(store_run_update(f->store, &in), 0);

	unit.status = STATUS_SUCCEEDED;
	unit.attempt = 1;
	unit.exit_code = 0;
	unit.started_at = 1700000000200;
	unit.finished_at = 1700000000900;
	unit.summary = "12 passed";
	unit.resume_token = "tok";
	assert_int_equal(store_stage_update(f->store, &unit), 0);

	struct store_run run;
	struct store_stage *stages;
	size_t n;
	assert_int_equal(store_run_load(f->store, in.id, &run, &stages, &n), 0);
	assert_int_equal(run.id, in.id);
	assert_string_equal(run.pipeline, "pr");
	assert_int_equal(run.status, STATUS_RUNNING);
	assert_string_equal(run.repo, "acme/model");
	assert_string_equal(run.sha, "def456");
	assert_string_equal(run.branch, "feature/x");
	assert_string_equal(run.event_id, "ev-1");
	assert_string_equal(run.event_kind, "pull_request");
	assert_string_equal(run.concurrency_group, "pr-acme/model-7");
	assert_null(run.lock_name);
	assert_string_equal(run.definition, "{\"name\":\"pr\"}");
	assert_string_equal(run.workspace, "/var/lib/drover/ws/1");
	assert_int_equal(run.attempt, 2);
	assert_int_equal(run.created_at, in.created_at);
	assert_int_equal(run.started_at, 1700000000123);
	assert_int_equal(run.finished_at, 0);

	assert_int_equal(n, 2);
	assert_string_equal(stages[0].name, "unit");
	assert_int_equal(stages[0].run_id, in.id);
	assert_int_equal(stages[0].idx, 0);
	assert_int_equal(stages[0].status, STATUS_SUCCEEDED);
	assert_int_equal(stages[0].attempt, 1);
	assert_int_equal(stages[0].exit_code, 0);
	assert_int_equal(stages[0].started_at, 1700000000200);
	assert_int_equal(stages[0].finished_at, 1700000000900);
	assert_string_equal(stages[0].summary, "12 passed");
	assert_string_equal(stages[0].resume_token, "tok");
	assert_string_equal(stages[1].name, "integration");
	assert_int_equal(stages[1].idx, 1);
	assert_int_equal(stages[1].status, STATUS_QUEUED);
	assert_int_equal(stages[1].attempt, 0);
	assert_int_equal(stages[1].exit_code, -1);
	assert_int_equal(stages[1].started_at, 0);
	assert_null(stages[1].summary);
	assert_null(stages[1].resume_token);
	store_run_clear(&run);
	assert_null(run.pipeline);
	store_stages_free(stages, n);

	/* Loading without stages. */
	assert_int_equal(store_run_load(f->store, in.id, &run, NULL, NULL), 0);
	assert_string_equal(run.sha, "def456");
	store_run_clear(&run);

	/* Missing things are errors, and leave the output clear. */
	assert_int_equal(store_run_load(f->store, in.id + 100, &run, &stages, &n), -1);
	assert_null(run.pipeline);
	assert_null(stages);
	assert_int_equal(n, 0);
	store_run_clear(&run);
	struct store_run ghost = sample_run();
	ghost.id = in.id + 100;
	assert_int_equal(store_run_update(f->store, &ghost), -1);
	struct store_stage nothing = sample_stage(in.id, "nothing", 9);
	assert_int_equal(store_stage_update(f->store, &nothing), -1);

	/* Only queued and running runs are unfinished, oldest first. */
	int64_t done_id = insert_run(f->store, "pr", STATUS_SUCCEEDED, NULL);
	int64_t queued_id = insert_run(f->store, "pr", STATUS_QUEUED, NULL);
	int64_t failed_id = insert_run(f->store, "pr", STATUS_FAILED, NULL);
	(void)done_id;
	(void)failed_id;
	int64_t *ids;
	assert_int_equal(store_runs_unfinished(f->store, &ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], in.id);
	assert_int_equal(ids[1], queued_id);
	free(ids);
}

static void test_stage_attempt_history(void **state)
{
	struct store_fixture *f = *state;
	int64_t id = insert_run(f->store, "release", STATUS_RUNNING, "acme/model");
	struct store_stage st = sample_stage(id, "train", 0);
	assert_int_equal(store_stage_insert(f->store, &st), 0);

	/* Attempt 0 (never started) leaves no history. */
	st.status = STATUS_QUEUED;
	assert_int_equal(store_stage_update(f->store, &st), 0);

	st.attempt = 1;
	st.status = STATUS_RUNNING;
	st.started_at = 1000;
	assert_int_equal(store_stage_update(f->store, &st), 0);
	st.status = STATUS_FAILED;
	st.exit_code = 1;
	st.finished_at = 2000;
	st.summary = "loss diverged";
	assert_int_equal(store_stage_update(f->store, &st), 0);

	st.attempt = 2;
	st.status = STATUS_RUNNING;
	st.exit_code = -1;
	st.started_at = 3000;
	st.finished_at = 0;
	st.summary = NULL;
	assert_int_equal(store_stage_update(f->store, &st), 0);
	st.status = STATUS_SUCCEEDED;
	st.exit_code = 0;
	st.finished_at = 4000;
	st.summary = "auc 0.91";
	assert_int_equal(store_stage_update(f->store, &st), 0);

	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM stage_attempts"), 2);
	sqlite3_stmt *q = NULL;
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT attempt, status, exit_code, started_at,"
					    " finished_at, summary FROM stage_attempts"
					    " WHERE stage = 'train' ORDER BY attempt",
					    -1, &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 1);
	assert_string_equal((const char *)sqlite3_column_text(q, 1), "failed");
	assert_int_equal(sqlite3_column_int(q, 2), 1);
	assert_int_equal(sqlite3_column_int64(q, 3), 1000);
	assert_int_equal(sqlite3_column_int64(q, 4), 2000);
	assert_string_equal((const char *)sqlite3_column_text(q, 5), "loss diverged");
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 2);
	assert_string_equal((const char *)sqlite3_column_text(q, 1), "succeeded");
	assert_int_equal(sqlite3_column_int(q, 2), 0);
	assert_int_equal(sqlite3_column_int64(q, 3), 3000);
	assert_int_equal(sqlite3_column_int64(q, 4), 4000);
	assert_string_equal((const char *)sqlite3_column_text(q, 5), "auc 0.91");
	assert_int_equal(sqlite3_step(q), SQLITE_DONE);
	sqlite3_finalize(q);
	/* The current row holds the latest attempt. */
	assert_raw_text(db, "SELECT status || '/' || attempt FROM stages WHERE name = 'train'",
			"succeeded/2");
	sqlite3_close(db);
}

static void test_outputs(void **state)
{
	struct store_fixture *f = *state;
	int64_t id = insert_run(f->store, "release", STATUS_RUNNING, NULL);
	int64_t other = insert_run(f->store, "release", STATUS_RUNNING, NULL);
	assert_int_equal(store_output_set(f->store, id, "train", "run_id", "r-1"), 0);
	assert_int_equal(store_output_set(f->store, id, "train", "run_id", "r-2"), 0); /* upsert */
	assert_int_equal(store_output_set(f->store, id, "train", "version", "3"), 0);
	assert_int_equal(store_output_set(f->store, id, "deploy", "url", "https://x/y?a=1&b=2"), 0);
	assert_int_equal(store_output_set(f->store, other, "train", "run_id", "elsewhere"), 0);

	json_t *got = store_outputs_get(f->store, id);
	json_t *want = json_pack("{s:{s:s, s:s}, s:{s:s}}", "train", "run_id", "r-2", "version",
				 "3", "deploy", "url", "https://x/y?a=1&b=2");
	assert_true(json_equal(got, want));
	json_decref(got);
	json_decref(want);

	got = store_outputs_get(f->store, id + 1000);
	assert_true(json_is_object(got));
	assert_int_equal(json_object_size(got), 0);
	json_decref(got);

	/* Outputs belong to an existing run. */
	assert_int_equal(store_output_set(f->store, id + 1000, "train", "k", "v"), -1);
}

/* ---- JSON ---- */

static void assert_json_string(const json_t *obj, const char *key, const char *want)
{
	json_t *v = json_object_get(obj, key);
	assert_non_null(v);
	if (want == NULL) {
		assert_true(json_is_null(v));
		return;
	}
	assert_true(json_is_string(v));
	assert_string_equal(json_string_value(v), want);
}

static void test_run_json_shape(void **state)
{
	struct store_fixture *f = *state;
	struct store_run in = sample_run();
	in.branch = NULL;
	in.created_at = 1764405300123; /* 2025-11-29T08:35:00.123Z */
	assert_int_equal(store_run_insert(f->store, &in), 0);
	struct store_stage a = sample_stage(in.id, "unit", 0);
	a.status = STATUS_FAILED;
	a.attempt = 2;
	a.exit_code = 3;
	a.started_at = 1764405301000;
	a.finished_at = 1764405302500;
	a.summary = "3 failed";
	struct store_stage b = sample_stage(in.id, "integration", 1);
	b.status = STATUS_SKIPPED;
	assert_int_equal(store_stage_insert(f->store, &b), 0);
	assert_int_equal(store_stage_insert(f->store, &a), 0);

	json_t *j = store_run_json(f->store, in.id);
	assert_non_null(j);
	assert_int_equal(json_object_size(j), 13);
	assert_true(json_is_integer(json_object_get(j, "id")));
	assert_int_equal(json_integer_value(json_object_get(j, "id")), in.id);
	assert_json_string(j, "pipeline", "pr");
	assert_json_string(j, "status", "queued");
	assert_json_string(j, "repo", "acme/model");
	assert_json_string(j, "sha", "abc123");
	assert_json_string(j, "branch", NULL);
	assert_json_string(j, "event_id", "ev-1");
	assert_json_string(j, "event_kind", "pull_request");
	assert_json_string(j, "created_at", "2025-11-29T08:35:00.123Z");
	assert_json_string(j, "finished_at", NULL);

	json_t *stages = json_object_get(j, "stages");
	assert_true(json_is_array(stages));
	assert_int_equal(json_array_size(stages), 2);
	json_t *s0 = json_array_get(stages, 0);
	assert_int_equal(json_object_size(s0), 9);
	assert_json_string(s0, "name", "unit");
	assert_json_string(s0, "status", "failed");
	assert_int_equal(json_integer_value(json_object_get(s0, "attempt")), 2);
	assert_int_equal(json_integer_value(json_object_get(s0, "exit_code")), 3);
	char buf[40];
	iso(1764405301000, buf, sizeof buf);
	assert_json_string(s0, "started_at", buf);
	assert_json_string(s0, "finished_at", "2025-11-29T08:35:02.500Z");
	assert_json_string(s0, "summary", "3 failed");
	json_t *s1 = json_array_get(stages, 1);
	assert_json_string(s1, "name", "integration");
	assert_json_string(s1, "status", "skipped");
	assert_int_equal(json_integer_value(json_object_get(s1, "attempt")), 0);
	assert_true(json_is_null(json_object_get(s1, "exit_code")));
	assert_json_string(s1, "started_at", NULL);
	assert_json_string(s1, "finished_at", NULL);
	assert_json_string(s1, "summary", NULL);
	json_decref(j);

	/* The finished time shows once set. */
	in.status = STATUS_FAILED;
	in.finished_at = 1764405400000;
	assert_int_equal(store_run_update(f->store, &in), 0);
	j = store_run_json(f->store, in.id);
	assert_json_string(j, "status", "failed");
	assert_json_string(j, "finished_at", "2025-11-29T08:36:40.000Z");
	json_decref(j);

	assert_null(store_run_json(f->store, in.id + 1));
}

static void assert_ids(json_t *arr, const int64_t *want, size_t n)
{
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, i), "id")),
				 want[i]);
}

static void test_runs_list_filters_and_paging(void **state)
{
	struct store_fixture *f = *state;
	int64_t r1 = insert_run(f->store, "pr", STATUS_SUCCEEDED, "acme/a");
	int64_t r2 = insert_run(f->store, "release", STATUS_FAILED, "acme/a");
	int64_t r3 = insert_run(f->store, "pr", STATUS_RUNNING, "acme/b");
	int64_t r4 = insert_run(f->store, "retrain", STATUS_SUCCEEDED, "acme/b");
	int64_t r5 = insert_run(f->store, "pr", STATUS_SUCCEEDED, "acme/a");
	struct store_stage st = sample_stage(r3, "unit", 0);
	assert_int_equal(store_stage_insert(f->store, &st), 0);

	json_t *arr = store_runs_json(f->store, &(struct store_run_filter){0});
	assert_ids(arr, (int64_t[]){r5, r4, r3, r2, r1}, 5);
	/* Each element carries its stages. */
	json_t *stages = json_object_get(json_array_get(arr, 2), "stages");
	assert_int_equal(json_array_size(stages), 1);
	assert_json_string(json_array_get(stages, 0), "name", "unit");
	assert_int_equal(json_array_size(json_object_get(json_array_get(arr, 0), "stages")), 0);
	json_decref(arr);

	arr = store_runs_json(f->store, NULL);
	assert_ids(arr, (int64_t[]){r5, r4, r3, r2, r1}, 5);
	json_decref(arr);

	arr = store_runs_json(f->store, &(struct store_run_filter){.pipeline = "pr"});
	assert_ids(arr, (int64_t[]){r5, r3, r1}, 3);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.status = "succeeded"});
	assert_ids(arr, (int64_t[]){r5, r4, r1}, 3);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.repo = "acme/b"});
	assert_ids(arr, (int64_t[]){r4, r3}, 2);
	json_decref(arr);
	arr = store_runs_json(
	    f->store,
	    &(struct store_run_filter){.pipeline = "pr", .status = "succeeded", .repo = "acme/a"});
	assert_ids(arr, (int64_t[]){r5, r1}, 2);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.status = "no-such-status"});
	assert_ids(arr, NULL, 0);
	json_decref(arr);

	/* Paging: limit, then before_id = the last id seen. */
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = 2});
	assert_ids(arr, (int64_t[]){r5, r4}, 2);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = 2, .before_id = r4});
	assert_ids(arr, (int64_t[]){r3, r2}, 2);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = 2, .before_id = r2});
	assert_ids(arr, (int64_t[]){r1}, 1);
	json_decref(arr);
	arr = store_runs_json(f->store,
			      &(struct store_run_filter){.pipeline = "pr", .before_id = r5});
	assert_ids(arr, (int64_t[]){r3, r1}, 2);
	json_decref(arr);
}

static void test_runs_list_limits(void **state)
{
	struct store_fixture *f = *state;
	assert_int_equal(store_begin(f->store), 0);
	for (int i = 0; i < 1005; i++)
		insert_run(f->store, "pr", STATUS_SUCCEEDED, NULL);
	assert_int_equal(store_commit(f->store), 0);

	json_t *arr = store_runs_json(f->store, &(struct store_run_filter){0});
	assert_int_equal(json_array_size(arr), 100);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = 5000});
	assert_int_equal(json_array_size(arr), 1000);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = 1001});
	assert_int_equal(json_array_size(arr), 1000);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = -3});
	assert_int_equal(json_array_size(arr), 100);
	json_decref(arr);
	arr = store_runs_json(f->store, &(struct store_run_filter){.limit = 7});
	assert_int_equal(json_array_size(arr), 7);
	json_decref(arr);
}

/* ---- transactions ---- */

static int64_t raw_event_count(const struct store_fixture *f)
{
	sqlite3 *db = raw_open(f);
	int64_t n = raw_int(db, "SELECT count(*) FROM events");
	sqlite3_close(db);
	return n;
}

static void test_nested_transactions(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->store;

	/* Only the outermost commit makes the work visible. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-1", NULL, "accepted", NULL, NULL, -1, -1), 0);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(raw_event_count(f), 0);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(raw_event_count(f), 1);

	/* An inner rollback dooms everything, including later work. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-2", NULL, "accepted", NULL, NULL, -1, -1), 0);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-3", NULL, "accepted", NULL, NULL, -1, -1), 0);
	store_rollback(s);
	assert_int_equal(store_event_insert(s, "t-4", NULL, "accepted", NULL, NULL, -1, -1), 0);
	assert_int_equal(store_commit(s), -1);
	assert_false(store_event_exists(s, "t-2"));
	assert_false(store_event_exists(s, "t-3"));
	assert_false(store_event_exists(s, "t-4"));
	assert_int_equal(raw_event_count(f), 1);

	/* Three deep: the middle commit reports the doom too. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_begin(s), 0);
	store_rollback(s);
	assert_int_equal(store_commit(s), -1);
	assert_int_equal(store_commit(s), -1);

	/* The doom does not outlive its transaction. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-5", NULL, "accepted", NULL, NULL, -1, -1), 0);
	assert_int_equal(store_commit(s), 0);
	assert_true(store_event_exists(s, "t-5"));

	/* A plain rollback at depth 1. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-6", NULL, "accepted", NULL, NULL, -1, -1), 0);
	store_rollback(s);
	assert_false(store_event_exists(s, "t-6"));

	/* Unbalanced calls are errors, not crashes. */
	assert_int_equal(store_commit(s), -1);
	store_rollback(s);

	/* store_stage_update's own transaction nests inside the caller's. */
	int64_t id = insert_run(s, "pr", STATUS_RUNNING, NULL);
	struct store_stage st = sample_stage(id, "unit", 0);
	assert_int_equal(store_stage_insert(s, &st), 0);
	assert_int_equal(store_begin(s), 0);
	st.attempt = 1;
	st.status = STATUS_RUNNING;
	assert_int_equal(store_stage_update(s, &st), 0);
	store_rollback(s);
	struct store_run run;
	struct store_stage *stages;
	size_t n;
	assert_int_equal(store_run_load(s, id, &run, &stages, &n), 0);
	assert_int_equal(stages[0].attempt, 0);
	assert_int_equal(stages[0].status, STATUS_QUEUED);
	store_run_clear(&run);
	store_stages_free(stages, n);
	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM stage_attempts"), 0);
	sqlite3_close(db);

	/* A failing stage update inside a transaction dooms it. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-7", NULL, "accepted", NULL, NULL, -1, -1), 0);
	struct store_stage ghost = sample_stage(id, "ghost", 5);
	assert_int_equal(store_stage_update(s, &ghost), -1);
	assert_int_equal(store_commit(s), -1);
	assert_false(store_event_exists(s, "t-7"));

	/* Closing with a transaction open rolls it back. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_event_insert(s, "t-8", NULL, "accepted", NULL, NULL, -1, -1), 0);
	reopen(f);
	assert_false(store_event_exists(f->store, "t-8"));
	assert_true(store_event_exists(f->store, "t-5"));
}

/* ---- outbox ---- */

static void test_outbox(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->store;
	assert_int_equal(store_outbox_count(s), 0);
	int64_t a = store_outbox_add(s, "drover.results", "acme/a", "first", 5);
	int64_t b = store_outbox_add(s, "drover.results", "acme/b", "sec\0ond", 7);
	int64_t c = store_outbox_add(s, "drover.results", NULL, NULL, 0);
	assert_true(a > 0);
	assert_true(b > a);
	assert_true(c > b);
	assert_int_equal(store_outbox_count(s), 3);
	assert_int_equal(store_outbox_add(s, NULL, "k", "v", 1), -1); /* topic is required */

	struct store_outbox_item *items;
	size_t n;
	assert_int_equal(store_outbox_next(s, 0, 10, &items, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(items[0].id, a);
	assert_string_equal(items[0].topic, "drover.results");
	assert_string_equal(items[0].key, "acme/a");
	assert_int_equal(items[0].key_len, 6);
	assert_int_equal(items[0].value_len, 5);
	assert_string_equal(items[0].value, "first");
	assert_false(items[0].is_value_null);
	assert_int_equal(items[1].id, b);
	assert_int_equal(items[1].value_len, 7);
	assert_memory_equal(items[1].value, "sec\0ond", 7);
	assert_int_equal(items[1].value[7], '\0');
	assert_int_equal(items[2].id, c);
	assert_null(items[2].key);
	assert_int_equal(items[2].key_len, 0);
	assert_int_equal(items[2].value_len, 0);
	assert_string_equal(items[2].value, "");
	assert_true(items[2].is_value_null);
	store_outbox_items_free(items, n);

	assert_int_equal(store_outbox_next(s, a, 1, &items, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(items[0].id, b);
	store_outbox_items_free(items, n);

	assert_int_equal(store_outbox_next(s, c, 10, &items, &n), 0);
	assert_int_equal(n, 0);
	store_outbox_items_free(items, n);
	assert_int_equal(store_outbox_next(s, 0, 0, &items, &n), 0);
	assert_int_equal(n, 0);
	store_outbox_items_free(items, n);

	assert_int_equal(store_outbox_delete(s, b), 0);
	assert_int_equal(store_outbox_delete(s, b), 0); /* a repeated ack is fine */
	assert_int_equal(store_outbox_count(s), 2);
	assert_int_equal(store_outbox_next(s, 0, 10, &items, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(items[0].id, a);
	assert_int_equal(items[1].id, c);
	store_outbox_items_free(items, n);

	/* Ids are never reused, even after the newest is deleted and the store reopened. */
	assert_int_equal(store_outbox_delete(s, c), 0);
	reopen(f);
	assert_true(store_outbox_add(f->store, "drover.results", "k", "v", 1) > c);
}

/*
 * Dead letters keep the record as it came: a binary key (a zero byte first,
 * as Confluent's serializers write it) to the byte, an empty key apart from
 * no key, a null value (tombstone) apart from an empty one, across a reopen.
 */
static void test_outbox_bytes_round_trip(void **state)
{
	struct store_fixture *f = *state;
	static const char bin_key[] = {0, 0, 0, 0, 42, 'r', 'e', 'p', 'o', 0, (char)0xff};
	static const char headers[] = {1, 0, 0, 0, 'h', 0, 0, 0, 0, 0, 0, 0, 0};
	int64_t a = store_outbox_add_full(f->store, "dl", bin_key, sizeof bin_key, NULL, 0, headers,
					  sizeof headers);
	int64_t b = store_outbox_add_full(f->store, "dl", "", 0, "", 0, NULL, 0);
	int64_t c = store_outbox_add_full(f->store, "dl", NULL, 0, "v\0w", 3, NULL, 0);
	/* A NULL key with a length is still no key. */
	int64_t d = store_outbox_add_full(f->store, "dl", NULL, 5, NULL, 7, NULL, 0);
	assert_true(a > 0 && b > a && c > b && d > c);
	reopen(f);

	struct store_outbox_item *items;
	size_t n;
	assert_int_equal(store_outbox_next(f->store, 0, 10, &items, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(items[0].key_len, sizeof bin_key);
	assert_memory_equal(items[0].key, bin_key, sizeof bin_key);
	assert_int_equal(items[0].key[sizeof bin_key], '\0');
	assert_true(items[0].is_value_null);
	assert_int_equal(items[0].value_len, 0);
	assert_string_equal(items[0].value, "");
	assert_int_equal(items[0].headers_len, sizeof headers);
	assert_memory_equal(items[0].headers, headers, sizeof headers);

	assert_non_null(items[1].key); /* empty, not absent */
	assert_int_equal(items[1].key_len, 0);
	assert_string_equal(items[1].key, "");
	assert_false(items[1].is_value_null); /* empty, not null */
	assert_int_equal(items[1].value_len, 0);
	assert_null(items[1].headers);

	assert_null(items[2].key);
	assert_false(items[2].is_value_null);
	assert_int_equal(items[2].value_len, 3);
	assert_memory_equal(items[2].value, "v\0w", 3);

	assert_null(items[3].key);
	assert_int_equal(items[3].key_len, 0);
	assert_true(items[3].is_value_null);
	assert_int_equal(items[3].value_len, 0);
	store_outbox_items_free(items, n);

	/* Stored as SQL blobs and NULLs, as an operator's sqlite3 sees them. */
	sqlite3 *db = raw_open(f);
	char *sql = xasprintf("SELECT typeof(key) || ',' || typeof(value) || ',' || length(key)"
			      " FROM outbox WHERE id = %lld",
			      (long long)a);
	assert_raw_text(db, sql, "blob,null,11");
	free(sql);
	sql = xasprintf("SELECT typeof(key) || ',' || typeof(value) FROM outbox WHERE id = %lld",
			(long long)b);
	assert_raw_text(db, sql, "blob,blob");
	free(sql);
	sqlite3_close(db);
}

/* Acknowledged records go in one transaction: all of them, or none. */
static void test_outbox_delete_many(void **state)
{
	struct store_fixture *f = *state;
	struct store *s = f->store;
	int64_t ids[6];
	for (size_t i = 0; i < ARRAY_LEN(ids); i++)
		ids[i] = store_outbox_add(s, "drover.results", "acme/a", "r", 1);
	assert_int_equal(store_outbox_delete_many(s, NULL, 0), 0);
	assert_int_equal(store_outbox_count(s), 6);

	/* Unknown and repeated ids are fine (an ack can repeat). */
	int64_t batch[] = {ids[0], ids[2], ids[2], ids[5] + 100, ids[4]};
	assert_int_equal(store_outbox_delete_many(s, batch, ARRAY_LEN(batch)), 0);
	assert_int_equal(store_outbox_count(s), 3);
	struct store_outbox_item *items;
	size_t n;
	assert_int_equal(store_outbox_next(s, 0, 10, &items, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(items[0].id, ids[1]);
	assert_int_equal(items[1].id, ids[3]);
	assert_int_equal(items[2].id, ids[5]);
	store_outbox_items_free(items, n);

	/* Inside a caller's transaction that is rolled back, nothing is deleted. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_outbox_delete_many(s, (int64_t[]){ids[1], ids[3]}, 2), 0);
	store_rollback(s);
	assert_int_equal(store_outbox_count(s), 3);

	/* Committed: gone for another connection too. */
	assert_int_equal(store_outbox_delete_many(s, (int64_t[]){ids[1], ids[3], ids[5]}, 3), 0);
	sqlite3 *db = raw_open(f);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM outbox"), 0);
	sqlite3_close(db);
}

/* ---- text ---- */

static void test_strings_round_trip(void **state)
{
	struct store_fixture *f = *state;
	const char *tricky = "it's \"quoted\"\nline two\ttab \\ back; DROP TABLE runs; -- "
			     "\xc3\xbc\xe2\x9c\x93\xf0\x9f\x9a\x80";
	struct store_run in = sample_run();
	in.pipeline = (char *)tricky;
	in.repo = (char *)tricky;
	in.branch = "release/\xe6\x97\xa5\xe6\x9c\xac";
	in.definition = (char *)tricky;
	assert_int_equal(store_run_insert(f->store, &in), 0);
	struct store_stage st = sample_stage(in.id, tricky, 0);
	st.summary = (char *)tricky;
	st.resume_token = (char *)tricky;
	assert_int_equal(store_stage_insert(f->store, &st), 0);
	assert_int_equal(store_output_set(f->store, in.id, tricky, tricky, tricky), 0);

	struct store_run run;
	struct store_stage *stages;
	size_t n;
	assert_int_equal(store_run_load(f->store, in.id, &run, &stages, &n), 0);
	assert_string_equal(run.pipeline, tricky);
	assert_string_equal(run.repo, tricky);
	assert_string_equal(run.branch, in.branch);
	assert_string_equal(run.definition, tricky);
	assert_string_equal(stages[0].name, tricky);
	assert_string_equal(stages[0].summary, tricky);
	assert_string_equal(stages[0].resume_token, tricky);
	store_run_clear(&run);
	store_stages_free(stages, n);

	json_t *j = store_run_json(f->store, in.id);
	assert_json_string(j, "pipeline", tricky);
	assert_json_string(j, "branch", in.branch);
	assert_json_string(json_array_get(json_object_get(j, "stages"), 0), "summary", tricky);
	json_decref(j);

	json_t *outputs = store_outputs_get(f->store, in.id);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(outputs, tricky), tricky)), tricky);
	json_decref(outputs);

	/* A filter value with quotes is a value, not SQL. */
	j = store_runs_json(f->store, &(struct store_run_filter){.repo = tricky});
	assert_int_equal(json_array_size(j), 1);
	json_decref(j);

	json_t *body =
	    json_pack("{s:s, s:s, s:s}", "id", tricky, "kind", "push", "message", tricky);
	assert_int_equal(
	    store_event_insert(f->store, tricky, body, "accepted", tricky, NULL, -1, -1), 0);
	json_t *got = store_event_get(f->store, tricky);
	assert_true(json_equal(got, body));
	json_decref(got);
	json_decref(body);
}

static void test_invalid_utf8_still_shown(void **state)
{
	struct store_fixture *f = *state;
	int64_t id = insert_run(f->store, "pr", STATUS_FAILED, NULL);
	struct store_stage st = sample_stage(id, "unit", 0);
	st.summary = "bad \xff\xfe bytes";
	assert_int_equal(store_stage_insert(f->store, &st), 0);
	assert_int_equal(store_output_set(f->store, id, "unit", "k\xff", "v\xc3"), 0);

	json_t *j = store_run_json(f->store, id);
	json_t *stage = json_array_get(json_object_get(j, "stages"), 0);
	assert_json_string(stage, "summary", "bad ?? bytes");
	json_decref(j);

	json_t *outputs = store_outputs_get(f->store, id);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(outputs, "unit"), "k?")), "v?");
	json_decref(outputs);
}

static void test_null_fields(void **state)
{
	struct store_fixture *f = *state;
	struct store_run in = {
	    .pipeline = "retrain",
	    .status = STATUS_QUEUED,
	    .definition = "{}",
	};
	assert_int_equal(store_run_insert(f->store, &in), 0);
	struct store_stage st = sample_stage(in.id, "train", 0);
	assert_int_equal(store_stage_insert(f->store, &st), 0);

	struct store_run run;
	struct store_stage *stages;
	size_t n;
	assert_int_equal(store_run_load(f->store, in.id, &run, &stages, &n), 0);
	assert_null(run.repo);
	assert_null(run.sha);
	assert_null(run.branch);
	assert_null(run.event_id);
	assert_null(run.event_kind);
	assert_null(run.concurrency_group);
	assert_null(run.lock_name);
	assert_null(run.workspace);
	assert_int_equal(run.started_at, 0);
	assert_int_equal(run.finished_at, 0);
	assert_null(stages[0].summary);
	assert_null(stages[0].resume_token);
	assert_int_equal(stages[0].exit_code, -1);
	store_run_clear(&run);
	store_stages_free(stages, n);

	json_t *j = store_run_json(f->store, in.id);
	const char *nullable[] = {"repo", "sha", "branch", "event_id", "event_kind", "finished_at"};
	for (size_t i = 0; i < ARRAY_LEN(nullable); i++)
		assert_json_string(j, nullable[i], NULL);
	json_decref(j);

	/* Required fields stay required. */
	struct store_run bad = {.pipeline = "pr", .status = STATUS_QUEUED, .definition = NULL};
	assert_int_equal(store_run_insert(f->store, &bad), -1);
	assert_int_equal(store_output_set(f->store, in.id, "train", NULL, "v"), -1);

	/* An empty definition is still a definition, an empty summary is not NULL. */
	st.summary = "";
	st.attempt = 1;
	assert_int_equal(store_stage_update(f->store, &st), 0);
	assert_int_equal(store_run_load(f->store, in.id, &run, &stages, &n), 0);
	assert_non_null(stages[0].summary);
	assert_string_equal(stages[0].summary, "");
	store_run_clear(&run);
	store_stages_free(stages, n);
}

/* ---- process groups of running stages ---- */

static struct store_stage_proc sample_proc(int64_t run_id, const char *stage, int64_t pgid,
					   uint64_t start_time)
{
	struct store_stage_proc p = {.run_id = run_id,
				     .stage = (char *)stage,
				     .attempt = 1,
				     .pgid = pgid,
				     .start_time = start_time};
	return p;
}

static void test_stage_procs(void **state)
{
	struct store_fixture *f = *state;
	int64_t r1 = insert_run(f->store, "ci", STATUS_RUNNING, "acme/a");
	int64_t r2 = insert_run(f->store, "ci", STATUS_RUNNING, "acme/b");
	struct store_stage_proc in[] = {
	    sample_proc(r1, "build", 4101, 1), sample_proc(r1, "test", 4102, UINT64_C(1) << 40),
	    sample_proc(r2, "build", 4103, 987654321), sample_proc(r1, "build", 4104, 5)};
	in[2].attempt = 3;
	for (size_t i = 0; i < ARRAY_LEN(in); i++)
		assert_int_equal(store_stage_proc_add(f->store, &in[i]), 0);
	/* The same process twice is one row (the later record wins). */
	in[1].attempt = 2;
	assert_int_equal(store_stage_proc_add(f->store, &in[1]), 0);
	/* Only groups of stages of runs that exist. */
	struct store_stage_proc stray = sample_proc(r2 + 100, "build", 4200, 9);
	assert_int_equal(store_stage_proc_add(f->store, &stray), -1);

	struct store_stage_proc *out;
	size_t n;
	assert_int_equal(store_stage_procs_list(f->store, &out, &n), 0);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(out[i].run_id, in[i].run_id);
		assert_string_equal(out[i].stage, in[i].stage);
		assert_int_equal(out[i].attempt, in[i].attempt);
		assert_int_equal(out[i].pgid, in[i].pgid);
		assert_true(out[i].start_time == in[i].start_time);
	}
	store_stage_procs_free(out, n);

	/* An attempt ended: its stage's groups go, every other stays, across a reopen. */
	assert_int_equal(store_stage_procs_delete(f->store, r1, "build"), 0);
	reopen(f);
	assert_int_equal(store_stage_procs_list(f->store, &out, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0].pgid, 4102);
	assert_true(out[0].start_time == UINT64_C(1) << 40);
	assert_int_equal(out[1].pgid, 4103);
	assert_int_equal(out[1].attempt, 3);
	store_stage_procs_free(out, n);
	assert_int_equal(store_stage_procs_delete(f->store, r1, "no-such-stage"), 0);

	/* Inside a transaction that is rolled back, a record is not kept. */
	assert_int_equal(store_begin(f->store), 0);
	struct store_stage_proc later = sample_proc(r2, "test", 4300, 77);
	assert_int_equal(store_stage_proc_add(f->store, &later), 0);
	store_rollback(f->store);

	assert_int_equal(store_stage_procs_clear(f->store), 0);
	assert_int_equal(store_stage_procs_list(f->store, &out, &n), 0);
	assert_int_equal(n, 0);
	assert_null(out);
}

/*
 * Replay commands: none for a run attempt, then the latest of those sent
 * and how many; a second record of one id changes nothing; kept across a
 * reopen (the agent's restart); per run attempt; gone with their run.
 */
static void test_replay_commands(void **state)
{
	struct store_fixture *f = *state;
	int64_t run = insert_run(f->store, "ci", STATUS_FAILED, "acme/a");
	struct store_replay_command last;
	int n = -1;
	assert_int_equal(store_replay_command_last(f->store, run, 2, &last, &n), 0);
	assert_int_equal(n, 0);
	assert_null(last.id);
	struct store_replay_command c = {.id = "drover-replay-x-1-a2",
					 .run_id = run,
					 .attempt = 2,
					 .sent_at = 1000,
					 .topic = "drover.events",
					 .partition = 3,
					 .offset = 17};
	assert_int_equal(store_replay_command_add(f->store, &c), 0);
	assert_int_equal(store_replay_command_add(f->store, &c), 0);
	reopen(f);
	assert_int_equal(store_replay_command_last(f->store, run, 2, &last, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(last.id, "drover-replay-x-1-a2");
	assert_int_equal(last.sent_at, 1000);
	assert_string_equal(last.topic, "drover.events");
	assert_int_equal(last.partition, 3);
	assert_int_equal(last.offset, 17);
	store_replay_command_clear(&last);
	c.id = "drover-replay-x-1-a2-r2";
	c.sent_at = 2000;
	assert_int_equal(store_replay_command_add(f->store, &c), 0);
	assert_int_equal(store_replay_command_last(f->store, run, 2, &last, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(last.id, "drover-replay-x-1-a2-r2");
	store_replay_command_clear(&last);
	assert_int_equal(store_replay_command_last(f->store, run, 3, &last, &n), 0);
	assert_int_equal(n, 0);
	sqlite3 *db = raw_open(f);
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA foreign_keys = ON; DELETE FROM runs", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM replay_commands"), 0);
	sqlite3_close(db);
}

/* A database of schema version 6 gets the replay command table on open, data kept. */
static void test_migrates_version_6(void **state)
{
	struct store_fixture *f = *state;
	int64_t run = insert_run(f->store, "ci", STATUS_FAILED, "acme/a");
	store_close(f->store);
	f->store = NULL;
	sqlite3 *db = raw_open(f);
	assert_int_equal(
	    sqlite3_exec(db, UNDO_MIGRATION_7 "PRAGMA user_version = 6", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	reopen(f);
	db = raw_open(f);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), 7);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM runs"), 1);
	sqlite3_close(db);
	struct store_replay_command c = {.id = "c", .run_id = run, .attempt = 2, .sent_at = 1};
	assert_int_equal(store_replay_command_add(f->store, &c), 0);
}

/* A database of schema version 1 (before stage_procs) is migrated on open, data kept. */
static void test_migrates_version_1(void **state)
{
	struct store_fixture *f = *state;
	int64_t run = insert_run(f->store, "ci", STATUS_RUNNING, "acme/a");
	store_close(f->store);
	f->store = NULL;
	sqlite3 *db = raw_open(f);
	assert_int_equal(
	    sqlite3_exec(db,
			 UNDO_MIGRATION_7 UNDO_MIGRATION_5
			 "DROP TABLE probe; DROP TABLE stage_procs; DROP INDEX events_held;"
			 " ALTER TABLE events DROP COLUMN held; PRAGMA user_version = 1",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	reopen(f);
	db = raw_open(f);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), 7);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM runs"), 1);
	sqlite3_close(db);
	struct store_stage_proc p = sample_proc(run, "build", 4101, 42);
	assert_int_equal(store_stage_proc_add(f->store, &p), 0);
	struct store_stage_proc *out;
	size_t n;
	assert_int_equal(store_stage_procs_list(f->store, &out, &n), 0);
	assert_int_equal(n, 1);
	store_stage_procs_free(out, n);
}

/*
 * A database of schema version 2 (outbox keys declared TEXT) is migrated to
 * 3 on open: rows, ids, values and headers kept, keys the same bytes (now
 * blobs), and the id counter goes on past the highest id ever given, even
 * one already deleted.
 */
static void test_migrates_version_2(void **state)
{
	struct store_fixture *f = *state;
	store_close(f->store);
	f->store = NULL;
	sqlite3 *db = raw_open(f);
	assert_int_equal(
	    sqlite3_exec(db,
			 UNDO_MIGRATION_7 UNDO_MIGRATION_5
			 "DROP TABLE outbox;"
			 "CREATE TABLE outbox ("
			 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
			 " topic TEXT NOT NULL, key TEXT, value BLOB, headers BLOB,"
			 " created_at INTEGER NOT NULL);"
			 "INSERT INTO outbox (topic, key, value, headers, created_at) VALUES"
			 " ('drover.results', 'acme/model', CAST('{\"a\":1}' AS BLOB), NULL, 1),"
			 " ('drover.dead-letter', NULL, x'00ff', x'01020304', 2),"
			 " ('drover.results', 'acme/gone', x'', NULL, 3);"
			 "DELETE FROM outbox WHERE id = 3;"
			 "DROP INDEX events_held; ALTER TABLE events DROP COLUMN held;"
			 "DROP TABLE probe; PRAGMA user_version = 2",
			 NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	reopen(f);
	db = raw_open(f);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), 7);
	assert_raw_text(db, "SELECT typeof(key) FROM outbox WHERE id = 1", "blob");
	assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'outbox_v3'"),
			 0);
	sqlite3_close(db);

	struct store_outbox_item *items;
	size_t n;
	assert_int_equal(store_outbox_next(f->store, 0, 10, &items, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(items[0].id, 1);
	assert_string_equal(items[0].topic, "drover.results");
	assert_int_equal(items[0].key_len, strlen("acme/model"));
	assert_string_equal(items[0].key, "acme/model");
	assert_int_equal(items[0].value_len, 7);
	assert_string_equal(items[0].value, "{\"a\":1}");
	assert_null(items[0].headers);
	assert_int_equal(items[1].id, 2);
	assert_null(items[1].key);
	assert_int_equal(items[1].value_len, 2);
	assert_memory_equal(items[1].value, "\0\xff", 2);
	assert_int_equal(items[1].headers_len, 4);
	assert_memory_equal(items[1].headers, "\x01\x02\x03\x04", 4);
	store_outbox_items_free(items, n);

	/* Id 3 was given (then deleted) before the migration: never again. */
	assert_int_equal(store_outbox_add(f->store, "drover.results", "acme/new", "x", 1), 4);
	reopen(f);
	assert_int_equal(store_outbox_add(f->store, "drover.results", "acme/new", "y", 1), 5);
}

/*
 * A held event's runs are not unfinished work until it is released; a
 * dropped event leaves nothing behind (runs, stages), as if never consumed,
 * so its redelivery is recorded afresh.
 */
static void test_held_events(void **state)
{
	struct store_fixture *f = *state;
	json_t *body = json_pack("{s:s,s:s}", "kind", "push", "repo", "acme/a");
	assert_int_equal(store_event_insert_held(f->store, "h-1", body, "accepted", NULL,
						 "drover.events", 2, 40, true),
			 0);
	assert_int_equal(store_event_insert_held(f->store, "h-2", body, "accepted", NULL,
						 "drover.events", 1, 7, true),
			 0);
	assert_int_equal(
	    store_event_insert(f->store, "free-1", body, "accepted", NULL, "drover.events", 1, 8),
	    0);
	struct store_run r1 = {
	    .pipeline = "ci", .status = STATUS_QUEUED, .event_id = "h-1", .definition = "{}"};
	struct store_run r2 = {
	    .pipeline = "ci", .status = STATUS_QUEUED, .event_id = "h-2", .definition = "{}"};
	struct store_run r3 = {
	    .pipeline = "ci", .status = STATUS_QUEUED, .event_id = "free-1", .definition = "{}"};
	assert_int_equal(store_run_insert(f->store, &r1), 0);
	assert_int_equal(store_run_insert(f->store, &r2), 0);
	assert_int_equal(store_run_insert(f->store, &r3), 0);
	struct store_stage st = {.run_id = r2.id, .name = "build", .status = STATUS_QUEUED};
	assert_int_equal(store_stage_insert(f->store, &st), 0);

	/* Only the free event's run is unfinished work. */
	int64_t *ids;
	size_t n;
	assert_int_equal(store_runs_unfinished(f->store, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], r3.id);
	free(ids);

	struct store_held_event *held;
	assert_int_equal(store_events_held(f->store, &held, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(held[0].id, "h-2"); /* by partition, then offset */
	assert_int_equal(held[0].partition, 1);
	assert_int_equal(held[0].offset, 7);
	assert_string_equal(held[1].topic, "drover.events");
	store_held_events_free(held, n);

	/* Released: its run is work now. */
	assert_int_equal(store_event_release(f->store, "h-1", &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], r1.id);
	free(ids);
	assert_int_equal(store_runs_unfinished(f->store, &ids, &n), 0);
	assert_int_equal(n, 2);
	free(ids);

	/* Dropped: gone with its run and stage; the id can be recorded again. */
	assert_int_equal(store_event_drop(f->store, "h-2"), 0);
	assert_false(store_event_exists(f->store, "h-2"));
	struct store_run back;
	struct store_stage *stages;
	size_t n_stages;
	assert_int_not_equal(store_run_load(f->store, r2.id, &back, &stages, &n_stages), 0);
	assert_int_equal(store_events_held(f->store, &held, &n), 0);
	assert_int_equal(n, 0);
	store_held_events_free(held, n);
	assert_int_equal(store_event_insert_held(f->store, "h-2", body, "accepted", NULL,
						 "drover.events", 1, 7, true),
			 0);
	json_decref(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_creates_schema_and_wal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_makes_nested_state_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_a_database_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_insert_and_duplicate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_run_and_stages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stage_attempt_history, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outputs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_run_json_shape, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_runs_list_filters_and_paging, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_runs_list_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nested_transactions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outbox, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_bytes_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_delete_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_strings_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_utf8_still_shown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stage_procs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrates_version_1, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrates_version_2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_held_events, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replay_commands, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrates_version_6, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
