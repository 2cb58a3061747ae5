/*
 * Tests for scheduler: the real scheduler, store, report and shell plugin
 * on a real event loop, without Kafka (results stay in the outbox). Stages
 * are shell commands that leave markers in files; the tests read the
 * markers, the store and the outbox: DAG order, max_parallel, failures and
 * skips, run status rules, retries, timeouts, outputs, the environment,
 * concurrency groups, locks, recovery after a restart, drain, CDEvents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "config.h"
#include "pipeline.h"
#include "plugin_host.h"
#include "proc.h"
#include "report.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

#define RUN_TIMEOUT_MS 20000
#define SHELL_PLUGIN BUILD_DIR "/plugins/shell.so"

struct harness {
	char dir[64];
	char *state;
	char *marks; /* the file stages append their markers to */
	struct agent a;
	struct pipeline *pipelines[8];
	size_t n_pipelines;
	int n_events;
	/* the most stages seen running at once while the loop ran */
	size_t max_running_seen;
	int idle_calls;
};

/* ---- building and taking down the agent ---- */

static void agent_build(struct harness *h, int max_parallel)
{
	struct agent *a = &h->a;
	memset(a, 0, sizeof *a);
	struct diags diags = {0};
	a->cfg = config_load(NULL, &diags);
	diags_free(&diags);
	assert_non_null(a->cfg);
	free(a->cfg->state_dir);
	a->cfg->state_dir = xstrdup(h->state);
	a->cfg->max_parallel = max_parallel;
	a->cfg->stage_kill_grace_ms = 300;
	a->cfg->keep_failed_workspace_ms = 0;
	a->base = event_base_new();
	assert_non_null(a->base);
	char err[512] = "";
	a->store = store_open(h->state, err, sizeof err);
	if (a->store == NULL)
		fail_msg("store_open: %s", err);
	a->procs = proc_table_new(a->base);
	assert_non_null(a->procs);
	a->plugins = plugin_host_new(scheduler_host_services());
	if (plugin_host_load(a->plugins, SHELL_PLUGIN, err, sizeof err) != 0)
		fail_msg("loading %s: %s", SHELL_PLUGIN, err);
	a->report = report_new(a);
	a->sched = scheduler_new(a);
	assert_non_null(a->sched);
}

/* In agent_main's teardown order. */
static void agent_take_down(struct harness *h)
{
	struct agent *a = &h->a;
	report_free(a->report);
	scheduler_free(a->sched);
	plugin_host_free(a->plugins);
	proc_table_free(a->procs);
	store_close(a->store);
	event_base_free(a->base);
	config_free(a->cfg);
	memset(a, 0, sizeof *a);
}

static int setup(void **state)
{
	struct harness *h = xcalloc(1, sizeof *h);
	snprintf(h->dir, sizeof h->dir, "/tmp/drover-test-sched-XXXXXX");
	if (mkdtemp(h->dir) == NULL)
		return -1;
	h->state = xasprintf("%s/state", h->dir);
	h->marks = xasprintf("%s/marks", h->dir);
	if (mkdir_p(h->state, 0750) != 0)
		return -1;
	unsetenv("DROVER_LOG_LEVEL");
	*state = h;
	return 0;
}

static int teardown(void **state)
{
	struct harness *h = *state;
	if (h->a.cfg != NULL)
		agent_take_down(h);
	for (size_t i = 0; i < h->n_pipelines; i++)
		pipeline_free(h->pipelines[i]);
	int rc = rm_rf(h->dir);
	free(h->state);
	free(h->marks);
	free(h);
	return rc;
}

/* ---- pipelines and runs ---- */

static struct pipeline *pipeline_add(struct harness *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct pipeline *pipeline_add(struct harness *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *yaml = xvasprintf(fmt, ap);
	va_end(ap);
	struct diags diags = {0};
	struct pipeline *p = pipeline_load_string(yaml, strlen(yaml), "test.yml", NULL, &diags);
	if (p == NULL) {
		diags_print(&diags, stderr);
		fail_msg("pipeline refused:\n%s", yaml);
	}
	diags_free(&diags);
	free(yaml);
	assert_true(h->n_pipelines < ARRAY_LEN(h->pipelines));
	h->pipelines[h->n_pipelines++] = p;
	return p;
}

/* Records an event and a run of p for it, as intake does, and enqueues it. */
static int64_t run_start_event(struct harness *h, const struct pipeline *p, json_t *event)
{
	struct agent *a = &h->a;
	const char *id = json_string_value(json_object_get(event, "id"));
	assert_int_equal(store_begin(a->store), 0);
	assert_int_equal(store_event_insert(a->store, id, event, "accepted", NULL, "drover.events",
					    0, h->n_events),
			 0);
	int64_t run = scheduler_run_create(a->sched, p, event);
	assert_true(run > 0);
	assert_int_equal(store_commit(a->store), 0);
	scheduler_run_enqueue(a->sched, run);
	json_decref(event);
	return run;
}

static json_t *push_event_new(struct harness *h, const char *sha, const char *branch)
{
	char *id = xasprintf("ev-%d", ++h->n_events);
	json_t *ev =
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", id, "kind", "push", "action", "push",
		      "source", "drover", "repo", "owner/repo", "sha", sha, "branch", branch);
	free(id);
	return ev;
}

static int64_t run_start(struct harness *h, const struct pipeline *p, const char *sha)
{
	return run_start_event(h, p, push_event_new(h, sha, "master"));
}

/* One turn of the loop (report's 1 s timer guarantees it returns). */
static void loop_once(struct harness *h)
{
	event_base_loop(h->a.base, EVLOOP_ONCE);
	size_t running = scheduler_running_stages(h->a.sched);
	if (running > h->max_running_seen)
		h->max_running_seen = running;
}

static json_t *run_json(struct harness *h, int64_t run)
{
	json_t *j = store_run_json(h->a.store, run);
	assert_non_null(j);
	return j;
}

/* The run's status (a static name; do not free). */
static const char *run_status(struct harness *h, int64_t run)
{
	json_t *j = run_json(h, run);
	int st = status_parse(json_string_value(json_object_get(j, "status")));
	json_decref(j);
	assert_true(st >= 0);
	return status_name((enum status)st);
}

static json_t *stage_of(json_t *run, const char *name)
{
	size_t i;
	json_t *st;
	json_array_foreach(json_object_get(run, "stages"), i, st)
	{
		if (strcmp(json_string_value(json_object_get(st, "name")), name) == 0)
			return st;
	}
	fail_msg("no stage %s", name);
	return NULL;
}

static const char *stage_status(struct harness *h, int64_t run, const char *name)
{
	json_t *j = run_json(h, run);
	int st = status_parse(json_string_value(json_object_get(stage_of(j, name), "status")));
	json_decref(j);
	assert_true(st >= 0);
	return status_name((enum status)st);
}

static bool is_run_over(struct harness *h, int64_t run)
{
	const char *s = run_status(h, run);
	return strcmp(s, "queued") != 0 && strcmp(s, "running") != 0;
}

/* Runs the loop until the run is over; returns its JSON (caller decrefs). */
static json_t *run_wait(struct harness *h, int64_t run)
{
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	while (!is_run_over(h, run)) {
		if (mono_ms() > deadline) {
			json_t *j = run_json(h, run);
			char *text = json_dumps(j, JSON_INDENT(1));
			print_error("run %lld did not end:\n%s\n", (long long)run, text);
			free(text);
			json_decref(j);
			fail();
		}
		loop_once(h);
	}
	return run_json(h, run);
}

static void loop_until_stage_status(struct harness *h, int64_t run, const char *stage,
				    const char *status)
{
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	while (strcmp(stage_status(h, run, stage), status) != 0) {
		if (mono_ms() > deadline)
			fail_msg("run %lld stage %s never became %s", (long long)run, stage,
				 status);
		loop_once(h);
	}
}

static void loop_for(struct harness *h, int64_t ms)
{
	int64_t until = mono_ms() + ms;
	while (mono_ms() < until) {
		struct timeval tv = {0, 20 * 1000};
		event_base_loopexit(h->a.base, &tv);
		loop_once(h);
	}
}

static void assert_stage(json_t *run, const char *name, const char *status, int attempt)
{
	json_t *st = stage_of(run, name);
	const char *got = json_string_value(json_object_get(st, "status"));
	int got_attempt = (int)json_integer_value(json_object_get(st, "attempt"));
	if (strcmp(got, status) != 0 || (attempt > 0 && got_attempt != attempt)) {
		const char *summary = json_string_value(json_object_get(st, "summary"));
		fail_msg("stage %s: %s attempt %d (%s); want %s attempt %d", name, got, got_attempt,
			 summary != NULL ? summary : "no summary", status, attempt);
	}
}

static void assert_run_status(json_t *run, const char *status)
{
	const char *got = json_string_value(json_object_get(run, "status"));
	if (strcmp(got, status) != 0) {
		char *text = json_dumps(run, JSON_INDENT(1));
		print_error("%s\n", text);
		free(text);
		fail_msg("run status %s; want %s", got, status);
	}
}

static const char *stage_summary(json_t *run, const char *name)
{
	const char *s = json_string_value(json_object_get(stage_of(run, name), "summary"));
	return s != NULL ? s : "";
}

/* ---- markers ---- */

/* A shell command that marks its start and end in the marks file around
 * `sleep secs`. */
static char *marked(struct harness *h, const char *secs)
{
	return xasprintf("echo \"start $DROVER_STAGE $DROVER_SHA\" >> %s; sleep %s; "
			 "echo \"end $DROVER_STAGE $DROVER_SHA\" >> %s",
			 h->marks, secs, h->marks);
}

/* The marks file as an array of lines (caller frees each and the array). */
static char **marks_read(struct harness *h, size_t *n)
{
	FILE *fp = fopen(h->marks, "re");
	*n = 0;
	char **lines = xcalloc(64, sizeof *lines);
	if (fp == NULL)
		return lines;
	char buf[256];
	while (fgets(buf, sizeof buf, fp) != NULL && *n < 63) {
		buf[strcspn(buf, "\n")] = '\0';
		lines[(*n)++] = xstrdup(buf);
	}
	fclose(fp);
	return lines;
}

