/*
 * Tests for the status plugin (build/plugins/status.so) through a recording
 * host table: what each git host is sent (URL, headers, body, GitLab and
 * Azure DevOps included), one status in flight per commit and in order,
 * back-off on 503 and on a 429's Retry-After, a 422 logged and dropped, no
 * token in any log line, a stop with statuses still waiting, the counters
 * on the host's metric services, and the flush the agent's stop waits for
 * (ended by an empty queue, by a back-off past the grace, by the grace).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util.h"

#include <dlfcn.h>
#include <drover/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GL_TOKEN "glpat-unit-SECRET"
#define GH_TOKEN "ghp_unitSECRET"
#define AZ_TOKEN "azpat-unit-SECRET"
#define SHA "0123456789abcdef0123456789abcdef01234567"
#define SHA2 "fedcba9876543210fedcba9876543210fedcba98"

struct request {
	char *url, *body, *headers; /* headers: "\n"-joined */
	drover_http_done_fn done;
	void *arg;
	bool is_answered;
};

struct timer {
	int64_t delay_ms;
	void (*cb)(void *arg);
	void *arg;
	bool is_pending;
};

/* A series a plugin moved: "family|value|value" → its value. */
struct series {
	char *key;
	double value;
};

struct fake {
	struct drover_host host; /* first: ctx points at the fake */
	struct family {
		char *name;
		size_t n_labels;
	} families[8]; /* what the plugin registered; a handle is &families[i] */
	size_t n_families;
	struct series series[64];
	size_t n_series;
	int n_flushed; /* calls of drain's flushed */
	struct request req[64];
	size_t n_req;
	struct timer timers[64];
	size_t n_timers;
	struct strbuf log;
	void *dl;
	const struct drover_plugin *plugin;
	void *state;
};

static int fake_http(void *ctx, const struct drover_http_request *r, drover_http_done_fn done,
		     void *arg)
{
	struct fake *f = ctx;
	assert_true(f->n_req < 64);
	assert_string_equal(r->method, "POST");
	struct request *q = &f->req[f->n_req++];
	q->url = xstrdup(r->url);
	q->body = xstrndup(r->body, r->body_len);
	struct strbuf sb;
	strbuf_init(&sb);
	for (const char *const *h = r->headers; *h != NULL; h++)
		strbuf_addf(&sb, "%s\n", *h);
	q->headers = strbuf_detach(&sb);
	q->done = done;
	q->arg = arg;
	return 0;
}

static struct drover_timer *fake_timer_start(void *ctx, int64_t delay_ms, void (*cb)(void *),
					     void *arg)
{
	struct fake *f = ctx;
	assert_true(f->n_timers < 64);
	struct timer *t = &f->timers[f->n_timers++];
	*t = (struct timer){delay_ms, cb, arg, true};
	return (struct drover_timer *)t;
}

static void fake_timer_cancel(void *ctx, struct drover_timer *t)
{
	(void)ctx;
	if (t != NULL)
		((struct timer *)t)->is_pending = false;
}

static void fake_log(void *ctx, enum drover_log_level level, const char *fmt, ...)
{
	(void)level;
	struct fake *f = ctx;
	va_list ap;
	va_start(ap, fmt);
	char *line = xvasprintf(fmt, ap);
	va_end(ap);
	strbuf_addf(&f->log, "%s\n", line);
	free(line);
}

static struct drover_metric *fake_metric_new(void *ctx, const char *plugin,
					     enum drover_metric_type type, const char *name,
					     const char *help, const char *const *labels)
{
	(void)type, (void)help;
	struct fake *f = ctx;
	assert_string_equal(plugin, "status");
	assert_true(f->n_families < 8);
	struct family *fam = &f->families[f->n_families++];
	fam->name = xstrdup(name);
	fam->n_labels = 0;
	while (labels != NULL && labels[fam->n_labels] != NULL)
		fam->n_labels++;
	return (struct drover_metric *)fam;
}

