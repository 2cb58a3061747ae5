/*
 * test_config: agent.yaml → struct config. Defaults, the full contract
 * example, every kind of error with its line, token and secret resolution,
 * and the size and duration spellings.
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

#include "config.h"
#include "util.h"

/* Writes text to a new temporary file; the caller unlinks and frees the path. */
static char *temp_write(const char *text)
{
	char *path = xstrdup("/tmp/drover-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

/* Loads yaml text through a temporary file. */
static struct config *load_text(const char *yaml, struct diags *diags)
{
	char *path = temp_write(yaml);
	struct config *cfg = config_load(path, diags);
	if (cfg != NULL)
		assert_string_equal(cfg->path, path);
	for (size_t i = 0; i < diags->n; i++)
		assert_string_equal(diags->items[i].file, path);
	unlink(path);
	free(path);
	return cfg;
}

/* Asserts that yaml is refused with exactly one diag, at line, containing text. */
static void expect_one_error(const char *yaml, int line, const char *text)
{
	struct diags d = {0};
	struct config *cfg = load_text(yaml, &d);
	if (cfg != NULL || d.n != 1 || d.items[0].line != line ||
	    strstr(d.items[0].message, text) == NULL) {
		print_error("yaml:\n%s\nexpected line %d '%s', got:\n", yaml, line, text);
		diags_print(&d, stderr);
		fail();
	}
	diags_free(&d);
}

static void expect_defaults(const struct config *cfg)
{
	assert_string_equal(cfg->state_dir, "./state");
	assert_string_equal(cfg->pipelines_dir, "./pipelines");
	assert_string_equal(cfg->plugins_dir, "./build/plugins");
	assert_int_equal(cfg->max_parallel, 8);
	assert_int_equal(cfg->max_queued_runs, 1000);
	assert_int_equal(cfg->max_event_bytes, 1048576);
	assert_int_equal(cfg->max_log_bytes, 10 * 1048576);
	assert_int_equal(cfg->stage_kill_grace_ms, 10000);
	assert_int_equal(cfg->stop_grace_ms, 30000);
	assert_int_equal(cfg->keep_failed_workspace_ms, 3600000);
	assert_string_equal(cfg->kafka.brokers, "embedded");
	assert_string_equal(cfg->kafka.group, "drover");
	assert_string_equal(cfg->kafka.events_topic, "drover.events");
	assert_string_equal(cfg->kafka.results_topic, "drover.results");
	assert_string_equal(cfg->kafka.dead_letter_topic, "drover.dead-letter");
	assert_int_equal(cfg->kafka.embedded_partitions, 4);
	assert_true(json_is_object(cfg->kafka.properties));
	assert_int_equal(json_object_size(cfg->kafka.properties), 0);
	assert_string_equal(cfg->admin.listen, "127.0.0.1:8470");
	assert_null(cfg->admin.token_file);
	assert_null(cfg->admin.token);
	assert_int_equal(cfg->admin.max_body_bytes, 1048576);
	assert_int_equal(cfg->admin.max_header_bytes, 65536);
	assert_int_equal(cfg->admin.max_log_followers, 32);
	assert_int_equal(cfg->n_repos, 0);
	assert_int_equal(cfg->n_secrets, 0);
	assert_int_equal(cfg->n_alerts, 0);
	assert_int_equal(cfg->n_models, 0);
}

static void test_defaults_without_file(void **state)
{
	(void)state;
	struct diags d = {0};
	struct config *cfg = config_load(NULL, &d);
	assert_non_null(cfg);
	assert_int_equal(d.n, 0);
	assert_null(cfg->path);
	expect_defaults(cfg);
	assert_null(config_find_repo(cfg, "acme/churn"));
	struct event_options opt;
	config_event_options(cfg, &opt);
	assert_int_equal(opt.max_payload_bytes, 1048576);
	assert_int_equal(opt.n_alerts, 0);
	assert_int_equal(opt.n_models, 0);
	config_free(cfg);
}

static void test_empty_file_is_defaults(void **state)
{
	(void)state;
	const char *texts[] = {"", "# nothing here\n", "---\n", "~\n", "{}\n"};
	for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
		struct diags d = {0};
		struct config *cfg = load_text(texts[i], &d);
		assert_non_null(cfg);
		assert_int_equal(d.n, 0);
		expect_defaults(cfg);
		config_free(cfg);
	}
}

static void test_full_example(void **state)
{
	(void)state;
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(FIXTURES_DIR "/config"), 0);
	setenv("QA_TOKEN", "qa-token-from-env", 1);
	struct diags d = {0};
	struct config *cfg = config_load("full.yaml", &d);
	unsetenv("QA_TOKEN");
	assert_int_equal(chdir(cwd), 0);
	diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	assert_non_null(cfg);

	assert_string_equal(cfg->path, "full.yaml");
	assert_string_equal(cfg->state_dir, "/var/lib/drover/state");
	assert_string_equal(cfg->pipelines_dir, "/usr/share/drover/pipelines");
	assert_string_equal(cfg->plugins_dir, "/usr/lib/drover/plugins");
	assert_int_equal(cfg->max_parallel, 16);
	assert_int_equal(cfg->max_queued_runs, 250);
	assert_int_equal(cfg->max_event_bytes, 512 * 1024);
	assert_int_equal(cfg->max_log_bytes, 20 * 1048576);
	assert_int_equal(cfg->stage_kill_grace_ms, 5000);
	assert_int_equal(cfg->stop_grace_ms, 120000);
	assert_int_equal(cfg->keep_failed_workspace_ms, 5400000);

	assert_string_equal(cfg->kafka.brokers, "kafka-1:9092,kafka-2:9092");
	assert_string_equal(cfg->kafka.group, "drover-qa");
	assert_string_equal(cfg->kafka.events_topic, "ci.events");
	assert_string_equal(cfg->kafka.results_topic, "ci.results");
	assert_string_equal(cfg->kafka.dead_letter_topic, "ci.dead-letter");
	assert_int_equal(cfg->kafka.embedded_partitions, 6);
	json_t *props = cfg->kafka.properties;
	assert_int_equal(json_object_size(props), 3);
	assert_string_equal(json_string_value(json_object_get(props, "security.protocol")),
			    "SASL_SSL");
	assert_string_equal(json_string_value(json_object_get(props, "linger.ms")), "5");
	assert_string_equal(json_string_value(json_object_get(props, "enable.idempotence")),
			    "true");

	assert_string_equal(cfg->admin.listen, "0.0.0.0:9470");
	assert_null(cfg->admin.token_file);
	assert_null(cfg->admin.token);
	assert_int_equal(cfg->admin.max_body_bytes, 2 * 1048576);
	assert_int_equal(cfg->admin.max_header_bytes, 32 * 1024);

	assert_int_equal(cfg->n_repos, 2);
	assert_string_equal(cfg->repos[0].name, "Codertocat/Hello-World");
	assert_string_equal(cfg->repos[0].url, "/srv/git/hello.git");
	assert_string_equal(cfg->repos[1].name, "acme/churn");
	assert_string_equal(cfg->repos[1].url, "https://git.example.com/acme/churn.git");

	assert_int_equal(cfg->n_secrets, 2);
	assert_string_equal(cfg->secrets[0], "qa-token-from-env");
	assert_string_equal(cfg->secrets[1], "file-secret-value");

	assert_int_equal(cfg->n_alerts, 2);
	assert_string_equal(cfg->alerts[0].alert, "churn-drift");
	assert_string_equal(cfg->alerts[0].model, "churn");
	assert_string_equal(cfg->alerts[1].alert, "4f1c0a2e-alert-id");
	assert_string_equal(cfg->alerts[1].model, "churn");
	assert_int_equal(cfg->n_models, 2);
	assert_string_equal(cfg->models[0].model, "churn");
	assert_string_equal(cfg->models[0].repo, "acme/churn");
	assert_string_equal(cfg->models[0].branch, "main");
	assert_string_equal(cfg->models[1].model, "fraud");
	assert_string_equal(cfg->models[1].repo, "acme/churn");
	assert_null(cfg->models[1].branch);

	const struct repo_config *repo = config_find_repo(cfg, "acme/churn");
	assert_ptr_equal(repo, &cfg->repos[1]);
	assert_null(config_find_repo(cfg, "acme/Churn"));
	assert_null(config_find_repo(cfg, "acme/churn2"));
	assert_null(config_find_repo(cfg, "acme"));
	assert_null(config_find_repo(cfg, NULL));

	struct event_options opt;
	config_event_options(cfg, &opt);
	assert_int_equal(opt.max_payload_bytes, 512 * 1024);
	assert_ptr_equal(opt.alerts, cfg->alerts);
	assert_int_equal(opt.n_alerts, 2);
	assert_ptr_equal(opt.models, cfg->models);
	assert_int_equal(opt.n_models, 2);
	config_free(cfg);
}

