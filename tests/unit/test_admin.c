/*
 * Tests for admin_path_match, the route matcher of the admin API: literal
 * segments, run ids (digits only, no sign, no overflow, not 0), stage names
 * (one segment, percent-decoded, never empty or holding a '/'), and paths
 * that are one segment short or long, or end in a slash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin.h"
#include "util.h"

struct path_case {
	const char *pattern, *path;
	bool is_match;
	long long run_id;
	const char *name; /* NULL: none captured */
};

static const struct path_case cases[] = {
    {"/healthz", "/healthz", true, 0, NULL},
    {"/healthz", "/healthz/", false, 0, NULL},
    {"/healthz", "/healthzz", false, 0, NULL},
    {"/healthz", "/health", false, 0, NULL},
    {"/healthz", "", false, 0, NULL},
    {"/healthz", "healthz", false, 0, NULL},
    {"/api/v1/runs", "/api/v1/runs", true, 0, NULL},
    {"/api/v1/runs", "/api/v1/runs/", false, 0, NULL},
    {"/api/v1/runs", "/api/v1//runs", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/42", true, 42, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/007", true, 7, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/9223372036854775807", true, INT64_MAX, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/9223372036854775808", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/99999999999999999999999", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/0", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/+5", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/-5", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/ 5", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/5x", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs", false, 0, NULL},
    {"/api/v1/runs/{id}", "/api/v1/runs/5/cancel", false, 0, NULL},
    {"/api/v1/runs/{id}/cancel", "/api/v1/runs/5/cancel", true, 5, NULL},
    {"/api/v1/runs/{id}/cancel", "/api/v1/runs/5/cancel/", false, 0, NULL},
    {"/api/v1/runs/{id}/cancel", "/api/v1/runs//cancel", false, 0, NULL},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages/unit/log", true, 3, "unit"},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages/a%20b/log", true, 3, "a b"},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages/a+b/log", true, 3, "a+b"},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages/a%2Fb/log", false, 0, NULL},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages//log", false, 0, NULL},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages/a/b/log", false, 0, NULL},
    {"/api/v1/runs/{id}/stages/{name}/log", "/api/v1/runs/3/stages/unit", false, 0, NULL},
};

static void test_admin_path_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const struct path_case *c = &cases[i];
		struct admin_path p = {.run_id = -1, .name = (char *)"junk"};
		bool is_match = admin_path_match(c->pattern, c->path, &p);
		if (is_match != c->is_match)
			fail_msg("%s against %s: %s, want %s", c->path, c->pattern,
				 is_match ? "match" : "none", c->is_match ? "match" : "none");
		if (!is_match) {
			assert_null(p.name);
			continue;
		}
		assert_int_equal(p.run_id, c->run_id);
		if (c->name == NULL)
			assert_null(p.name);
		else
			assert_string_equal(p.name, c->name);
		free(p.name);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_admin_path_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
