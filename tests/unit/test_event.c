/*
 * Tests for event: every GitHub fixture, the Azure DevOps, CloudEvents,
 * CDEvents, Databricks and drift samples, and hostile input of every kind,
 * checked against the canonical event of event.h field by field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "event.h"
#include "pipeline.h"
#include "util.h"

#define MAX_BYTES ((size_t)1 << 20)
#define TOPIC "drover.events"
#define PARTITION 3
#define OFFSET 1234
#define RECEIVED_AT_MS INT64_C(1795000000123)
#define RECEIVED_AT "2026-11-18T11:06:40.123Z"

/* clang-format off */
#define HDR(name, value) { name, value, sizeof(value) - 1 }
/* clang-format on */

static const struct event_alert_map test_alerts[] = {
    {"churn feature drift", "churn-model"},
    {"4821", "churn-model"},
    {"fraud-alert", "fraud-model"},
};

static const struct event_model_map test_models[] = {
    {"churn-model", "acme/churn-model", "master"},
    {"fraud-model", "acme/fraud", NULL},
};

static const struct event_options test_opt = {
    .max_payload_bytes = MAX_BYTES,
    .alerts = test_alerts,
    .n_alerts = ARRAY_LEN(test_alerts),
    .models = test_models,
    .n_models = ARRAY_LEN(test_models),
};

/* ---- helpers ---- */

static char *fixture_load(const char *rel, size_t *len)
{
	char *path = xasprintf("%s/%s", FIXTURES_DIR, rel);
	char *data = file_read_all(path, 4 * MAX_BYTES, len);
	if (data == NULL) {
		print_error("cannot read %s\n", path);
		free(path);
		fail();
	}
	free(path);
	return data;
}

static enum event_outcome run_opt(const struct event_header *headers, size_t n_headers,
				  const char *payload, size_t len, const struct event_options *opt,
				  json_t **ev, char *err, size_t err_len)
{
	struct event_input in = {
	    .topic = TOPIC,
	    .partition = PARTITION,
	    .offset = OFFSET,
	    .headers = headers,
	    .n_headers = n_headers,
	    .payload = payload,
	    .payload_len = len,
	    .received_at_ms = RECEIVED_AT_MS,
	};
	return event_normalize(&in, opt, ev, err, err_len);
}

static void check_str_(const json_t *obj, const char *key, const char *want, const char *file,
		       int line)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL) {
		print_error("%s is absent\n", key);
		_fail(file, line);
	}
	if (want == NULL) {
		if (!json_is_null(v)) {
			print_error("%s: want null, got %s\n", key,
				    json_is_string(v) ? json_string_value(v) : "a non-string");
			_fail(file, line);
		}
		return;
	}
	if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0) {
		print_error("%s: want \"%s\", got \"%s\"\n", key, want,
			    json_is_string(v) ? json_string_value(v) : "(not a string)");
		_fail(file, line);
	}
}

static void check_int_(const json_t *obj, const char *key, json_int_t want, const char *file,
		       int line)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) != want) {
		print_error("%s: want %" JSON_INTEGER_FORMAT "\n", key, want);
		_fail(file, line);
	}
}

static void check_real_(const json_t *obj, const char *key, double want, const char *file, int line)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_number(v) || json_number_value(v) != want) {
		print_error("%s: want %g\n", key, want);
		_fail(file, line);
	}
}

static void check_bool_(const json_t *obj, const char *key, bool want, const char *file, int line)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_boolean(v) || json_is_true(v) != want) {
		print_error("%s: want %s\n", key, want ? "true" : "false");
		_fail(file, line);
	}
}

static void check_null_(const json_t *obj, const char *key, const char *file, int line)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_null(v)) {
		print_error("%s: want null\n", key);
		_fail(file, line);
	}
}

#define check_str(obj, key, want) check_str_(obj, key, want, __FILE__, __LINE__)
#define check_int(obj, key, want) check_int_(obj, key, want, __FILE__, __LINE__)
#define check_real(obj, key, want) check_real_(obj, key, want, __FILE__, __LINE__)
#define check_bool(obj, key, want) check_bool_(obj, key, want, __FILE__, __LINE__)
#define check_null(obj, key) check_null_(obj, key, __FILE__, __LINE__)

/* The contract's shape: exactly these keys, in this order, kafka always filled. */
static void check_shape(const json_t *ev)
{
	/* clang-format off */
	static const char *const keys[] = {
		"id", "kind", "action", "source", "repo", "clone_url", "ref", "branch", "tag",
		"sha", "before", "pr", "paths", "message", "actor", "drift", "received_at", "kafka",
	};
	/* clang-format on */
	assert_int_equal(json_object_size(ev), ARRAY_LEN(keys));
	size_t i = 0;
	const char *key;
	json_t *value;
	json_object_foreach((json_t *)ev, key, value)
	{
		assert_string_equal(key, keys[i]);
		i++;
	}
	assert_true(json_is_string(json_object_get(ev, "id")));
	assert_true(json_string_length(json_object_get(ev, "id")) > 0);
	check_str(ev, "received_at", RECEIVED_AT);
	json_t *kafka = json_object_get(ev, "kafka");
	assert_true(json_is_object(kafka));
	check_str(kafka, "topic", TOPIC);
	check_int(kafka, "partition", PARTITION);
	check_int(kafka, "offset", OFFSET);
	const char *kind = json_string_value(json_object_get(ev, "kind"));
	assert_non_null(kind);
	assert_true(strcmp(kind, "push") == 0 || strcmp(kind, "pull_request") == 0 ||
		    strcmp(kind, "drift") == 0);
	assert_true(json_is_object(json_object_get(ev, "pr")) ==
		    (strcmp(kind, "pull_request") == 0));
	assert_true(json_is_object(json_object_get(ev, "drift")) == (strcmp(kind, "drift") == 0));
	assert_true(json_is_string(json_object_get(ev, "repo")));
	/* Serializable as the stored form. */
	char *dump = json_dumps(ev, JSON_COMPACT);
	assert_non_null(dump);
	free(dump);
}

static json_t *expect_ok_opt(const struct event_header *headers, size_t n_headers,
			     const char *payload, size_t len, const struct event_options *opt)
{
	json_t *ev = (json_t *)1;
	char err[512];
	enum event_outcome rc =
	    run_opt(headers, n_headers, payload, len, opt, &ev, err, sizeof err);
	if (rc != EVENT_OK) {
		print_error("want ok, got %s: %s\n", event_outcome_name(rc), err);
		fail();
	}
	assert_non_null(ev);
	assert_string_equal(err, "");
	check_shape(ev);
	return ev;
}

static json_t *expect_ok(const struct event_header *headers, size_t n_headers, const char *payload,
			 size_t len)
{
	return expect_ok_opt(headers, n_headers, payload, len, &test_opt);
}

/* Asserts the outcome, that nothing is returned, and that err is one line holding want_err. */
static void expect_fail_opt(const struct event_header *headers, size_t n_headers,
			    const char *payload, size_t len, const struct event_options *opt,
			    enum event_outcome want, const char *want_err)
{
	json_t *ev = (json_t *)1;
	char err[512];
	enum event_outcome rc =
	    run_opt(headers, n_headers, payload, len, opt, &ev, err, sizeof err);
	if (rc != want) {
		print_error("want %s, got %s: %s\n", event_outcome_name(want),
			    event_outcome_name(rc), err);
		if (rc == EVENT_OK)
			json_decref(ev);
		fail();
	}
	assert_null(ev);
	assert_true(strlen(err) > 0);
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\r'));
	if (want_err != NULL && strstr(err, want_err) == NULL) {
		print_error("error \"%s\" does not mention \"%s\"\n", err, want_err);
		fail();
	}
}

static void expect_fail(const struct event_header *headers, size_t n_headers, const char *payload,
			size_t len, enum event_outcome want, const char *want_err)
{
	expect_fail_opt(headers, n_headers, payload, len, &test_opt, want, want_err);
}

static void expect_fail_str(const struct event_header *headers, size_t n_headers,
			    const char *payload, enum event_outcome want, const char *want_err)
{
	expect_fail(headers, n_headers, payload, strlen(payload), want, want_err);
}