/* The shipped default configuration loads cleanly and says exactly the defaults. */
static void test_packaged_default_config(void **state)
{
	(void)state;
	struct diags d = {0};
	struct config *cfg = config_load(SOURCE_DIR "/packaging/agent.yaml", &d);
	diags_print(&d, stderr);
	assert_int_equal(d.n, 0);
	assert_non_null(cfg);
	expect_defaults(cfg);
	config_free(cfg);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct diags d = {0};
	const char *path = "/nonexistent/drover/agent.yaml";
	assert_null(config_load(path, &d));
	assert_int_equal(d.n, 1);
	assert_string_equal(d.items[0].file, path);
	assert_int_equal(d.items[0].line, 0);
	assert_string_equal(d.items[0].message, "cannot read: No such file or directory");
	diags_free(&d);
}

/* Every mistake in errors.yaml is reported, each at its own line. */
static void test_all_errors_collected(void **state)
{
	(void)state;
	static const struct {
		int line;
		const char *text;
	} want[] = {
	    {3, "'max_parallel' must be an integer in 1..1024, not 'eight'"},
	    {4, "'max_queued_runs' must be an integer"},
	    {5, "'max_event_bytes' must be a size"},
	    {6, "'stage_kill_grace' must be a duration"},
	    {7, "unknown key 'colour' (allowed: state_dir, pipelines, plugins, max_parallel,"},
	    {10, "unknown key 'partitions' (allowed: brokers, group, events_topic, "
		 "results_topic, dead_letter_topic, embedded_partitions, properties)"},
	    {12, "'kafka.properties.nested' must be a value, not a mapping"},
	    {14, "'admin.listen' is '127.0.0.1:65536': the port must be a number 0..65535"},
	    {15, "'admin.max_body_bytes' must be a size above zero"},
	    {19, "duplicate repo 'acme/churn'"},
	    {21, "a repos entry needs both 'name' and 'url'"},
	    {23, "secret file './does-not-exist.txt': cannot read: No such file"},
	    {24, "'drift' must be a mapping, not a list"},
	};
	struct diags d = {0};
	const char *path = FIXTURES_DIR "/config/errors.yaml";
	assert_null(config_load(path, &d));
	diags_print(&d, stderr);
	assert_int_equal(d.n, ARRAY_LEN(want));
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		assert_string_equal(d.items[i].file, path);
		assert_int_equal(d.items[i].line, want[i].line);
		assert_non_null(strstr(d.items[i].message, want[i].text));
	}
	diags_free(&d);
}

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_one_error("state_dir: x\nstate_directory: y\n", 2,
			 "unknown key 'state_directory' (allowed: state_dir, pipelines, "
			 "plugins, max_parallel, max_queued_runs, max_event_bytes, "
			 "max_log_bytes, stage_kill_grace, stop_grace, keep_failed_workspace, "
			 "kafka, admin, repos, secrets, drift, hooks, plugin_config)");
	expect_one_error("admin:\n  listen: 127.0.0.1:1\n  token: abc\n", 3,
			 "unknown key 'token' (allowed: listen, token_file, max_body_bytes, "
			 "max_header_bytes, max_log_followers)");
	expect_one_error("repos:\n  - name: a/b\n    url: /x\n    branch: main\n", 4,
			 "unknown key 'branch' (allowed: name, url)");
	expect_one_error("drift:\n  alerts: []\n  thresholds: {}\n", 3,
			 "unknown key 'thresholds' (allowed: alerts, models)");
	expect_one_error("drift:\n  models:\n    - {model: m, repo: a/b, env: qa}\n", 3,
			 "unknown key 'env' (allowed: model, repo, branch)");
	expect_one_error("secrets:\n  - vault: x\n", 2, "unknown key 'vault' (allowed: env, file)");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_one_error("- a\n- b\n", 1, "the file must be a mapping of keys, not a list");
	expect_one_error("just words\n", 1, "the file must be a mapping of keys, not a scalar");
	expect_one_error("kafka: embedded\n", 1, "'kafka' must be a mapping, not a scalar");
	expect_one_error("state_dir: [a, b]\n", 1, "'state_dir' must be a value, not a list");
	expect_one_error("state_dir:\n", 1, "'state_dir' must be a value, not null");
	expect_one_error("state_dir: \"\"\n", 1, "'state_dir' must not be empty");
	expect_one_error("kafka:\n  group: {a: 1}\n", 2,
			 "'kafka.group' must be a value, not a mapping");
	expect_one_error("max_parallel: 0\n", 1, "'max_parallel' must be an integer in 1..1024");
	expect_one_error("max_parallel: 1025\n", 1, "not '1025'");
	expect_one_error("max_parallel: 8.5\n", 1, "not '8.5'");
	expect_one_error("max_parallel: 99999999999999999999\n", 1, "'max_parallel'");
	expect_one_error("\n\nkafka:\n  embedded_partitions: 0\n", 4,
			 "'kafka.embedded_partitions' must be an integer in 1..1024");
	expect_one_error("repos: acme/churn\n", 1, "'repos' must be a list, not a scalar");
	expect_one_error("repos:\n  - acme/churn\n", 2, "a repos entry must be {name, url}");
	expect_one_error("secrets: {env: X}\n", 1, "'secrets' must be a list, not a mapping");
	expect_one_error("secrets:\n  - {env: A, file: /b}\n", 2,
			 "a secrets entry must be exactly one of {env: NAME} or {file: PATH}");
	expect_one_error("secrets:\n  - X\n", 2, "a secrets entry must be exactly one of");
	expect_one_error("kafka:\n  properties: [a]\n", 2,
			 "'kafka.properties' must be a mapping of name: value, not a list");
	expect_one_error("kafka:\n  properties:\n    acks:\n", 3,
			 "'kafka.properties.acks' must be a value, not null");
	expect_one_error("drift:\n  alerts:\n    - {alert: a}\n", 3,
			 "a drift.alerts entry needs both 'alert' and 'model'");
	expect_one_error("drift:\n  models:\n    - {model: m}\n", 3,
			 "a drift.models entry needs 'model' and 'repo'");
	expect_one_error("drift:\n  models: [m]\n", 2,
			 "a drift.models entry must be {model, repo, branch}");
}

