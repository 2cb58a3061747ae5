/*
 * Tests of replay's stage selection (replay_select: the default, named
 * stages with and without their dependents, all, new stages, needs that
 * would not succeed, nothing to re-run, bad combinations) and of the store
 * parts a replay uses: run attempts (the original recorded with the run,
 * replays with who/why/what), stage attempts tagged with their run attempt
 * and numbered on, first_attempt, outputs of one stage dropped, a stage
 * forgotten with its history kept, the definition replaced; and the
 * replayer's refusals of a held run and of a command already sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "agent.h"
#include "metrics.h"
#include "pipeline.h"
#include "replay.h"
#include "status.h"
#include "store.h"
#include "store_fixture.h"
#include "util.h"

/* build -> unit, build -> lint; unit -> deploy; deploy -> notify; docs alone. */
static const char pipeline_yaml[] = "name: ci\n"
				    "on:\n"
				    "  push: {}\n"
				    "stages:\n"
				    "  - name: build\n"
				    "    uses: shell\n"
				    "    with: { run: 'true' }\n"
				    "  - name: unit\n"
				    "    uses: shell\n"
				    "    needs: [build]\n"
				    "    with: { run: 'true' }\n"
				    "  - name: lint\n"
				    "    uses: shell\n"
				    "    needs: [build]\n"
				    "    with: { run: 'true' }\n"
				    "  - name: deploy\n"
				    "    uses: shell\n"
				    "    needs: [unit]\n"
				    "    with: { run: 'true' }\n"
				    "  - name: notify\n"
				    "    uses: shell\n"
				    "    needs: [deploy]\n"
				    "    with: { run: 'true' }\n"
				    "  - name: docs\n"
				    "    uses: shell\n"
				    "    with: { run: 'true' }\n";

enum { BUILD, UNIT, LINT, DEPLOY, NOTIFY, DOCS, N_STAGES };

static struct pipeline *load(void)
{
	struct diags d = {0};
	struct pipeline *p =
	    pipeline_load_string(pipeline_yaml, strlen(pipeline_yaml), "t.yml", NULL, &d);
	diags_free(&d);
	assert_non_null(p);
	assert_int_equal(p->n_stages, N_STAGES);
	return p;
}

/* Runs replay_select and compares the selection with want ("1" per selected stage). */
static int select_check(const struct pipeline *p, const int *status,
			const struct replay_request *req, const char *want, char *err,
			size_t err_len)
{
	bool selected[N_STAGES];
	int rc = replay_select(p, status, req, selected, err, err_len);
	if (rc == 0 && want != NULL) {
		char got[N_STAGES + 1];
		for (size_t i = 0; i < N_STAGES; i++)
			got[i] = selected[i] ? '1' : '0';
		got[N_STAGES] = '\0';
		assert_string_equal(got, want);
	}
	return rc;
}

/* The default: what did not succeed and everything downstream; succeeded stages kept. */
static void test_select_default(void **state)
{
	(void)state;
	struct pipeline *p = load();
	char err[256];
	struct replay_request req = {0};
	/* unit failed: deploy and notify were skipped because of it. */
	int status[N_STAGES] = {STATUS_SUCCEEDED, STATUS_FAILED,  STATUS_SUCCEEDED,
				STATUS_SKIPPED,	  STATUS_SKIPPED, STATUS_SUCCEEDED};
	assert_int_equal(select_check(p, status, &req, "010110", err, sizeof err), 0);
	/* Timed out, errored, cancelled count as failed. */
	status[UNIT] = STATUS_SUCCEEDED;
	status[DEPLOY] = STATUS_TIMED_OUT;
	status[DOCS] = STATUS_CANCELLED;
	assert_int_equal(select_check(p, status, &req, "000111", err, sizeof err), 0);
	status[DOCS] = STATUS_ERROR;
	assert_int_equal(select_check(p, status, &req, "000111", err, sizeof err), 0);
	/* Skipped with every need succeeded (a failed checkout): runs again, and its dependents. */
	int checkout_failed[N_STAGES] = {STATUS_SKIPPED, STATUS_SKIPPED, STATUS_SKIPPED,
					 STATUS_SKIPPED, STATUS_SKIPPED, STATUS_SKIPPED};
	assert_int_equal(select_check(p, checkout_failed, &req, "111111", err, sizeof err), 0);
	/* Everything succeeded: nothing to re-run. */
	int all_ok[N_STAGES] = {STATUS_SUCCEEDED, STATUS_SUCCEEDED, STATUS_SUCCEEDED,
				STATUS_SUCCEEDED, STATUS_SUCCEEDED, STATUS_SUCCEEDED};
	assert_int_equal(select_check(p, all_ok, &req, NULL, err, sizeof err), REPLAY_CONFLICT);
	assert_non_null(strstr(err, "nothing to re-run"));
	pipeline_free(p);
}

