/* Tests for plugin_host: a good plugin loads; every kind of bad one is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
