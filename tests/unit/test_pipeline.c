/*
 * Tests for pipeline: loading good files, every kind of validation error
 * with its file:line, the JSON round trip, directory loading, trigger
 * matching with its reasons, placeholder expansion and retry arithmetic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pipeline.h"
#include "util.h"

#define GOOD FIXTURES_DIR "/pipelines/good"
#define BAD FIXTURES_DIR "/pipelines/bad"

/* ---- helpers ---- */

static void diags_dump(const struct diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		print_message("  %s:%d: %s\n", d->items[i].file, d->items[i].line,
			      d->items[i].message);
}

/* Fails unless some diagnostic is at file:line and contains needle. */
static void assert_diag(const struct diags *d, const char *file, int line, const char *needle)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->items[i].file, file) == 0 && d->items[i].line == line &&
		    strstr(d->items[i].message, needle) != NULL)
			return;
	diags_dump(d);
	fail_msg("no diagnostic %s:%d containing \"%s\"", file, line, needle);
}

/* Loads yaml that must fail; the caller frees the diagnostics. */
static struct diags load_errors(const char *yaml)
{
	struct diags d = {0};
	struct pipeline *p = pipeline_load_string(yaml, strlen(yaml), "t.yml", NULL, &d);
	if (p != NULL) {
		pipeline_free(p);
		fail_msg("this should not load:\n%s", yaml);
	}
	assert_true(d.n > 0);
	return d;
}

/* One error expected at line with needle in it. */
static void expect_error(const char *yaml, int line, const char *needle)
{
	struct diags d = load_errors(yaml);
	assert_diag(&d, "t.yml", line, needle);
	diags_free(&d);
}

static struct pipeline *load_ok(const char *yaml)
{
	struct diags d = {0};
	struct pipeline *p = pipeline_load_string(yaml, strlen(yaml), "t.yml", NULL, &d);
	if (p == NULL || d.n != 0) {
		diags_dump(&d);
		fail_msg("this should load:\n%s", yaml);
	}
	diags_free(&d);
	return p;
}

static struct pipeline *load_file_ok(const char *path)
{
	struct diags d = {0};
	struct pipeline *p = pipeline_load_file(path, NULL, &d);
	if (p == NULL || d.n != 0) {
		diags_dump(&d);
		fail_msg("%s should load", path);
	}
	diags_free(&d);
	return p;
}

static bool glob_list_equal(const struct glob_list *a, const struct glob_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->items[i], b->items[i]) != 0)
			return false;
	return true;
}

/* Every field of two pipelines, but file and definition identity. */
static void assert_pipelines_equal(const struct pipeline *a, const struct pipeline *b)
{
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->push.is_enabled, b->push.is_enabled);
	assert_true(glob_list_equal(&a->push.branches, &b->push.branches));
	assert_true(glob_list_equal(&a->push.branches_ignore, &b->push.branches_ignore));
	assert_true(glob_list_equal(&a->push.tags, &b->push.tags));
	assert_true(glob_list_equal(&a->push.paths, &b->push.paths));
	assert_true(glob_list_equal(&a->push.paths_ignore, &b->push.paths_ignore));
	assert_int_equal(a->push.include_deleted, b->push.include_deleted);
	assert_int_equal(a->pull_request.is_enabled, b->pull_request.is_enabled);
	assert_true(glob_list_equal(&a->pull_request.branches, &b->pull_request.branches));
	assert_true(glob_list_equal(&a->pull_request.actions, &b->pull_request.actions));
	assert_true(glob_list_equal(&a->pull_request.paths, &b->pull_request.paths));
	assert_true(glob_list_equal(&a->pull_request.paths_ignore, &b->pull_request.paths_ignore));
	assert_int_equal(a->drift.is_enabled, b->drift.is_enabled);
	assert_true(glob_list_equal(&a->drift.models, &b->drift.models));
	assert_true(glob_list_equal(&a->drift.environments, &b->drift.environments));
	assert_int_equal(a->drift.min_severity, b->drift.min_severity);
	assert_int_equal(a->concurrency_group == NULL, b->concurrency_group == NULL);
	if (a->concurrency_group != NULL)
		assert_string_equal(a->concurrency_group, b->concurrency_group);
	assert_int_equal(a->cancel_in_progress, b->cancel_in_progress);
	assert_int_equal(a->lock == NULL, b->lock == NULL);
	if (a->lock != NULL)
		assert_string_equal(a->lock, b->lock);
	assert_int_equal(a->checkout, b->checkout);
	assert_int_equal(a->n_stages, b->n_stages);
	for (size_t i = 0; i < a->n_stages; i++) {
		const struct pipeline_stage *x = &a->stages[i], *y = &b->stages[i];
		assert_string_equal(x->name, y->name);
		assert_string_equal(x->uses, y->uses);
		assert_true(json_equal(x->with, y->with));
		assert_int_equal(x->n_needs, y->n_needs);
		for (size_t j = 0; j < x->n_needs; j++) {
			assert_string_equal(x->needs[j], y->needs[j]);
			assert_int_equal(x->needs_idx[j], y->needs_idx[j]);
		}
		assert_int_equal(x->timeout_ms, y->timeout_ms);
		assert_int_equal(x->retry.attempts, y->retry.attempts);
		assert_int_equal(x->retry.delay_ms, y->retry.delay_ms);
		assert_true(x->retry.backoff == y->retry.backoff);
		assert_int_equal(x->retry.max_delay_ms, y->retry.max_delay_ms);
	}
	assert_true(json_equal(a->definition, b->definition));
}

/* ---- good files ---- */