static json_t *github_fixture(const char *rel, const char *event)
{
	struct event_header headers[] = {
	    {"X-GitHub-Event", event, strlen(event)},
	    HDR("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
	};
	size_t len;
	char *body = fixture_load(rel, &len);
	json_t *ev = expect_ok(headers, ARRAY_LEN(headers), body, len);
	free(body);
	check_str(ev, "id", "72d3162e-cc78-11e3-81ab-4c9367dc0958");
	check_str(ev, "source", "github");
	check_null(ev, "drift");
	return ev;
}

static json_t *fixture_ok(const struct event_header *headers, size_t n_headers, const char *rel)
{
	size_t len;
	char *body = fixture_load(rel, &len);
	json_t *ev = expect_ok(headers, n_headers, body, len);
	free(body);
	return ev;
}

static json_t *fixture_json(const char *rel)
{
	size_t len;
	char *body = fixture_load(rel, &len);
	json_error_t jerr;
	json_t *root = json_loadb(body, len, 0, &jerr);
	free(body);
	assert_non_null(root);
	return root;
}

/* Normalizes a JSON value built by a test, with the given headers. */
static json_t *json_ok(const struct event_header *headers, size_t n_headers, const json_t *body,
		       const struct event_options *opt)
{
	char *text = json_dumps(body, JSON_COMPACT);
	assert_non_null(text);
	json_t *ev = expect_ok_opt(headers, n_headers, text, strlen(text), opt);
	free(text);
	return ev;
}

static void json_fail(const struct event_header *headers, size_t n_headers, const json_t *body,
		      const struct event_options *opt, enum event_outcome want,
		      const char *want_err)
{
	char *text = json_dumps(body, JSON_COMPACT);
	assert_non_null(text);
	expect_fail_opt(headers, n_headers, text, strlen(text), opt, want, want_err);
	free(text);
}

static size_t array_len(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	assert_true(json_is_array(v));
	return json_array_size(v);
}

static const char *array_str(const json_t *obj, const char *key, size_t i)
{
	const char *s = json_string_value(json_array_get(json_object_get(obj, key), i));
	assert_non_null(s);
	return s;
}

static const struct event_header push_headers[] = {
    HDR("x-github-event", "push"),
    HDR("x-github-delivery", "d-1"),
};

static const struct event_header pr_headers[] = {
    HDR("x-github-event", "pull_request"),
    HDR("x-github-delivery", "d-2"),
};

static const struct event_header drift_headers[] = {HDR("x-drover-event", "drift")};

/* ---- GitHub fixtures ---- */

static void test_github_fixtures_all(void **state)
{
	(void)state;
	DIR *dir = opendir(FIXTURES_DIR "/github");
	assert_non_null(dir);
	struct dirent *de;
	int count = 0;
	while ((de = readdir(dir)) != NULL) {
		size_t name_len = strlen(de->d_name);
		if (name_len < 5 || strcmp(de->d_name + name_len - 5, ".json") != 0)
			continue;
		char *event = xstrndup(de->d_name, strcspn(de->d_name, "."));
		char *rel = xasprintf("github/%s", de->d_name);
		size_t len;
		char *body = fixture_load(rel, &len);
		struct event_header headers[] = {
		    {"X-GitHub-Event", event, strlen(event)},
		    {"X-GitHub-Delivery", de->d_name, name_len},
		};
		if (strcmp(event, "ping") == 0) {
			expect_fail(headers, 2, body, len, EVENT_IGNORED, "github ping");
		} else {
			json_t *ev = expect_ok(headers, 2, body, len);
			check_str(ev, "kind", event);
			check_str(ev, "source", "github");
			check_str(ev, "id", de->d_name);
			check_str(ev, "repo", "Codertocat/Hello-World");
			check_str(ev, "clone_url", "https://github.com/Codertocat/Hello-World.git");
			check_str(ev, "actor", "Codertocat");
			json_decref(ev);
		}
		free(body);
		free(rel);
		free(event);
		count++;
	}
	closedir(dir);
	assert_true(count >= 12);
}

/* The three octokit push examples that delete a tag. */
static void test_github_push_tag_deleted(void **state)
{
	(void)state;
	static const char *const files[] = {"github/push.payload.json",
					    "github/push.1.payload.json",
					    "github/push.with-organization.payload.json"};
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		json_t *ev = github_fixture(files[i], "push");
		check_str(ev, "kind", "push");
		check_str(ev, "action", "deleted");
		check_str(ev, "repo", "Codertocat/Hello-World");
		check_str(ev, "clone_url", "https://github.com/Codertocat/Hello-World.git");
		check_str(ev, "ref", "refs/tags/simple-tag");
		check_null(ev, "branch");
		check_str(ev, "tag", "simple-tag");
		check_null(ev, "sha"); /* the zero sha is not a commit */
		check_str(ev, "before", "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
		check_null(ev, "pr");
		assert_int_equal(array_len(ev, "paths"), 0);
		check_null(ev, "message");
		check_str(ev, "actor", "Codertocat");
		json_decref(ev);
	}
}

static void test_github_push_new_branch(void **state)
{
	(void)state;
	static const char *const files[] = {"github/push.with-new-branch.payload.json",
					    "github/push.with-no-username-committer.payload.json"};
	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		json_t *ev = github_fixture(files[i], "push");
		check_str(ev, "kind", "push");
		check_str(ev, "action", "pushed");
		check_str(ev, "ref", "refs/heads/master");
		check_str(ev, "branch", "master");
		check_null(ev, "tag");
		check_str(ev, "sha", "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
		check_null(ev, "before"); /* a new branch has no previous commit */
		assert_int_equal(array_len(ev, "paths"), 1);
		assert_string_equal(array_str(ev, "paths", 0), "README.md");
		check_str(ev, "message", "Initial commit");
		check_str(ev, "actor", "Codertocat");
		json_decref(ev);
	}
}

static void check_hello_world_pr(const json_t *ev, const char *action)
{
	check_str(ev, "kind", "pull_request");
	check_str(ev, "action", action);
	check_str(ev, "repo", "Codertocat/Hello-World");
	check_str(ev, "ref", "refs/pull/2/head");
	check_str(ev, "branch", "changes");
	check_null(ev, "tag");
	check_str(ev, "sha", "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
	check_null(ev, "paths");
	check_str(ev, "message", "Update the README with new information.");
	check_str(ev, "actor", "Codertocat");
	json_t *pr = json_object_get(ev, "pr");
	check_int(pr, "number", 2);
	check_str(pr, "base", "master");
	check_str(pr, "head", "changes");
	check_str(pr, "head_sha", "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
	check_str(pr, "title", "Update the README with new information.");
	check_bool(pr, "merged", false);
}

static void test_github_pull_request_fixtures(void **state)
{
	(void)state;
	static const struct {
		const char *file, *action;
	} cases[] = {
	    {"github/pull_request.opened.payload.json", "opened"},
	    {"github/pull_request.opened.with-null-body.json", "opened"},
	    {"github/pull_request.reopened.payload.json", "reopened"},
	    {"github/pull_request.labeled.payload.json", "labeled"},
	    {"github/pull_request.closed.payload.json", "closed"}, /* closed without merging */
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		json_t *ev = github_fixture(cases[i].file, "pull_request");
		check_hello_world_pr(ev, cases[i].action);
		check_null(ev, "before");
		json_decref(ev);
	}
}

static void test_github_pull_request_synchronize(void **state)
{
	(void)state;
	json_t *ev = github_fixture("github/pull_request.synchronize.payload.json", "pull_request");
	check_hello_world_pr(ev, "synchronize");
	check_str(ev, "before", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e");
	json_decref(ev);
}

static void test_github_ping_ignored(void **state)
{
	(void)state;
	struct event_header headers[] = {HDR("X-GitHub-Event", "ping"),
					 HDR("X-GitHub-Delivery", "p-1")};
	size_t len;
	char *body = fixture_load("github/ping.payload.json", &len);
	expect_fail(headers, 2, body, len, EVENT_IGNORED, "ping");
	free(body);
}

static void test_github_pull_request_merged(void **state)
{
	(void)state;
	json_t *ev = github_fixture("events/github.pull_request.merged.json", "pull_request");
	check_str(ev, "kind", "pull_request");
	check_str(ev, "action", "merged");
	check_str(ev, "repo", "acme/churn-model");
	check_str(ev, "clone_url", "https://github.com/acme/churn-model.git");
	check_str(ev, "ref", "refs/heads/master");
	check_str(ev, "branch", "master"); /* a merge builds the base */
	check_str(ev, "sha", "9b1c0e4f5a2d7c8e6f3a1b0c9d8e7f6a5b4c3d2e");
	check_str(ev, "message", "Retrain on 90 days of events");
	check_str(ev, "actor", "jlindqvist");
	json_t *pr = json_object_get(ev, "pr");
	check_int(pr, "number", 7);
	check_str(pr, "base", "master");
	check_str(pr, "head", "feature/window-90d");
	check_str(pr, "head_sha", "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e");
	check_bool(pr, "merged", true);
	json_decref(ev);
}

static void test_github_merged_without_merge_sha(void **state)
{
	(void)state;
	json_t *body = fixture_json("events/github.pull_request.merged.json");
	json_object_set_new(json_object_get(body, "pull_request"), "merge_commit_sha", json_null());
	json_t *ev = json_ok(pr_headers, 2, body, &test_opt);
	check_str(ev, "action", "merged");
	check_str(ev, "sha", "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e");
	json_decref(ev);
	json_decref(body);
}

static void test_github_tag_push(void **state)
{
	(void)state;
	json_t *ev = github_fixture("events/github.push.tag.json", "push");
	check_str(ev, "action", "tag");
	check_str(ev, "ref", "refs/tags/v1.4.0");
	check_str(ev, "tag", "v1.4.0");
	check_null(ev, "branch");
	check_str(ev, "sha", "9b1c0e4f5a2d7c8e6f3a1b0c9d8e7f6a5b4c3d2e");
	check_null(ev, "before");
	assert_int_equal(array_len(ev, "paths"), 0);
	check_str(ev, "message", "Merge pull request #7 from acme/feature/window-90d");
	check_str(ev, "actor", "jlindqvist");
	json_decref(ev);
}

static void test_github_branch_deleted(void **state)
{
	(void)state;
	json_t *ev = github_fixture("events/github.push.branch-deleted.json", "push");
	check_str(ev, "action", "deleted");
	check_str(ev, "ref", "refs/heads/feature/window-90d");
	check_str(ev, "branch", "feature/window-90d");
	check_null(ev, "tag");
	check_null(ev, "sha");
	check_str(ev, "before", "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e");
	check_null(ev, "message");
	json_decref(ev);
}

static void test_github_deleted_by_zero_sha_alone(void **state)
{
	(void)state;
	json_t *body =
	    json_pack("{s:s, s:s, s:s, s:{s:s}}", "ref", "refs/heads/old", "before",
		      "1111111111111111111111111111111111111111", "after",
		      "0000000000000000000000000000000000000000", "repository", "full_name", "o/r");
	json_t *ev = json_ok(push_headers, 2, body, &test_opt);
	check_str(ev, "action", "deleted");
	check_null(ev, "sha");
	check_null(ev, "paths"); /* no commits array at all */
	check_null(ev, "actor");
	json_decref(ev);
	json_decref(body);
}

static void test_github_paths_union(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/cloudevent.github.push.json");
	/* The structured fixture: commits touch config twice, paths hold it once. */
	static const char *const want[] = {"features/holidays.py", "features/__init__.py",
					   "training/config.yml", "tests/unit/test_features.py",
					   "features/calendar.py"};
	assert_int_equal(array_len(ev, "paths"), ARRAY_LEN(want));
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_string_equal(array_str(ev, "paths", i), want[i]);
	json_decref(ev);
}

static void test_github_actor_falls_back_to_pusher(void **state)
{
	(void)state;
	json_t *body = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "ref", "refs/heads/master",
				 "after", "2222222222222222222222222222222222222222", "repository",
				 "full_name", "o/r", "pusher", "name", "bot");
	json_t *ev = json_ok(push_headers, 2, body, &test_opt);
	check_str(ev, "actor", "bot");
	check_str(ev, "sha", "2222222222222222222222222222222222222222");
	json_decref(ev);
	json_decref(body);
}

static void test_github_unknown_event(void **state)
{
	(void)state;
	struct event_header headers[] = {HDR("x-github-event", "issues")};
	expect_fail_str(headers, 1, "{\"action\":\"opened\"}", EVENT_UNKNOWN, "\"issues\"");
}

static void test_github_id_falls_back_to_kafka(void **state)
{
	(void)state;
	struct event_header headers[] = {HDR("x-github-event", "push")};
	size_t len;
	char *body = fixture_load("github/push.with-new-branch.payload.json", &len);
	json_t *ev = expect_ok(headers, 1, body, len);
	check_str(ev, "id", "kafka:drover.events:3:1234");
	json_decref(ev);

	struct event_input in = {.topic = NULL,
				 .partition = 0,
				 .offset = 77,
				 .headers = headers,
				 .n_headers = 1,
				 .payload = body,
				 .payload_len = len,
				 .received_at_ms = RECEIVED_AT_MS};
	char err[128];
	assert_int_equal(event_normalize(&in, &test_opt, &ev, err, sizeof err), EVENT_OK);
	check_str(ev, "id", "kafka:-:0:77");
	check_null(json_object_get(ev, "kafka"), "topic");
	check_int(json_object_get(ev, "kafka"), "offset", 77);
	json_decref(ev);
	free(body);
}

/* ---- Azure DevOps ---- */

static void test_azure_push(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/azure.git.push.json");
	check_str(ev, "id", "b7d3f0a2-6c1e-4f5a-8d92-0e3c7a1b9f64");
	check_str(ev, "kind", "push");
	check_str(ev, "action", "pushed");
	check_str(ev, "source", "azure-devops");
	check_str(ev, "repo", "Forecasting/churn-model");
	check_str(ev, "clone_url", "https://dev.azure.com/acme-ml/Forecasting/_git/churn-model");
	check_str(ev, "ref", "refs/heads/main");
	check_str(ev, "branch", "main");
	check_null(ev, "tag");
	check_str(ev, "sha", "4c8d2e1f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d");
	check_str(ev, "before", "1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c");
	check_null(ev, "pr");
	check_null(ev, "paths"); /* Azure push hooks do not list files */
	check_str(ev, "message", "Pin feature store client");
	check_str(ev, "actor", "priya.raman@example.com");
	json_decref(ev);
}

static void check_azure_pr(const json_t *ev, const char *id, const char *action)
{
	check_str(ev, "id", id);
	check_str(ev, "kind", "pull_request");
	check_str(ev, "action", action);
	check_str(ev, "source", "azure-devops");
	check_str(ev, "repo", "Forecasting/churn-model");
	check_str(ev, "clone_url", "https://dev.azure.com/acme-ml/Forecasting/_git/churn-model");
	check_str(ev, "message", "Add drift thresholds to the monitoring job");
	check_str(ev, "actor", "priya.raman@example.com");
	json_t *pr = json_object_get(ev, "pr");
	check_int(pr, "number", 52);
	check_str(pr, "base", "main");
	check_str(pr, "head", "feature/drift-thresholds");
	check_str(pr, "head_sha", "e0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0");
	check_str(pr, "title", "Add drift thresholds to the monitoring job");
}

static void test_azure_pull_request_created(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/azure.git.pullrequest.created.json");
	check_azure_pr(ev, "3e9d1a7c-5b2f-4e8a-a1c6-7f0b2d4e6a81", "opened");
	check_str(ev, "ref", "refs/heads/feature/drift-thresholds");
	check_str(ev, "branch", "feature/drift-thresholds");
	check_str(ev, "sha", "e0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0");
	check_bool(json_object_get(ev, "pr"), "merged", false);
	json_decref(ev);
}

static void test_azure_pull_request_updated(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/azure.git.pullrequest.updated.json");
	check_azure_pr(ev, "91c4e7a2-0d3b-4f6e-8a5c-2b7d9e1f3a64", "synchronize");
	check_str(ev, "branch", "feature/drift-thresholds");
	check_str(ev, "sha", "e0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0");
	json_decref(ev);
}

static void test_azure_pull_request_merged(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/azure.git.pullrequest.merged.json");
	check_azure_pr(ev, "c8a2f5e1-7b3d-4a9c-b6e0-1d4f7a2c5e93", "merged");
	check_str(ev, "ref", "refs/heads/main");
	check_str(ev, "branch", "main");
	check_str(ev, "sha", "a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8"); /* the merge commit */
	check_bool(json_object_get(ev, "pr"), "merged", true);
	json_decref(ev);
}

/* Only a completed, successful merge is "merged": a test merge never deploys. */
static void test_azure_pull_request_status_rules(void **state)
{
	(void)state;
	json_t *body = fixture_json("events/azure.git.pullrequest.merged.json");
	json_t *resource = json_object_get(body, "resource");
	json_object_set_new(resource, "status", json_string("active"));
	json_fail(NULL, 0, body, &test_opt, EVENT_IGNORED, "test merge");
	json_object_set_new(resource, "status", json_string("completed"));
	json_object_set_new(resource, "mergeStatus", json_string("conflicts"));
	json_fail(NULL, 0, body, &test_opt, EVENT_IGNORED, "conflicts");
	json_decref(body);

	body = fixture_json("events/azure.git.pullrequest.updated.json");
	resource = json_object_get(body, "resource");
	json_object_set_new(resource, "status", json_string("completed"));
	json_fail(NULL, 0, body, &test_opt, EVENT_IGNORED, "git.pullrequest.merged");
	json_object_set_new(resource, "status", json_string("abandoned"));
	json_t *ev = json_ok(NULL, 0, body, &test_opt);
	check_str(ev, "action", "closed");
	json_decref(ev);
	json_decref(body);
}

static void test_azure_errors(void **state)
{
	(void)state;
	expect_fail_str(NULL, 0, "{\"eventType\":\"build.complete\",\"resource\":{}}",
			EVENT_UNKNOWN, "build.complete");
	expect_fail_str(NULL, 0, "{\"eventType\":\"git.push\"}", EVENT_MALFORMED,
			"resource is missing");
	expect_fail_str(NULL, 0, "{\"eventType\":7,\"resource\":{}}", EVENT_MALFORMED,
			"eventType is not a string");
	json_t *body = fixture_json("events/azure.git.push.json");
	json_t *repo = json_object_get(json_object_get(body, "resource"), "repository");
	json_object_set_new(repo, "project", json_integer(5));
	json_fail(NULL, 0, body, &test_opt, EVENT_MALFORMED,
		  "resource.repository.project is not an object");
	json_object_set_new(json_object_get(body, "resource"), "refUpdates", json_array());
	json_fail(NULL, 0, body, &test_opt, EVENT_MALFORMED, "refUpdates[0]");
	json_decref(body);
}

static void test_azure_via_cloudevent(void **state)
{
	(void)state;
	json_t *data = fixture_json("events/azure.git.push.json");
	json_t *ce = json_pack("{s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "type",
			       "com.azure.devops.git.push", "source", "/acme-ml", "id", "ce-az-1",
			       "data", data);
	json_t *ev = json_ok(NULL, 0, ce, &test_opt);
	check_str(ev, "id", "ce-az-1");
	check_str(ev, "source", "azure-devops");
	check_str(ev, "branch", "main");
	json_decref(ev);
	json_decref(ce);
}

/* ---- CloudEvents ---- */

static void check_cloudevent_push(const json_t *ev, const char *id)
{
	check_str(ev, "id", id);
	check_str(ev, "source", "github");
	check_str(ev, "kind", "push");
	check_str(ev, "action", "pushed");
	check_str(ev, "repo", "acme/churn-model");
	check_str(ev, "branch", "master");
	check_str(ev, "sha", "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e");
	check_str(ev, "before", "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567");
	check_str(ev, "message", "Retire the old calendar features");
	check_str(ev, "actor", "mhartmann");
	assert_int_equal(array_len(ev, "paths"), 5);
}

static void test_cloudevent_structured_github_push(void **state)
{
	(void)state;
	struct event_header headers[] = {
	    HDR("content-type", "application/cloudevents+json; charset=utf-8")};
	json_t *ev = fixture_ok(headers, 1, "events/cloudevent.github.push.json");
	check_cloudevent_push(ev, "5f6a2c80-c94d-11f0-8e3b-a1f2b3c4d5e6");
	json_decref(ev);
	/* Without the header the body alone says CloudEvent. */
	ev = fixture_ok(NULL, 0, "events/cloudevent.github.push.json");
	check_cloudevent_push(ev, "5f6a2c80-c94d-11f0-8e3b-a1f2b3c4d5e6");
	json_decref(ev);
}

static void test_cloudevent_binary_github_push(void **state)
{
	(void)state;
	json_t *ce = fixture_json("events/cloudevent.github.push.json");
	json_t *data = json_object_get(ce, "data");
	struct event_header underscore[] = {
	    HDR("ce_specversion", "1.0"),
	    HDR("ce_type", "com.github.push"),
	    HDR("ce_source", "https://github.com/acme/churn-model"),
	    HDR("ce_id", "bin-1"),
	    HDR("x-github-event", "pull_request"), /* the envelope wins */
	};
	json_t *ev = json_ok(underscore, ARRAY_LEN(underscore), data, &test_opt);
	check_cloudevent_push(ev, "bin-1");
	json_decref(ev);
	struct event_header dash[] = {
	    HDR("Ce-Specversion", "1.0"),
	    HDR("Ce-Type", "com.github.push"),
	    HDR("Ce-Source", "https://github.com/acme/churn-model"),
	    HDR("Ce-Id", "bin-2"),
	};
	ev = json_ok(dash, ARRAY_LEN(dash), data, &test_opt);
	check_cloudevent_push(ev, "bin-2");
	json_decref(ev);
	json_decref(ce);
}

static void test_cloudevent_structured_drift(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/cloudevent.drift.json");
	check_str(ev, "id", "drift-churn-model-2026-11-24T06:00:00Z");
	check_str(ev, "kind", "drift");
	check_str(ev, "action", "detected");
	check_str(ev, "source", "drover");
	check_str(ev, "repo", "acme/churn-model");
	check_str(ev, "branch", "release/2026.11"); /* the payload's, not agent.yaml's */
	check_str(ev, "ref", "refs/heads/release/2026.11");
	check_null(ev, "sha");
	json_t *drift = json_object_get(ev, "drift");
	check_str(drift, "model", "churn-model");
	check_str(drift, "environment", "prod");
	check_str(drift, "metric", "psi");
	check_str(drift, "feature", "days_since_last_order");
	check_real(drift, "value", 0.27);
	check_real(drift, "threshold", 0.2);
	check_str(drift, "severity", "warning");
	check_str(json_object_get(drift, "window"), "start", "2026-11-17T00:00:00Z");
	json_decref(ev);
}

static void check_drift_json(const json_t *ev)
{
	check_str(ev, "kind", "drift");
	check_str(ev, "source", "drover");
	check_str(ev, "repo", "acme/churn-model"); /* from agent.yaml's models */
	check_str(ev, "branch", "master");
	check_str(ev, "ref", "refs/heads/master");
	json_t *drift = json_object_get(ev, "drift");
	check_str(drift, "model", "churn-model");
	check_real(drift, "value", 0.31);
	check_str(drift, "severity", "critical"); /* "high" */
	check_str(drift, "window", "2026-11-17T00:00:00Z/2026-11-24T00:00:00Z");
}

static void test_cloudevent_binary_drift(void **state)
{
	(void)state;
	struct event_header headers[] = {
	    HDR("ce_specversion", "1.0"),
	    HDR("ce_type", "dev.cdeventsx.drover-drift.detected.0.1.0"),
	    HDR("ce_source", "/monitoring"),
	    HDR("ce_id", "drift-bin-1"),
	};
	json_t *ev = fixture_ok(headers, ARRAY_LEN(headers), "events/drift.json");
	check_drift_json(ev);
	check_str(ev, "id", "drift-bin-1");
	json_decref(ev);
}

/* drover's replay command: the stored event's facts, the command's id, the whole command. */
static void test_cloudevent_drover_replay(void **state)
{
	(void)state;
	char *text = file_read_all(SOURCE_DIR "/tests/fuzz/corpus/event/cloudevent-drover-replay",
				   1 << 20, NULL);
	assert_non_null(text);
	json_t *ev = NULL;
	char err[512] = "";
	assert_int_equal(run_opt(NULL, 0, text, strlen(text), NULL, &ev, err, sizeof err),
			 EVENT_OK);
	check_str(ev, "id", "drover-replay-d0123456789abcdef-7-a2");
	check_str(ev, "kind", "push");
	check_str(ev, "action", "pushed");
	check_str(ev, "source", "drover");
	check_str(ev, "repo", "acme/app");
	check_str(ev, "branch", "master");
	check_str(ev, "sha", "0123456789abcdef0123456789abcdef01234567");
	assert_int_equal(json_array_size(json_object_get(ev, "paths")), 1);
	json_t *r = json_object_get(ev, "replay");
	check_str(r, "origin_agent", "d0123456789abcdef");
	check_int(r, "run_id", 7);
	check_int(r, "attempt", 2);
	check_str(
	    json_object_get(json_object_get(json_object_get(r, "snapshot"), "outputs"), "build"),
	    "artifact", "a1");
	json_decref(ev);

	/* Each broken part is malformed, with the path in the message. */
	static const struct {
		const char *code, *message;
	} cases[] = {
	    {"del d['data']['snapshot']", "snapshot is missing"},
	    {"d['data']['run_id'] = 0", "run_id is not a positive integer"},
	    {"d['data']['attempt'] = 'two'", "attempt is not a positive integer"},
	    {"d['data']['stages'] = [1]", "stages[0] is not a stage name"},
	    {"del d['data']['snapshot']['event']['repo']", "snapshot.event.repo is missing"},
	    {"d['data']['snapshot']['stages'] = [{}]", "snapshot.stages[0] is not a stage with"},
	    {"d['data']['snapshot']['definition'] = []", "snapshot.definition is not"},
	    {"del d['data']['origin_agent']", "origin_agent is missing"},
	};
	json_t *good = json_loads(text, 0, NULL);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		json_t *d = json_deep_copy(good);
		json_t *data = json_object_get(d, "data");
		json_t *snap = json_object_get(data, "snapshot");
		switch (i) {
		case 0:
			json_object_del(data, "snapshot");
			break;
		case 1:
			json_object_set_new(data, "run_id", json_integer(0));
			break;
		case 2:
			json_object_set_new(data, "attempt", json_string("two"));
			break;
		case 3:
			json_object_set_new(data, "stages", json_pack("[i]", 1));
			break;
		case 4:
			json_object_del(json_object_get(snap, "event"), "repo");
			break;
		case 5:
			json_object_set_new(snap, "stages", json_pack("[{}]"));
			break;
		case 6:
			json_object_set_new(snap, "definition", json_array());
			break;
		default:
			json_object_del(data, "origin_agent");
			break;
		}
		char *bad = json_dumps(d, JSON_COMPACT);
		ev = NULL;
		err[0] = '\0';
		enum event_outcome rc =
		    run_opt(NULL, 0, bad, strlen(bad), NULL, &ev, err, sizeof err);
		if (rc != EVENT_MALFORMED || ev != NULL || strstr(err, cases[i].message) == NULL)
			fail_msg("case %zu (%s): %s, '%s', want '%s'", i, cases[i].code,
				 event_outcome_name(rc), err, cases[i].message);
		free(bad);
		json_decref(d);
	}
	json_decref(good);
	free(text);
}

static void test_cloudevent_errors(void **state)
{
	(void)state;
	struct event_header ce_json[] = {HDR("content-type", "application/cloudevents+json")};
	expect_fail_str(ce_json, 1, "{\"specversion\":\"1.0\",\"type\":\"com.github.push\"}",
			EVENT_MALFORMED, "id is missing");
	expect_fail_str(
	    NULL, 0,
	    "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"com.github."
	    "push\",\"data\":\"text\"}",
	    EVENT_MALFORMED, "data is not an object");
	expect_fail_str(
	    NULL, 0,
	    "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"com.github."
	    "push\",\"data_base64\":\"e30=\"}",
	    EVENT_MALFORMED, "data_base64");
	expect_fail_str(
	    NULL, 0,
	    "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"org.example."
	    "thing\",\"data\":{}}",
	    EVENT_UNKNOWN, "org.example.thing");
	struct event_header no_source[] = {HDR("ce_type", "com.github.push"), HDR("ce_id", "1"),
					   HDR("ce_specversion", "1.0")};
	expect_fail_str(no_source, 3, "{}", EVENT_MALFORMED, "ce_source is missing");
	struct event_header bad_utf8[] = {HDR("ce_type", "com.github.push"),
					  HDR("ce_id", "\xff\xfe"), HDR("ce_source", "s"),
					  HDR("ce_specversion", "1.0")};
	expect_fail_str(bad_utf8, 4, "{}", EVENT_MALFORMED, "ce_id is not valid UTF-8");
	struct event_header nul_value[] = {{"ce_type", "com.github.push\0x", 17}};
	expect_fail_str(nul_value, 1, "{}", EVENT_MALFORMED, "NUL");
}

/* ---- CDEvents ---- */

static void test_cdevents_change_merged(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/cdevents.change.merged.json");
	check_str(ev, "id", "271069a8-fc18-44f1-b38f-9d70a1695819");
	check_str(ev, "kind", "pull_request");
	check_str(ev, "action", "merged");
	check_str(ev, "source", "cloudevents");
	check_str(ev, "repo", "acme/churn-model");
	check_str(ev, "clone_url", "https://gitea.example.com/acme/churn-model.git");
	check_str(ev, "ref", "refs/heads/master");
	check_str(ev, "branch", "master");
	check_str(ev, "sha", "8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b");
	check_str(ev, "message", "Holiday features");
	check_str(ev, "actor", "mhartmann");
	json_t *pr = json_object_get(ev, "pr");
	check_int(pr, "number", 19);
	check_str(pr, "base", "master");
	check_str(pr, "head", "feature/holidays");
	check_str(pr, "head_sha", "1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5");
	check_bool(pr, "merged", true);
	json_decref(ev);
}

static void test_cdevents_change_created_and_unknown(void **state)
{
	(void)state;
	json_t *ce = fixture_json("events/cdevents.change.merged.json");
	json_object_set_new(ce, "type", json_string("dev.cdevents.change.created.0.2.0"));
	json_t *subject = json_object_get(json_object_get(ce, "data"), "subject");
	json_object_set_new(subject, "id", json_string("feature-holidays"));
	json_t *ev = json_ok(NULL, 0, ce, &test_opt);
	check_str(ev, "action", "opened");
	check_str(ev, "branch", "feature/holidays");	 /* an open change builds its head */
	check_null(json_object_get(ev, "pr"), "number"); /* not a number */
	check_bool(json_object_get(ev, "pr"), "merged", false);
	json_decref(ev);
	json_object_set_new(ce, "type", json_string("dev.cdevents.change.renamed.0.1.0"));
	json_fail(NULL, 0, ce, &test_opt, EVENT_UNKNOWN, "renamed");
	json_object_set_new(ce, "type", json_string("dev.cdevents.change.merged.0.2.0"));
	json_object_del(json_object_get(subject, "content"), "repository");
	json_fail(NULL, 0, ce, &test_opt, EVENT_MALFORMED, "subject.content.repository is missing");
	json_decref(ce);
}

static void test_cdevents_incident_detected(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/cdevents.incident.detected.json");
	check_str(ev, "id", "0c9a8b7e-6d5f-4e3a-9b2c-1d0e9f8a7b6c");
	check_str(ev, "kind", "drift");
	check_str(ev, "source", "cloudevents");
	check_str(ev, "repo", "acme/churn-model");
	check_str(ev, "branch", "master");
	json_t *drift = json_object_get(ev, "drift");
	check_str(drift, "model", "churn-model"); /* pkg:mlflow/acme/churn-model@12?... */
	check_str(drift, "environment", "prod");
	check_str(drift, "metric", "prediction_drift");
	check_str(drift, "severity", "critical");
	json_decref(ev);

	/* An artifactId that is an alert name maps through agent.yaml. */
	json_t *ce = fixture_json("events/cdevents.incident.detected.json");
	json_t *content =
	    json_object_get(json_object_get(json_object_get(ce, "data"), "subject"), "content");
	json_object_set_new(content, "artifactId", json_string("fraud-alert"));
	ev = json_ok(NULL, 0, ce, &test_opt);
	check_str(json_object_get(ev, "drift"), "model", "fraud-model");
	check_str(ev, "repo", "acme/fraud");
	check_null(ev, "branch");
	check_null(ev, "ref");
	json_decref(ev);
	/* A bare name keeps everything but its version. */
	json_object_set_new(content, "artifactId", json_string("churn-model@3"));
	ev = json_ok(NULL, 0, ce, &test_opt);
	check_str(json_object_get(ev, "drift"), "model", "churn-model");
	json_decref(ev);
	json_object_del(content, "artifactId");
	json_fail(NULL, 0, ce, &test_opt, EVENT_MALFORMED, "artifactId is missing");
	json_object_set_new(content, "artifactId", json_string("pkg:mlflow/acme/@3"));
	json_fail(NULL, 0, ce, &test_opt, EVENT_MALFORMED, "names no model");
	json_decref(ce);
}

/* ---- Databricks ---- */

static void test_databricks_triggered(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(NULL, 0, "events/databricks.alert-triggered.json");
	check_str(ev, "id", "kafka:drover.events:3:1234"); /* the body carries no id */
	check_str(ev, "kind", "drift");
	check_str(ev, "action", "detected");
	check_str(ev, "source", "databricks");
	check_str(ev, "repo", "acme/churn-model");
	check_str(ev, "branch", "master");
	json_t *drift = json_object_get(ev, "drift");
	check_str(drift, "model", "churn-model");
	check_str(drift, "severity", "warning");
	check_str(drift, "metric", "psi");
	check_real(drift, "threshold", 0.2);
	check_null(drift, "value");
	json_decref(ev);
}

static void test_databricks_mapped_by_id(void **state)
{
	(void)state;
	static const struct event_alert_map by_id[] = {{"5d2a8f1e9c3b4a70", "fraud-model"}};
	struct event_options opt = test_opt;
	opt.alerts = by_id;
	opt.n_alerts = 1;
	size_t len;
	char *body = fixture_load("events/databricks.alert-triggered.json", &len);
	json_t *ev = expect_ok_opt(NULL, 0, body, len, &opt);
	check_str(json_object_get(ev, "drift"), "model", "fraud-model");
	check_str(ev, "repo", "acme/fraud");
	json_decref(ev);
	free(body);
}

static void test_databricks_ok_ignored(void **state)
{
	(void)state;
	size_t len;
	char *body = fixture_load("events/databricks.alert-ok.json", &len);
	expect_fail(NULL, 0, body, len, EVENT_IGNORED, "back to OK");
	free(body);
	/* The same legacy shape, triggered, maps by its numeric id. */
	json_t *alert = fixture_json("events/databricks.alert-ok.json");
	json_t *inner = json_object_get(alert, "alert");
	json_object_set_new(inner, "state", json_string("triggered"));
	json_object_set_new(inner, "name", json_string("renamed"));
	json_t *ev = json_ok(NULL, 0, alert, &test_opt);
	check_str(json_object_get(ev, "drift"), "model", "churn-model");
	json_decref(ev);
	json_object_set_new(inner, "state", json_string("unknown"));
	json_fail(NULL, 0, alert, &test_opt, EVENT_IGNORED, "only TRIGGERED");
	json_decref(alert);
}

static void test_databricks_unmapped(void **state)
{
	(void)state;
	struct event_options opt = test_opt;
	opt.alerts = NULL;
	opt.n_alerts = 0;
	size_t len;
	char *body = fixture_load("events/databricks.alert-triggered.json", &len);
	expect_fail_opt(NULL, 0, body, len, &opt, EVENT_MALFORMED,
			"alert \"churn feature drift\" (id 5d2a8f1e9c3b4a70) is not mapped");
	free(body);
	expect_fail_str(NULL, 0, "{\"event\":\"alert_state_change\",\"alert\":{\"name\":\"x\"}}",
			EVENT_MALFORMED, "state is missing");
}

/* ---- drift JSON ---- */

static void test_drift_raw(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(drift_headers, 1, "events/drift.json");
	check_drift_json(ev);
	check_str(ev, "id", "kafka:drover.events:3:1234");
	check_null(ev, "actor");
	json_decref(ev);
}

static void test_drift_no_repository(void **state)
{
	(void)state;
	expect_fail_str(drift_headers, 1, "{\"model\":\"unknown-model\",\"severity\":\"info\"}",
			EVENT_MALFORMED,
			"drift for model unknown-model names no repository and none is configured");
	/* Without options no model is configured anywhere. */
	const char *body = "{\"model\":\"churn-model\"}";
	expect_fail_opt(drift_headers, 1, body, strlen(body), NULL, EVENT_MALFORMED,
			"names no repository");
}

static void test_drift_severity_words(void **state)
{
	(void)state;
	static const struct {
		const char *word, *severity;
	} cases[] = {
	    {"info", "info"},	   {"LOW", "info"},	     {"warning", "warning"},
	    {"Medium", "warning"}, {"critical", "critical"}, {"error", "critical"},
	    {"high", "critical"},  {NULL, "warning"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		json_t *body = json_pack("{s:s, s:s}", "model", "churn-model", "repo", "o/r");
		if (cases[i].word != NULL)
			json_object_set_new(body, "severity", json_string(cases[i].word));
		json_t *ev = json_ok(drift_headers, 1, body, &test_opt);
		check_str(json_object_get(ev, "drift"), "severity", cases[i].severity);
		check_str(ev, "repo", "o/r");
		check_null(ev, "branch"); /* agent.yaml's branch is for its own repo */
		json_decref(ev);
		json_decref(body);
	}
	expect_fail_str(drift_headers, 1,
			"{\"model\":\"m\",\"repo\":\"o/r\",\"severity\":\"purple\"}",
			EVENT_MALFORMED, "\"purple\"");
}

static void test_drift_wrong_types(void **state)
{
	(void)state;
	expect_fail_str(drift_headers, 1, "{\"model\":\"m\",\"repo\":\"o/r\",\"value\":\"high\"}",
			EVENT_MALFORMED, "value is not a number");
	expect_fail_str(drift_headers, 1, "{\"model\":\"m\",\"repo\":\"o/r\",\"window\":[1]}",
			EVENT_MALFORMED, "window");
	expect_fail_str(drift_headers, 1, "{\"model\":42}", EVENT_MALFORMED,
			"model is not a string");
	expect_fail_str(drift_headers, 1, "{\"repo\":\"o/r\"}", EVENT_MALFORMED,
			"model is missing");
	struct event_header other[] = {HDR("x-drover-event", "manual")};
	expect_fail_str(other, 1, "{\"model\":\"m\"}", EVENT_UNKNOWN, "manual");
}

/* ---- hostile input ---- */

static void test_malformed_json(void **state)
{
	(void)state;
	expect_fail_str(push_headers, 2, "{\"ref\":", EVENT_MALFORMED, "not valid JSON");
	expect_fail_str(push_headers, 2, "{\"a\":1} trailing", EVENT_MALFORMED, "not valid JSON");
	expect_fail_str(push_headers, 2, "{\"a\":1,\"a\":2}", EVENT_MALFORMED, "not valid JSON");
	expect_fail_str(push_headers, 2, "{\"ref\":\"a\\u0000b\"}", EVENT_MALFORMED,
			"not valid JSON");
	expect_fail_str(push_headers, 2, "{\"ref\":\"\xff\"}", EVENT_MALFORMED, "not valid JSON");
	expect_fail(push_headers, 2, "", 0, EVENT_MALFORMED, "empty");
	expect_fail(push_headers, 2, "{\"a\":1}\0{}", 10, EVENT_MALFORMED, "NUL byte at offset 7");
}

static void test_non_object(void **state)
{
	(void)state;
	static const char *const bodies[] = {"[1,2]", "\"push\"", "42", "null", "true"};
	for (size_t i = 0; i < ARRAY_LEN(bodies); i++)
		expect_fail_str(push_headers, 2, bodies[i], EVENT_MALFORMED, "not a JSON object");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_fail_str(push_headers, 2, "{\"ref\":\"refs/heads/m\",\"repository\":5}",
			EVENT_MALFORMED, "github push: repository is not an object");
	expect_fail_str(push_headers, 2, "{\"ref\":\"refs/heads/m\",\"repository\":{}}",
			EVENT_MALFORMED, "repository.full_name is missing");
	expect_fail_str(push_headers, 2, "{\"repository\":{\"full_name\":\"o/r\"}}",
			EVENT_MALFORMED, "ref is missing");
	expect_fail_str(push_headers, 2, "{\"ref\":[],\"repository\":{\"full_name\":\"o/r\"}}",
			EVENT_MALFORMED, "ref is not a string");
	expect_fail_str(
	    push_headers, 2,
	    "{\"ref\":\"r\",\"deleted\":\"yes\",\"repository\":{\"full_name\":\"o/r\"}}",
	    EVENT_MALFORMED, "deleted is not true or false");
	expect_fail_str(push_headers, 2,
			"{\"ref\":\"r\",\"commits\":\"x\",\"repository\":{\"full_name\":\"o/r\"}}",
			EVENT_MALFORMED, "commits is not an array");
	expect_fail_str(
	    push_headers, 2,
	    "{\"ref\":\"r\",\"commits\":[{\"added\":[1]}],\"repository\":{\"full_name\":"
	    "\"o/r\"}}",
	    EVENT_MALFORMED, "commits[0].added[0] is not a string");
	expect_fail_str(push_headers, 2,
			"{\"ref\":\"r\",\"commits\":[7],\"repository\":{\"full_name\":\"o/r\"}}",
			EVENT_MALFORMED, "commits[0] is not an object");

	json_t *body = fixture_json("github/pull_request.opened.payload.json");
	json_object_set_new(json_object_get(json_object_get(body, "pull_request"), "head"), "sha",
			    json_integer(12));
	json_fail(pr_headers, 2, body, &test_opt, EVENT_MALFORMED,
		  "pull_request.head.sha is not a string");
	json_object_set_new(body, "number", json_string("2"));
	json_fail(pr_headers, 2, body, &test_opt, EVENT_MALFORMED, "number is not an integer");
	json_decref(body);
	expect_fail_str(pr_headers, 2, "{\"action\":\"opened\"}", EVENT_MALFORMED,
			"pull_request is missing");
}

static void test_too_large(void **state)
{
	(void)state;
	struct event_options opt = test_opt;
	opt.max_payload_bytes = 16;
	/* Checked before parsing: even garbage is too large rather than malformed. */
	expect_fail_opt(push_headers, 2, "xxxxxxxxxxxxxxxxx", 17, &opt, EVENT_TOO_LARGE,
			"17 bytes");
	expect_fail_opt(push_headers, 2, "{\"ref\":\"a\"}     ", 16, &opt, EVENT_MALFORMED,
			"repository");
	opt.max_payload_bytes = 0; /* no limit */
	size_t len;
	char *body = fixture_load("github/pull_request.opened.payload.json", &len);
	json_t *ev = expect_ok_opt(pr_headers, 2, body, len, &opt);
	json_decref(ev);
	free(body);
}

static void test_deep_nesting(void **state)
{
	(void)state;
	size_t depth = 100000;
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_adds(&sb, "{\"model\":\"m\",\"repo\":\"o/r\",\"window\":");
	for (size_t i = 0; i < depth; i++)
		strbuf_adds(&sb, "{\"a\":");
	strbuf_adds(&sb, "1");
	for (size_t i = 0; i < depth; i++)
		strbuf_adds(&sb, "}");
	strbuf_adds(&sb, "}");
	/* jansson stops at JSON_PARSER_MAX_DEPTH (2048) instead of recursing on. */
	expect_fail(drift_headers, 1, sb.data, sb.len, EVENT_MALFORMED, "maximum parsing depth");
	strbuf_free(&sb);
}

static void test_unknown_everything(void **state)
{
	(void)state;
	expect_fail_str(NULL, 0, "{\"hello\":\"world\"}", EVENT_UNKNOWN, "no known source");
	expect_fail_str(NULL, 0, "{\"event\":\"job_finished\"}", EVENT_UNKNOWN, "no known source");
	struct event_header gitlab[] = {HDR("X-Gitlab-Event", "Pipeline Hook")};
	expect_fail_str(gitlab, 1, "{\"object_kind\":\"pipeline\"}", EVENT_UNKNOWN, "gitlab");
	/* A hostile event name still yields one line. */
	struct event_header evil[] = {HDR("x-github-event", "iss\nues\r\x1b[31m")};
	expect_fail_str(evil, 1, "{}", EVENT_UNKNOWN, "iss\\x0aues");
}

/* Strings are data: carried byte for byte, never interpreted. */
static void test_hostile_strings_verbatim(void **state)
{
	(void)state;
	char *long_name = xmalloc(10 * 1024 + 1);
	memset(long_name, 'b', 10 * 1024);
	long_name[10 * 1024] = '\0';
	const char *names[] = {
	    "evil\nname", "$(touch /tmp/pwned)", "`id`; rm -rf / #",
	    "a\"b'c\\d",  "naïve-☃-分支",	 long_name,
	};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		char *ref = xasprintf("refs/heads/%s", names[i]);
		json_t *body =
		    json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}, s:{s:s}}", "ref", ref, "after",
			      "3333333333333333333333333333333333333333", "repository", "full_name",
			      names[i], "clone_url", names[i], "sender", "login", names[i],
			      "head_commit", "message", names[i]);
		json_t *ev = json_ok(push_headers, 2, body, &test_opt);
		check_str(ev, "ref", ref);
		check_str(ev, "branch", names[i]);
		check_str(ev, "repo", names[i]);
		check_str(ev, "clone_url", names[i]);
		check_str(ev, "actor", names[i]);
		check_str(ev, "message", names[i]);
		json_decref(ev);
		json_decref(body);

		json_t *pr = fixture_json("github/pull_request.opened.payload.json");
		json_object_set_new(json_object_get(json_object_get(pr, "pull_request"), "head"),
				    "ref", json_string(names[i]));
		ev = json_ok(pr_headers, 2, pr, &test_opt);
		check_str(ev, "branch", names[i]);
		check_str(json_object_get(ev, "pr"), "head", names[i]);
		json_decref(ev);
		json_decref(pr);
		free(ref);
	}
	free(long_name);
}