/* Named stages: exactly those; with downstream their dependents; all: everything. */
static void test_select_named_and_all(void **state)
{
	(void)state;
	struct pipeline *p = load();
	char err[256];
	int ok[N_STAGES] = {STATUS_SUCCEEDED, STATUS_SUCCEEDED, STATUS_SUCCEEDED,
			    STATUS_SUCCEEDED, STATUS_SUCCEEDED, STATUS_SUCCEEDED};
	const char *unit[] = {"unit"};
	struct replay_request req = {.stages = unit, .n_stages = 1};
	assert_int_equal(select_check(p, ok, &req, "010000", err, sizeof err), 0);
	req.is_downstream = true;
	assert_int_equal(select_check(p, ok, &req, "010110", err, sizeof err), 0);
	const char *two[] = {"lint", "docs"};
	struct replay_request req2 = {.stages = two, .n_stages = 2};
	assert_int_equal(select_check(p, ok, &req2, "001001", err, sizeof err), 0);
	struct replay_request all = {.is_all = true};
	int failed[N_STAGES] = {STATUS_FAILED,	STATUS_SKIPPED, STATUS_SKIPPED,
				STATUS_SKIPPED, STATUS_SKIPPED, STATUS_SUCCEEDED};
	assert_int_equal(select_check(p, failed, &all, "111111", err, sizeof err), 0);
	pipeline_free(p);
}

/* Refusals: unknown stage, a need that would neither run nor have succeeded, bad mixes. */
static void test_select_refusals(void **state)
{
	(void)state;
	struct pipeline *p = load();
	char err[256];
	int status[N_STAGES] = {STATUS_FAILED,	STATUS_SKIPPED, STATUS_SKIPPED,
				STATUS_SKIPPED, STATUS_SKIPPED, STATUS_SUCCEEDED};
	const char *nope[] = {"nope"};
	struct replay_request req = {.stages = nope, .n_stages = 1};
	assert_int_equal(select_check(p, status, &req, NULL, err, sizeof err), REPLAY_BAD_REQUEST);
	assert_string_equal(err, "pipeline ci has no stage 'nope'");
	/* deploy needs unit, which was skipped and would not run again. */
	const char *deploy[] = {"deploy"};
	struct replay_request req2 = {.stages = deploy, .n_stages = 1};
	assert_int_equal(select_check(p, status, &req2, NULL, err, sizeof err), REPLAY_CONFLICT);
	assert_non_null(strstr(err, "stage deploy needs unit"));
	struct replay_request mixed = {.stages = deploy, .n_stages = 1, .is_all = true};
	assert_int_equal(select_check(p, status, &mixed, NULL, err, sizeof err),
			 REPLAY_BAD_REQUEST);
	struct replay_request down = {.is_downstream = true};
	assert_int_equal(select_check(p, status, &down, NULL, err, sizeof err), REPLAY_BAD_REQUEST);
	pipeline_free(p);
}

/* A stage the run never had (the latest pipeline added it) always runs. */
static void test_select_new_stage(void **state)
{
	(void)state;
	struct pipeline *p = load();
	char err[256];
	int status[N_STAGES] = {STATUS_SUCCEEDED, STATUS_SUCCEEDED, STATUS_SUCCEEDED,
				STATUS_SUCCEEDED, REPLAY_STAGE_NEW, STATUS_SUCCEEDED};
	struct replay_request req = {0};
	assert_int_equal(select_check(p, status, &req, "000010", err, sizeof err), 0);
	const char *lint[] = {"lint"};
	struct replay_request named = {.stages = lint, .n_stages = 1};
	assert_int_equal(select_check(p, status, &named, "001010", err, sizeof err), 0);
	pipeline_free(p);
}