static void test_duplicates(void **state)
{
	(void)state;
	expect_one_error("repos:\n"
			 "  - {name: acme/churn, url: /a}\n"
			 "  - {name: acme/other, url: /b}\n"
			 "  - {name: acme/churn, url: /c}\n",
			 4, "duplicate repo 'acme/churn'");
	expect_one_error("max_parallel: 2\nmax_parallel: 3\n", 2, "duplicate key 'max_parallel'");
	expect_one_error("kafka:\n  properties:\n    acks: all\n    acks: 1\n", 4,
			 "duplicate key 'acks'");
	expect_one_error(
	    "drift:\n  alerts:\n    - {alert: a, model: m}\n    - {alert: a, model: n}\n", 4,
	    "duplicate alert 'a'");
	expect_one_error(
	    "drift:\n  models:\n    - {model: m, repo: a/b}\n    - {model: m, repo: c/d}\n", 4,
	    "duplicate model 'm'");
}

static void test_yaml_syntax_and_documents(void **state)
{
	(void)state;
	struct diags d = {0};
	assert_null(load_text("state_dir: ./state\nkafka:\n  group: [unclosed\n", &d));
	assert_int_equal(d.n, 1);
	assert_true(d.items[0].line >= 3);
	diags_free(&d);
	expect_one_error("max_parallel: 2\n---\nmax_parallel: 3\n", 3,
			 "only one YAML document is allowed");
}