static void test_small_error_buffers(void **state)
{
	(void)state;
	struct event_input in = {
	    .headers = push_headers, .n_headers = 2, .payload = "[]", .payload_len = 2};
	json_t *ev = (json_t *)1;
	char err[8];
	memset(err, 'x', sizeof err);
	assert_int_equal(event_normalize(&in, NULL, &ev, err, 1), EVENT_MALFORMED);
	assert_null(ev);
	assert_int_equal(err[0], '\0');
	assert_int_equal(err[1], 'x');
	assert_int_equal(event_normalize(&in, NULL, &ev, err, sizeof err), EVENT_MALFORMED);
	assert_int_equal(strlen(err), sizeof err - 1);
	assert_int_equal(event_normalize(&in, NULL, &ev, NULL, 0), EVENT_MALFORMED);
	assert_int_equal(event_normalize(NULL, NULL, &ev, err, sizeof err), EVENT_MALFORMED);
	/* A cut never leaves half a UTF-8 character. */
	struct event_header snow[] = {HDR("x-github-event", "☃☃☃")};
	in.headers = snow;
	in.n_headers = 1;
	in.payload = "{}";
	char err2[24];
	assert_int_equal(event_normalize(&in, NULL, &ev, err2, sizeof err2), EVENT_UNKNOWN);
	json_t *as_json = json_string(err2);
	assert_non_null(as_json);
	json_decref(as_json);
}