static void marks_free(char **lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
}

/* Index of the line, or fails. */
static size_t mark_at(char **lines, size_t n, const char *line)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(lines[i], line) == 0)
			return i;
	fail_msg("no marker \"%s\"", line);
	return 0;
}

static bool has_mark(char **lines, size_t n, const char *prefix)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(lines[i], prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

/* The most intervals (start..end) open at once, from the markers. */
static int marks_max_overlap(char **lines, size_t n)
{
	int open = 0, most = 0;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(lines[i], "start ", 6) == 0)
			open++;
		else if (strncmp(lines[i], "end ", 4) == 0)
			open--;
		if (open > most)
			most = open;
	}
	return most;
}

/* Runs the loop until the marks file has the line. */
static void loop_until_mark(struct harness *h, const char *line)
{
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	for (;;) {
		size_t n;
		char **lines = marks_read(h, &n);
		bool is_there = false;
		for (size_t i = 0; i < n; i++)
			is_there = is_there || strcmp(lines[i], line) == 0;
		marks_free(lines, n);
		if (is_there)
			return;
		if (mono_ms() > deadline)
			fail_msg("marker \"%s\" never came", line);
		loop_for(h, 20);
	}
}

static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "re");
	if (fp == NULL)
		return NULL;
	struct strbuf sb;
	strbuf_init(&sb);
	char chunk[1024];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
		strbuf_add(&sb, chunk, n);
	fclose(fp);
	return strbuf_detach(&sb);
}

/* ---- the outbox ---- */

struct result_event {
	char *type;
	char *outcome; /* NULL when none */
	char *task;    /* taskName, NULL for pipeline runs */
	char *subject_id;
	char *key;
};

/* The outbox's CDEvents caused by event_id, oldest first. */
static struct result_event *outbox_read(struct harness *h, const char *event_id, size_t *n_out)
{
	struct store_outbox_item *items = NULL;
	size_t n = 0;
	assert_int_equal(store_outbox_next(h->a.store, 0, 10000, &items, &n), 0);
	struct result_event *out = xcalloc(n + 1, sizeof *out);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(items[i].topic, h->a.cfg->kafka.results_topic);
		json_error_t jerr;
		json_t *ce = json_loadb(items[i].value, items[i].value_len, 0, &jerr);
		if (ce == NULL)
			fail_msg("outbox value is not JSON: %s", jerr.text);
		json_t *data = json_object_get(ce, "data");
		const char *chain =
		    json_string_value(json_object_get(json_object_get(data, "context"), "chainId"));
		if (chain != NULL && strcmp(chain, event_id) == 0) {
			json_t *subject = json_object_get(data, "subject");
			json_t *content = json_object_get(subject, "content");
			const char *outcome =
			    json_string_value(json_object_get(content, "outcome"));
			const char *task = json_string_value(json_object_get(content, "taskName"));
			const char *ctype = json_string_value(
			    json_object_get(json_object_get(data, "context"), "type"));
			const char *type = json_string_value(json_object_get(ce, "type"));
			assert_non_null(type);
			assert_non_null(ctype);
			assert_string_equal(type, ctype);
			out[k].type = xstrdup(type);
			out[k].outcome = outcome != NULL ? xstrdup(outcome) : NULL;
			out[k].task = task != NULL ? xstrdup(task) : NULL;
			out[k].subject_id =
			    xstrdup(json_string_value(json_object_get(subject, "id")) ?: "");
			out[k].key = items[i].key != NULL ? xstrdup(items[i].key) : NULL;
			k++;
		}
		json_decref(ce);
	}
	store_outbox_items_free(items, n);
	*n_out = k;
	return out;
}

static void outbox_free(struct result_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ev[i].type);
		free(ev[i].outcome);
		free(ev[i].task);
		free(ev[i].subject_id);
		free(ev[i].key);
	}
	free(ev);
}

/* ================================================================= */

/* a → (b, c) → d: b and c wait for a, run side by side, d waits for both. */
static void test_dag_order(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.4");
	struct pipeline *p =
	    pipeline_add(h,
			 "name: dag\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "stages:\n"
			 "  - { name: a, uses: shell, with: { run: '%s' } }\n"
			 "  - { name: b, uses: shell, needs: [a], with: { run: '%s' } }\n"
			 "  - { name: c, uses: shell, needs: [a], with: { run: '%s' } }\n"
			 "  - { name: d, uses: shell, needs: [b, c], with: { run: '%s' } }\n",
			 m, m, m, m);
	free(m);
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	assert_stage(j, "a", "succeeded", 1);
	assert_stage(j, "b", "succeeded", 1);
	assert_stage(j, "c", "succeeded", 1);
	assert_stage(j, "d", "succeeded", 1);
	assert_int_equal(json_integer_value(json_object_get(stage_of(j, "a"), "exit_code")), 0);
	json_decref(j);

	size_t n;
	char **lines = marks_read(h, &n);
	assert_int_equal(n, 8);
	size_t end_a = mark_at(lines, n, "end a s1");
	size_t start_b = mark_at(lines, n, "start b s1"), end_b = mark_at(lines, n, "end b s1");
	size_t start_c = mark_at(lines, n, "start c s1"), end_c = mark_at(lines, n, "end c s1");
	size_t start_d = mark_at(lines, n, "start d s1");
	assert_true(mark_at(lines, n, "start a s1") < end_a);
	assert_true(end_a < start_b);
	assert_true(end_a < start_c);
	/* b and c overlap: each started before the other ended */
	assert_true(start_b < end_c);
	assert_true(start_c < end_b);
	assert_true(end_b < start_d);
	assert_true(end_c < start_d);
	marks_free(lines, n);
	assert_true(h->max_running_seen >= 2);
	assert_int_equal(scheduler_running_stages(h->a.sched), 0);
	assert_int_equal(scheduler_active_runs(h->a.sched), 0);
}

static struct pipeline *four_independent(struct harness *h)
{
	char *m = marked(h, "0.3");
	struct pipeline *p = pipeline_add(h,
					  "name: wide\n"
					  "on: { push: {} }\n"
					  "checkout: false\n"
					  "stages:\n"
					  "  - { name: w1, uses: shell, with: { run: '%s' } }\n"
					  "  - { name: w2, uses: shell, with: { run: '%s' } }\n"
					  "  - { name: w3, uses: shell, with: { run: '%s' } }\n"
					  "  - { name: w4, uses: shell, with: { run: '%s' } }\n",
					  m, m, m, m);
	free(m);
	return p;
}

static void test_max_parallel_one_never_overlaps(void **state)
{
	struct harness *h = *state;
	agent_build(h, 1);
	struct pipeline *p = four_independent(h);
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	json_decref(j);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_int_equal(n, 8);
	assert_int_equal(marks_max_overlap(lines, n), 1);
	marks_free(lines, n);
	assert_int_equal(h->max_running_seen, 1);
}

static void test_max_parallel_two(void **state)
{
	struct harness *h = *state;
	agent_build(h, 2);
	struct pipeline *p = four_independent(h);
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	json_decref(j);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_int_equal(n, 8);
	assert_int_equal(marks_max_overlap(lines, n), 2);
	marks_free(lines, n);
	assert_int_equal(h->max_running_seen, 2);
}

/* max_parallel counts stages of all runs together. */
static void test_max_parallel_across_runs(void **state)
{
	struct harness *h = *state;
	agent_build(h, 1);
	char *m = marked(h, "0.3");
	struct pipeline *p = pipeline_add(h,
					  "name: one\n"
					  "on: { push: {} }\n"
					  "checkout: false\n"
					  "stages:\n"
					  "  - { name: only, uses: shell, with: { run: '%s' } }\n",
					  m);
	free(m);
	int64_t r1 = run_start(h, p, "s1");
	int64_t r2 = run_start(h, p, "s2");
	int64_t r3 = run_start(h, p, "s3");
	json_decref(run_wait(h, r1));
	json_decref(run_wait(h, r2));
	json_t *j = run_wait(h, r3);
	assert_run_status(j, "succeeded");
	json_decref(j);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_int_equal(n, 6);
	assert_int_equal(marks_max_overlap(lines, n), 1);
	marks_free(lines, n);
}

/* A failed stage skips what needs it (transitively), naming the need; an
 * independent branch still runs; the run fails. */
static void test_failure_skips_dependents(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.5");
	struct pipeline *p = pipeline_add(
	    h,
	    "name: fails\n"
	    "on: { push: {} }\n"
	    "checkout: false\n"
	    "stages:\n"
	    "  - { name: a, uses: shell, with: { run: 'echo broken; exit 3' } }\n"
	    "  - { name: b, uses: shell, needs: [a], with: { run: '%s' } }\n"
	    "  - { name: c, uses: shell, needs: [b], with: { run: '%s' } }\n"
	    "  - { name: side, uses: shell, with: { run: '%s' } }\n"
	    "  - { name: after-side, uses: shell, needs: [side], with: { run: '%s' } }\n",
	    m, m, m, m);
	free(m);
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "failed");
	assert_stage(j, "a", "failed", 1);
	assert_int_equal(json_integer_value(json_object_get(stage_of(j, "a"), "exit_code")), 3);
	assert_non_null(strstr(stage_summary(j, "a"), "exit code 3"));
	assert_stage(j, "b", "skipped", 0);
	assert_non_null(strstr(stage_summary(j, "b"), "needs a"));
	assert_stage(j, "c", "skipped", 0);
	assert_non_null(strstr(stage_summary(j, "c"), "needs b"));
	assert_stage(j, "side", "succeeded", 1);
	assert_stage(j, "after-side", "succeeded", 1);
	json_decref(j);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_false(has_mark(lines, n, "start b"));
	assert_false(has_mark(lines, n, "start c"));
	mark_at(lines, n, "end after-side s1");
	marks_free(lines, n);

	/* the stage's output is in its log, with drover's closing line */
	char *log_path = xasprintf("%s/logs/%lld/a.1.log", h->state, (long long)run);
	char *log = read_text(log_path);
	free(log_path);
	assert_non_null(log);
	assert_non_null(strstr(log, "broken\n"));
	assert_non_null(strstr(log, "[drover] stage a attempt 1 failed"));
	free(log);
}