static void test_token_file(void **state)
{
	(void)state;
	char *token_path = temp_write("s3cret-admin token \t\r\n\n");
	char *yaml = xasprintf("admin:\n  token_file: %s\n", token_path);
	struct diags d = {0};
	struct config *cfg = load_text(yaml, &d);
	assert_non_null(cfg);
	assert_int_equal(d.n, 0);
	assert_string_equal(cfg->admin.token_file, token_path);
	assert_string_equal(cfg->admin.token, "s3cret-admin token");
	config_free(cfg);
	free(yaml);
	unlink(token_path);
	free(token_path);

	char *empty_path = temp_write(" \n\n");
	yaml = xasprintf("\nadmin:\n  token_file: %s\n", empty_path);
	expect_one_error(yaml, 3, "is empty");
	free(yaml);
	unlink(empty_path);
	free(empty_path);

	expect_one_error("admin:\n  token_file: /nonexistent/token\n", 2,
			 "'admin.token_file': cannot read '/nonexistent/token': No such file");
	expect_one_error("admin:\n  token_file: /\n", 2, "cannot read '/'");

	cfg = load_text("admin:\n  token_file: ~\n", &d);
	assert_non_null(cfg);
	assert_null(cfg->admin.token_file);
	assert_null(cfg->admin.token);
	config_free(cfg);
}