/* ---- small API ---- */

static void test_header_find(void **state)
{
	(void)state;
	struct event_header headers[] = {HDR("Content-Type", "application/json"),
					 HDR("X-GitHub-Event", "push")};
	struct event_input in = {.headers = headers, .n_headers = 2};
	assert_ptr_equal(event_header_find(&in, "x-github-event"), &headers[1]);
	assert_ptr_equal(event_header_find(&in, "CONTENT-TYPE"), &headers[0]);
	assert_null(event_header_find(&in, "x-github-delivery"));
	assert_null(event_header_find(NULL, "x"));
	in.n_headers = 0;
	assert_null(event_header_find(&in, "content-type"));
}

static void test_outcome_names(void **state)
{
	(void)state;
	assert_string_equal(event_outcome_name(EVENT_OK), "ok");
	assert_string_equal(event_outcome_name(EVENT_IGNORED), "ignored");
	assert_string_equal(event_outcome_name(EVENT_MALFORMED), "malformed");
	assert_string_equal(event_outcome_name(EVENT_UNKNOWN), "unknown");
	assert_string_equal(event_outcome_name(EVENT_TOO_LARGE), "too_large");
}

/* ---- GitLab webhooks ---- */

static const struct event_header gitlab_push_headers[] = {
    HDR("X-Gitlab-Event", "Push Hook"),
    HDR("X-Gitlab-Event-UUID", "b1c2d3e4-0000-4000-8000-000000000001"),
};

