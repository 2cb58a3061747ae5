/*
 * response: reading a git host's answer (response.h). Header values are
 * foreign text: numbers are parsed strictly and every wait is capped.
 */
#include "response.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *header(const struct drover_http_response *res, const char *name)
{
	for (size_t i = 0; i < res->n_headers; i++)
		if (strcmp(res->headers[i].name, name) == 0)
			return res->headers[i].value;
	return NULL;
}

/* A whole non-negative decimal number of seconds, or -1. */
static int64_t seconds_parse(const char *v)
{
	if (v == NULL || *v < '0' || *v > '9')
		return -1;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (*end != '\0' || errno != 0 || n < 0)
		return -1;
	return n;
}

static int64_t wait_cap(int64_t secs)
{
	if (secs < 0)
		return 0;
	return secs > STATUS_MAX_WAIT_MS / 1000 ? STATUS_MAX_WAIT_MS : secs * 1000;
}

int64_t status_response_wait_ms(const struct drover_http_response *res, int64_t now_s)
{
	const char *v = header(res, "retry-after");
	if (v != NULL) {
		int64_t secs = seconds_parse(v);
		if (secs >= 0)
			return wait_cap(secs);
		struct tm tm = {0};
		const char *rest = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (rest != NULL && *rest == '\0')
			return wait_cap((int64_t)timegm(&tm) - now_s);
	}
	int64_t reset = seconds_parse(header(res, "x-ratelimit-reset"));
	if (reset >= 0)
		return wait_cap(reset - now_s);
	return -1;
}

bool status_response_is_rate_limit(const struct drover_http_response *res)
{
	if (res->status == 429)
		return true;
	if (res->status != 403)
		return false;
	const char *remaining = header(res, "x-ratelimit-remaining");
	return header(res, "retry-after") != NULL ||
	       (remaining != NULL && strcmp(remaining, "0") == 0);
}

char *status_response_message(const struct drover_http_response *res)
{
	json_t *j = json_loadb(res->body != NULL ? res->body : "", res->body_len, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "message"));
	if (m == NULL)
		m = json_string_value(json_object_get(j, "error"));
	if (m == NULL)
		m = res->body != NULL ? res->body : "";
	size_t len = strnlen(m, 300);
	char *out = malloc(len + 1);
	if (out == NULL) {
		fputs("status: out of memory\n", stderr);
		abort();
	}
	memcpy(out, m, len);
	out[len] = '\0';
	json_decref(j);
	return out;
}
