/*
 * Tests for offsets: drover's own commits on the events topic, against
 * librdkafka's in-process mock cluster. Each test gets its own cluster
 * (one events topic of two partitions), a consumer in a group with both
 * partitions assigned, a real store and scheduler (runs are enqueued but
 * the loop never turns, so no stage starts). What Kafka holds is read back
 * with rd_kafka_committed; what the agent did is read from the store and
 * the scheduler: claims and their history, held events released only by
 * an acknowledged commit, held events decided at claim from another
 * agent's commits, revocation (clean and lost) and the held-run count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "config.h"
#include "offsets.h"
#include "pipeline.h"
#include "report.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

#define TOPIC "drover.events"
#define GROUP "drover-test-offsets"
#define ME "me"
#define WAIT_MS 10000

struct harness {
	char dir[64];
	char *state;
	struct agent a;
	struct pipeline *pl;
	rd_kafka_t *mock_rk; /* hosts the mock cluster */
	rd_kafka_mock_cluster_t *mock;
	rd_kafka_t *rk; /* the consumer the offsets are committed with */
	struct offsets *o;
	int n_commit_cbs; /* offset-commit callbacks served */
};

/* ---- the mock cluster and the consumer ---- */

/* The consumer's offset_commit_cb, as intake wires it. */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	(void)rk;
	struct harness *h = opaque;
	h->n_commit_cbs++;
	if (h->o != NULL && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		offsets_on_commit(h->o, err, parts);
}