static const struct event_header gitlab_mr_headers[] = {
    HDR("X-Gitlab-Event", "Merge Request Hook"),
    HDR("X-Gitlab-Event-UUID", "b1c2d3e4-0000-4000-8000-000000000002"),
    HDR("Idempotency-Key", "9f8e7d6c-0000-4000-8000-000000000017"),
};

static void test_gitlab_push(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(gitlab_push_headers, 2, "events/gitlab.push.json");
	check_str(ev, "id", "b1c2d3e4-0000-4000-8000-000000000001");
	check_str(ev, "kind", "push");
	check_str(ev, "action", "pushed");
	check_str(ev, "source", "gitlab");
	check_str(ev, "repo", "acme/platform/widget");
	check_str(ev, "clone_url", "https://gitlab.example.com/acme/platform/widget.git");
	check_str(ev, "ref", "refs/heads/main");
	check_str(ev, "branch", "main");
	check_null(ev, "tag");
	check_str(ev, "sha", "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4");
	check_str(ev, "before", "8a5bd2c4e6f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7");
	check_str(ev, "message", "Fix the widget count\n\nIt was off by one.\n");
	check_str(ev, "actor", "ada");
	check_null(ev, "pr");
	check_null(ev, "drift");
	assert_int_equal(array_len(ev, "paths"), 4);
	assert_string_equal(array_str(ev, "paths", 0), "docs/spec.md");
	assert_string_equal(array_str(ev, "paths", 1), "README.md");
	assert_string_equal(array_str(ev, "paths", 2), "src/widget.c");
	assert_string_equal(array_str(ev, "paths", 3), "src/old.c");
	check_str(ev, "received_at", RECEIVED_AT);
	json_decref(ev);
}