/* An unknown plugin and a stage refused by its plugin's params are errors
 * (infrastructure), and an error makes the run's status error. */
static void test_run_status_error(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: errs\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: ghost, uses: no-such-plugin }\n"
			    "  - { name: next, uses: shell, needs: [ghost], "
			    "with: { run: 'true' } }\n"
			    "  - { name: bad-with, uses: shell, with: { nope: 1 } }\n"
			    "  - { name: fine, uses: shell, with: { run: 'true' } }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "error");
	assert_stage(j, "ghost", "error", 1);
	assert_non_null(strstr(stage_summary(j, "ghost"), "no-such-plugin"));
	assert_stage(j, "next", "skipped", 0);
	assert_stage(j, "bad-with", "error", 1);
	assert_stage(j, "fine", "succeeded", 1);
	json_decref(j);
}

/* A stage whose program cannot be started ends in error and the log says
 * why (or fails, where posix_spawn cannot report the exec failure and the
 * child exits instead, as under valgrind). */
static void test_stage_program_missing(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p = pipeline_add(h, "name: no-shell\n"
					     "on: { push: {} }\n"
					     "checkout: false\n"
					     "stages:\n"
					     "  - { name: a, uses: shell, "
					     "with: { run: 'true', shell: /nonexistent/sh } }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	const char *st = json_string_value(json_object_get(stage_of(j, "a"), "status"));
	bool is_error = strcmp(st, "error") == 0;
	bool is_failed = strcmp(st, "failed") == 0;
	json_decref(j);
	assert_true(is_error || is_failed);
	if (is_error) {
		char *log_path = xasprintf("%s/logs/%lld/a.1.log", h->state, (long long)run);
		char *log = read_text(log_path);
		free(log_path);
		assert_non_null(log);
		bool has_reason = strstr(log, "/nonexistent/sh") != NULL;
		free(log);
		assert_true(has_reason);
	}
}

/* failed beats error when both happen (the code under test failed). */
static void test_run_status_failed_over_error(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: mixed\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: ghost, uses: no-such-plugin }\n"
			    "  - { name: red, uses: shell, with: { run: 'exit 1' } }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "failed");
	json_decref(j);
}

static void test_retry_until_third_attempt(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: flaky\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - name: a\n"
			    "    uses: shell\n"
			    "    with: { run: 'echo \"attempt $DROVER_ATTEMPT\"; test "
			    "\"$DROVER_ATTEMPT\" -ge 3' }\n"
			    "    retry: { attempts: 2, delay: 100ms }\n"
			    "  - { name: b, uses: shell, needs: [a], with: { run: 'true' } }\n");
	int64_t t0 = mono_ms();
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	int64_t elapsed = mono_ms() - t0;
	assert_run_status(j, "succeeded");
	assert_stage(j, "a", "succeeded", 3);
	assert_stage(j, "b", "succeeded", 1);
	json_decref(j);
	/* 100 ms before the first retry, 200 ms (backoff 2) before the second */
	assert_true(elapsed >= 300);
	/* one log per attempt */
	for (int attempt = 1; attempt <= 3; attempt++) {
		char *path = xasprintf("%s/logs/%lld/a.%d.log", h->state, (long long)run, attempt);
		char *log = read_text(path);
		free(path);
		assert_non_null(log);
		char *want = xasprintf("attempt %d\n", attempt);
		assert_non_null(strstr(log, want));
		free(want);
		free(log);
	}
	/* every attempt was reported */
	size_t n;
	struct result_event *ev = outbox_read(h, "ev-1", &n);
	int finished_a = 0, failures = 0;
	for (size_t i = 0; i < n; i++) {
		if (ev[i].task == NULL || strcmp(ev[i].task, "a") != 0 ||
		    strstr(ev[i].type, "taskrun.finished") == NULL)
			continue;
		finished_a++;
		failures += strcmp(ev[i].outcome, "failure") == 0;
	}
	outbox_free(ev, n);
	assert_int_equal(finished_a, 3);
	assert_int_equal(failures, 2);
}

static void test_retry_exhausted(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: flaky\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - name: a\n"
			    "    uses: shell\n"
			    "    with: { run: 'test \"$DROVER_ATTEMPT\" -ge 3' }\n"
			    "    retry: { attempts: 1, delay: 100ms }\n"
			    "  - { name: b, uses: shell, needs: [a], with: { run: 'true' } }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "failed");
	assert_stage(j, "a", "failed", 2);
	assert_stage(j, "b", "skipped", 0);
	json_decref(j);
}

/* /proc/<pid> is gone or a zombie: the process does not run any more. */
static bool is_process_gone(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	char *text = read_text(path);
	if (text == NULL)
		return true;
	const char *paren = strrchr(text, ')');
	bool is_zombie = paren != NULL && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
	free(text);
	return is_zombie;
}

static pid_t read_pid(const char *path)
{
	char *text = read_text(path);
	assert_non_null(text);
	pid_t pid = (pid_t)atoi(text);
	free(text);
	assert_true(pid > 0);
	return pid;
}

static void test_timeout(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *pidfile = xasprintf("%s/sleep.pid", h->dir);
	struct pipeline *p =
	    pipeline_add(h,
			 "name: slow\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "stages:\n"
			 "  - { name: a, uses: shell, timeout: 1s, with: { run: 'sleep 30 & echo "
			 "$! > %s; wait' } }\n"
			 "  - { name: b, uses: shell, needs: [a], with: { run: 'true' } }\n",
			 pidfile);
	int64_t t0 = mono_ms();
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	int64_t elapsed = mono_ms() - t0;
	assert_run_status(j, "timed_out");
	assert_stage(j, "a", "timed_out", 1);
	assert_stage(j, "b", "skipped", 0);
	json_decref(j);
	assert_true(elapsed >= 1000);
	assert_true(elapsed < 4000); /* 1 s, then TERM; the grace is 300 ms */
	/* the stage's whole process group went with it */
	pid_t pid = read_pid(pidfile);
	int64_t deadline = mono_ms() + 2000;
	while (!is_process_gone(pid) && mono_ms() < deadline)
		usleep(20 * 1000);
	assert_true(is_process_gone(pid));
	char *log_path = xasprintf("%s/logs/%lld/a.1.log", h->state, (long long)run);
	char *log = read_text(log_path);
	assert_non_null(log);
	assert_non_null(strstr(log, "timed out"));
	free(log);
	free(log_path);
	free(pidfile);
}

/* A stage that ignores TERM is killed after the grace period. */
static void test_timeout_term_ignored(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: stubborn\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, timeout: 1s, "
			    "with: { run: 'trap \"\" TERM; while :; do sleep 0.1; done' } }\n");
	int64_t t0 = mono_ms();
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	int64_t elapsed = mono_ms() - t0;
	assert_run_status(j, "timed_out");
	assert_stage(j, "a", "timed_out", 1);
	json_decref(j);
	assert_true(elapsed < 5000);
}

/* A timed-out attempt is retried like a failed one. */
static void test_timeout_then_retry(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: slow-once\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - name: a\n"
			    "    uses: shell\n"
			    "    timeout: 1s\n"
			    "    retry: { attempts: 1, delay: 100ms }\n"
			    "    with: { run: 'test \"$DROVER_ATTEMPT\" -ge 2 || sleep 30' }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	assert_stage(j, "a", "succeeded", 2);
	json_decref(j);
}

static void test_outputs(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *seen = xasprintf("%s/seen", h->dir);
	struct pipeline *p = pipeline_add(
	    h,
	    "name: outs\n"
	    "on: { push: {} }\n"
	    "checkout: false\n"
	    "stages:\n"
	    "  - name: build-x\n"
	    "    uses: shell\n"
	    "    with: { run: 'echo k=v >> \"$DROVER_OUTPUTS\"; echo multi=a=b >> "
	    "\"$DROVER_OUTPUTS\"; "
	    "echo bad-key=1 >> \"$DROVER_OUTPUTS\"; echo noequals >> \"$DROVER_OUTPUTS\"' }\n"
	    "  - name: broken\n"
	    "    uses: shell\n"
	    "    with: { run: 'echo z=1 >> \"$DROVER_OUTPUTS\"; exit 1' }\n"
	    "  - name: use\n"
	    "    uses: shell\n"
	    "    needs: [build-x]\n"
	    "    with: { run: 'printf \"%%s|%%s|%%s\" \"$DROVER_OUTPUT_BUILD_X_K\" "
	    "\"$DROVER_OUTPUT_BUILD_X_MULTI\" \"${DROVER_OUTPUT_BROKEN_Z-unset}\" > %s' }\n",
	    seen);
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "failed");
	assert_stage(j, "build-x", "succeeded", 1);
	assert_stage(j, "use", "succeeded", 1);
	json_decref(j);
	char *text = read_text(seen);
	assert_non_null(text);
	assert_string_equal(text, "v|a=b|unset");
	free(text);
	free(seen);

	json_t *outputs = store_outputs_get(h->a.store, run);
	assert_non_null(outputs);
	json_t *bx = json_object_get(outputs, "build-x");
	assert_string_equal(json_string_value(json_object_get(bx, "k")), "v");
	assert_string_equal(json_string_value(json_object_get(bx, "multi")), "a=b");
	assert_null(json_object_get(bx, "bad-key"));
	assert_int_equal(json_object_size(bx), 2);
	/* a failed stage's outputs are not kept */
	assert_null(json_object_get(outputs, "broken"));
	json_decref(outputs);
}

/* A stage that created $DROVER_OUTPUTS but wrote nothing has no outputs and
 * succeeds (the file reads as empty). */