static void test_load_full(void **state)
{
	(void)state;
	struct pipeline *p = load_file_ok(GOOD "/full.yml");
	assert_string_equal(p->name, "full.pipeline-1");
	assert_string_equal(p->file, GOOD "/full.yml");
	assert_true(p->push.is_enabled);
	assert_int_equal(p->push.branches.n, 2);
	assert_string_equal(p->push.branches.items[1], "release/*");
	assert_string_equal(p->push.branches_ignore.items[0], "release/old-*");
	assert_string_equal(p->push.tags.items[0], "v*");
	assert_int_equal(p->push.paths.n, 2);
	assert_string_equal(p->push.paths_ignore.items[0], "**/*.md");
	assert_true(p->push.include_deleted);
	assert_true(p->pull_request.is_enabled);
	assert_int_equal(p->pull_request.actions.n, 3);
	assert_string_equal(p->pull_request.actions.items[2], "merged");
	assert_true(p->drift.is_enabled);
	assert_int_equal(p->drift.models.n, 2);
	assert_string_equal(p->drift.environments.items[0], "prod");
	assert_int_equal(p->drift.min_severity, SEVERITY_CRITICAL);
	assert_string_equal(p->concurrency_group, "full-{repo}-{branch}-{pr}");
	assert_true(p->cancel_in_progress);
	assert_string_equal(p->lock, "deploy-{env}-{model}-{sha}");
	assert_false(p->checkout);

	assert_int_equal(p->n_stages, 3);
	const struct pipeline_stage *unit = &p->stages[0];
	assert_string_equal(unit->name, "unit");
	assert_string_equal(unit->uses, "shell");
	assert_string_equal(json_string_value(json_object_get(unit->with, "run")),
			    "echo \"unit on $DROVER_SHA\"\n");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(unit->with, "env"), "A")), "1");
	assert_int_equal(unit->timeout_ms, 10 * 60 * 1000);
	assert_int_equal(unit->retry.attempts, 0);
	assert_int_equal(unit->n_needs, 0);
	assert_int_equal(unit->line, 20);

	const struct pipeline_stage *it = &p->stages[1];
	assert_int_equal(it->timeout_ms, 90 * 60 * 1000);
	assert_int_equal(it->retry.attempts, 2);
	assert_int_equal(it->retry.delay_ms, 30000);
	assert_true(it->retry.backoff == 1.5);
	assert_int_equal(it->retry.max_delay_ms, 300000);
	assert_int_equal(it->n_needs, 1);
	assert_int_equal(it->needs_idx[0], 0);
	assert_int_equal(it->line, 27);

	const struct pipeline_stage *d = &p->stages[2];
	assert_int_equal(d->n_needs, 2);
	assert_int_equal(d->needs_idx[0], 0);
	assert_int_equal(d->needs_idx[1], 1);
	assert_int_equal(d->retry.attempts, 3); /* bare integer */
	assert_int_equal(d->retry.delay_ms, 10000);
	assert_true(d->retry.backoff == 2.0);
	assert_int_equal(d->retry.max_delay_ms, 600000);
	assert_int_equal(d->timeout_ms, 3600 * 1000);
	assert_int_equal(pipeline_stage_index(p, "deploy_all"), 2);
	assert_int_equal(pipeline_stage_index(p, "nope"), -1);
	pipeline_free(p);
}

static void test_load_defaults(void **state)
{
	(void)state;
	struct pipeline *p = load_file_ok(GOOD "/minimal.yml");
	assert_true(p->push.is_enabled);
	assert_false(p->pull_request.is_enabled);
	assert_false(p->drift.is_enabled);
	assert_int_equal(p->push.branches.n, 0);
	assert_false(p->push.include_deleted);
	assert_null(p->concurrency_group);
	assert_null(p->lock);
	assert_true(p->checkout);
	assert_int_equal(p->drift.min_severity, SEVERITY_WARNING);
	assert_int_equal(p->n_stages, 1);
	assert_true(json_is_object(p->stages[0].with));
	assert_int_equal(json_object_size(p->stages[0].with), 0);
	assert_int_equal(p->stages[0].timeout_ms, 3600 * 1000);
	assert_int_equal(p->stages[0].retry.attempts, 0);
	pipeline_free(p);

	p = load_file_ok(GOOD "/flow.yml");
	assert_true(p->drift.is_enabled);
	assert_false(p->push.is_enabled);
	assert_int_equal(p->stages[1].n_needs, 1); /* needs: a (a single name) */
	assert_int_equal(p->stages[1].needs_idx[0], 0);
	pipeline_free(p);

	/* `on` is a plain key, `push: {}` is enabled, numbers of seconds are durations */
	p = load_ok("name: x\n"
		    "on: { push: {}, pull_request: }\n"
		    "stages:\n"
		    "- name: a\n"
		    "  uses: shell\n"
		    "  timeout: 90\n"
		    "  retry: { attempts: 1, delay: 0 }\n");
	assert_true(p->push.is_enabled);
	assert_true(p->pull_request.is_enabled);
	assert_int_equal(p->stages[0].timeout_ms, 90000);
	assert_int_equal(p->stages[0].retry.delay_ms, 0);
	assert_int_equal(p->stages[0].line, 4);
	pipeline_free(p);

	/* diagnostics are optional */
	assert_null(pipeline_load_string("name: [", 7, "t.yml", NULL, NULL));
	assert_null(pipeline_load_file(BAD "/cycle.yml", NULL, NULL));
	json_t *arr = json_array();
	assert_null(pipeline_from_json(arr, NULL, NULL, NULL));
	json_decref(arr);
	struct pipeline_set set = {0};
	assert_int_equal(pipeline_set_load_dir(&set, FIXTURES_DIR "/pipelines/set", NULL, NULL), 0);
	assert_int_equal(set.n, 2);
	pipeline_set_free(&set);
	assert_int_equal(pipeline_set_load_dir(&set, "/nonexistent-dir", NULL, NULL), -1);

	/* no file name: "" */
	struct diags d = {0};
	const char *y = "name: x\non: {push: }\nstages: [{name: a, uses: shell}]\n";
	p = pipeline_load_string(y, strlen(y), NULL, NULL, &d);
	assert_non_null(p);
	assert_string_equal(p->file, "");
	pipeline_free(p);
}

/* ---- errors, each with its line ---- */

static bool catalog_has(void *arg, const char *name)
{
	(void)arg;
	return strcmp(name, "shell") == 0 || strcmp(name, "jobrun") == 0;
}

