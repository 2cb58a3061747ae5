/*
 * Tests for plugin_host: a good plugin loads; every kind of bad one is
 * refused; one built for the first descriptor still loads and is notified;
 * a reporter with nothing to report to is not (so no run event is built);
 * drain waits for every plugin's flushed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plugin_host.h"

static const struct drover_host services = {.abi = DROVER_PLUGIN_ABI,
					    .size = sizeof(struct drover_host)};

static void expect_refused(const char *file, const char *needle)
{
	struct plugin_host *h = plugin_host_new(&services);
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/tests/bad-plugins/%s", BUILD_DIR, file);
	assert_int_equal(plugin_host_load(h, path, err, sizeof err), -1);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_null(plugin_host_find(h, "bad_abi"));
	plugin_host_free(h);
}

static void test_refuses_wrong_abi(void **state)
{
	(void)state;
	expect_refused("bad_abi.so", "ABI version 99");
}

static void test_refuses_missing_symbol(void **state)
{
	(void)state;
	expect_refused("bad_nosymbol.so", "no drover_plugin_entry");
}

static void test_refuses_small_descriptor(void **state)
{
	(void)state;
	expect_refused("bad_small.so", "descriptor is 16 bytes");
}

static void test_refuses_other_signature(void **state)
{
	(void)state;
	expect_refused("bad_signature.so", "ptr4");
}

static void test_refuses_missing_file(void **state)
{
	(void)state;
	expect_refused("nothing-here.so", "dlopen failed");
}

/* Agent-level services for the status plugin's init; never called here. */
static int no_http(void *ctx, const struct drover_http_request *req, drover_http_done_fn done,
		   void *arg)
{
	(void)ctx, (void)req, (void)done, (void)arg;
	return -1;
}

static struct drover_timer *no_timer(void *ctx, int64_t ms, void (*cb)(void *), void *arg)
{
	(void)ctx, (void)ms, (void)cb, (void)arg;
	return NULL;
}

static void no_cancel(void *ctx, struct drover_timer *t)
{
	(void)ctx, (void)t;
}

static void no_log(void *ctx, enum drover_log_level level, const char *fmt, ...)
{
	(void)ctx, (void)level, (void)fmt;
}

static const struct drover_host agent_services = {.abi = DROVER_PLUGIN_ABI,
						  .size = sizeof(struct drover_host),
						  .http_request = no_http,
						  .timer_start = no_timer,
						  .timer_cancel = no_cancel,
						  .plugin_log = no_log};

static void on_drained(void *arg)
{
	++*(int *)arg;
}

static void test_notify_only_when_wanted(void **state)
{
	(void)state;
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/plugins/status.so", BUILD_DIR);
	/* No plugin_config.status: no git host, so no run event is wanted. */
	struct plugin_host *h = plugin_host_new(&agent_services);
	assert_int_equal(plugin_host_load(h, path, err, sizeof err), 0);
	assert_false(plugin_host_has_notify(h));
	int drained = 0;
	plugin_host_drain(h, on_drained, &drained); /* nothing queued: at once */
	assert_int_equal(drained, 1);
	plugin_host_free(h);

	/* A git host configured: wanted. */
	setenv("TEST_PLUGIN_HOST_TOKEN", "t0ken", 1);
	json_t *configs =
	    json_pack("{s:{s:{s:s}}}", "status", "github", "token_env", "TEST_PLUGIN_HOST_TOKEN");
	h = plugin_host_new(&agent_services);
	plugin_host_set_config(h, configs);
	assert_int_equal(plugin_host_load(h, path, err, sizeof err), 0);
	assert_true(plugin_host_has_notify(h));
	plugin_host_free(h);
	json_decref(configs);
}

static void test_loads_first_descriptor(void **state)
{
	(void)state;
	struct plugin_host *h = plugin_host_new(&services);
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/tests/bad-plugins/old_notify.so", BUILD_DIR);
	assert_int_equal(plugin_host_load(h, path, err, sizeof err), 0);
	/* Its wants_notify (false) lies past its size: not read. */
	assert_true(plugin_host_has_notify(h));
	json_t *ev = json_object();
	plugin_host_notify(h, ev);
	json_decref(ev);
	const struct loaded_plugin *p = plugin_host_find(h, "old_notify");
	assert_int_equal(*(int *)p->state, 1);
	/* Nor its drain (which aborts). */
	int drained = 0;
	plugin_host_drain(h, on_drained, &drained);
	assert_int_equal(drained, 1);
	plugin_host_free(h);
}

static void test_loads_shell_and_checks_with(void **state)
{
	(void)state;
	struct plugin_host *h = plugin_host_new(&services);
	int refused = plugin_host_load_dir(h, BUILD_DIR "/plugins");
	assert_int_equal(refused, 0);
	const struct loaded_plugin *p = plugin_host_find(h, "shell");
	assert_non_null(p);
	assert_true(plugin_host_has(h, "shell"));
	assert_false(plugin_host_has(h, "nope"));

	char err[256];
	json_t *ok = json_pack("{s:s}", "run", "true");
	assert_int_equal(plugin_check_with(p->desc, ok, err, sizeof err), 0);
	json_t *missing = json_object();
	assert_int_equal(plugin_check_with(p->desc, missing, err, sizeof err), -1);
	assert_non_null(strstr(err, "needs parameter 'run'"));
	json_t *unknown = json_pack("{s:s,s:i}", "run", "true", "rnu", 1);
	assert_int_equal(plugin_check_with(p->desc, unknown, err, sizeof err), -1);
	assert_non_null(strstr(err, "no parameter 'rnu'"));
	json_t *wrong = json_pack("{s:i}", "run", 3);
	assert_int_equal(plugin_check_with(p->desc, wrong, err, sizeof err), -1);
	assert_non_null(strstr(err, "must be a string"));
	json_decref(ok);
	json_decref(missing);
	json_decref(unknown);
	json_decref(wrong);
	plugin_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refuses_wrong_abi),
	    cmocka_unit_test(test_refuses_missing_symbol),
	    cmocka_unit_test(test_refuses_small_descriptor),
	    cmocka_unit_test(test_refuses_other_signature),
	    cmocka_unit_test(test_refuses_missing_file),
	    cmocka_unit_test(test_loads_shell_and_checks_with),
	    cmocka_unit_test(test_notify_only_when_wanted),
	    cmocka_unit_test(test_loads_first_descriptor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