static void test_outputs_empty_file(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p = pipeline_add(h, "name: quiet\n"
					     "on: { push: {} }\n"
					     "checkout: false\n"
					     "stages:\n"
					     "  - { name: a, uses: shell, "
					     "with: { run: ': > \"$DROVER_OUTPUTS\"' } }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	json_decref(j);
	json_t *outputs = store_outputs_get(h->a.store, run);
	assert_non_null(outputs);
	size_t n_outputs = json_object_size(json_object_get(outputs, "a"));
	json_decref(outputs);
	assert_int_equal(n_outputs, 0);
}

static char *env_value(const char *env_text, const char *name)
{
	char *needle = xasprintf("\n%s=", name);
	char *copy = xasprintf("\n%s", env_text);
	char *p = strstr(copy, needle);
	char *value = NULL;
	if (p != NULL) {
		p += strlen(needle);
		value = xstrndup(p, strcspn(p, "\n"));
	}
	free(copy);
	free(needle);
	return value;
}

static void assert_env(const char *env_text, const char *name, const char *want)
{
	char *got = env_value(env_text, name);
	if (got == NULL)
		fail_msg("%s is not in the stage's environment", name);
	if (strcmp(got, want) != 0)
		fail_msg("%s=%s; want %s", name, got, want);
	free(got);
}

static void test_environment(void **state)
{
	struct harness *h = *state;
	setenv("DROVER_TEST_AGENT_ONLY", "leak", 1);
	agent_build(h, 4);
	/* a secret of the agent's config: masked in stage logs */
	h->a.cfg->secrets = xrealloc(h->a.cfg->secrets, (h->a.cfg->n_secrets + 1) * sizeof(char *));
	h->a.cfg->secrets[h->a.cfg->n_secrets++] = xstrdup("hunter2-secret");
	struct pipeline *p = pipeline_add(
	    h,
	    "name: env-check\n"
	    "on: { push: {} }\n"
	    "checkout: false\n"
	    "stages:\n"
	    "  - name: show\n"
	    "    uses: shell\n"
	    "    with: { run: 'env > %s/env; pwd > %s/pwd; cp \"$DROVER_EVENT_FILE\" %s/event; "
	    "echo \"password hunter2-secret\"' }\n",
	    h->dir, h->dir, h->dir);
	json_t *ev = push_event_new(h, "0123abcd", "feature/x");
	json_object_set_new(ev, "pr", json_pack("{s:i}", "number", 7));
	json_object_set_new(ev, "drift", json_pack("{s:s}", "model", "churn"));
	json_object_set_new(ev, "kind", json_string("pull_request"));
	json_object_set_new(ev, "action", json_string("opened"));
	int64_t run = run_start_event(h, p, ev);
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	json_decref(j);
	unsetenv("DROVER_TEST_AGENT_ONLY");

	char *path = xasprintf("%s/env", h->dir);
	char *env = read_text(path);
	free(path);
	assert_non_null(env);
	char run_id[32];
	snprintf(run_id, sizeof run_id, "%lld", (long long)run);
	char *workspace = xasprintf("%s/workspaces/%lld", h->state, (long long)run);
	assert_env(env, "DROVER_PIPELINE", "env-check");
	assert_env(env, "DROVER_STAGE", "show");
	assert_env(env, "DROVER_ATTEMPT", "1");
	assert_env(env, "DROVER_RUN_ID", run_id);
	assert_env(env, "DROVER_REPO", "owner/repo");
	assert_env(env, "DROVER_SHA", "0123abcd");
	assert_env(env, "DROVER_BRANCH", "feature/x");
	assert_env(env, "DROVER_PR", "7");
	assert_env(env, "DROVER_MODEL", "churn");
	assert_env(env, "DROVER_EVENT_KIND", "pull_request");
	assert_env(env, "DROVER_EVENT_ACTION", "opened");
	assert_env(env, "DROVER_WORKSPACE", workspace);
	char *leak = env_value(env, "DROVER_TEST_AGENT_ONLY");
	assert_null(leak);
	char *event_file = env_value(env, "DROVER_EVENT_FILE");
	assert_non_null(event_file);
	free(event_file);
	free(env);

	/* the stage ran in its workspace */
	path = xasprintf("%s/pwd", h->dir);
	char *pwd = read_text(path);
	free(path);
	assert_non_null(pwd);
	pwd[strcspn(pwd, "\n")] = '\0';
	assert_string_equal(pwd, workspace);
	free(pwd);
	free(workspace);

	/* the event file holds the event */
	path = xasprintf("%s/event", h->dir);
	json_error_t jerr;
	json_t *got = json_load_file(path, 0, &jerr);
	free(path);
	assert_non_null(got);
	assert_string_equal(json_string_value(json_object_get(got, "id")), "ev-1");
	assert_string_equal(json_string_value(json_object_get(got, "repo")), "owner/repo");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "pr"), "number")),
			 7);
	json_decref(got);

	/* the secret is masked in the stage log */
	path = xasprintf("%s/logs/%lld/show.1.log", h->state, (long long)run);
	char *log = read_text(path);
	free(path);
	assert_non_null(log);
	assert_null(strstr(log, "hunter2-secret"));
	assert_non_null(strstr(log, "password ***"));
	free(log);
}

/* A second run in a cancel_in_progress group cancels the first (its running
 * stage is stopped, its queued stages cancelled) and then runs. */
static void test_cancel_in_progress(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h,
			 "name: pr\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "concurrency: { group: 'pr-{repo}', cancel_in_progress: true }\n"
			 "stages:\n"
			 "  - name: a\n"
			 "    uses: shell\n"
			 "    with: { run: 'echo \"start a $DROVER_SHA\" >> %s; "
			 "if [ \"$DROVER_SHA\" = slow ]; then sleep 30; fi; echo \"end a "
			 "$DROVER_SHA\" >> %s' }\n"
			 "  - { name: b, uses: shell, needs: [a], with: { run: 'true' } }\n",
			 h->marks, h->marks);
	int64_t r1 = run_start(h, p, "slow");
	loop_until_mark(h, "start a slow");
	int64_t t0 = mono_ms();
	int64_t r2 = run_start(h, p, "fast");
	json_t *j1 = run_wait(h, r1);
	assert_true(mono_ms() - t0 < 3000);
	assert_run_status(j1, "cancelled");
	assert_stage(j1, "a", "cancelled", 1);
	assert_stage(j1, "b", "cancelled", 0);
	json_decref(j1);
	json_t *j2 = run_wait(h, r2);
	assert_run_status(j2, "succeeded");
	assert_stage(j2, "b", "succeeded", 1);
	json_decref(j2);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_false(has_mark(lines, n, "end a slow"));
	assert_true(mark_at(lines, n, "start a slow") < mark_at(lines, n, "start a fast"));
	marks_free(lines, n);
}

/* A run cancelled while a stage waits for its retry: the retry never starts. */
static void test_cancel_during_retry_delay(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h,
			 "name: pr\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "concurrency: { group: g, cancel_in_progress: true }\n"
			 "stages:\n"
			 "  - name: a\n"
			 "    uses: shell\n"
			 "    retry: { attempts: 3, delay: 1s }\n"
			 "    with: { run: 'echo \"start a $DROVER_SHA $DROVER_ATTEMPT\" >> %s; "
			 "test \"$DROVER_SHA\" = good' }\n",
			 h->marks);
	int64_t r1 = run_start(h, p, "bad");
	json_t *j = NULL;
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	for (;;) {
		j = run_json(h, r1);
		json_t *st = stage_of(j, "a");
		bool is_waiting =
		    json_integer_value(json_object_get(st, "attempt")) == 2 &&
		    strcmp(json_string_value(json_object_get(st, "status")), "queued") == 0;
		json_decref(j);
		if (is_waiting)
			break;
		assert_true(mono_ms() < deadline);
		loop_once(h);
	}
	int64_t r2 = run_start(h, p, "good");
	j = run_wait(h, r1);
	assert_run_status(j, "cancelled");
	assert_stage(j, "a", "cancelled", 0);
	json_decref(j);
	j = run_wait(h, r2);
	assert_run_status(j, "succeeded");
	json_decref(j);
	loop_for(h, 1500);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_false(has_mark(lines, n, "start a bad 2"));
	mark_at(lines, n, "start a bad 1");
	marks_free(lines, n);
}

/* A run still waiting in the queue is cancelled without ever starting. */
static void test_cancel_in_progress_queued(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.5");
	struct pipeline *p = pipeline_add(h,
					  "name: pr\n"
					  "on: { push: {} }\n"
					  "checkout: false\n"
					  "concurrency: { group: g, cancel_in_progress: true }\n"
					  "stages:\n"
					  "  - { name: a, uses: shell, with: { run: '%s' } }\n",
					  m);
	free(m);
	int64_t r1 = run_start(h, p, "one");
	int64_t r2 = run_start(h, p, "two");
	int64_t r3 = run_start(h, p, "three");
	json_t *j3 = run_wait(h, r3);
	assert_run_status(j3, "succeeded");
	json_decref(j3);
	json_t *j1 = run_wait(h, r1);
	json_t *j2 = run_wait(h, r2);
	assert_run_status(j1, "cancelled");
	assert_run_status(j2, "cancelled");
	json_decref(j1);
	json_decref(j2);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_false(has_mark(lines, n, "start a two"));
	marks_free(lines, n);
}

/* scheduler_run_cancel: an operator's cancel of a running run stops its
 * stage, cancels the stage not started with the reason as summary; a second
 * cancel of the finished run says -2, of an unknown run -1. */
static void test_run_cancel(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p = pipeline_add(
	    h,
	    "name: op\n"
	    "on: { push: {} }\n"
	    "checkout: false\n"
	    "stages:\n"
	    "  - name: a\n"
	    "    uses: shell\n"
	    "    with: { run: 'echo \"start a\" >> %s; sleep 30; echo \"end a\" >> %s' }\n"
	    "  - { name: b, uses: shell, needs: [a], with: { run: 'echo b >> %s' } }\n",
	    h->marks, h->marks, h->marks);
	int64_t r1 = run_start(h, p, "one");
	loop_until_mark(h, "start a");
	int64_t t0 = mono_ms();
	assert_int_equal(scheduler_run_cancel(h->a.sched, r1, "cluster down"), 0);
	assert_int_equal(scheduler_run_cancel(h->a.sched, r1, "twice"), 0); /* under way */
	json_t *j = run_wait(h, r1);
	assert_true(mono_ms() - t0 < 10000);
	assert_run_status(j, "cancelled");
	assert_stage(j, "a", "cancelled", 1);
	assert_stage(j, "b", "cancelled", 0);
	assert_string_equal(stage_summary(j, "a"), "cancelled: cluster down");
	assert_string_equal(stage_summary(j, "b"), "cancelled: cluster down");
	json_decref(j);
	assert_int_equal(scheduler_run_cancel(h->a.sched, r1, NULL), -2);
	assert_int_equal(scheduler_run_cancel(h->a.sched, r1 + 1000, NULL), -1);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_false(has_mark(lines, n, "end a"));
	assert_false(has_mark(lines, n, "b"));
	marks_free(lines, n);
}