/* The series of family m with these label values. */
static struct series *fake_series(struct fake *f, struct drover_metric *m,
				  const char *const *values)
{
	const struct family *fam = (const struct family *)m;
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, fam->name);
	for (size_t i = 0; i < fam->n_labels; i++)
		strbuf_addf(&sb, "|%s", values[i]);
	char *key = strbuf_detach(&sb);
	for (size_t i = 0; i < f->n_series; i++) {
		if (strcmp(f->series[i].key, key) == 0) {
			free(key);
			return &f->series[i];
		}
	}
	assert_true(f->n_series < 64);
	f->series[f->n_series] = (struct series){key, 0};
	return &f->series[f->n_series++];
}

static void fake_metric_add(void *ctx, struct drover_metric *m, const char *const *values,
			    double delta)
{
	fake_series(ctx, m, values)->value += delta;
}

static void fake_metric_set(void *ctx, struct drover_metric *m, const char *const *values,
			    double value)
{
	fake_series(ctx, m, values)->value = value;
}

/* The value of a series by its key; fails when the plugin never moved it. */
static double metric_value(struct fake *f, const char *key)
{
	for (size_t i = 0; i < f->n_series; i++)
		if (strcmp(f->series[i].key, key) == 0)
			return f->series[i].value;
	fail_msg("no series %s", key);
	return -1;
}

static void on_flushed(void *arg)
{
	struct fake *f = arg;
	f->n_flushed++;
}

/* Timer t fires (after its delay, really waited). */
static void fire(struct timer *t)
{
	assert_true(t->is_pending);
	usleep((useconds_t)(t->delay_ms + 5) * 1000);
	t->is_pending = false;
	t->cb(t->arg);
}

/* The last pending timer fires. */
static void fire_timer(struct fake *f)
{
	for (size_t i = f->n_timers; i-- > 0;) {
		if (f->timers[i].is_pending) {
			fire(&f->timers[i]);
			return;
		}
	}
	fail_msg("no timer pending");
}

static void answer(struct fake *f, size_t i, int status, const char *header_name,
		   const char *header_value, const char *body)
{
	struct request *q = &f->req[i];
	assert_false(q->is_answered);
	q->is_answered = true;
	struct drover_http_header h = {header_name, header_value};
	struct drover_http_response res = {.status = status,
					   .error = status == 0 ? "Couldn't connect" : NULL,
					   .is_cancelled = status == -1,
					   .body = body,
					   .body_len = strlen(body),
					   .headers = &h,
					   .n_headers = header_name != NULL ? 1 : 0};
	if (status == -1)
		res.status = 0;
	q->done(q->arg, &res);
}