/* Deleted branch (after all zeros), the actor's display name, 20 of 25 commits listed. */
static void test_gitlab_push_variants(void **state)
{
	(void)state;
	json_t *body = fixture_json("events/gitlab.push.json");
	json_object_set_new(body, "after", json_string("0000000000000000000000000000000000000000"));
	json_object_set_new(body, "checkout_sha", json_null());
	json_object_set_new(body, "commits", json_array());
	json_object_set_new(body, "total_commits_count", json_integer(0));
	json_object_del(body, "user_username");
	json_t *ev = json_ok(gitlab_push_headers, 2, body, &test_opt);
	check_str(ev, "action", "deleted");
	check_str(ev, "branch", "main");
	check_null(ev, "sha");
	check_null(ev, "message");
	check_str(ev, "actor", "Ada Lovelace");
	assert_int_equal(array_len(ev, "paths"), 0);
	json_decref(ev);
	json_decref(body);

	body = fixture_json("events/gitlab.push.json");
	json_object_set_new(body, "total_commits_count", json_integer(25));
	ev = json_ok(gitlab_push_headers, 2, body, &test_opt);
	check_null(ev, "paths"); /* GitLab listed only some commits: unknown */
	json_decref(ev);
	/* Without an id header the Kafka coordinates are the id. */
	ev = json_ok(gitlab_push_headers, 1, body, &test_opt);
	check_str(ev, "id", "kafka:" TOPIC ":3:1234");
	json_decref(ev);
	json_decref(body);
}