static void test_secrets(void **state)
{
	(void)state;
	char *file = temp_write("line one\nline two\r\n\n");
	char *short_file = temp_write("ab\n");
	setenv("DROVER_TEST_SECRET_A", "env-secret-a", 1);
	setenv("DROVER_TEST_SECRET_SHORT", "xyz", 1);
	unsetenv("DROVER_TEST_SECRET_UNSET");
	char *yaml = xasprintf("secrets:\n"
			       "  - env: DROVER_TEST_SECRET_A\n"
			       "  - env: DROVER_TEST_SECRET_UNSET\n"
			       "  - file: %s\n"
			       "  - env: DROVER_TEST_SECRET_SHORT\n"
			       "  - file: %s\n"
			       "  - env: DROVER_TEST_SECRET_A\n",
			       file, short_file);
	struct diags d = {0};
	struct config *cfg = load_text(yaml, &d);
	assert_non_null(cfg);
	assert_int_equal(d.n, 0);
	/* unset: skipped with a warning; short: kept; repeated: once */
	assert_int_equal(cfg->n_secrets, 4);
	assert_string_equal(cfg->secrets[0], "env-secret-a");
	assert_string_equal(cfg->secrets[1], "line one\nline two");
	assert_string_equal(cfg->secrets[2], "xyz");
	assert_string_equal(cfg->secrets[3], "ab");
	config_free(cfg);
	free(yaml);
	unlink(file);
	unlink(short_file);
	free(file);
	free(short_file);
	unsetenv("DROVER_TEST_SECRET_A");
	unsetenv("DROVER_TEST_SECRET_SHORT");

	expect_one_error("secrets:\n  - env: X\n  - file: /nonexistent/secret\n", 3,
			 "secret file '/nonexistent/secret': cannot read: No such file");
	expect_one_error("secrets:\n  - env:\n", 2, "'secrets[].env' must be a value, not null");
}

/* Loads max_event_bytes: text and returns the bytes, or 0 when refused. */
static size_t size_of(const char *text)
{
	char *yaml = xasprintf("max_event_bytes: %s\n", text);
	struct diags d = {0};
	struct config *cfg = load_text(yaml, &d);
	free(yaml);
	size_t bytes = cfg != NULL ? cfg->max_event_bytes : 0;
	assert_true((cfg == NULL) == (d.n == 1));
	config_free(cfg);
	diags_free(&d);
	return bytes;
}

static void test_sizes(void **state)
{
	(void)state;
	assert_int_equal(size_of("1048576"), 1048576);
	assert_int_equal(size_of("1"), 1);
	assert_int_equal(size_of("100B"), 100);
	assert_int_equal(size_of("512KiB"), 512 * 1024);
	assert_int_equal(size_of("1MiB"), 1048576);
	assert_int_equal(size_of("\"1 MiB\""), 1048576);
	assert_int_equal(size_of("1mib"), 1048576);
	assert_int_equal(size_of("64K"), 65536);
	assert_int_equal(size_of("10M"), 10 * 1048576);
	assert_int_equal(size_of("2GiB"), (size_t)2 * 1024 * 1024 * 1024);
	assert_int_equal(size_of("10KB"), 10000);
	assert_int_equal(size_of("3MB"), 3000000);
	assert_int_equal(size_of("1GB"), 1000000000);
	const char *bad[] = {"0",
			     "0MiB",
			     "1.5MiB",
			     "-1",
			     "MiB",
			     "\"1 \"",
			     "1XB",
			     "1Ki",
			     "1TiB",
			     "1 2",
			     "\"1  MiB\"",
			     "\" 1\"",
			     "1MiBs",
			     "99999999999999999999",
			     "18446744073709551615GiB",
			     "ten"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		if (size_of(bad[i]) != 0)
			fail_msg("size '%s' was accepted", bad[i]);
	}
}