static void test_error_yaml(void **state)
{
	(void)state;
	expect_error("name: x\non:\n  push: { branches: [master }\nstages: []\n", 3,
		     "YAML syntax error");
	expect_error("name: x\n  bad indent: 1\n", 2, "YAML syntax error");
	expect_error("name: \"x\xff\"\n", 1, "YAML syntax error");
	expect_error("", 0, "empty");
	expect_error("# only a comment\n", 0, "empty");
	expect_error("name: a\n---\nname: b\n", 2, "exactly one YAML document");
	expect_error("- a\n- b\n", 1, "must be a mapping");
	expect_error("just text\n", 1, "must be a mapping");
	expect_error("name: x\nname: y\n", 2, "duplicate key 'name'");
	expect_error("name: x\non: &t { push: }\nstages: []\n", 2, "billion-laughs");
	expect_error("a: &x [1]\nb: *x\n", 2, "alias '*x'");
	expect_error("? [a]\n: 1\n", 1, "keys must be plain strings");
	expect_error("name: !!int abc\n", 1, "is not a valid");
	expect_error("name: x\nretry: 99999999999999999999999\n", 2, "out of range");

	/* nesting is bounded */
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, "a: ");
	for (int i = 0; i < 200; i++)
		strbuf_adds(&sb, "[");
	expect_error(sb.data, 1, "nested deeper");
	strbuf_free(&sb);

	/* size */
	size_t big = (1u << 20) + 10;
	char *text = xmalloc(big + 1);
	memset(text, '#', big);
	text[big] = '\0';
	struct diags d = {0};
	assert_null(pipeline_load_string(text, big, "t.yml", NULL, &d));
	assert_diag(&d, "t.yml", 0, "larger than 1 MiB");
	diags_free(&d);
	char path[] = "/tmp/drover-test-pipeline-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fwrite(text, 1, big, f);
	fclose(f);
	assert_null(pipeline_load_file(path, NULL, &d));
	assert_diag(&d, path, 0, "larger than 1 MiB");
	diags_free(&d);
	unlink(path);
	free(text);

	assert_null(pipeline_load_file(BAD "/does-not-exist.yml", NULL, &d));
	assert_diag(&d, BAD "/does-not-exist.yml", 0, "cannot read");
	diags_free(&d);
}

static void test_error_schema(void **state)
{
	(void)state;
	const char *stages = "stages: [{name: a, uses: shell}]\n";
	char *y;

	expect_error("on: {push: }\nstages: [{name: a, uses: shell}]\n", 1, "'name' is required");
	expect_error("name: [x]\non: {push: }\n", 1, "name: must be a string, not a list");
	expect_error("name: 12\n", 1, "name: must be a string, not an integer (quote it)");
	expect_error("name: a b\n", 1, "pipeline name 'a b' may use only");
	expect_error("name: x\nstages: []\n", 1, "'on' is required");
	expect_error("name: x\non: [push]\n", 2, "on: must be a mapping");
	expect_error("name: x\non: {}\n", 2, "on: needs at least one of push, pull_request, drift");
	expect_error("name: x\non:\n  push: true\n", 3, "on.push: must be a mapping");
	expect_error("name: x\non:\n  schedule: {}\n", 3,
		     "on.schedule: unknown key (allowed here: push, pull_request, drift)");
	expect_error("name: x\nextra: 1\n", 2, "extra: unknown key (allowed here: name, on,");
	expect_error("name: x\non:\n  push:\n    branch: [master]\n", 4,
		     "on.push.branch: unknown key (allowed here: branches, branches_ignore");
	expect_error("name: x\non:\n  push:\n    branches: {a: 1}\n", 4,
		     "on.push.branches: must be a list, not a mapping");
	expect_error("name: x\non:\n  push:\n    branches:\n      - master\n      - 1.0\n", 6,
		     "on.push.branches[1]: must be a string, not a number (quote it)");
	expect_error("name: x\non:\n  push:\n    tags: [\"v[0-9\"]\n", 4,
		     "on.push.tags[0]: bad pattern 'v[0-9'");
	expect_error("name: x\non:\n  push:\n    paths: [\"\"]\n", 4, "must not be empty");
	expect_error("name: x\non:\n  push: { deleted: yes }\n", 3,
		     "on.push.deleted: must be true or false, not a string");
	expect_error("name: x\non:\n  pull_request:\n    actions:\n      - opened\n      - merged\n"
		     "      - exploded\n",
		     7, "on.pull_request.actions[2]: unknown pull_request action 'exploded'");
	expect_error("name: x\non:\n  pull_request: { actions: closd }\n", 3,
		     "unknown pull_request action 'closd' (known: opened, synchronize");
	expect_error("name: x\non:\n  drift: { min_severity: high }\n", 3,
		     "on.drift.min_severity: unknown severity 'high' (known: info, warning, "
		     "critical)");
	expect_error("name: x\non:\n  drift: { models: [\"[\"] }\n", 3, "bad pattern '['");

	y = xasprintf("name: x\non: {push: }\nconcurrency: {cancel_in_progress: true}\n%s", stages);
	expect_error(y, 3, "concurrency: 'group' is required");
	free(y);
	y = xasprintf("name: x\non: {push: }\nconcurrency: \"g\"\n%s", stages);
	expect_error(y, 3, "concurrency: must be a mapping");
	free(y);
	y = xasprintf("name: x\non: {push: }\nconcurrency:\n  group: \"pr-{repo}-{pull}\"\n%s",
		      stages);
	expect_error(y, 4,
		     "concurrency.group: unknown placeholder '{pull}' (allowed: {repo} {branch} "
		     "{pr} {sha} {model} {env})");
	free(y);
	y = xasprintf("name: x\non: {push: }\nlock: \"deploy-{env\"\n%s", stages);
	expect_error(y, 3, "lock: '{' is never closed");
	free(y);
	y = xasprintf("name: x\non: {push: }\nlock: \"\"\n%s", stages);
	expect_error(y, 3, "lock: must not be empty");
	free(y);
	y = xasprintf("name: x\non: {push: }\nlock: {a: 1}\n%s", stages);
	expect_error(y, 3, "lock: must be a string");
	free(y);
	y = xasprintf("name: x\non: {push: }\ncheckout: 1\n%s", stages);
	expect_error(y, 3, "checkout: must be true or false, not an integer");
	free(y);
}