/* Without cancel_in_progress a group runs its runs one after the other. */
static void test_concurrency_group_queues(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.3");
	struct pipeline *p = pipeline_add(h,
					  "name: serial\n"
					  "on: { push: {} }\n"
					  "checkout: false\n"
					  "concurrency: { group: 'g-{branch}' }\n"
					  "stages:\n"
					  "  - { name: a, uses: shell, with: { run: '%s' } }\n",
					  m);
	free(m);
	int64_t r1 = run_start(h, p, "one");
	int64_t r2 = run_start(h, p, "two");
	loop_until_stage_status(h, r1, "a", "running");
	assert_string_equal(run_status(h, r2), "queued");
	json_t *j1 = run_wait(h, r1);
	json_t *j2 = run_wait(h, r2);
	assert_run_status(j1, "succeeded");
	assert_run_status(j2, "succeeded");
	json_decref(j1);
	json_decref(j2);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_true(mark_at(lines, n, "end a one") < mark_at(lines, n, "start a two"));
	marks_free(lines, n);
}

/* One lock, two pipelines: the second run's stage starts after the first
 * run finished; a run holding another lock runs alongside. */
static void test_lock(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.4");
	struct pipeline *deploy =
	    pipeline_add(h,
			 "name: deploy\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "lock: 'env-{branch}'\n"
			 "stages:\n"
			 "  - { name: d1, uses: shell, with: { run: '%s' } }\n"
			 "  - { name: d2, uses: shell, needs: [d1], "
			 "with: { run: '%s' } }\n",
			 m, m);
	struct pipeline *promote =
	    pipeline_add(h,
			 "name: promote\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "lock: 'env-{branch}'\n"
			 "stages:\n"
			 "  - { name: p1, uses: shell, with: { run: '%s' } }\n",
			 m);
	free(m);
	int64_t r1 = run_start_event(h, deploy, push_event_new(h, "one", "master"));
	int64_t r2 = run_start_event(h, promote, push_event_new(h, "two", "master"));
	int64_t r3 = run_start_event(h, deploy, push_event_new(h, "three", "dev"));
	loop_until_stage_status(h, r1, "d1", "running");
	assert_string_equal(run_status(h, r2), "queued");
	json_t *j1 = run_wait(h, r1);
	json_t *j2 = run_wait(h, r2);
	json_t *j3 = run_wait(h, r3);
	assert_run_status(j1, "succeeded");
	assert_run_status(j2, "succeeded");
	assert_run_status(j3, "succeeded");
	json_decref(j1);
	json_decref(j2);
	json_decref(j3);
	size_t n;
	char **lines = marks_read(h, &n);
	assert_true(mark_at(lines, n, "end d2 one") < mark_at(lines, n, "start p1 two"));
	/* env-dev is another lock: it did not wait for env-master */
	assert_true(mark_at(lines, n, "start d1 three") < mark_at(lines, n, "end d1 one"));
	marks_free(lines, n);
}

/* Marks a run and its first stage as running in the store, as an agent that
 * died in the middle would have left them. */
static void store_mark_running(struct harness *h, int64_t run_id)
{
	struct store_run run = {0};
	struct store_stage *stages = NULL;
	size_t n = 0;
	assert_int_equal(store_run_load(h->a.store, run_id, &run, &stages, &n), 0);
	assert_true(n >= 1);
	run.status = STATUS_RUNNING;
	run.started_at = now_ms();
	assert_int_equal(store_run_update(h->a.store, &run), 0);
	stages[0].status = STATUS_RUNNING;
	stages[0].attempt = 1;
	stages[0].started_at = now_ms();
	assert_int_equal(store_stage_update(h->a.store, &stages[0]), 0);
	store_run_clear(&run);
	store_stages_free(stages, n);
}

/* Creates a run without enqueueing it (the agent "dies" right after). */
static int64_t run_create_only(struct harness *h, const struct pipeline *p, const char *sha)
{
	json_t *ev = push_event_new(h, sha, "master");
	const char *id = json_string_value(json_object_get(ev, "id"));
	assert_int_equal(store_begin(h->a.store), 0);
	assert_int_equal(
	    store_event_insert(h->a.store, id, ev, "accepted", NULL, "drover.events", 0, 1), 0);
	int64_t run = scheduler_run_create(h->a.sched, p, ev);
	assert_true(run > 0);
	assert_int_equal(store_commit(h->a.store), 0);
	json_decref(ev);
	return run;
}

static void test_recover_retries_interrupted_stage(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.1");
	struct pipeline *p =
	    pipeline_add(h,
			 "name: resumable\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "stages:\n"
			 "  - name: a\n"
			 "    uses: shell\n"
			 "    retry: { attempts: 1, delay: 100ms }\n"
			 "    with: { run: '%s' }\n"
			 "  - { name: b, uses: shell, needs: [a], with: { run: '%s' } }\n",
			 m, m);
	free(m);
	int64_t run = run_create_only(h, p, "s1");
	store_mark_running(h, run);
	int64_t queued = run_create_only(h, p, "s2"); /* never started */
	agent_take_down(h);

	agent_build(h, 4);
	assert_int_equal(scheduler_recover(h->a.sched), 2);
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	assert_stage(j, "a", "succeeded", 2);
	assert_stage(j, "b", "succeeded", 1);
	json_decref(j);
	j = run_wait(h, queued);
	assert_run_status(j, "succeeded");
	assert_stage(j, "a", "succeeded", 1);
	json_decref(j);
	assert_int_equal(scheduler_running_stages(h->a.sched), 0);
	assert_int_equal(scheduler_active_runs(h->a.sched), 0);

	/* the interrupted attempt was reported as finished in error */
	size_t n;
	struct result_event *ev = outbox_read(h, "ev-1", &n);
	bool has_interrupted = false;
	for (size_t i = 0; i < n; i++)
		has_interrupted =
		    has_interrupted ||
		    (strstr(ev[i].type, "taskrun.finished") != NULL &&
		     strcmp(ev[i].subject_id, "1/a/1") == 0 && strcmp(ev[i].outcome, "error") == 0);
	outbox_free(ev, n);
	assert_true(has_interrupted);

	/* a further restart finds nothing to take up */
	agent_take_down(h);
	agent_build(h, 4);
	assert_int_equal(scheduler_recover(h->a.sched), 0);
}

static void test_recover_without_retries_fails(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: once\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'true' } }\n"
			    "  - { name: b, uses: shell, needs: [a], with: { run: 'true' } }\n");
	int64_t run = run_create_only(h, p, "s1");
	store_mark_running(h, run);
	agent_take_down(h);

	agent_build(h, 4);
	assert_int_equal(scheduler_recover(h->a.sched), 1);
	json_t *j = run_wait(h, run);
	assert_run_status(j, "error");
	assert_stage(j, "a", "error", 1);
	assert_non_null(strstr(stage_summary(j, "a"), "interrupted"));
	assert_stage(j, "b", "skipped", 0);
	json_decref(j);
	assert_int_equal(scheduler_running_stages(h->a.sched), 0);
	assert_int_equal(scheduler_active_runs(h->a.sched), 0);
}

static void on_idle(void *arg)
{
	struct harness *h = arg;
	h->idle_calls++;
}

/* Drain: a running stage may finish, nothing new starts, and the run is
 * taken up again after a restart. */
static void test_drain_then_recover(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *m = marked(h, "0.3");
	struct pipeline *p =
	    pipeline_add(h,
			 "name: drained\n"
			 "on: { push: {} }\n"
			 "checkout: false\n"
			 "stages:\n"
			 "  - { name: a, uses: shell, with: { run: '%s' } }\n"
			 "  - { name: b, uses: shell, needs: [a], with: { run: '%s' } }\n",
			 m, m);
	free(m);
	int64_t run = run_start(h, p, "s1");
	loop_until_stage_status(h, run, "a", "running");
	scheduler_drain(h->a.sched, 5000, on_idle, h);
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	while (h->idle_calls == 0 && mono_ms() < deadline)
		loop_once(h);
	assert_int_equal(h->idle_calls, 1);
	loop_for(h, 300);
	assert_int_equal(h->idle_calls, 1);
	assert_string_equal(stage_status(h, run, "a"), "succeeded");
	assert_string_equal(stage_status(h, run, "b"), "queued");
	assert_string_equal(run_status(h, run), "running");
	agent_take_down(h);

	agent_build(h, 4);
	assert_int_equal(scheduler_recover(h->a.sched), 1);
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	assert_stage(j, "a", "succeeded", 1);
	assert_stage(j, "b", "succeeded", 1);
	json_decref(j);
}

/* Drain past the grace period: the stage is killed and recorded, on_idle runs. */
static void test_drain_kills_after_grace(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: long\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'sleep 30' } }\n");
	int64_t run = run_start(h, p, "s1");
	loop_until_stage_status(h, run, "a", "running");
	int64_t t0 = mono_ms();
	scheduler_drain(h->a.sched, 200, on_idle, h);
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	while (h->idle_calls == 0 && mono_ms() < deadline)
		loop_once(h);
	assert_int_equal(h->idle_calls, 1);
	assert_true(mono_ms() - t0 < 3000);
	assert_int_equal(scheduler_running_stages(h->a.sched), 0);
	const char *st = stage_status(h, run, "a");
	assert_true(strcmp(st, "error") == 0);
}