static int setup(void **state)
{
	struct fake *f = xcalloc(1, sizeof *f);
	f->host = (struct drover_host){.abi = DROVER_PLUGIN_ABI,
				       .size = sizeof(struct drover_host),
				       .ctx = f,
				       .http_request = fake_http,
				       .timer_start = fake_timer_start,
				       .timer_cancel = fake_timer_cancel,
				       .plugin_log = fake_log,
				       .metric_new = fake_metric_new,
				       .metric_add = fake_metric_add,
				       .metric_set = fake_metric_set};
	strbuf_init(&f->log);
	f->dl = dlopen(BUILD_DIR "/plugins/status.so", RTLD_NOW | RTLD_LOCAL);
	assert_non_null(f->dl);
	drover_plugin_entry_fn entry;
	*(void **)&entry = dlsym(f->dl, "drover_plugin_entry");
	f->plugin = entry();
	setenv("TEST_STATUS_GL", GL_TOKEN, 1);
	setenv("TEST_STATUS_GH", GH_TOKEN, 1);
	setenv("TEST_STATUS_AZ", AZ_TOKEN, 1);
	json_t *cfg =
	    json_pack("{s:s,s:i,s:i,s:i,s:{s:s,s:s},s:{s:s,s:s},s:{s:s}}", "target_url",
		      "https://d.example/r/{run}", "retry_initial_ms", 20, "retry_max_ms", 40,
		      "stop_flush_ms", 300, "gitlab", "api_url", "http://gl.example/", "token_env",
		      "TEST_STATUS_GL", "github", "api_url", "http://gh.example", "token_env",
		      "TEST_STATUS_GH", "azure-devops", "token_env", "TEST_STATUS_AZ");
	assert_int_equal(f->plugin->init(&f->host, cfg, &f->state), 0);
	json_decref(cfg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	if (f->plugin != NULL)
		f->plugin->fini(f->state);
	/* No token in any line the plugin logged, from init to fini. */
	assert_null(strstr(f->log.data, "SECRET"));
	for (size_t i = 0; i < f->n_req; i++) {
		free(f->req[i].url);
		free(f->req[i].body);
		free(f->req[i].headers);
	}
	strbuf_free(&f->log);
	for (size_t i = 0; i < f->n_families; i++)
		free(f->families[i].name);
	for (size_t i = 0; i < f->n_series; i++)
		free(f->series[i].key);
	dlclose(f->dl);
	free(f);
	return 0;
}

/* A run event as report.c hands it to notify plugins. */
static void notify(struct fake *f, const char *source, const char *repo, const char *sha, int pr,
		   const char *stage, const char *phase, const char *status, const char *outcome,
		   const char *errors)
{
	json_t *content = json_object();
	if (outcome != NULL)
		json_object_set_new(content, "outcome", json_string(outcome));
	if (errors != NULL)
		json_object_set_new(content, "errors", json_string(errors));
	json_t *event = json_pack("{s:s,s:s,s:s}", "source", source, "repo", repo, "clone_url",
				  "https://acme@dev.azure.com/acme/Proj/_git/repo");
	json_object_set_new(event, "pr", pr > 0 ? json_pack("{s:i}", "number", pr) : json_null());
	json_t *ev =
	    json_pack("{s:s,s:{s:{s:o}},s:{s:i,s:s,s:s?,s:s,s:s,s:s,s:s,s:o}}", "type",
		      "dev.cdevents.x", "data", "subject", "content", content, "drover", "run", 42,
		      "pipeline", "pr", "stage", stage, "phase", phase, "status", status, "sha",
		      sha, "url", "http://127.0.0.1/api/v1/runs/42", "event", event);
	f->plugin->notify(f->state, ev);
	json_decref(ev);
}

static void test_gitlab_requests(void **state)
{
	struct fake *f = *state;
	notify(f, "gitlab", "group/sub/proj", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	assert_int_equal(f->n_req, 1);
	assert_string_equal(f->req[0].url,
			    "http://gl.example/api/v4/projects/group%2Fsub%2Fproj/statuses/" SHA);
	assert_non_null(strstr(f->req[0].headers, "PRIVATE-TOKEN: " GL_TOKEN "\n"));
	assert_non_null(strstr(f->req[0].headers, "Content-Type: application/json\n"));
	json_t *b = json_loads(f->req[0].body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "pending");
	assert_string_equal(json_string_value(json_object_get(b, "name")), "drover/pr");
	assert_string_equal(json_string_value(json_object_get(b, "target_url")),
			    "https://d.example/r/42");
	json_decref(b);
	notify(f, "gitlab", "group/sub/proj", SHA, 0, "unit", "started", "running", NULL, NULL);
	notify(f, "gitlab", "group/sub/proj", SHA, 0, "unit", "finished", "failed", "failure",
	       "exit code 3");
	/* One in flight per commit: the next waits for the first answer. */
	assert_int_equal(f->n_req, 1);
	answer(f, 0, 201, NULL, NULL, "{}");
	assert_int_equal(f->n_req, 2);
	assert_non_null(strstr(f->req[1].body, "\"state\":\"running\""));
	assert_non_null(strstr(f->req[1].body, "\"name\":\"drover/pr/unit\""));
	answer(f, 1, 201, NULL, NULL, "{}");
	assert_int_equal(f->n_req, 3);
	assert_non_null(strstr(f->req[2].body, "\"state\":\"failed\""));
	assert_non_null(strstr(f->req[2].body, "\"description\":\"failed: exit code 3\""));
	answer(f, 2, 201, NULL, NULL, "{}");
}

static void test_github_and_azure_requests(void **state)
{
	struct fake *f = *state;
	notify(f, "github", "octo/hello", SHA, 0, "unit", "finished", "cancelled", "cancel", NULL);
	notify(f, "azure-devops", "Proj/repo", SHA2, 52, NULL, "finished", "succeeded", "success",
	       NULL);
	notify(f, "drover", "octo/hello", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	/* Two commits: both go at once; the drover-sourced event goes nowhere. */
	assert_int_equal(f->n_req, 2);
	assert_string_equal(f->req[0].url, "http://gh.example/repos/octo/hello/statuses/" SHA);
	assert_non_null(strstr(f->req[0].headers, "Authorization: Bearer " GH_TOKEN "\n"));
	assert_non_null(strstr(f->req[0].headers, "Accept: application/vnd.github+json\n"));
	assert_non_null(strstr(f->req[0].headers, "X-GitHub-Api-Version: 2022-11-28\n"));
	assert_non_null(strstr(f->req[0].body, "\"state\":\"error\""));
	assert_non_null(strstr(f->req[0].body, "\"context\":\"drover/pr/unit\""));
	/* The organization comes from the clone URL (its user name dropped). */
	assert_string_equal(f->req[1].url, "https://dev.azure.com/acme/Proj/_apis/git/repositories/"
					   "repo/pullRequests/52/statuses?api-version=7.1");
	/* base64(":azpat-unit-SECRET") */
	assert_non_null(
	    strstr(f->req[1].headers, "Authorization: Basic OmF6cGF0LXVuaXQtU0VDUkVU\n"));
	json_t *b = json_loads(f->req[1].body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(b, "state")), "succeeded");
	json_t *ctx = json_object_get(b, "context");
	assert_string_equal(json_string_value(json_object_get(ctx, "genre")), "drover");
	assert_string_equal(json_string_value(json_object_get(ctx, "name")), "pr");
	assert_string_equal(json_string_value(json_object_get(b, "targetUrl")),
			    "https://d.example/r/42");
	json_decref(b);
	answer(f, 0, 201, NULL, NULL, "{}");
	answer(f, 1, 200, NULL, NULL, "{}");
}

static void test_retry_then_refusal(void **state)
{
	struct fake *f = *state;
	notify(f, "github", "octo/hello", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	notify(f, "github", "octo/hello", SHA, 0, NULL, "started", "running", NULL, NULL);
	answer(f, 0, 503, NULL, NULL, "{\"message\":\"Service Unavailable\"}");
	/* Nothing new before the back-off ends; then the same status again. */
	assert_int_equal(f->n_req, 1);
	fire_timer(f);
	assert_int_equal(f->n_req, 2);
	assert_string_equal(f->req[1].body, f->req[0].body);
	answer(f, 1, 0, NULL, NULL, ""); /* transport error */
	fire_timer(f);
	assert_int_equal(f->n_req, 3);
	answer(f, 2, 429, "retry-after", "1", "{}");
	/* The host asked for a second: the wait is that, not the 40 ms maximum. */
	assert_int_equal(f->n_req, 3);
	assert_true(f->timers[f->n_timers - 1].delay_ms >= 900);
	fire_timer(f);
	assert_int_equal(f->n_req, 4);
	assert_string_equal(f->req[3].body, f->req[0].body);
	answer(f, 3, 422, NULL, NULL, "{\"message\":\"Validation Failed\"}");
	assert_non_null(
	    strstr(f->log.data, "github refused drover/pr (HTTP 422: Validation Failed)"));
	/* Refused for good: dropped, and the next status goes at once. */
	assert_int_equal(f->n_req, 5);
	assert_non_null(strstr(f->req[4].body, "\"description\":\"running\""));
	answer(f, 4, 201, NULL, NULL, "{}");
	assert_non_null(strstr(f->log.data, "github accepts statuses again after 3"));
	/* Each answer counted under its outcome, on the host's metrics. */
	assert_int_equal(metric_value(f, "queued_total|github"), 2);
	assert_int_equal(metric_value(f, "deliveries_total|github|retried"), 2);
	assert_int_equal(metric_value(f, "deliveries_total|github|throttled"), 1);
	assert_int_equal(metric_value(f, "deliveries_total|github|refused"), 1);
	assert_int_equal(metric_value(f, "deliveries_total|github|delivered"), 1);
	assert_int_equal(metric_value(f, "deliveries_total|gitlab|delivered"), 0);
	assert_int_equal(metric_value(f, "discarded_total|superseded"), 0);
	assert_int_equal(metric_value(f, "queue_depth"), 0);
}

static void test_wants_notify_only_with_a_host(void **state)
{
	struct fake *f = *state;
	assert_true(f->plugin->wants_notify(f->state));
	void *bare = NULL;
	assert_int_equal(f->plugin->init(&f->host, NULL, &bare), 0);
	assert_false(f->plugin->wants_notify(bare));
	f->plugin->fini(bare);
	json_t *cfg = json_pack("{s:i}", "max_queue", 5);
	assert_int_equal(f->plugin->init(&f->host, cfg, &bare), 0);
	assert_false(f->plugin->wants_notify(bare));
	f->plugin->fini(bare);
	json_decref(cfg);
}

static void test_stop_flushes_the_queue(void **state)
{
	struct fake *f = *state;
	notify(f, "github", "octo/hello", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	notify(f, "github", "octo/hello", SHA, 0, NULL, "finished", "succeeded", "success", NULL);
	assert_int_equal(metric_value(f, "queue_depth"), 2);
	answer(f, 0, 503, NULL, NULL, "{}");
	struct timer *back_off = &f->timers[f->n_timers - 1];
	f->plugin->drain(f->state, on_flushed, f);
	assert_int_equal(f->n_flushed, 0);
	assert_non_null(strstr(f->log.data, "2 status(es) waiting; up to 300 ms"));
	struct timer *grace = &f->timers[f->n_timers - 1];
	assert_int_equal(grace->delay_ms, 300);
	/* The back-off ends within the grace: the retry goes, then the next. */
	fire(back_off);
	assert_int_equal(f->n_req, 2);
	answer(f, 1, 201, NULL, NULL, "{}");
	assert_int_equal(f->n_flushed, 0);
	assert_int_equal(f->n_req, 3);
	answer(f, 2, 201, NULL, NULL, "{}");
	assert_int_equal(f->n_flushed, 1);
	assert_false(grace->is_pending);
	assert_non_null(strstr(f->log.data, "stopping: every status delivered"));
	assert_int_equal(metric_value(f, "queue_depth"), 0);
}

static void test_stop_gives_up_past_the_grace(void **state)
{
	struct fake *f = *state;
	notify(f, "github", "octo/hello", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	notify(f, "gitlab", "group/proj", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	/* GitHub asks for a second, longer than the 300 ms grace: no wait for it. */
	answer(f, 0, 429, "retry-after", "1", "{}");
	f->plugin->drain(f->state, on_flushed, f);
	assert_int_equal(f->n_flushed, 0); /* GitLab's is in flight */
	answer(f, 1, 201, NULL, NULL, "{}");
	assert_int_equal(f->n_flushed, 1);
	assert_non_null(
	    strstr(f->log.data, "1 status(es) cannot be delivered within stop_flush_ms"));
}

static void test_stop_grace_ends_the_wait(void **state)
{
	struct fake *f = *state;
	notify(f, "github", "octo/hello", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	f->plugin->drain(f->state, on_flushed, f);
	/* The host never answers: the grace (the only timer) ends the wait. */
	assert_int_equal(f->n_flushed, 0);
	fire_timer(f);
	assert_int_equal(f->n_flushed, 1);
	/* Then the agent's HTTP client cancels the request, fini drops the status. */
	answer(f, 0, -1, NULL, NULL, "");
	f->plugin->fini(f->state);
	f->plugin = NULL;
	assert_non_null(strstr(f->log.data, "stopping: 1 status(es) undelivered"));
}

static void test_stop_with_statuses_waiting(void **state)
{
	struct fake *f = *state;
	notify(f, "github", "octo/hello", SHA, 0, NULL, "queued", "queued", NULL, NULL);
	notify(f, "github", "octo/hello", SHA, 0, NULL, "started", "running", NULL, NULL);
	/* The agent stops: its HTTP client cancels what is in flight. */
	answer(f, 0, -1, NULL, NULL, "");
	assert_int_equal(f->n_req, 1);
	notify(f, "github", "octo/hello", SHA, 0, NULL, "finished", "succeeded", "success", NULL);
	assert_int_equal(f->n_req, 1);
	f->plugin->fini(f->state);
	f->plugin = NULL;
	assert_non_null(strstr(f->log.data, "stopping: 2 status(es) undelivered"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_gitlab_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_github_and_azure_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retry_then_refusal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_with_statuses_waiting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wants_notify_only_with_a_host, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_flushes_the_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_gives_up_past_the_grace, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_grace_ends_the_wait, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
