/*
 * Tests for glob: the pattern table pipelines rely on (branches, tags,
 * paths, models), malformed patterns, and hostile patterns staying fast.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "glob.h"

struct glob_case {
	const char *pattern;
	const char *text;
	bool is_match;
};

static const struct glob_case cases[] = {
    /* literals */
    {"master", "master", true},
    {"master", "main", false},
    {"master", "master2", false},
    {"master", "maste", false},
    {"", "", true},
    {"", "a", false},
    /* `*` stays within a segment */
    {"*", "master", true},
    {"*", "", true},
    {"*", "release/1.0", false},
    {"release/*", "release/1.0", true},
    {"release/*", "release/", true},
    {"release/*", "release", false},
    {"release/*", "release/1.0/hotfix", false},
    {"v*", "v1.2.3", true},
    {"v*", "1.2.3", false},
    {"*.py", "train.py", true},
    {"*.py", "src/train.py", false},
    {"a*b*c", "abc", true},
    {"a*b*c", "axxbyyc", true},
    {"a*b*c", "axxbyy", false},
    {"*a", "banana", true},
    {"fraud-*", "fraud-detector", true},
    {"fraud-*", "churn", false},
    /* `**` crosses segments */
    {"**", "", true},
    {"**", "a/b/c", true},
    {"src/**", "src/a/b.py", true},
    {"src/**", "src/a.py", true},
    {"src/**", "srcx/a.py", false},
    {"src/**", "src", false},
    {"**/x", "x", true},
    {"**/x", "a/x", true},
    {"**/x", "a/b/x", true},
    {"**/x", "ax", false},
    {"**/x", "a/bx", false},
    {"**/*.md", "README.md", true},
    {"**/*.md", "docs/guide/intro.md", true},
    {"**/*.md", "docs/guide/intro.mdx", false},
    {"a/**/b", "a/b", true},
    {"a/**/b", "a/x/b", true},
    {"a/**/b", "a/x/y/b", true},
    {"a/**/b", "a/xb", false},
    {"a/**/b", "ab", false},
    {"**.py", "a/b.py", true},
    {"jobs/**/*.yml", "jobs/training.yml", true},
    {"jobs/**/*.yml", "jobs/prod/training.yml", true},
    {"jobs/**/*.yml", "jobs/prod/training.yaml", false},
    {"a**/b", "a/b", true},
    {"a**/b", "ab", false},
    {"a**/b", "ax/y/b", true},
    /* `?` is one character, never '/' */
    {"v?", "v1", true},
    {"v?", "v", false},
    {"v?", "v12", false},
    {"a?b", "a/b", false},
    /* classes */
    {"v[0-9]", "v7", true},
    {"v[0-9]", "vx", false},
    {"[abc]x", "bx", true},
    {"[abc]x", "dx", false},
    {"[!a]x", "bx", true},
    {"[!a]x", "ax", false},
    {"[!a]x", "/x", false},
    {"[^a]x", "bx", true},
    {"[]]", "]", true},
    {"[a-]", "-", true},
    {"[a-c-e]", "d", false},
    {"release/v[1-3].*", "release/v2.1", true},
    {"release/v[1-3].*", "release/v4.1", false},
    /* escapes and specials taken literally */
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"a\\?", "a?", true},
    {"!master", "!master", true},
    {"!master", "dev", false},
    {"{a,b}", "{a,b}", true},
    {"{a,b}", "a", false},
    /* case matters */
    {"Master", "master", false},
};

static void test_glob_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		bool got = glob_match(cases[i].pattern, cases[i].text);
		if (got != cases[i].is_match)
			fail_msg("glob_match(\"%s\", \"%s\") = %d, want %d", cases[i].pattern,
				 cases[i].text, got, cases[i].is_match);
	}
}

static void test_glob_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {"",	   "[abc", "release/[0-9", "[z-a]",
					  "abc\\", "[!]",  "[a\\"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (glob_is_valid(bad[i]))
			fail_msg("glob_is_valid(\"%s\") should be false", bad[i]);
		if (glob_match(bad[i], bad[i]) && bad[i][0] != '\0')
			fail_msg("a malformed pattern \"%s\" matched", bad[i]);
	}
	static const char *const good[] = {"*", "**", "src/**", "v[0-9]*", "[]]", "a\\*", "?"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		if (!glob_is_valid(good[i]))
			fail_msg("glob_is_valid(\"%s\") should be true", good[i]);
	assert_false(glob_is_valid(NULL));
	assert_false(glob_match(NULL, "a"));
	assert_false(glob_match("a", NULL));
}

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A backtracking matcher takes exponential time here; this one must not. */
static void test_glob_hostile_is_fast(void **state)
{
	(void)state;
	size_t len = 20000;
	char *text = malloc(len + 1);
	memset(text, 'a', len);
	text[len] = '\0';
	double start = seconds_now();
	assert_false(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", text));
	assert_false(glob_match("**a**a**a**a**a**a**a**a**b", text));
	assert_false(glob_match("**/a**/a*/**a*a*a*a*b", text));
	assert_true(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a", text));
	text[len - 1] = 'b';
	assert_true(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", text));
	double elapsed = seconds_now() - start;
	free(text);
	if (elapsed > 2.0)
		fail_msg("hostile patterns took %.2f s", elapsed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_glob_table),
	    cmocka_unit_test(test_glob_invalid),
	    cmocka_unit_test(test_glob_hostile_is_fast),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