static void test_error_stages(void **state)
{
	(void)state;
	const char *head = "name: x\non: {push: }\n";
	char *y;
#define STAGES(text) (y = xasprintf("%s%s", head, text))

	expect_error(STAGES(""), 1, "'stages' is required");
	free(y);
	expect_error(STAGES("stages: []\n"), 3, "stages: must be a non-empty list");
	free(y);
	expect_error(STAGES("stages: {a: 1}\n"), 3, "stages: must be a non-empty list");
	free(y);
	expect_error(STAGES("stages:\n  - unit\n"), 4, "stages[0]: a stage must be a mapping");
	free(y);
	expect_error(STAGES("stages:\n  - uses: shell\n"), 4, "stages[0]: 'name' is required");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n"), 4, "stages[0]: 'uses' is required");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    run: make\n"), 6,
		     "stages[0].run: unknown key (allowed here: name, uses, with, needs, timeout, "
		     "retry)");
	free(y);
	expect_error(STAGES("stages:\n  - name: \"unit-{sha}\"\n    uses: shell\n"), 4,
		     "stages[0].name: stage name 'unit-{sha}' may use only A-Z a-z 0-9 _ -");
	free(y);
	expect_error(STAGES("stages:\n  - name: a.b\n    uses: shell\n"), 4, "may use only");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: Shell\n"), 5,
		     "stages[0].uses: plugin name 'Shell' may use only a-z 0-9 _ -");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    with: run\n"), 6,
		     "stages[0].with: must be a mapping, not a string");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    timeout: 0\n"), 6,
		     "stages[0].timeout: must be longer than zero");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    timeout: 10 minutes\n"), 6,
		     "stages[0].timeout: bad duration '10 minutes'");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    timeout: 1.5\n"), 6,
		     "stages[0].timeout: bad duration: a number");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    timeout: -5\n"), 6,
		     "bad duration");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry: 21\n"), 6,
		     "stages[0].retry: must be a whole number of retries from 0 to 20");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry: -1\n"), 6,
		     "must be a whole number of retries");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry: \"2\"\n"), 6,
		     "stages[0].retry: must be a number of retries or a mapping");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry:\n      delay: 1s\n"),
		     6, "stages[0].retry: 'attempts' is required");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry:\n      attempts: 1\n"
			    "      backoff: 0.5\n"),
		     8, "stages[0].retry.backoff: must be a number >= 1");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry:\n      attempts: 1\n"
			    "      delay: soon\n"),
		     8, "stages[0].retry.delay: bad duration 'soon'");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    retry:\n      attempts: 1\n"
			    "      jitter: true\n"),
		     8,
		     "stages[0].retry.jitter: unknown key (allowed here: attempts, delay, "
		     "backoff, max_delay)");
	free(y);

	/* names and needs */
	expect_error(STAGES("stages:\n  - {name: a, uses: shell}\n  - {name: b, uses: shell}\n"
			    "  - {name: a, uses: shell}\n"),
		     6, "stages[2].name: duplicate stage name 'a' (first at stages[0])");
	free(y);
	expect_error(STAGES("stages:\n  - {name: build-x, uses: shell}\n"
			    "  - {name: BUILD_X, uses: shell}\n"),
		     5, "both become DROVER_OUTPUT_BUILD_X_<KEY>");
	free(y);
	expect_error(STAGES("stages:\n  - name: a\n    uses: shell\n    needs:\n      - b\n"
			    "      - ghost\n  - {name: b, uses: shell}\n"),
		     8, "stages[0].needs[1]: needs unknown stage 'ghost'");
	free(y);
	expect_error(STAGES("stages:\n  - {name: a, uses: shell, needs: a}\n"), 4,
		     "stages[0].needs: stage 'a' needs itself");
	free(y);
	expect_error(STAGES("stages:\n  - {name: a, uses: shell}\n"
			    "  - {name: b, uses: shell, needs: [a, a]}\n"),
		     5, "stages[1].needs[1]: 'a' is listed twice");
	free(y);
	expect_error(STAGES("stages:\n  - {name: a, uses: shell, needs: [4]}\n"), 4,
		     "stages[0].needs[0]: must be a string");
	free(y);

	/* cycles name their stages */
	struct diags d = {0};
	assert_null(pipeline_load_file(BAD "/cycle.yml", NULL, &d));
	assert_diag(&d, BAD "/cycle.yml", 9, "needs cycle: a -> c -> b -> a");
	assert_diag(&d, BAD "/cycle.yml", 15, "stage 'd' needs itself");
	assert_int_equal(d.n, 2);
	diags_free(&d);
	expect_error(STAGES("stages:\n  - {name: a, uses: shell, needs: [b]}\n"
			    "  - {name: b, uses: shell, needs: [a]}\n"
			    "  - {name: c, uses: shell, needs: [a]}\n"),
		     5, "needs cycle: a -> b -> a");
	free(y);

	/* plugins, when a catalog is given */
	struct plugin_catalog catalog = {.has_plugin = catalog_has};
	const char *text = "name: x\non: {push: }\nstages:\n  - {name: a, uses: shell}\n"
			   "  - {name: b, uses: databricks}\n";
	assert_null(pipeline_load_string(text, strlen(text), "t.yml", &catalog, &d));
	assert_diag(&d, "t.yml", 5, "stages[1].uses: unknown plugin 'databricks'");
	assert_int_equal(d.n, 1);
	diags_free(&d);
	struct pipeline *p = pipeline_load_string(text, strlen(text), "t.yml", NULL, &d);
	assert_non_null(p);
	assert_int_equal(d.n, 0);
	pipeline_free(p);
#undef STAGES
}

