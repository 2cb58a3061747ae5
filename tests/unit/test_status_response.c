/*
 * Tests for what the status plugin reads in a git host's answer
 * (plugins/status/response.c): Retry-After in seconds and as an HTTP-date,
 * GitHub's x-ratelimit-reset, caps and garbage; which 403s are rate limits;
 * the error message of GitHub, GitLab and Azure DevOps bodies; and
 * http_header_parse, which makes the header list those read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http.h"
#include "response.h"

#include <stdlib.h>
#include <string.h>

#define NOW 1700000000 /* 2023-11-14T22:13:20Z */

static struct drover_http_response with(int status, const struct drover_http_header *h, size_t n,
					const char *body)
{
	return (struct drover_http_response){
	    .status = status, .headers = h, .n_headers = n, .body = body, .body_len = strlen(body)};
}

static void test_retry_after(void **state)
{
	(void)state;
	struct drover_http_header h[] = {{"retry-after", "7"}};
	struct drover_http_response r = with(429, h, 1, "");
	assert_int_equal(status_response_wait_ms(&r, NOW), 7000);
	h[0].value = "Tue, 14 Nov 2023 22:13:50 GMT";
	assert_int_equal(status_response_wait_ms(&r, NOW), 30000);
	h[0].value = "Tue, 14 Nov 2023 22:13:00 GMT"; /* in the past: at once */
	assert_int_equal(status_response_wait_ms(&r, NOW), 0);
	h[0].value = "99999999999";
	assert_int_equal(status_response_wait_ms(&r, NOW), STATUS_MAX_WAIT_MS);
	h[0].value = "-5";
	assert_int_equal(status_response_wait_ms(&r, NOW), -1);
	h[0].value = "soon";
	assert_int_equal(status_response_wait_ms(&r, NOW), -1);
	r = with(503, NULL, 0, "");
	assert_int_equal(status_response_wait_ms(&r, NOW), -1);
}

static void test_github_rate_limit(void **state)
{
	(void)state;
	struct drover_http_header h[] = {{"x-ratelimit-remaining", "0"},
					 {"x-ratelimit-reset", "1700000012"}};
	struct drover_http_response r =
	    with(403, h, 2, "{\"message\":\"API rate limit exceeded\"}");
	assert_true(status_response_is_rate_limit(&r));
	assert_int_equal(status_response_wait_ms(&r, NOW), 12000);
	/* A 403 with requests left is a permission problem: permanent. */
	h[0].value = "4999";
	assert_false(status_response_is_rate_limit(&r));
	r = with(403, NULL, 0, "{\"message\":\"Resource not accessible by integration\"}");
	assert_false(status_response_is_rate_limit(&r));
	/* Secondary rate limit: 403 with Retry-After. */
	struct drover_http_header ra[] = {{"retry-after", "60"}};
	r = with(403, ra, 1, "");
	assert_true(status_response_is_rate_limit(&r));
	r = with(429, NULL, 0, "");
	assert_true(status_response_is_rate_limit(&r));
	r = with(422, ra, 1, "");
	assert_false(status_response_is_rate_limit(&r));
}

static void expect_message(const char *body, const char *want)
{
	struct drover_http_response r = with(400, NULL, 0, body);
	char *m = status_response_message(&r);
	assert_string_equal(m, want);
	free(m);
}

static void test_messages(void **state)
{
	(void)state;
	expect_message("{\"message\":\"Validation Failed\",\"errors\":[]}", "Validation Failed");
	expect_message("{\"error\":\"state does not have a valid value\"}",
		       "state does not have a valid value");
	expect_message("{\"$id\":\"1\",\"message\":\"TF401019: no repo\",\"typeKey\":\"X\"}",
		       "TF401019: no repo");
	expect_message("<html>bad gateway</html>", "<html>bad gateway</html>");
	char big[1000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	struct drover_http_response r = with(500, NULL, 0, big);
	char *m = status_response_message(&r);
	assert_int_equal(strlen(m), 300);
	free(m);
}

static void test_header_parse(void **state)
{
	(void)state;
	char *name, *value;
	const char *line = "Retry-After:   12 \r\n";
	assert_int_equal(http_header_parse(line, strlen(line), &name, &value), 0);
	assert_string_equal(name, "retry-after");
	assert_string_equal(value, "12");
	free(name), free(value);
	line = "X-Empty:\r\n";
	assert_int_equal(http_header_parse(line, strlen(line), &name, &value), 0);
	assert_string_equal(value, "");
	free(name), free(value);
	const char *bad[] = {"no colon\r\n", ": no name\r\n", " folded: line\r\n", "\r\n",
			     "a b: c\r\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(http_header_parse(bad[i], strlen(bad[i]), &name, &value), -1);
	assert_int_equal(http_header_parse("a:\0b", 4, &name, &value), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_after),
	    cmocka_unit_test(test_github_rate_limit),
	    cmocka_unit_test(test_messages),
	    cmocka_unit_test(test_header_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
