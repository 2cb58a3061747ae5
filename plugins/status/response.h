/*
 * response: what the status plugin reads in a git host's answer — how long
 * it asks us to wait, whether it is a rate limit, and its error message.
 * Pure functions of the response (and the clock given), so that they are
 * unit-tested and fuzzed on their own.
 */
#ifndef DROVER_STATUS_RESPONSE_H
#define DROVER_STATUS_RESPONSE_H

#include <drover/plugin.h>
#include <stdbool.h>
#include <stdint.h>

/* Never longer than this, whatever a host says. */
#define STATUS_MAX_WAIT_MS (3600 * 1000)

/*
 * Milliseconds the host asks us to wait: Retry-After (seconds or an
 * HTTP-date), else GitHub's x-ratelimit-reset (epoch seconds), relative to
 * now_s (epoch seconds); capped at STATUS_MAX_WAIT_MS. -1 when it says nothing.
 */
int64_t status_response_wait_ms(const struct drover_http_response *res, int64_t now_s);
/* 429, or a 403 that is GitHub's rate limit (Retry-After, or x-ratelimit-remaining 0). */
bool status_response_is_rate_limit(const struct drover_http_response *res);
/* The host's words: "message" or "error" of a JSON body, else the body;
 * at most 300 bytes (the caller frees). */
char *status_response_message(const struct drover_http_response *res);

#endif