/* Loads stop_grace: text and returns milliseconds, or -1 when refused. */
static int64_t duration_of(const char *text)
{
	char *yaml = xasprintf("max_parallel: 1\nstop_grace: %s\n", text);
	struct diags d = {0};
	struct config *cfg = load_text(yaml, &d);
	free(yaml);
	int64_t ms = -1;
	if (cfg != NULL) {
		ms = cfg->stop_grace_ms;
	} else {
		assert_int_equal(d.n, 1);
		assert_int_equal(d.items[0].line, 2);
		assert_non_null(strstr(d.items[0].message, "'stop_grace' must be a duration"));
	}
	config_free(cfg);
	diags_free(&d);
	return ms;
}

static void test_durations(void **state)
{
	(void)state;
	assert_int_equal(duration_of("500ms"), 500);
	assert_int_equal(duration_of("30s"), 30000);
	assert_int_equal(duration_of("45"), 45000);
	assert_int_equal(duration_of("0"), 0);
	assert_int_equal(duration_of("10m"), 600000);
	assert_int_equal(duration_of("1h30m"), 5400000);
	assert_int_equal(duration_of("1d"), 86400000);
	assert_int_equal(duration_of("soon"), -1);
	assert_int_equal(duration_of("-5s"), -1);
	assert_int_equal(duration_of("10 minutes"), -1);
	assert_int_equal(duration_of("1.5h"), -1);
}

static void test_listen_addresses(void **state)
{
	(void)state;
	const char *good[] = {"127.0.0.1:8470", "0.0.0.0:0", "localhost:65535", "[::1]:8470",
			      "[::]:1"};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		char *yaml = xasprintf("admin: {listen: \"%s\"}\n", good[i]);
		struct diags d = {0};
		struct config *cfg = load_text(yaml, &d);
		if (cfg == NULL)
			fail_msg("listen '%s' was refused", good[i]);
		assert_string_equal(cfg->admin.listen, good[i]);
		config_free(cfg);
		free(yaml);
	}
	const char *bad[] = {"127.0.0.1:65536", "localhost",  ":8470", "::1:8470",
			     "[::1]8470",	"[]:80",      "host:", "host:http",
			     "host:-1",		"host:123456"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char *yaml = xasprintf("admin: {listen: \"%s\"}\n", bad[i]);
		expect_one_error(yaml, 1, "'admin.listen' is");
		free(yaml);
	}
}

/* hooks: secrets from files and the environment, masked, never optional once configured. */
static void test_hooks(void **state)
{
	(void)state;
	char *file = temp_write("gh-hook-secret\n");
	char *pw_file = temp_write("azure-pass\r\n");
	char *empty = temp_write("\n");
	setenv("DROVER_TEST_GITLAB_TOKEN", "gl-token-value", 1);
	unsetenv("DROVER_TEST_UNSET_TOKEN");
	char *yaml = xasprintf("hooks:\n"
			       "  github: { secret_file: %s }\n"
			       "  gitlab: { token_env: DROVER_TEST_GITLAB_TOKEN }\n"
			       "  azure_devops: { username: drover, password_file: %s }\n"
			       "secrets:\n"
			       "  - env: DROVER_TEST_GITLAB_TOKEN\n",
			       file, pw_file);
	struct diags d = {0};
	struct config *cfg = load_text(yaml, &d);
	assert_non_null(cfg);
	assert_int_equal(d.n, 0);
	assert_string_equal(cfg->hooks.github_secret, "gh-hook-secret");
	assert_string_equal(cfg->hooks.gitlab_token, "gl-token-value");
	assert_string_equal(cfg->hooks.azure_username, "drover");
	assert_string_equal(cfg->hooks.azure_password, "azure-pass");
	/* All three are masked, each once (secrets: repeats the GitLab token). */
	assert_int_equal(cfg->n_secrets, 3);
	assert_string_equal(cfg->secrets[0], "gh-hook-secret");
	assert_string_equal(cfg->secrets[1], "gl-token-value");
	assert_string_equal(cfg->secrets[2], "azure-pass");
	config_free(cfg);
	free(yaml);

	/* Nothing configured: every receiver is off. */
	cfg = load_text("hooks: {}\n", &d);
	assert_non_null(cfg);
	assert_null(cfg->hooks.github_secret);
	assert_null(cfg->hooks.gitlab_token);
	assert_null(cfg->hooks.azure_password);
	config_free(cfg);

	/* An unset variable leaves the receiver off (a warning, not an error). */
	cfg = load_text("hooks:\n  gitlab: { token_env: DROVER_TEST_UNSET_TOKEN }\n", &d);
	assert_non_null(cfg);
	assert_int_equal(d.n, 0);
	assert_null(cfg->hooks.gitlab_token);
	assert_int_equal(cfg->n_secrets, 0);
	config_free(cfg);
	cfg = load_text(
	    "hooks:\n  azure_devops: { username: u, password_env: DROVER_TEST_UNSET_TOKEN }\n", &d);
	assert_non_null(cfg);
	assert_string_equal(cfg->hooks.azure_username, "u");
	assert_null(cfg->hooks.azure_password);
	config_free(cfg);
	expect_one_error("hooks:\n  github:\n    secret_file: /nonexistent/hook\n", 3,
			 "'hooks.github.secret_file': cannot read '/nonexistent/hook'");
	yaml = xasprintf("hooks:\n  github:\n    secret_file: %s\n", empty);
	expect_one_error(yaml, 3, "'hooks.github.secret_file': the secret in");
	free(yaml);
	yaml = xasprintf("hooks:\n  github:\n    secret_file: %s\n"
			 "    secret_env: DROVER_TEST_GITLAB_TOKEN\n",
			 file);
	expect_one_error(yaml, 4, "give the secret once");
	free(yaml);
	expect_one_error("hooks:\n  azure_devops: { password_env: DROVER_TEST_GITLAB_TOKEN }\n", 0,
			 "hooks.azure_devops needs both 'username' and a password");
	expect_one_error("hooks:\n  azure_devops: { username: x }\n", 0,
			 "hooks.azure_devops needs both");
	expect_one_error("hooks:\n  bitbucket: {}\n", 2,
			 "unknown key 'bitbucket' (allowed: github, gitlab, azure_devops)");
	expect_one_error("hooks:\n  github: { secret: abc }\n", 2,
			 "unknown key 'secret' (allowed: secret_file, secret_env)");
	unsetenv("DROVER_TEST_GITLAB_TOKEN");
	unlink(file);
	unlink(pw_file);
	unlink(empty);
	free(file);
	free(pw_file);
	free(empty);
}