/* The outbox holds the CDEvents of a run, in order, keyed by repo. */
static void test_outbox_cdevents(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p =
	    pipeline_add(h, "name: reported\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'true' } }\n"
			    "  - { name: b, uses: shell, needs: [a], with: { run: 'true' } }\n");
	struct pipeline *bad =
	    pipeline_add(h, "name: reported-bad\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'exit 1' } }\n");
	int64_t run = run_start(h, p, "s1");
	json_decref(run_wait(h, run));
	int64_t run2 = run_start(h, bad, "s2");
	json_decref(run_wait(h, run2));

	static const char *const want[][3] = {
	    {"dev.cdevents.pipelinerun.queued.0.3.0", NULL, NULL},
	    {"dev.cdevents.pipelinerun.started.0.3.0", NULL, NULL},
	    {"dev.cdevents.taskrun.started.0.3.0", "a", NULL},
	    {"dev.cdevents.taskrun.finished.0.3.0", "a", "success"},
	    {"dev.cdevents.taskrun.started.0.3.0", "b", NULL},
	    {"dev.cdevents.taskrun.finished.0.3.0", "b", "success"},
	    {"dev.cdevents.pipelinerun.finished.0.3.0", NULL, "success"},
	};
	size_t n;
	struct result_event *ev = outbox_read(h, "ev-1", &n);
	if (n != ARRAY_LEN(want)) {
		for (size_t i = 0; i < n; i++)
			print_error("%s %s\n", ev[i].type, ev[i].task ? ev[i].task : "");
		fail_msg("%zu results for the run; want %zu", n, ARRAY_LEN(want));
	}
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(ev[i].type, want[i][0]);
		if (want[i][1] != NULL) {
			assert_non_null(ev[i].task);
			assert_string_equal(ev[i].task, want[i][1]);
		}
		if (want[i][2] != NULL) {
			assert_non_null(ev[i].outcome);
			assert_string_equal(ev[i].outcome, want[i][2]);
		}
		assert_non_null(ev[i].key);
		assert_string_equal(ev[i].key, "owner/repo");
	}
	outbox_free(ev, n);

	ev = outbox_read(h, "ev-2", &n);
	assert_true(n >= 1);
	assert_string_equal(ev[n - 1].type, "dev.cdevents.pipelinerun.finished.0.3.0");
	assert_string_equal(ev[n - 1].outcome, "failure");
	bool has_task_failure = false;
	for (size_t i = 0; i < n; i++)
		has_task_failure =
		    has_task_failure || (ev[i].outcome != NULL && ev[i].task != NULL &&
					 strcmp(ev[i].outcome, "failure") == 0);
	assert_true(has_task_failure);
	outbox_free(ev, n);
	/* without Kafka nothing left the outbox */
	assert_true(store_outbox_count(h->a.store) >= 7 + 5);
}