/* ---- store ---- */

static int setup(void **state)
{
	struct store_fixture *f = xcalloc(1, sizeof *f);
	*state = f;
	return store_fixture_open(f, "replay");
}

static int teardown(void **state)
{
	struct store_fixture *f = *state;
	int rc = store_fixture_close(f);
	free(f);
	return rc;
}

static int64_t insert_run(struct store *s)
{
	struct store_run run = {.pipeline = "ci",
				.status = STATUS_FAILED,
				.repo = "acme/app",
				.sha = "abc",
				.event_id = "ev-1",
				.definition = "{\"name\":\"ci\"}",
				.created_at = 1764405300000};
	assert_int_equal(store_run_insert(s, &run), 0);
	return run.id;
}

/* The original attempt comes with the run; a replay's attempt says who, why and what. */
static void test_store_run_attempts(void **state)
{
	struct store_fixture *f = *state;
	int64_t id = insert_run(f->store);
	json_t *j = store_run_json(f->store, id);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 1);
	json_t *attempts = json_object_get(j, "attempts");
	assert_int_equal(json_array_size(attempts), 1);
	json_t *a1 = json_array_get(attempts, 0);
	assert_int_equal(json_integer_value(json_object_get(a1, "attempt")), 1);
	assert_string_equal(json_string_value(json_object_get(a1, "mode")), "original");
	assert_string_equal(json_string_value(json_object_get(a1, "requested_at")),
			    "2025-11-29T08:35:00.000Z");
	assert_true(json_is_null(json_object_get(a1, "stages")));
	assert_true(json_is_null(json_object_get(a1, "requested_by")));
	json_decref(j);

	json_t *names = json_pack("[s,s]", "qa", "deploy");
	struct store_run_attempt r = {.run_id = id,
				      .attempt = 2,
				      .requested_by = "ops@box",
				      .reason = "QA back",
				      .requested_at = 1764405400000,
				      .mode = "failed",
				      .stages = names,
				      .is_latest_pipeline = true,
				      .replaced_definition = "{\"name\":\"old\"}"};
	assert_int_equal(store_run_attempt_add(f->store, &r), 0);
	/* An attempt number is recorded once. */
	assert_int_equal(store_run_attempt_add(f->store, &r), -1);
	json_decref(names);
	assert_int_equal(store_run_set_definition(f->store, id, "{\"name\":\"new\"}"), 0);
	struct store_run run;
	assert_int_equal(store_run_load(f->store, id, &run, NULL, NULL), 0);
	assert_string_equal(run.definition, "{\"name\":\"new\"}");
	store_run_clear(&run);
	j = store_run_json(f->store, id);
	attempts = json_object_get(j, "attempts");
	assert_int_equal(json_array_size(attempts), 2);
	json_t *a2 = json_array_get(attempts, 1);
	assert_string_equal(json_string_value(json_object_get(a2, "requested_by")), "ops@box");
	assert_string_equal(json_string_value(json_object_get(a2, "reason")), "QA back");
	assert_string_equal(json_string_value(json_object_get(a2, "mode")), "failed");
	assert_true(json_is_true(json_object_get(a2, "latest_pipeline")));
	json_t *want = json_pack("[s,s]", "qa", "deploy");
	assert_true(json_equal(json_object_get(a2, "stages"), want));
	json_decref(want);
	json_decref(j);
}

/*
 * Stage attempts carry their run attempt; a re-run stage numbers on, with
 * its first attempt of the run attempt; its outputs can go while a kept
 * stage's stay; a forgotten stage leaves its history.
 */