static void kafka_build(struct harness *h)
{
	char err[512] = "";
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
	h->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (h->mock_rk == NULL)
		fail_msg("mock host: %s", err);
	/* As kafka_start_embedded: the cluster's thread is born with every
	 * signal blocked, so no signal interrupts its poll(). */
	sigset_t all, saved;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	h->mock = rd_kafka_mock_cluster_new(h->mock_rk, 1);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	assert_non_null(h->mock);
	assert_int_equal(rd_kafka_mock_topic_create(h->mock, TOPIC, 2, 1),
			 RD_KAFKA_RESP_ERR_NO_ERROR);

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(h->mock),
			      err, sizeof err) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "group.id", GROUP, err, sizeof err) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK)
		fail_msg("consumer configuration: %s", err);
	rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
	rd_kafka_conf_set_opaque(conf, h);
	h->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (h->rk == NULL)
		fail_msg("consumer: %s", err);
	/* Both partitions, without a rebalance; commits still go to the group. */
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
	rd_kafka_topic_partition_list_add(l, TOPIC, 0);
	rd_kafka_topic_partition_list_add(l, TOPIC, 1);
	assert_int_equal(rd_kafka_assign(h->rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(l);
}

static void kafka_take_down(struct harness *h)
{
	if (h->rk != NULL) {
		rd_kafka_assign(h->rk, NULL);
		rd_kafka_consumer_close(h->rk);
		rd_kafka_destroy(h->rk);
	}
	if (h->mock != NULL)
		rd_kafka_mock_cluster_destroy(h->mock);
	if (h->mock_rk != NULL)
		rd_kafka_destroy(h->mock_rk);
	h->rk = h->mock_rk = NULL;
	h->mock = NULL;
}

/* Serves the consumer's callbacks (offset commits) for about ms. */
static void kafka_serve(struct harness *h, int ms)
{
	int64_t until = mono_ms() + ms;
	do
		rd_kafka_poll(h->rk, 20);
	while (mono_ms() < until);
}

/* The group's committed offset of partition and its metadata (caller frees). */
static int64_t committed_get(struct harness *h, int32_t partition, char **metadata)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, TOPIC, partition);
	assert_int_equal(rd_kafka_committed(h->rk, l, WAIT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
	const rd_kafka_topic_partition_t *t = &l->elems[0];
	assert_int_equal(t->err, RD_KAFKA_RESP_ERR_NO_ERROR);
	int64_t offset = t->offset;
	*metadata = t->metadata != NULL ? xstrndup(t->metadata, t->metadata_size) : xstrdup("");
	rd_kafka_topic_partition_list_destroy(l);
	return offset;
}

static void assert_committed(struct harness *h, int32_t partition, int64_t offset,
			     const char *metadata)
{
	char *got = NULL;
	int64_t got_offset = committed_get(h, partition, &got);
	if (got_offset != offset || strcmp(got, metadata) != 0)
		fail_msg("%s[%d] committed at %lld with \"%s\"; want %lld with \"%s\"", TOPIC,
			 partition, (long long)got_offset, got, (long long)offset, metadata);
	free(got);
}

/* A commit by someone else (another agent), synchronous. */
static void commit_as_other(struct harness *h, int32_t partition, int64_t offset,
			    const char *metadata)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_add(l, TOPIC, partition);
	t->offset = offset;
	t->metadata = xstrdup(metadata);
	t->metadata_size = strlen(metadata);
	assert_int_equal(rd_kafka_commit(h->rk, l, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(l);
	assert_committed(h, partition, offset, metadata);
}

/* A list of the given partitions of the topic (n of them). */
static rd_kafka_topic_partition_list_t *parts_new(int n, const int32_t *partitions)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(l, TOPIC, partitions[i]);
	return l;
}

/* offsets_claim on the partitions; all of them must be claimed. */
static void parts_claim(struct harness *h, int n, const int32_t *partitions)
{
	rd_kafka_topic_partition_list_t *l = parts_new(n, partitions);
	assert_int_equal(offsets_claim(h->o, l), 0);
	rd_kafka_topic_partition_list_destroy(l);
	for (int i = 0; i < n; i++)
		assert_true(offsets_is_claimed(h->o, partitions[i]));
}

static void claim_both(struct harness *h)
{
	const int32_t both[] = {0, 1};
	parts_claim(h, 2, both);
}

static void parts_revoke(struct harness *h, int32_t partition, bool is_lost)
{
	rd_kafka_topic_partition_list_t *l = parts_new(1, &partition);
	offsets_revoke(h->o, l, is_lost, true);
	rd_kafka_topic_partition_list_destroy(l);
	assert_false(offsets_is_claimed(h->o, partition));
}

/* ---- the agent ---- */

static void agent_build(struct harness *h)
{
	struct agent *a = &h->a;
	memset(a, 0, sizeof *a);
	struct diags diags = {0};
	a->cfg = config_load(NULL, &diags);
	diags_free(&diags);
	assert_non_null(a->cfg);
	free(a->cfg->state_dir);
	a->cfg->state_dir = xstrdup(h->state);
	a->base = event_base_new();
	assert_non_null(a->base);
	char err[512] = "";
	a->store = store_open(h->state, err, sizeof err);
	if (a->store == NULL)
		fail_msg("store_open: %s", err);
	a->report = report_new(a);
	a->sched = scheduler_new(a);
	assert_non_null(a->sched);
	static const char yaml[] = "name: one\n"
				   "on: { push: {} }\n"
				   "checkout: false\n"
				   "stages:\n"
				   "  - { name: a, uses: shell, with: { run: 'true' } }\n";
	h->pl = pipeline_load_string(yaml, strlen(yaml), "test.yml", NULL, &diags);
	if (h->pl == NULL) {
		diags_print(&diags, stderr);
		fail_msg("pipeline refused");
	}
	diags_free(&diags);
}

static void agent_take_down(struct harness *h)
{
	struct agent *a = &h->a;
	report_free(a->report);
	scheduler_free(a->sched);
	store_close(a->store);
	event_base_free(a->base);
	config_free(a->cfg);
	pipeline_free(h->pl);
	h->pl = NULL;
	memset(a, 0, sizeof *a);
}

/* Records event id at partition/offset held with one run, as intake does. */
static void held_insert(struct harness *h, const char *id, int32_t partition, int64_t offset)
{
	struct agent *a = &h->a;
	json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", id, "kind", "push", "action",
			       "push", "source", "drover", "repo", "owner/repo", "sha", "abc123",
			       "branch", "master");
	assert_int_equal(store_begin(a->store), 0);
	assert_int_equal(store_event_insert_held(a->store, id, ev, "accepted", NULL, TOPIC,
						 partition, offset, true),
			 0);
	assert_true(scheduler_run_create_held(a->sched, h->pl, ev) > 0);
	assert_int_equal(store_commit(a->store), 0);
	json_decref(ev);
}

/* Whether event id is held in the store. */
static bool is_held(struct harness *h, const char *id)
{
	struct store_held_event *held = NULL;
	size_t n = 0;
	assert_int_equal(store_events_held(h->a.store, &held, &n), 0);
	bool found = false;
	for (size_t i = 0; i < n; i++)
		found = found || strcmp(held[i].id, id) == 0;
	store_held_events_free(held, n);
	return found;
}