/* Errors do not stop the check: every one in the file is reported. */
static void test_error_all_reported(void **state)
{
	(void)state;
	const char *f = BAD "/everything.yml";
	struct diags d = {0};
	assert_null(pipeline_load_file(f, NULL, &d));
	assert_diag(&d, f, 1, "pipeline name 'bad name!'");
	assert_diag(&d, f, 4, "on.push.branches[0]: bad pattern '[oops'");
	assert_diag(&d, f, 5, "on.push.wat: unknown key");
	assert_diag(&d, f, 6, "unknown pull_request action 'exploded'");
	assert_diag(&d, f, 7, "unknown severity 'apocalyptic'");
	assert_diag(&d, f, 8, "concurrency: 'group' is required");
	assert_diag(&d, f, 8, "concurrency.cancel_in_progress: must be true or false");
	assert_diag(&d, f, 9, "unknown placeholder '{planet}'");
	assert_diag(&d, f, 10, "checkout: must be true or false");
	assert_diag(&d, f, 11, "colour: unknown key");
	assert_diag(&d, f, 15, "stages[0].timeout: must be longer than zero");
	assert_diag(&d, f, 16, "duplicate stage name 'unit'");
	assert_diag(&d, f, 17, "plugin name 'Shell!'");
	assert_diag(&d, f, 18, "bad duration 'soon'");
	assert_diag(&d, f, 19, "retry.attempts: must be a whole number");
	assert_diag(&d, f, 19, "retry.backoff: must be a number >= 1");
	assert_diag(&d, f, 22, "needs unknown stage 'ghost'");
	assert_diag(&d, f, 23, "stages[2].with: must be a mapping");
	assert_int_equal(d.n, 18);
	diags_free(&d);

	assert_null(pipeline_load_file(BAD "/alias.yml", NULL, &d));
	assert_diag(&d, BAD "/alias.yml", 3, "anchor '&p' is not allowed");
	assert_diag(&d, BAD "/alias.yml", 4, "alias '*p' is not allowed");
	diags_free(&d);
	assert_null(pipeline_load_file(BAD "/syntax.yml", NULL, &d));
	assert_diag(&d, BAD "/syntax.yml", 3, "YAML syntax error");
	diags_free(&d);
	assert_null(pipeline_load_file(BAD "/two_docs.yml", NULL, &d));
	assert_diag(&d, BAD "/two_docs.yml", 4, "exactly one YAML document");
	diags_free(&d);
}

/* ---- definition round trip ---- */

static void round_trip(const struct pipeline *p)
{
	struct diags d = {0};
	struct pipeline *q = pipeline_from_json(p->definition, "stored", NULL, &d);
	assert_non_null(q);
	assert_int_equal(d.n, 0);
	assert_string_equal(q->file, "stored");
	assert_ptr_not_equal(q->definition, p->definition);
	assert_pipelines_equal(p, q);
	pipeline_free(q);
}

static void test_from_json(void **state)
{
	(void)state;
	static const char *const files[] = {GOOD "/full.yml",
					    GOOD "/minimal.yml",
					    GOOD "/flow.yml",
					    SOURCE_DIR "/pipelines/pr.yml",
					    SOURCE_DIR "/pipelines/release.yml",
					    SOURCE_DIR "/pipelines/retrain.yml"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		struct pipeline *p = load_file_ok(files[i]);
		round_trip(p);
		/* The definition survives a trip through text too (how a run stores it). */
		char *text = json_dumps(p->definition, JSON_COMPACT);
		json_t *back = json_loads(text, 0, NULL);
		struct diags d = {0};
		struct pipeline *q = pipeline_from_json(back, "stored", NULL, &d);
		assert_non_null(q);
		assert_pipelines_equal(p, q);
		pipeline_free(q);
		json_decref(back);
		free(text);
		pipeline_free(p);
	}

	/* The same checks apply to JSON; lines are unknown (0). */
	json_t *bad = json_pack("{s:s, s:{s:n}, s:[{s:s, s:s, s:s}]}", "name", "x", "on", "push",
				"stages", "name", "a", "uses", "shell", "timeout", "never");
	struct diags d = {0};
	assert_null(pipeline_from_json(bad, "stored", NULL, &d));
	assert_diag(&d, "stored", 0, "stages[0].timeout: bad duration 'never'");
	diags_free(&d);
	json_decref(bad);
	assert_null(pipeline_from_json(NULL, "stored", NULL, &d));
	assert_true(d.n == 1);
	diags_free(&d);
	json_t *arr = json_array();
	assert_null(pipeline_from_json(arr, "stored", NULL, &d));
	assert_diag(&d, "stored", 0, "must be a mapping");
	diags_free(&d);
	json_decref(arr);
}

/* ---- directories ---- */

static void test_set_load_dir(void **state)
{
	(void)state;
	struct pipeline_set set = {0};
	struct diags d = {0};
	const char *dir = FIXTURES_DIR "/pipelines/set";
	assert_int_equal(pipeline_set_load_dir(&set, dir, NULL, &d), 0);
	assert_int_equal(set.n, 2);
	assert_string_equal(set.items[0]->name, "pr");
	assert_string_equal(set.items[0]->file, FIXTURES_DIR "/pipelines/set/10-pr.yml");
	assert_string_equal(set.items[1]->name, "release");
	assert_non_null(pipeline_set_find(&set, "release"));
	assert_null(pipeline_set_find(&set, "broken"));
	assert_null(pipeline_set_find(&set, NULL));
	assert_int_equal(d.n, 2);
	assert_diag(&d, FIXTURES_DIR "/pipelines/set/20-broken.yml", 3, "bad duration 'never'");
	assert_diag(&d, FIXTURES_DIR "/pipelines/set/30-dup.yaml", 2,
		    "pipeline 'pr' is already defined in " FIXTURES_DIR "/pipelines/set/10-pr.yml");
	diags_free(&d);
	pipeline_set_free(&set);
	assert_int_equal(set.n, 0);

	assert_int_equal(pipeline_set_load_dir(&set, FIXTURES_DIR "/pipelines/nope", NULL, &d), -1);
	assert_diag(&d, FIXTURES_DIR "/pipelines/nope", 0, "cannot open");
	diags_free(&d);
	pipeline_set_free(&set);
}