static void test_store_stage_attempts(void **state)
{
	struct store_fixture *f = *state;
	int64_t id = insert_run(f->store);
	struct store_stage build = {
	    .run_id = id, .name = "build", .idx = 0, .status = STATUS_SUCCEEDED, .attempt = 1};
	struct store_stage qa = {
	    .run_id = id, .name = "qa", .idx = 1, .status = STATUS_FAILED, .attempt = 1};
	assert_int_equal(store_stage_insert(f->store, &build), 0);
	assert_int_equal(store_stage_insert(f->store, &qa), 0);
	assert_int_equal(store_output_set(f->store, id, "build", "artifact", "a1"), 0);
	assert_int_equal(store_output_set(f->store, id, "qa", "report", "r1"), 0);

	/* The replay: qa's attempt 2 belongs to run attempt 2, its outputs go. */
	qa.attempt = 2;
	qa.first_attempt = 2;
	qa.run_attempt = 2;
	qa.status = STATUS_SUCCEEDED;
	assert_int_equal(store_stage_update(f->store, &qa), 0);
	assert_int_equal(store_outputs_delete(f->store, id, "qa"), 0);
	json_t *outputs = store_outputs_get(f->store, id);
	assert_null(json_object_get(outputs, "qa"));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(outputs, "build"), "artifact")),
	    "a1");
	json_decref(outputs);

	struct store_run run;
	struct store_stage *stages;
	size_t n;
	assert_int_equal(store_run_load(f->store, id, &run, &stages, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(stages[0].run_attempt, 1);
	assert_int_equal(stages[0].first_attempt, 1);
	assert_int_equal(stages[1].run_attempt, 2);
	assert_int_equal(stages[1].first_attempt, 2);
	assert_int_equal(stages[1].attempt, 2);
	store_run_clear(&run);
	store_stages_free(stages, n);

	json_t *j = store_run_json(f->store, id);
	json_t *sj = json_array_get(json_object_get(j, "stages"), 1);
	assert_string_equal(json_string_value(json_object_get(sj, "name")), "qa");
	assert_int_equal(json_integer_value(json_object_get(sj, "run_attempt")), 2);
	json_t *tries = json_object_get(sj, "attempts");
	assert_int_equal(json_array_size(tries), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(tries, 0), "status")),
			    "failed");
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(tries, 0), "run_attempt")), 1);
	assert_int_equal(
	    json_integer_value(json_object_get(json_array_get(tries, 1), "run_attempt")), 2);
	json_decref(j);

	/* Forgotten (the latest pipeline lost it): the stage goes, its history stays. */
	assert_int_equal(store_stage_delete(f->store, id, "qa"), 0);
	assert_int_equal(store_run_load(f->store, id, &run, &stages, &n), 0);
	assert_int_equal(n, 1);
	store_run_clear(&run);
	store_stages_free(stages, n);
	/* The idx moves with an update (the latest pipeline reordered it). */
	build.idx = 3;
	assert_int_equal(store_stage_update(f->store, &build), 0);
	assert_int_equal(store_run_load(f->store, id, &run, &stages, &n), 0);
	assert_int_equal(stages[0].idx, 3);
	store_run_clear(&run);
	store_stages_free(stages, n);
}

/* ---- the replayer's refusals (the agent's parts a refusal needs) ---- */

static void never_called(void *arg, int code, json_t *reply)
{
	(void)arg, (void)code;
	json_decref(reply);
	fail_msg("a refusal answers synchronously");
}

/* Inserts a run of a one-stage pipeline (no checkout) whose stage has status. */
static int64_t insert_one_stage_run(struct store *s, const char *event_id, enum status status)
{
	static const char yaml[] = "name: one\n"
				   "on: { push: {} }\n"
				   "checkout: false\n"
				   "stages:\n"
				   "  - { name: only, uses: shell, with: { run: 'true' } }\n";
	struct diags d = {0};
	struct pipeline *p = pipeline_load_string(yaml, strlen(yaml), "one.yml", NULL, &d);
	diags_free(&d);
	assert_non_null(p);
	char *definition = json_dumps(p->definition, JSON_COMPACT);
	struct store_run run = {.pipeline = "one",
				.status = status == STATUS_QUEUED ? STATUS_QUEUED : STATUS_FAILED,
				.event_id = (char *)event_id,
				.definition = definition,
				.created_at = 1764405300000};
	assert_int_equal(store_run_insert(s, &run), 0);
	struct store_stage st = {.run_id = run.id,
				 .name = "only",
				 .status = status,
				 .attempt = status == STATUS_QUEUED ? 0 : 1,
				 .exit_code = -1};
	assert_int_equal(store_stage_insert(s, &st), 0);
	free(definition);
	pipeline_free(p);
	return run.id;
}