static size_t n_held(struct harness *h)
{
	struct store_held_event *held = NULL;
	size_t n = 0;
	assert_int_equal(store_events_held(h->a.store, &held, &n), 0);
	store_held_events_free(held, n);
	return n;
}

/* Event id is recorded and released (not held). */
static void assert_released(struct harness *h, const char *id)
{
	if (!store_event_exists(h->a.store, id))
		fail_msg("event %s was dropped; want it released", id);
	if (is_held(h, id))
		fail_msg("event %s is still held; want it released", id);
}

static void assert_dropped(struct harness *h, const char *id)
{
	if (store_event_exists(h->a.store, id))
		fail_msg("event %s is still recorded (%s); want it dropped", id,
			 is_held(h, id) ? "held" : "released");
}

static int setup(void **state)
{
	struct harness *h = xcalloc(1, sizeof *h);
	snprintf(h->dir, sizeof h->dir, "/tmp/drover-test-offsets-XXXXXX");
	if (mkdtemp(h->dir) == NULL)
		return -1;
	h->state = xasprintf("%s/state", h->dir);
	if (mkdir_p(h->state, 0750) != 0)
		return -1;
	unsetenv("DROVER_LOG_LEVEL");
	*state = h;
	agent_build(h);
	kafka_build(h);
	h->o = offsets_new(&h->a, h->rk, TOPIC, ME);
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	offsets_free(h->o);
	h->o = NULL;
	kafka_take_down(h);
	if (h->a.cfg != NULL)
		agent_take_down(h);
	int rc = rm_rf(h->dir);
	free(h->state);
	free(h);
	return rc;
}

/* ---- tests ---- */

/* Fresh partitions are claimed at their first offset, history "drover1 me@0". */
static void test_claim_fresh(void **state)
{
	struct harness *h = *state;
	assert_false(offsets_is_claimed(h->o, 0));
	assert_false(offsets_is_claimed(h->o, 1));
	claim_both(h);
	assert_committed(h, 0, 0, "drover1 " ME "@0");
	assert_committed(h, 1, 0, "drover1 " ME "@0");
	/* Claiming again keeps the history as it is (no duplicate entry). */
	claim_both(h);
	assert_committed(h, 0, 0, "drover1 " ME "@0");
}

/*
 * A held event's runs start only once the commit past it was acknowledged:
 * not at offsets_commit, but when the consumer serves the commit callback.
 */
static void test_commit_releases_held(void **state)
{
	struct harness *h = *state;
	claim_both(h);
	held_insert(h, "ev-1", 0, 0);
	offsets_recorded(h->o, 0, 0, "ev-1", 1);
	offsets_recorded(h->o, 1, 0, NULL, 0);
	offsets_recorded(h->o, 1, 1, NULL, 0);
	assert_int_equal(offsets_held_runs(h->o), 1);
	offsets_commit(h->o);
	assert_true(is_held(h, "ev-1"));
	assert_int_equal(scheduler_active_runs(h->a.sched), 0);

	int64_t deadline = mono_ms() + WAIT_MS;
	while (n_held(h) > 0 && mono_ms() < deadline)
		rd_kafka_poll(h->rk, 50);
	if (n_held(h) > 0)
		fail_msg("ev-1 still held %d ms after the commit (%d commit callbacks served)",
			 WAIT_MS, h->n_commit_cbs);
	assert_released(h, "ev-1");
	assert_int_equal(scheduler_active_runs(h->a.sched), 1);
	assert_int_equal(offsets_held_runs(h->o), 0);
	assert_committed(h, 0, 1, "drover1 " ME "@0");
	assert_committed(h, 1, 2, "drover1 " ME "@0");
}

/*
 * Held events are decided at claim from the committed offset and history:
 * another agent's (dropped), not covered (dropped), this agent's (run).
 */