/* The standard pipelines shipped in pipelines/ are valid and do their job. */
static void test_standard_pipelines(void **state)
{
	(void)state;
	struct pipeline_set set = {0};
	struct diags d = {0};
	struct plugin_catalog catalog = {.has_plugin = catalog_has};
	assert_int_equal(pipeline_set_load_dir(&set, SOURCE_DIR "/pipelines", &catalog, &d), 0);
	if (d.n > 0) {
		diags_dump(&d);
		fail_msg("pipelines/ has errors");
	}
	assert_int_equal(set.n, 3);
	const struct pipeline *pr = pipeline_set_find(&set, "pr");
	const struct pipeline *release = pipeline_set_find(&set, "release");
	const struct pipeline *retrain = pipeline_set_find(&set, "retrain");
	assert_non_null(pr);
	assert_non_null(release);
	assert_non_null(retrain);
	assert_int_equal(pr->n_stages, 2);
	assert_int_equal(pipeline_stage_index(pr, "integration"), 1);
	assert_int_equal(pr->stages[1].needs_idx[0], 0);
	assert_int_equal(release->n_stages, 3);
	assert_string_equal(release->lock, "deploy-{branch}");
	assert_non_null(release->concurrency_group);
	assert_int_equal(retrain->n_stages, 3);
	assert_int_equal(pipeline_stage_index(retrain, "validate"), 1);

	json_t *pr_event = json_pack("{s:s, s:s, s:s, s:s, s:{s:i, s:s}, s:n}", "kind",
				     "pull_request", "action", "opened", "repo", "o/r", "branch",
				     "feature", "pr", "number", 7, "base", "main", "paths");
	json_t *merge = json_pack("{s:s, s:s, s:s, s:s, s:[s]}", "kind", "push", "action", "pushed",
				  "repo", "o/r", "branch", "master", "paths", "src/steps/train.py");
	json_t *drift =
	    json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "kind", "drift", "action", "detected",
		      "drift", "model", "churn", "environment", "prod", "severity", "critical");
	char why[200];
	assert_true(pipeline_match(pr, pr_event, why, sizeof why));
	assert_false(pipeline_match(release, pr_event, why, sizeof why));
	assert_false(pipeline_match(retrain, pr_event, why, sizeof why));
	assert_true(pipeline_match(release, merge, why, sizeof why));
	assert_false(pipeline_match(pr, merge, why, sizeof why));
	assert_true(pipeline_match(retrain, drift, why, sizeof why));
	assert_false(pipeline_match(release, drift, why, sizeof why));
	char *group = pipeline_expand(pr->concurrency_group, pr_event);
	assert_string_equal(group, "pr-o/r-7");
	free(group);
	json_decref(pr_event);
	json_decref(merge);
	json_decref(drift);
	diags_free(&d);
	pipeline_set_free(&set);
}

/* ---- matching ---- */

static struct pipeline *trigger(const char *on)
{
	char *y = xasprintf("name: t\non:\n%sstages: [{name: a, uses: shell}]\n", on);
	struct pipeline *p = load_ok(y);
	free(y);
	return p;
}

/*
 * Matches (why empty) or fails with exactly want_why; and the same answer
 * without a reason asked for (intake's form: no reason is formatted).
 */
static void expect_match(const struct pipeline *p, json_t *event, const char *want_why)
{
	char why[256] = "unset";
	bool is_match = pipeline_match(p, event, why, sizeof why);
	assert_int_equal(pipeline_match(p, event, NULL, 0), is_match);
	if (want_why == NULL) {
		if (!is_match)
			fail_msg("expected a match, got: %s", why);
		assert_string_equal(why, "");
	} else {
		if (is_match)
			fail_msg("expected no match (%s)", want_why);
		assert_string_equal(why, want_why);
	}
	json_decref(event);
}

static json_t *push_event(const char *action, const char *branch, const char *tag, json_t *paths)
{
	return json_pack("{s:s, s:s?, s:s?, s:s?, s:o?}", "kind", "push", "action", action,
			 "branch", branch, "tag", tag, "paths", paths);
}

static void test_match_push(void **state)
{
	(void)state;
	struct pipeline *p = trigger("  push:\n    branches: [master, \"release/*\"]\n"
				     "    branches_ignore: [\"release/old-*\"]\n");
	expect_match(p, push_event("pushed", "master", NULL, NULL), NULL);
	expect_match(p, push_event("pushed", "release/1.0", NULL, NULL), NULL);
	expect_match(p, push_event("pushed", "dev", NULL, NULL),
		     "push: branch 'dev' matches none of [master, release/*]");
	expect_match(p, push_event("pushed", "release/old-1", NULL, NULL),
		     "push: branch 'release/old-1' is ignored by [release/old-*]");
	expect_match(p, push_event("pushed", NULL, NULL, NULL), "push: the event names no branch");
	expect_match(p, push_event("tag", NULL, "v1.0", NULL),
		     "push: tag 'v1.0' pushed, but no tags are watched");
	expect_match(p, push_event("deleted", "master", NULL, NULL),
		     "push: deletions are not watched (deleted: false)");
	expect_match(p, push_event("rebased", "master", NULL, NULL),
		     "push: unknown action 'rebased'");
	expect_match(p, json_pack("{s:s, s:s}", "kind", "push", "branch", "master"), NULL);
	expect_match(p, json_pack("{s:s, s:s}", "kind", "drift", "branch", "master"),
		     "no trigger for kind 'drift'");
	expect_match(p, json_pack("{s:s}", "kind", "manual"), "no trigger for kind 'manual'");
	expect_match(p, json_pack("{s:s}", "branch", "master"), "the event has no kind");
	assert_false(pipeline_match(p, NULL, NULL, 0));
	pipeline_free(p);

	/* an empty push trigger matches every branch, and nothing else is asked */
	p = trigger("  push:\n");
	expect_match(p, push_event("pushed", "anything/at/all", NULL, json_array()), NULL);
	pipeline_free(p);

	/* tags; with only tags listed, branch pushes do not match (like GitHub) */
	p = trigger("  push: { tags: [\"v*\"] }\n");
	expect_match(p, push_event("tag", NULL, "v1.2", NULL), NULL);
	expect_match(p, push_event(NULL, NULL, "v1.2", NULL), NULL);
	expect_match(p, push_event("tag", NULL, "nightly", NULL),
		     "push: tag 'nightly' matches none of [v*]");
	expect_match(p, push_event("pushed", "master", NULL, NULL),
		     "push: only tags [v*] are watched, not branch 'master'");
	pipeline_free(p);
	p = trigger("  push: { branches: [master], tags: [\"v*\"] }\n");
	expect_match(p, push_event("pushed", "master", NULL, NULL), NULL);
	expect_match(p, push_event("tag", NULL, "v2", NULL), NULL);
	pipeline_free(p);

	/* deletions, when asked for */
	p = trigger("  push: { branches: [\"feature/*\"], tags: [\"v*\"], deleted: true }\n");
	expect_match(p, push_event("deleted", "feature/x", NULL, NULL), NULL);
	expect_match(p, push_event("deleted", "master", NULL, NULL),
		     "push: branch 'master' matches none of [feature/*]");
	expect_match(p, push_event("deleted", NULL, "v1", NULL), NULL);
	expect_match(p, push_event("deleted", NULL, "x1", NULL),
		     "push: tag 'x1' matches none of [v*]");
	pipeline_free(p);
}