/*
 * A run whose event is held (recorded, its offset commit not acknowledged)
 * is refused saying so, not "still queued"; once released (still queued) it
 * is "still queued". Via Kafka, a run attempt a command was already sent for
 * is refused naming the command and when (it survives in the store); with
 * force it is accepted. Each answer is counted in drover_replays_total.
 */
static void test_replayer_refusals(void **state)
{
	struct store_fixture *f = *state;
	struct agent a;
	memset(&a, 0, sizeof a);
	a.store = f->store;
	a.base = event_base_new();
	assert_non_null(a.base);
	metrics_init(&a.metrics);
	struct replayer *r = replayer_new(&a);
	char err[512] = "";

	json_t *body = json_pack("{s:s,s:s}", "kind", "push", "repo", "acme/app");
	assert_int_equal(store_event_insert_held(f->store, "ev-held", body, "accepted", NULL,
						 "drover.events", 0, 5, true),
			 0);
	json_decref(body);
	int64_t held = insert_one_stage_run(f->store, "ev-held", STATUS_QUEUED);
	struct replay_request req = {.reason = "test"};
	assert_int_equal(replayer_start(r, held, &req, never_called, NULL, err, sizeof err),
			 REPLAY_CONFLICT);
	assert_non_null(strstr(err, "its event is not yet committed to Kafka; try again in a "
				    "moment"));
	assert_null(strstr(err, "still queued"));
	int64_t *ids = NULL;
	size_t n = 0;
	assert_int_equal(store_event_release(f->store, "ev-held", &ids, &n), 0);
	free(ids);
	assert_int_equal(replayer_start(r, held, &req, never_called, NULL, err, sizeof err),
			 REPLAY_CONFLICT);
	assert_non_null(strstr(err, "is still queued"));

	int64_t failed = insert_one_stage_run(f->store, "ev-2", STATUS_FAILED);
	req.is_force = true;
	assert_int_equal(replayer_start(r, failed, &req, never_called, NULL, err, sizeof err),
			 REPLAY_BAD_REQUEST);
	assert_string_equal(err, "force applies only to a replay via Kafka");
	req.is_force = false;
	struct store_replay_command sent = {.id = "drover-replay-x-2-a2",
					    .run_id = failed,
					    .attempt = 2,
					    .sent_at = 1764405300000,
					    .topic = "drover.events",
					    .partition = 1,
					    .offset = 9};
	assert_int_equal(store_replay_command_add(f->store, &sent), 0);
	req.is_via_kafka = true;
	assert_int_equal(replayer_start(r, failed, &req, never_called, NULL, err, sizeof err),
			 REPLAY_CONFLICT);
	assert_non_null(strstr(err, "replay command drover-replay-x-2-a2 (attempt 2 of run"));
	assert_non_null(strstr(err, "was already sent at 2025-11-29T08:35:00"));
	assert_non_null(strstr(err, "drover.events[1]@9"));
	assert_non_null(strstr(err, "--force"));
	req.is_force = true;
	assert_int_equal(replayer_start(r, failed, &req, never_called, NULL, err, sizeof err),
			 REPLAY_ACCEPTED);

	char *text = metrics_render(&a.metrics);
	assert_non_null(strstr(text, "drover_replays_total{via=\"api\",outcome=\"refused\"} 3\n"));
	assert_non_null(
	    strstr(text, "drover_replays_total{via=\"kafka\",outcome=\"refused\"} 1\n"));
	assert_non_null(strstr(text, "drover_replays_total{via=\"kafka\",outcome=\"sent\"} 0\n"));
	free(text);
	replayer_free(r); /* the accepted one is dropped unanswered */
	metrics_fini(&a.metrics);
	event_base_free(a.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_select_default),
	    cmocka_unit_test(test_select_named_and_all),
	    cmocka_unit_test(test_select_refusals),
	    cmocka_unit_test(test_select_new_stage),
	    cmocka_unit_test_setup_teardown(test_store_run_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_stage_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replayer_refusals, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