static void run_shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run_shell(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = xvasprintf(fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	if (rc != 0)
		fail_msg("command failed (%d): %s", rc, cmd);
	free(cmd);
}

/* A git repository in the test's directory with one commit; its sha (caller frees). */
static char *src_repo(struct harness *h, const char *content)
{
	run_shell("cd '%s' && (test -d src || git init -q -b master src) && cd src && "
		  "printf '%%s\\n' '%s' > hello.txt && git add hello.txt && "
		  "git -c user.name=t -c user.email=t@example.com commit -q -m c",
		  h->dir, content);
	char *cmd = xasprintf("git -C '%s/src' rev-parse HEAD", h->dir);
	FILE *p = popen(cmd, "r");
	free(cmd);
	assert_non_null(p);
	char buf[128] = "";
	assert_non_null(fgets(buf, sizeof buf, p));
	assert_int_equal(pclose(p), 0);
	buf[strcspn(buf, "\n")] = '\0';
	return xstrdup(buf);
}

/* With checkout (the default) the stages run in a checkout of the event's
 * commit; a branch-only event gets the branch head, recorded on the run; a
 * commit that does not exist fails the run before any stage. */
static void test_checkout(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *sha1 = src_repo(h, "first");
	struct pipeline *p = pipeline_add(h,
					  "name: build\n"
					  "on: { push: {} }\n"
					  "stages:\n"
					  "  - { name: a, uses: shell, "
					  "with: { run: 'cat hello.txt >> %s/seen; "
					  "echo \"$DROVER_SHA\" >> %s/seen' } }\n",
					  h->dir, h->dir);
	char *src = xasprintf("%s/src", h->dir);
	json_t *ev = push_event_new(h, sha1, "master");
	json_object_set_new(ev, "clone_url", json_string(src));
	int64_t r1 = run_start_event(h, p, ev);
	json_t *j = run_wait(h, r1);
	assert_run_status(j, "succeeded");
	json_decref(j);
	char *log_path = xasprintf("%s/logs/%lld/checkout.log", h->state, (long long)r1);
	char *log = read_text(log_path);
	free(log_path);
	assert_non_null(log);
	assert_non_null(strstr(log, sha1));
	free(log);

	char *sha2 = src_repo(h, "second");
	ev = push_event_new(h, "x", "master");
	json_object_del(ev, "sha");
	json_object_set_new(ev, "clone_url", json_string(src));
	int64_t r2 = run_start_event(h, p, ev);
	j = run_wait(h, r2);
	assert_run_status(j, "succeeded");
	assert_string_equal(json_string_value(json_object_get(j, "sha")), sha2);
	json_decref(j);

	char *seen_path = xasprintf("%s/seen", h->dir);
	char *seen = read_text(seen_path);
	free(seen_path);
	char *want = xasprintf("first\n%s\nsecond\n%s\n", sha1, sha2);
	assert_non_null(seen);
	assert_string_equal(seen, want);
	free(want);
	free(seen);

	ev = push_event_new(h, "0123456789abcdef0123456789abcdef01234567", "master");
	json_object_set_new(ev, "clone_url", json_string(src));
	int64_t r3 = run_start_event(h, p, ev);
	j = run_wait(h, r3);
	assert_run_status(j, "error");
	assert_stage(j, "a", "skipped", 0);
	assert_non_null(strstr(stage_summary(j, "a"), "checkout failed"));
	json_decref(j);

	free(src);
	free(sha1);
	free(sha2);
}

/* At start, kept workspaces older than keep_failed_workspace_ms go; newer
 * ones, those of unfinished runs and foreign names stay. */
static void test_recover_sweeps_old_workspaces(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	h->a.cfg->keep_failed_workspace_ms = 3600 * 1000;
	run_shell("mkdir -p %s/workspaces/900/sub %s/workspaces/901 %s/workspaces/keep-me && "
		  "touch -d '2 hours ago' %s/workspaces/900 %s/workspaces/keep-me",
		  h->state, h->state, h->state, h->state, h->state);
	assert_int_equal(scheduler_recover(h->a.sched), 0);
	char *old = xasprintf("%s/workspaces/900", h->state);
	char *fresh = xasprintf("%s/workspaces/901", h->state);
	char *foreign = xasprintf("%s/workspaces/keep-me", h->state);
	assert_int_not_equal(access(old, F_OK), 0);
	assert_int_equal(access(fresh, F_OK), 0);
	assert_int_equal(access(foreign, F_OK), 0);
	free(old);
	free(fresh);
	free(foreign);
}

/* Builds tests/fixtures/scheduler/resumer.c into dir/plugins/resumer.so and
 * loads it; false (the test is skipped) when no compiler is at hand. */
static bool resumer_load(struct harness *h)
{
	char *so = xasprintf("%s/plugins/resumer.so", h->dir);
	if (access(so, F_OK) != 0) {
		char *cmd =
		    xasprintf("mkdir -p %s/plugins && cc -shared -fPIC -std=c11 -Wall -Werror "
			      "-I%s/agent/include $(pkg-config --cflags jansson) -o %s "
			      "%s/scheduler/resumer.c $(pkg-config --libs jansson)",
			      h->dir, SOURCE_DIR, so, FIXTURES_DIR);
		int rc = system(cmd);
		free(cmd);
		if (rc != 0) {
			free(so);
			return false;
		}
	}
	char err[512] = "";
	if (plugin_host_load(h->a.plugins, so, err, sizeof err) != 0)
		fail_msg("loading %s: %s", so, err);
	free(so);
	return true;
}

/* A remote stage (it saved a resume token) that was running when the agent
 * stopped is re-attached through the plugin's resume() after the restart,
 * not failed or run again (DESIGN, delivery and failure rules). */
static void test_recover_resumes_remote_stage(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	if (!resumer_load(h))
		skip();
	struct pipeline *p = pipeline_add(h, "name: remote\n"
					     "on: { push: {} }\n"
					     "checkout: false\n"
					     "stages:\n"
					     "  - { name: job, uses: resumer }\n"
					     "  - { name: after, uses: shell, needs: [job], "
					     "with: { run: 'true' } }\n");
	int64_t run = run_start(h, p, "s1");
	loop_until_stage_status(h, run, "job", "running");
	loop_for(h, 100);
	agent_take_down(h);

	agent_build(h, 4);
	assert_true(resumer_load(h));
	assert_int_equal(scheduler_recover(h->a.sched), 1);
	json_t *j = run_wait(h, run);
	json_t *job = stage_of(j, "job");
	bool is_resumed =
	    strcmp(json_string_value(json_object_get(j, "status")), "succeeded") == 0 &&
	    strcmp(json_string_value(json_object_get(job, "status")), "succeeded") == 0 &&
	    json_integer_value(json_object_get(job, "attempt")) == 1 &&
	    strstr(stage_summary(j, "job"), "re-attached to job-1") != NULL;
	if (!is_resumed) {
		char *text = json_dumps(j, JSON_INDENT(1));
		print_error("after the restart:\n%s\n", text);
		free(text);
	}
	json_decref(j);
	assert_true(is_resumed);
}

/* A plugin with notify() hears about the run (DESIGN: report notifies
 * plugins, e.g. commit status reporters). */
static void test_notify_plugins(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *notes = xasprintf("%s/notes", h->dir);
	setenv("DROVER_TEST_NOTIFY_FILE", notes, 1);
	if (!resumer_load(h)) {
		free(notes);
		skip();
	}
	struct pipeline *p =
	    pipeline_add(h, "name: told\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: resumer, with: { finish: now } }\n");
	int64_t run = run_start(h, p, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "succeeded");
	json_decref(j);
	loop_for(h, 200);
	unsetenv("DROVER_TEST_NOTIFY_FILE");
	char *text = read_text(notes);
	free(notes);
	bool has_finished = text != NULL && strstr(text, "pipelinerun.finished") != NULL;
	free(text);
	assert_true(has_finished);
}

/* Taking the agent down while a stage runs kills the stage's processes and
 * frees everything (ASan/LSan: no leak). */
static void test_take_down_with_running_stage(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	char *pidfile = xasprintf("%s/pid", h->dir);
	struct pipeline *p = pipeline_add(h,
					  "name: busy\n"
					  "on: { push: {} }\n"
					  "checkout: false\n"
					  "stages:\n"
					  "  - { name: a, uses: shell, "
					  "with: { run: 'echo $$ > %s; sleep 30' } }\n",
					  pidfile);
	int64_t run = run_start(h, p, "s1");
	loop_until_stage_status(h, run, "a", "running");
	int64_t deadline = mono_ms() + 5000;
	while (access(pidfile, F_OK) != 0 && mono_ms() < deadline)
		loop_for(h, 20);
	pid_t pid = read_pid(pidfile);
	agent_take_down(h);
	assert_true(is_process_gone(pid));
	free(pidfile);
}

/* The names in dir, sorted and joined by spaces ("" when it is empty). */
static char *dir_names(const char *dir)
{
	char *cmd = xasprintf("ls -A %s 2>/dev/null | sort | tr '\\n' ' '", dir);
	FILE *f = popen(cmd, "r");
	free(cmd);
	assert_non_null(f);
	char buf[1024] = "";
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	pclose(f);
	return xstrdup(buf);
}

/*
 * What a `checkout: false` run leaves: one directory, logs/<run>, with the
 * event file, a log per attempt and an outputs file only for the stage that
 * wrote outputs; no runs/ directory; its empty workspace goes back to the
 * pool and the next run gets that very directory (same inode, empty again).
 */
static void test_run_files(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	struct pipeline *p = pipeline_add(
	    h,
	    "name: files\n"
	    "on: { push: {} }\n"
	    "checkout: false\n"
	    "stages:\n"
	    "  - name: quiet\n"
	    "    uses: shell\n"
	    "    with: { run: 'test -z \"$(ls -A)\" && test \"$PWD\" = \"$DROVER_WORKSPACE\" && "
	    "grep -q \"\\\"sha\\\"\" \"$DROVER_EVENT_FILE\" && stat -c %%i . >> %s/inodes' }\n"
	    "  - name: out\n"
	    "    uses: shell\n"
	    "    needs: [quiet]\n"
	    "    with: { run: 'echo k=v >> \"$DROVER_OUTPUTS\"' }\n"
	    "  - name: use\n"
	    "    uses: shell\n"
	    "    needs: [out]\n"
	    "    with: { run: 'test \"$DROVER_OUTPUT_OUT_K\" = v' }\n",
	    h->dir);
	int64_t r1 = run_start(h, p, "s1");
	json_t *j = run_wait(h, r1);
	assert_run_status(j, "succeeded");
	json_decref(j);

	char *logs = xasprintf("%s/logs/%lld", h->state, (long long)r1);
	char *names = dir_names(logs);
	assert_string_equal(names, "event.json out.1.env out.1.log quiet.1.log use.1.log ");
	free(names);
	free(logs);
	names = dir_names(h->state);
	assert_null(strstr(names, "runs"));
	free(names);
	char *ws = xasprintf("%s/workspaces", h->state);
	names = dir_names(ws);
	assert_string_equal(names, ".free ");
	free(names);
	free(ws);

	int64_t r2 = run_start(h, p, "s2");
	j = run_wait(h, r2);
	assert_run_status(j, "succeeded");
	json_decref(j);
	char *path = xasprintf("%s/inodes", h->dir);
	char *inodes = read_text(path);
	free(path);
	assert_non_null(inodes);
	char *nl = strchr(inodes, '\n');
	assert_non_null(nl);
	if (strncmp(inodes, nl + 1, (size_t)(nl - inodes) + 1) != 0)
		fail_msg("the second run's workspace is a new directory: inodes %s", inodes);
	free(inodes);
}

/* A failed run's workspace is kept for keep_failed_workspace_ms, then removed;
 * a succeeded run's is removed at once. */
static void test_workspace_cleanup(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	h->a.cfg->keep_failed_workspace_ms = 300;
	struct pipeline *ok =
	    pipeline_add(h, "name: ok\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'touch f' } }\n");
	struct pipeline *bad =
	    pipeline_add(h, "name: bad\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'touch f; exit 1' } }\n");
	int64_t r1 = run_start(h, ok, "s1");
	json_decref(run_wait(h, r1));
	char *ws1 = xasprintf("%s/workspaces/%lld", h->state, (long long)r1);
	assert_int_not_equal(access(ws1, F_OK), 0);
	int64_t r2 = run_start(h, bad, "s2");
	json_decref(run_wait(h, r2));
	char *ws2 = xasprintf("%s/workspaces/%lld/f", h->state, (long long)r2);
	assert_int_equal(access(ws2, F_OK), 0);
	loop_for(h, 600);
	assert_int_not_equal(access(ws2, F_OK), 0);
	free(ws1);
	free(ws2);
}

/* A failed run's workspace kept for an hour (the default), and the agent
 * stops before then: nothing leaks (ASan/LSan). */
static void test_take_down_with_kept_workspace(void **state)
{
	struct harness *h = *state;
	agent_build(h, 4);
	h->a.cfg->keep_failed_workspace_ms = 3600 * 1000;
	struct pipeline *bad =
	    pipeline_add(h, "name: bad\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'exit 1' } }\n");
	int64_t run = run_start(h, bad, "s1");
	json_t *j = run_wait(h, run);
	assert_run_status(j, "failed");
	json_decref(j);
	char *ws = xasprintf("%s/workspaces/%lld", h->state, (long long)run);
	assert_int_equal(access(ws, F_OK), 0);
	free(ws);
	agent_take_down(h);
}

/* ---- what another process sees of the store ---- */

/* A connection of its own to the agent's database: it sees only what was
 * committed, as a restarted agent would. */
static sqlite3 *raw_db(struct harness *h)
{
	char *path = xasprintf("%s/drover.db", h->state);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	free(path);
	return db;
}

/* The first column of the one row sql (with up to 3 text parameters) returns. */
static int64_t raw_count(sqlite3 *db, const char *sql, const char *p1, const char *p2,
			 const char *p3)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	const char *params[] = {p1, p2, p3};
	for (int i = 0; i < 3; i++)
		if (params[i] != NULL)
			assert_int_equal(sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC),
					 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * Wraps the loaded shell plugin: its start() first checks, from a connection
 * of its own, that the attempt about to start is already committed: the
 * stage and its run running, the attempt's history row, and its "started"
 * CDEvent in the outbox. Then the shell starts it as usual.
 */
struct probe {
	const struct drover_host *host;
	struct loaded_plugin *lp;
	const struct drover_plugin *shell_desc;
	void *shell_state;
	struct drover_plugin desc;
	struct harness *h;
	int n_started;
	int n_unrecorded;
};

static int probe_start(void *state, struct drover_stage *stage)
{
	struct probe *pr = state;
	const char *event_id =
	    json_string_value(json_object_get(pr->host->stage_event(stage), "id"));
	const char *name = pr->host->stage_name(stage);
	char attempt[16];
	snprintf(attempt, sizeof attempt, "%d", pr->host->stage_attempt(stage));
	sqlite3 *db = raw_db(pr->h);
	int64_t n = raw_count(
	    db,
	    "SELECT count(*) FROM stages s JOIN runs r ON r.id = s.run_id"
	    " JOIN stage_attempts a ON a.run_id = s.run_id AND a.stage = s.name"
	    "  AND a.attempt = s.attempt"
	    " WHERE r.event_id = ?1 AND s.name = ?2 AND s.attempt = CAST(?3 AS INTEGER)"
	    "  AND r.status = 'running' AND s.status = 'running' AND a.status = 'running'"
	    "  AND EXISTS (SELECT 1 FROM outbox o WHERE CAST(o.value AS TEXT) LIKE"
	    "   '%\"drover-run-' || r.id || '-' || s.name || '-a' || s.attempt || '-started\"%')",
	    event_id, name, attempt);
	sqlite3_close(db);
	pr->n_started++;
	if (n != 1) {
		print_error("stage %s attempt %s of event %s starts unrecorded\n", name, attempt,
			    event_id);
		pr->n_unrecorded++;
	}
	return pr->shell_desc->start(pr->shell_state, stage);
}

/* A test seam: the loaded shell's descriptor and state are swapped for the probe's. */
static void probe_install(struct harness *h, struct probe *pr)
{
	memset(pr, 0, sizeof *pr);
	pr->h = h;
	pr->host = scheduler_host_services();
	pr->lp = (struct loaded_plugin *)plugin_host_find(h->a.plugins, "shell");
	assert_non_null(pr->lp);
	pr->shell_desc = pr->lp->desc;
	pr->shell_state = pr->lp->state;
	pr->desc = *pr->shell_desc;
	pr->desc.start = probe_start;
	pr->lp->desc = &pr->desc;
	pr->lp->state = pr;
}

static void probe_remove(struct probe *pr)
{
	pr->lp->desc = pr->shell_desc;
	pr->lp->state = pr->shell_state;
}

/*
 * The crash rules of a pass: a stage's start (attempt, run, CDEvent) is
 * committed before its plugin starts it, and after every turn of the loop
 * every stage running has its process group committed (a kill -9 at any
 * point between two callbacks leaves nothing the next agent does not know).
 * Six runs of two stages on three slots: passes that start several stages
 * and record several ends at once.
 */
static void test_pass_records_before_it_acts(void **state)
{
	struct harness *h = *state;
	agent_build(h, 3);
	struct probe pr;
	probe_install(h, &pr);
	struct pipeline *p =
	    pipeline_add(h, "name: two\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: a, uses: shell, with: { run: 'sleep 0.2' } }\n"
			    "  - { name: b, uses: shell, needs: [a], "
			    "with: { run: 'sleep 0.1' } }\n");
	int64_t runs[6];
	for (size_t i = 0; i < ARRAY_LEN(runs); i++) {
		char sha[16];
		snprintf(sha, sizeof sha, "s%zu", i);
		runs[i] = run_start(h, p, sha);
	}
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	int n_turns_running = 0;
	for (size_t i = 0; i < ARRAY_LEN(runs);) {
		if (is_run_over(h, runs[i])) {
			i++;
			continue;
		}
		if (mono_ms() > deadline)
			fail_msg("run %lld did not end", (long long)runs[i]);
		loop_once(h);
		size_t running = scheduler_running_stages(h->a.sched);
		sqlite3 *db = raw_db(h);
		int64_t groups =
		    raw_count(db, "SELECT count(*) FROM stage_procs", NULL, NULL, NULL);
		sqlite3_close(db);
		if ((size_t)groups < running)
			fail_msg("%zu stage(s) running but %lld process group(s) committed",
				 running, (long long)groups);
		n_turns_running += running > 0;
	}
	probe_remove(&pr);
	assert_true(n_turns_running > 0);
	assert_int_equal(pr.n_started, 12);
	assert_int_equal(pr.n_unrecorded, 0);
	assert_true(h->max_running_seen <= 3);
	sqlite3 *db = raw_db(h);
	assert_int_equal(raw_count(db,
				   "SELECT count(*) FROM stage_attempts WHERE status = 'succeeded'",
				   NULL, NULL, NULL),
			 12);
	assert_int_equal(raw_count(db, "SELECT count(*) FROM stage_procs", NULL, NULL, NULL), 0);
	sqlite3_close(db);
}

/*
 * A pass begins a waiting run only while a slot of max_parallel is free:
 * with 12 runs queued on 2 slots, never more than 2 runs have left the
 * queue (in the store, or as pipelinerun.started CDEvents), and all of them
 * get their turn, oldest first.
 */
static void test_runs_leave_the_queue_when_a_slot_is_free(void **state)
{
	struct harness *h = *state;
	agent_build(h, 2);
	struct pipeline *p =
	    pipeline_add(h, "name: one\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: only, uses: shell, with: { run: 'sleep 0.05' } }\n");
	int64_t runs[12];
	for (size_t i = 0; i < ARRAY_LEN(runs); i++) {
		char sha[16];
		snprintf(sha, sizeof sha, "s%zu", i);
		runs[i] = run_start(h, p, sha);
	}
	int64_t deadline = mono_ms() + RUN_TIMEOUT_MS;
	int64_t most_begun = 0;
	for (;;) {
		loop_once(h);
		sqlite3 *db = raw_db(h);
		int64_t begun = raw_count(db, "SELECT count(*) FROM runs WHERE status = 'running'",
					  NULL, NULL, NULL);
		int64_t started =
		    raw_count(db,
			      "SELECT count(*) FROM outbox WHERE CAST(value AS TEXT) LIKE "
			      "'%dev.cdevents.pipelinerun.started%'",
			      NULL, NULL, NULL);
		int64_t finished =
		    raw_count(db,
			      "SELECT count(*) FROM outbox WHERE CAST(value AS TEXT) LIKE "
			      "'%dev.cdevents.pipelinerun.finished%'",
			      NULL, NULL, NULL);
		int64_t queued = raw_count(db, "SELECT count(*) FROM runs WHERE status = 'queued'",
					   NULL, NULL, NULL);
		sqlite3_close(db);
		if (begun > 2 || started - finished > 2)
			fail_msg("%lld runs running, %lld started and not finished: max_parallel "
				 "is 2",
				 (long long)begun, (long long)(started - finished));
		if (begun > most_begun)
			most_begun = begun;
		if (queued == 0 && begun == 0)
			break;
		if (mono_ms() > deadline)
			fail_msg("%lld runs still queued", (long long)queued);
	}
	assert_int_equal(most_begun, 2);
	for (size_t i = 0; i < ARRAY_LEN(runs); i++)
		assert_string_equal(run_status(h, runs[i]), "succeeded");
	/* oldest first: each run started no later than the next one */
	for (size_t i = 0; i + 1 < ARRAY_LEN(runs); i++) {
		json_t *a = run_json(h, runs[i]);
		json_t *b = run_json(h, runs[i + 1]);
		const char *sa =
		    json_string_value(json_object_get(stage_of(a, "only"), "started_at"));
		const char *sb =
		    json_string_value(json_object_get(stage_of(b, "only"), "started_at"));
		assert_non_null(sa);
		assert_non_null(sb);
		assert_true(strcmp(sa, sb) <= 0);
		json_decref(a);
		json_decref(b);
	}
}

/*
 * A plugin standing in for the shell whose start() ends the stage at once
 * (stage "bad" fails, any other succeeds) and then, in the same callback,
 * cancels the run: the cancel arrives after the last stage ended but before
 * the scheduler's next pass records that end, deterministically.
 */
struct racer {
	const struct drover_host *host;
	struct loaded_plugin *lp;
	const struct drover_plugin *shell_desc;
	void *shell_state;
	struct drover_plugin desc;
	struct harness *h;
	int64_t run_id;
	int cancel_rc;
	int n_cancels;
};

static int racer_start(void *state, struct drover_stage *stage)
{
	struct racer *r = state;
	bool is_bad = strcmp(r->host->stage_name(stage), "bad") == 0;
	r->host->done(stage, is_bad ? DROVER_FAILED : DROVER_SUCCEEDED, is_bad ? "boom" : NULL);
	r->cancel_rc = scheduler_run_cancel(r->h->a.sched, r->run_id, "late cancel");
	r->n_cancels++;
	return 0;
}

static void racer_install(struct harness *h, struct racer *r)
{
	memset(r, 0, sizeof *r);
	r->h = h;
	r->host = scheduler_host_services();
	r->lp = (struct loaded_plugin *)plugin_host_find(h->a.plugins, "shell");
	assert_non_null(r->lp);
	r->shell_desc = r->lp->desc;
	r->shell_state = r->lp->state;
	r->desc = *r->shell_desc;
	r->desc.start = racer_start;
	r->lp->desc = &r->desc;
	r->lp->state = r;
}

static void racer_remove(struct racer *r)
{
	r->lp->desc = r->shell_desc;
	r->lp->state = r->shell_state;
}

/*
 * A cancel after the last stage ended, before that end is recorded: the run
 * ends with the stages' true result (succeeded, or failed) and the cancel
 * answers "already finished" (-2). A stage whose failure its retry policy
 * would run again has not ended for good: that cancel applies (0), and
 * stops the retry.
 */
static void test_cancel_after_last_stage_ended(void **state)
{
	struct harness *h = *state;
	agent_build(h, 2);
	struct racer r;
	racer_install(h, &r);
	struct pipeline *ok =
	    pipeline_add(h, "name: ok\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: only, uses: shell, with: { run: 'true' } }\n");
	struct pipeline *bad =
	    pipeline_add(h, "name: bad\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: bad, uses: shell, with: { run: 'false' } }\n");
	struct pipeline *retried =
	    pipeline_add(h, "name: retried\n"
			    "on: { push: {} }\n"
			    "checkout: false\n"
			    "stages:\n"
			    "  - { name: bad, uses: shell, retry: { attempts: 2, delay: 1s }, "
			    "with: { run: 'false' } }\n");

	r.run_id = run_start(h, ok, "one");
	json_t *j = run_wait(h, r.run_id);
	assert_int_equal(r.n_cancels, 1);
	assert_int_equal(r.cancel_rc, -2);
	assert_run_status(j, "succeeded");
	assert_stage(j, "only", "succeeded", 1);
	json_decref(j);

	r.run_id = run_start(h, bad, "two");
	j = run_wait(h, r.run_id);
	assert_int_equal(r.cancel_rc, -2);
	assert_run_status(j, "failed");
	assert_stage(j, "bad", "failed", 1);
	assert_string_equal(stage_summary(j, "bad"), "boom");
	json_decref(j);

	r.run_id = run_start(h, retried, "three");
	j = run_wait(h, r.run_id);
	assert_int_equal(r.n_cancels, 3);
	assert_int_equal(r.cancel_rc, 0);
	assert_run_status(j, "cancelled");
	assert_stage(j, "bad", "failed", 1);
	json_decref(j);
	racer_remove(&r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    T(test_dag_order),
	    T(test_max_parallel_one_never_overlaps),
	    T(test_max_parallel_two),
	    T(test_max_parallel_across_runs),
	    T(test_failure_skips_dependents),
	    T(test_run_status_error),
	    T(test_run_status_failed_over_error),
	    T(test_stage_program_missing),
	    T(test_retry_until_third_attempt),
	    T(test_retry_exhausted),
	    T(test_timeout),
	    T(test_timeout_term_ignored),
	    T(test_timeout_then_retry),
	    T(test_outputs),
	    T(test_outputs_empty_file),
	    T(test_environment),
	    T(test_cancel_in_progress),
	    T(test_cancel_in_progress_queued),
	    T(test_cancel_during_retry_delay),
	    T(test_run_cancel),
	    T(test_cancel_after_last_stage_ended),
	    T(test_concurrency_group_queues),
	    T(test_lock),
	    T(test_recover_retries_interrupted_stage),
	    T(test_recover_without_retries_fails),
	    T(test_recover_resumes_remote_stage),
	    T(test_drain_then_recover),
	    T(test_drain_kills_after_grace),
	    T(test_outbox_cdevents),
	    T(test_notify_plugins),
	    T(test_workspace_cleanup),
	    T(test_run_files),
	    T(test_checkout),
	    T(test_recover_sweeps_old_workspaces),
	    T(test_take_down_with_running_stage),
	    T(test_take_down_with_kept_workspace),
	    T(test_pass_records_before_it_acts),
	    T(test_runs_leave_the_queue_when_a_slot_is_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