static void test_match_paths(void **state)
{
	(void)state;
	struct pipeline *p = trigger("  push:\n    paths: [\"src/**\", \"jobs/*.yml\"]\n"
				     "    paths_ignore: [\"**/*.md\"]\n");
	expect_match(
	    p, push_event("pushed", "m", NULL, json_pack("[s, s]", "README.md", "src/a.py")), NULL);
	expect_match(p, push_event("pushed", "m", NULL, json_pack("[s]", "jobs/training.yml")),
		     NULL);
	expect_match(p, push_event("pushed", "m", NULL, json_pack("[s, s]", "docs/x", "setup.py")),
		     "push: no changed path matches [src/**, jobs/*.yml]");
	expect_match(p, push_event("pushed", "m", NULL, json_pack("[s]", "src/notes.md")),
		     "push: every changed path is ignored by [**/*.md]");
	expect_match(p, push_event("pushed", "m", NULL, json_array()),
		     "push: the event changed no paths");
	/* unknown paths (null) are not filtered */
	expect_match(p, push_event("pushed", "m", NULL, NULL), NULL);
	expect_match(p, push_event("pushed", "m", NULL, json_null()), NULL);
	pipeline_free(p);

	/* tag pushes and deletions are not filtered by paths */
	p = trigger("  push:\n    branches: [m]\n    tags: [\"v*\"]\n    paths: [\"src/**\"]\n"
		    "    deleted: true\n");
	expect_match(p, push_event("tag", NULL, "v1", json_pack("[s]", "README.md")), NULL);
	expect_match(p, push_event("deleted", "m", NULL, json_array()), NULL);
	expect_match(p, push_event("pushed", "m", NULL, json_pack("[s]", "README.md")),
		     "push: no changed path matches [src/**]");
	pipeline_free(p);

	p = trigger("  push:\n    paths_ignore: [\"docs/**\"]\n");
	expect_match(p, push_event("pushed", "m", NULL, json_pack("[s, s]", "docs/a", "x.py")),
		     NULL);
	expect_match(p, push_event("pushed", "m", NULL, json_pack("[s, s]", "docs/a", "docs/b")),
		     "push: every changed path is ignored by [docs/**]");
	pipeline_free(p);
}

static json_t *pr_event(const char *action, const char *base, json_t *paths)
{
	return json_pack("{s:s, s:s?, s:{s:i, s:s?}, s:o?}", "kind", "pull_request", "action",
			 action, "pr", "number", 3, "base", base, "paths", paths);
}

static void test_match_pull_request(void **state)
{
	(void)state;
	struct pipeline *p = trigger("  pull_request: { branches: [master] }\n");
	expect_match(p, pr_event("opened", "master", NULL), NULL);
	expect_match(p, pr_event("synchronize", "master", NULL), NULL);
	expect_match(p, pr_event("reopened", "master", NULL), NULL);
	expect_match(p, pr_event("closed", "master", NULL),
		     "pull_request: action 'closed' is not one of [opened, synchronize, "
		     "reopened]");
	expect_match(p, pr_event("merged", "master", NULL),
		     "pull_request: action 'merged' is not one of [opened, synchronize, "
		     "reopened]");
	expect_match(p, pr_event("opened", "dev", NULL),
		     "pull_request: base branch 'dev' matches none of [master]");
	expect_match(p, pr_event("opened", NULL, NULL),
		     "pull_request: the event names no base branch");
	expect_match(p, pr_event(NULL, "master", NULL), "pull_request: the event has no action");
	expect_match(p, push_event("pushed", "master", NULL, NULL), "no trigger for kind 'push'");
	pipeline_free(p);

	p = trigger("  pull_request:\n    actions: [merged, labeled]\n    paths: [\"src/**\"]\n");
	expect_match(p, pr_event("merged", "anything", json_pack("[s]", "src/a.py")), NULL);
	expect_match(p, pr_event("opened", "anything", NULL),
		     "pull_request: action 'opened' is not one of [merged, labeled]");
	expect_match(p, pr_event("labeled", "x", json_pack("[s]", "README.md")),
		     "pull_request: no changed path matches [src/**]");
	pipeline_free(p);
}

static json_t *drift_event(const char *model, const char *env, const char *severity)
{
	return json_pack("{s:s, s:s, s:{s:s?, s:s?, s:s?}}", "kind", "drift", "action", "detected",
			 "drift", "model", model, "environment", env, "severity", severity);
}

static void test_match_drift(void **state)
{
	(void)state;
	struct pipeline *p = trigger("  drift:\n");
	expect_match(p, drift_event("m", NULL, "warning"), NULL);
	expect_match(p, drift_event(NULL, NULL, "critical"), NULL);
	expect_match(p, drift_event("m", "prod", "info"),
		     "drift: severity 'info' is below warning");
	expect_match(p, drift_event("m", "prod", NULL), "drift: severity 'none' is below warning");
	expect_match(p, json_pack("{s:s}", "kind", "drift"),
		     "drift: severity 'none' is below warning");
	pipeline_free(p);

	p = trigger("  drift:\n    models: [\"fraud-*\", churn]\n    environments: [prod]\n"
		    "    min_severity: info\n");
	expect_match(p, drift_event("fraud-eu", "prod", "info"), NULL);
	expect_match(p, drift_event("churn", "prod", NULL), NULL);
	expect_match(p, drift_event("ltv", "prod", "critical"),
		     "drift: model 'ltv' matches none of [fraud-*, churn]");
	expect_match(p, drift_event("churn", "qa", "critical"),
		     "drift: environment 'qa' matches none of [prod]");
	expect_match(p, drift_event("churn", NULL, "critical"),
		     "drift: the event names no environment");
	expect_match(p, drift_event(NULL, "prod", "critical"), "drift: the event names no model");
	pipeline_free(p);

	p = trigger("  drift: { min_severity: critical }\n");
	expect_match(p, drift_event("m", "prod", "critical"), NULL);
	expect_match(p, drift_event("m", "prod", "warning"),
		     "drift: severity 'warning' is below critical");
	pipeline_free(p);

	/* why may be absent or tiny */
	p = trigger("  drift:\n");
	json_t *ev = drift_event("m", "prod", "info");
	char tiny[8];
	assert_false(pipeline_match(p, ev, tiny, sizeof tiny));
	assert_int_equal(strlen(tiny), 7);
	assert_false(pipeline_match(p, ev, NULL, 0));
	json_decref(ev);
	pipeline_free(p);
}