static void test_claim_resolves_held(void **state)
{
	struct harness *h = *state;
	commit_as_other(h, 0, 10, "drover1 other@0");
	commit_as_other(h, 1, 10, "drover1 " ME "@0 other@8");
	held_insert(h, "ev-others", 0, 5);
	held_insert(h, "ev-pending", 0, 12);
	held_insert(h, "ev-mine", 1, 5);
	held_insert(h, "ev-others-2", 1, 9);
	kafka_serve(h, 100); /* the other agent's commit callbacks change nothing */
	assert_int_equal(n_held(h), 4);

	claim_both(h);
	assert_dropped(h, "ev-others");
	assert_dropped(h, "ev-pending");
	assert_dropped(h, "ev-others-2");
	assert_released(h, "ev-mine");
	assert_int_equal(scheduler_active_runs(h->a.sched), 1);
	assert_int_equal(offsets_held_runs(h->o), 0);
	assert_committed(h, 0, 10, "drover1 other@0 " ME "@10");
	assert_committed(h, 1, 10, "drover1 " ME "@0 other@8 " ME "@10");
}

/* A clean revocation commits what was recorded and releases its held events. */
static void test_revoke_commits(void **state)
{
	struct harness *h = *state;
	claim_both(h);
	held_insert(h, "ev-1", 0, 3);
	offsets_recorded(h->o, 0, 3, "ev-1", 1);
	held_insert(h, "ev-2", 1, 0);
	offsets_recorded(h->o, 1, 0, "ev-2", 1);
	assert_int_equal(offsets_held_runs(h->o), 2);

	parts_revoke(h, 0, false);
	assert_released(h, "ev-1");
	assert_true(is_held(h, "ev-2")); /* partition 1 stays: nothing committed there */
	assert_int_equal(scheduler_active_runs(h->a.sched), 1);
	assert_int_equal(offsets_held_runs(h->o), 1);
	assert_committed(h, 0, 4, "drover1 " ME "@0");
	assert_committed(h, 1, 0, "drover1 " ME "@0");
}

/*
 * A lost partition commits nothing and its held events stay held in the
 * store, until offsets_tick decides them from what the broker holds: a
 * commit of this agent that landed after all (run), or a new owner that
 * took the partition before any commit covered the event and consumed it
 * (drop).
 */
static void test_revoke_lost(void **state)
{
	struct harness *h = *state;
	claim_both(h);
	held_insert(h, "ev-landed", 0, 0);
	offsets_recorded(h->o, 0, 0, "ev-landed", 1);
	held_insert(h, "ev-taken", 1, 0);
	offsets_recorded(h->o, 1, 0, "ev-taken", 1);
	assert_int_equal(offsets_held_runs(h->o), 2);

	parts_revoke(h, 0, true);
	parts_revoke(h, 1, true);
	assert_int_equal(offsets_held_runs(h->o), 0);
	assert_true(is_held(h, "ev-landed"));
	assert_true(is_held(h, "ev-taken"));
	assert_int_equal(scheduler_active_runs(h->a.sched), 0);
	/* Nothing was committed past the claims. */
	assert_committed(h, 0, 0, "drover1 " ME "@0");
	assert_committed(h, 1, 0, "drover1 " ME "@0");

	commit_as_other(h, 0, 1, "drover1 " ME "@0");
	commit_as_other(h, 1, 1, "drover1 " ME "@0 other@0");
	kafka_serve(h, 100);
	/* Callbacks of commits on partitions no longer ours release nothing. */
	assert_true(is_held(h, "ev-landed"));

	assert_int_equal(offsets_tick(h->o, true), 0);
	assert_released(h, "ev-landed");
	assert_dropped(h, "ev-taken");
	assert_int_equal(scheduler_active_runs(h->a.sched), 1);
}

/* offsets_held_runs counts the runs of held events, per event, to 0 on release. */
static void test_held_runs_count(void **state)
{
	struct harness *h = *state;
	claim_both(h);
	assert_int_equal(offsets_held_runs(h->o), 0);
	held_insert(h, "ev-1", 0, 0);
	offsets_recorded(h->o, 0, 0, "ev-1", 1);
	offsets_recorded(h->o, 0, 1, NULL, 0);
	held_insert(h, "ev-2", 1, 0);
	offsets_recorded(h->o, 1, 0, "ev-2", 1);
	assert_int_equal(offsets_held_runs(h->o), 2);
	offsets_flush(h->o, true);
	assert_int_equal(offsets_held_runs(h->o), 0);
	assert_int_equal(n_held(h), 0);
	assert_int_equal(scheduler_active_runs(h->a.sched), 2);
	assert_committed(h, 0, 2, "drover1 " ME "@0");
	assert_committed(h, 1, 1, "drover1 " ME "@0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_claim_fresh, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_releases_held, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_resolves_held, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_commits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoke_lost, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_held_runs_count, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