/* An annotated tag: after is the tag object, checkout_sha the commit. */
static void test_gitlab_tag_push(void **state)
{
	(void)state;
	struct event_header headers[] = {HDR("X-Gitlab-Event", "Tag Push Hook")};
	json_t *ev = fixture_ok(headers, 1, "events/gitlab.tag_push.json");
	check_str(ev, "kind", "push");
	check_str(ev, "action", "tag");
	check_str(ev, "ref", "refs/tags/v1.2.0");
	check_str(ev, "tag", "v1.2.0");
	check_null(ev, "branch");
	check_str(ev, "sha", "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4");
	check_null(ev, "before");
	json_decref(ev);
}

static void test_gitlab_merge_request_open(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(gitlab_mr_headers, 3, "events/gitlab.merge_request.open.json");
	check_str(ev, "id", "9f8e7d6c-0000-4000-8000-000000000017"); /* Idempotency-Key */
	check_str(ev, "kind", "pull_request");
	check_str(ev, "action", "opened");
	check_str(ev, "source", "gitlab");
	check_str(ev, "repo", "acme/platform/widget");
	check_str(ev, "clone_url", "https://gitlab.example.com/acme/platform/widget.git");
	check_str(ev, "ref", "refs/merge-requests/17/head");
	check_str(ev, "branch", "fix/widget-count");
	check_str(ev, "sha", "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4");
	check_null(ev, "before");
	check_str(ev, "message", "Fix the widget count");
	check_str(ev, "actor", "ada");
	json_t *pr = json_object_get(ev, "pr");
	check_int(pr, "number", 17);
	check_str(pr, "base", "main");
	check_str(pr, "head", "fix/widget-count");
	check_str(pr, "head_sha", "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4");
	check_str(pr, "title", "Fix the widget count");
	check_bool(pr, "merged", false);
	json_decref(ev);
}