/* ---- expansion and retries ---- */

static void test_expand(void **state)
{
	(void)state;
	json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:i}, s:{s:s, s:s}}", "repo", "acme/ml",
			       "branch", "master", "sha", "abc123", "pr", "number", 42, "drift",
			       "model", "churn", "environment", "prod");
	char *s = pipeline_expand("{repo}|{branch}|{pr}|{sha}|{model}|{env}", ev);
	assert_string_equal(s, "acme/ml|master|42|abc123|churn|prod");
	free(s);
	s = pipeline_expand("deploy-{env}-{unknown}-{", ev);
	assert_string_equal(s, "deploy-prod-{unknown}-{");
	free(s);
	s = pipeline_expand("{{repo}}", ev);
	assert_string_equal(s, "{acme/ml}");
	free(s);
	s = pipeline_expand("", ev);
	assert_string_equal(s, "");
	free(s);
	json_decref(ev);

	/* facts the event lacks expand to "" */
	ev = json_pack("{s:s, s:n, s:n}", "repo", "acme/ml", "pr", "drift");
	s = pipeline_expand("pr-{repo}-{pr}-{model}-{branch}", ev);
	assert_string_equal(s, "pr-acme/ml---");
	free(s);
	json_decref(ev);
	s = pipeline_expand("x-{sha}", NULL);
	assert_string_equal(s, "x-");
	free(s);
	assert_null(pipeline_expand(NULL, NULL));
}

static void test_retry_delay(void **state)
{
	(void)state;
	struct retry_policy r = {
	    .attempts = 5, .delay_ms = 1000, .backoff = 2.0, .max_delay_ms = 10000};
	assert_int_equal(pipeline_retry_delay_ms(&r, 1), 1000);
	assert_int_equal(pipeline_retry_delay_ms(&r, 2), 2000);
	assert_int_equal(pipeline_retry_delay_ms(&r, 3), 4000);
	assert_int_equal(pipeline_retry_delay_ms(&r, 4), 8000);
	assert_int_equal(pipeline_retry_delay_ms(&r, 5), 10000); /* capped */
	assert_int_equal(pipeline_retry_delay_ms(&r, 0), 1000);
	assert_int_equal(pipeline_retry_delay_ms(&r, -3), 1000);
	/* huge retry numbers and backoffs neither overflow nor loop */
	assert_int_equal(pipeline_retry_delay_ms(&r, 1000000), 10000);
	assert_int_equal(pipeline_retry_delay_ms(&r, 2147483647), 10000);
	r.backoff = 1e300;
	assert_int_equal(pipeline_retry_delay_ms(&r, 3), 10000);
	r.max_delay_ms = INT64_MAX;
	assert_int_equal(pipeline_retry_delay_ms(&r, 3), INT64_MAX);
	r.delay_ms = INT64_MAX;
	r.backoff = 2;
	assert_int_equal(pipeline_retry_delay_ms(&r, 2), INT64_MAX);
	/* backoff 1 (or nonsense below it): a constant delay */
	r = (struct retry_policy){.delay_ms = 30000, .backoff = 1.0, .max_delay_ms = 600000};
	assert_int_equal(pipeline_retry_delay_ms(&r, 7), 30000);
	r.backoff = 0.1;
	assert_int_equal(pipeline_retry_delay_ms(&r, 7), 30000);
	r.backoff = 1.5;
	assert_int_equal(pipeline_retry_delay_ms(&r, 3), 67500);
	/* a cap below the delay wins; zero delay stays zero */
	r = (struct retry_policy){.delay_ms = 30000, .backoff = 2, .max_delay_ms = 5000};
	assert_int_equal(pipeline_retry_delay_ms(&r, 1), 5000);
	r = (struct retry_policy){.delay_ms = 0, .backoff = 2, .max_delay_ms = 5000};
	assert_int_equal(pipeline_retry_delay_ms(&r, 100000), 0);
	assert_int_equal(pipeline_retry_delay_ms(NULL, 1), 0);

	/* the defaults a file gets: 10s, x2, at most 10m */
	struct pipeline *p = load_ok("name: x\non: {push: }\nstages: [{name: a, uses: shell, "
				     "retry: 3}]\n");
	const struct retry_policy *d = &p->stages[0].retry;
	assert_int_equal(pipeline_retry_delay_ms(d, 1), 10000);
	assert_int_equal(pipeline_retry_delay_ms(d, 2), 20000);
	assert_int_equal(pipeline_retry_delay_ms(d, 7), 600000);
	pipeline_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_full),	       cmocka_unit_test(test_load_defaults),
	    cmocka_unit_test(test_error_yaml),	       cmocka_unit_test(test_error_schema),
	    cmocka_unit_test(test_error_stages),       cmocka_unit_test(test_error_all_reported),
	    cmocka_unit_test(test_from_json),	       cmocka_unit_test(test_set_load_dir),
	    cmocka_unit_test(test_standard_pipelines), cmocka_unit_test(test_match_push),
	    cmocka_unit_test(test_match_paths),	       cmocka_unit_test(test_match_pull_request),
	    cmocka_unit_test(test_match_drift),	       cmocka_unit_test(test_expand),
	    cmocka_unit_test(test_retry_delay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