/* plugin_config: each plugin's mapping as typed JSON; anything but a mapping is refused. */
static void test_plugin_config(void **state)
{
	(void)state;
	struct diags d = {0};
	struct config *cfg = load_text("plugin_config:\n"
				       "  status:\n"
				       "    max_queue: 5\n"
				       "    quoted: \"5\"\n"
				       "    on: true\n"
				       "    none: ~\n"
				       "    github: { api_url: http://x, token_env: T }\n"
				       "    list: [a, 2]\n",
				       &d);
	assert_non_null(cfg);
	const json_t *st = json_object_get(cfg->plugin_config, "status");
	assert_true(json_is_object(st));
	assert_int_equal(json_integer_value(json_object_get(st, "max_queue")), 5);
	assert_string_equal(json_string_value(json_object_get(st, "quoted")), "5");
	assert_true(json_is_true(json_object_get(st, "on")));
	assert_true(json_is_null(json_object_get(st, "none")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(st, "github"), "api_url")),
	    "http://x");
	assert_int_equal(json_integer_value(json_array_get(json_object_get(st, "list"), 1)), 2);
	config_free(cfg);
	diags_free(&d);
	expect_one_error("plugin_config:\n  status: [1]\n", 2,
			 "'plugin_config.status' must be a mapping, not a list");
	expect_one_error("plugin_config: [status]\n", 1,
			 "'plugin_config' must be a mapping of plugin name: settings");
	/* Absent: an empty object, so every plugin's init gets NULL. */
	cfg = load_text("state_dir: x\n", &d);
	assert_int_equal(json_object_size(cfg->plugin_config), 0);
	config_free(cfg);
	diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults_without_file),
	    cmocka_unit_test(test_empty_file_is_defaults),
	    cmocka_unit_test(test_full_example),
	    cmocka_unit_test(test_packaged_default_config),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_all_errors_collected),
	    cmocka_unit_test(test_unknown_keys),
	    cmocka_unit_test(test_wrong_types),
	    cmocka_unit_test(test_duplicates),
	    cmocka_unit_test(test_yaml_syntax_and_documents),
	    cmocka_unit_test(test_token_file),
	    cmocka_unit_test(test_secrets),
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_listen_addresses),
	    cmocka_unit_test(test_hooks),
	    cmocka_unit_test(test_plugin_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