static void test_gitlab_merge_request_update_and_merge(void **state)
{
	(void)state;
	json_t *ev = fixture_ok(gitlab_mr_headers, 2, "events/gitlab.merge_request.update.json");
	check_str(ev, "id", "b1c2d3e4-0000-4000-8000-000000000002"); /* X-Gitlab-Event-UUID */
	check_str(ev, "action", "synchronize");
	check_str(ev, "before", "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00");
	json_decref(ev);

	/* An update without new commits (a title or label edit) is "edited". */
	json_t *body = fixture_json("events/gitlab.merge_request.update.json");
	json_object_del(json_object_get(body, "object_attributes"), "oldrev");
	ev = json_ok(gitlab_mr_headers, 2, body, &test_opt);
	check_str(ev, "action", "edited");
	json_decref(ev);
	json_decref(body);

	ev = fixture_ok(gitlab_mr_headers, 2, "events/gitlab.merge_request.merge.json");
	check_str(ev, "action", "merged");
	check_str(ev, "ref", "refs/heads/main");
	check_str(ev, "branch", "main");
	check_str(ev, "sha", "abcabcabcabcabcabcabcabcabcabcabcabcabca");
	check_bool(json_object_get(ev, "pr"), "merged", true);
	check_str(json_object_get(ev, "pr"), "head_sha",
		  "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4");
	json_decref(ev);

	/* A fast-forward merge has no merge commit: the head commit is built. */
	body = fixture_json("events/gitlab.merge_request.merge.json");
	json_object_set_new(json_object_get(body, "object_attributes"), "merge_commit_sha",
			    json_null());
	ev = json_ok(gitlab_mr_headers, 2, body, &test_opt);
	check_str(ev, "sha", "f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4");
	json_decref(ev);

	static const struct {
		const char *gitlab, *action;
	} close_reopen[] = {{"close", "closed"}, {"reopen", "reopened"}};
	for (size_t i = 0; i < ARRAY_LEN(close_reopen); i++) {
		json_object_set_new(json_object_get(body, "object_attributes"), "action",
				    json_string(close_reopen[i].gitlab));
		ev = json_ok(gitlab_mr_headers, 2, body, &test_opt);
		check_str(ev, "action", close_reopen[i].action);
		check_str(ev, "branch", "fix/widget-count");
		json_decref(ev);
	}
	json_decref(body);
}

static void test_gitlab_refusals(void **state)
{
	(void)state;
	json_t *body = fixture_json("events/gitlab.merge_request.open.json");
	json_object_set_new(json_object_get(body, "object_attributes"), "action",
			    json_string("approved"));
	json_fail(gitlab_mr_headers, 2, body, &test_opt, EVENT_IGNORED, "!17 approved");
	json_object_del(json_object_get(body, "object_attributes"), "action");
	json_fail(gitlab_mr_headers, 2, body, &test_opt, EVENT_MALFORMED,
		  "gitlab merge request: object_attributes.action is missing");
	json_decref(body);

	body = fixture_json("events/gitlab.push.json");
	json_object_set_new(json_object_get(body, "project"), "path_with_namespace",
			    json_integer(5));
	json_fail(gitlab_push_headers, 2, body, &test_opt, EVENT_MALFORMED,
		  "gitlab push: project.path_with_namespace is not a string");
	json_object_del(body, "project");
	json_fail(gitlab_push_headers, 2, body, &test_opt, EVENT_MALFORMED,
		  "gitlab push: project is missing");
	json_decref(body);

	struct event_header note[] = {HDR("X-Gitlab-Event", "Note Hook")};
	expect_fail_str(note, 1, "{\"object_kind\":\"note\"}", EVENT_UNKNOWN,
			"gitlab: event \"Note Hook\" is not handled");
	struct event_header bad_uuid[] = {HDR("X-Gitlab-Event", "Push Hook"),
					  {"X-Gitlab-Event-UUID", "a\0b", 3}};
	size_t len;
	char *text = fixture_load("events/gitlab.push.json", &len);
	expect_fail(bad_uuid, 2, text, len, EVENT_MALFORMED, "NUL");
	free(text);
}

/* A pull_request trigger matches a GitLab merge request as it matches a GitHub PR. */
static void test_gitlab_merge_request_matches_pipelines(void **state)
{
	(void)state;
	static const char yaml[] = "name: mr\n"
				   "on:\n"
				   "  pull_request: { branches: [main], paths: [\"src/**\"] }\n"
				   "checkout: false\n"
				   "stages:\n"
				   "  - name: test\n"
				   "    uses: shell\n"
				   "    with: { run: \"true\" }\n";
	struct diags d = {0};
	struct pipeline *p = pipeline_load_string(yaml, strlen(yaml), "mr.yml", NULL, &d);
	assert_non_null(p);
	diags_free(&d);
	char why[256];
	json_t *ev = fixture_ok(gitlab_mr_headers, 2, "events/gitlab.merge_request.open.json");
	assert_true(pipeline_match(p, ev, why, sizeof why)); /* no paths listed: not filtered */
	json_decref(ev);
	ev = fixture_ok(gitlab_mr_headers, 2, "events/gitlab.merge_request.update.json");
	assert_true(pipeline_match(p, ev, why, sizeof why));
	json_decref(ev);
	/* merged and closed are not default actions, as for GitHub. */
	ev = fixture_ok(gitlab_mr_headers, 2, "events/gitlab.merge_request.merge.json");
	assert_false(pipeline_match(p, ev, why, sizeof why));
	assert_non_null(strstr(why, "action 'merged'"));
	json_decref(ev);
	/* Another target branch does not match. */
	json_t *body = fixture_json("events/gitlab.merge_request.open.json");
	json_object_set_new(json_object_get(body, "object_attributes"), "target_branch",
			    json_string("develop"));
	ev = json_ok(gitlab_mr_headers, 2, body, &test_opt);
	assert_false(pipeline_match(p, ev, why, sizeof why));
	assert_non_null(strstr(why, "base branch 'develop'"));
	json_decref(ev);
	json_decref(body);
	pipeline_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_github_fixtures_all),
	    cmocka_unit_test(test_github_push_tag_deleted),
	    cmocka_unit_test(test_github_push_new_branch),
	    cmocka_unit_test(test_github_pull_request_fixtures),
	    cmocka_unit_test(test_github_pull_request_synchronize),
	    cmocka_unit_test(test_github_ping_ignored),
	    cmocka_unit_test(test_github_pull_request_merged),
	    cmocka_unit_test(test_github_merged_without_merge_sha),
	    cmocka_unit_test(test_github_tag_push),
	    cmocka_unit_test(test_github_branch_deleted),
	    cmocka_unit_test(test_github_deleted_by_zero_sha_alone),
	    cmocka_unit_test(test_github_paths_union),
	    cmocka_unit_test(test_github_actor_falls_back_to_pusher),
	    cmocka_unit_test(test_github_unknown_event),
	    cmocka_unit_test(test_github_id_falls_back_to_kafka),
	    cmocka_unit_test(test_azure_push),
	    cmocka_unit_test(test_azure_pull_request_created),
	    cmocka_unit_test(test_azure_pull_request_updated),
	    cmocka_unit_test(test_azure_pull_request_merged),
	    cmocka_unit_test(test_azure_pull_request_status_rules),
	    cmocka_unit_test(test_azure_errors),
	    cmocka_unit_test(test_azure_via_cloudevent),
	    cmocka_unit_test(test_cloudevent_structured_github_push),
	    cmocka_unit_test(test_cloudevent_binary_github_push),
	    cmocka_unit_test(test_cloudevent_structured_drift),
	    cmocka_unit_test(test_cloudevent_drover_replay),
	    cmocka_unit_test(test_cloudevent_binary_drift),
	    cmocka_unit_test(test_cloudevent_errors),
	    cmocka_unit_test(test_cdevents_change_merged),
	    cmocka_unit_test(test_cdevents_change_created_and_unknown),
	    cmocka_unit_test(test_cdevents_incident_detected),
	    cmocka_unit_test(test_databricks_triggered),
	    cmocka_unit_test(test_databricks_mapped_by_id),
	    cmocka_unit_test(test_databricks_ok_ignored),
	    cmocka_unit_test(test_databricks_unmapped),
	    cmocka_unit_test(test_drift_raw),
	    cmocka_unit_test(test_drift_no_repository),
	    cmocka_unit_test(test_drift_severity_words),
	    cmocka_unit_test(test_drift_wrong_types),
	    cmocka_unit_test(test_malformed_json),
	    cmocka_unit_test(test_non_object),
	    cmocka_unit_test(test_wrong_types),
	    cmocka_unit_test(test_too_large),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_unknown_everything),
	    cmocka_unit_test(test_hostile_strings_verbatim),
	    cmocka_unit_test(test_small_error_buffers),
	    cmocka_unit_test(test_header_find),
	    cmocka_unit_test(test_outcome_names),
	    cmocka_unit_test(test_gitlab_push),
	    cmocka_unit_test(test_gitlab_push_variants),
	    cmocka_unit_test(test_gitlab_tag_push),
	    cmocka_unit_test(test_gitlab_merge_request_open),
	    cmocka_unit_test(test_gitlab_merge_request_update_and_merge),
	    cmocka_unit_test(test_gitlab_refusals),
	    cmocka_unit_test(test_gitlab_merge_request_matches_pipelines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
