/*
 * Fuzz harness for what drover reads in a git host's HTTP answer: the
 * header lines (http_header_parse) and the status plugin's reading of them
 * (plugins/status/response.c). Input: a status code (first 2 bytes), then
 * header lines up to the first empty line, then the body. Checks the
 * promises the plugin relies on: a wait of -1 or 0..cap, a message of at
 * most 300 bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "response.h"

#define MAX_HEADERS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int status = 100 + (data[0] << 8 | data[1]) % 500;
	const char *p = (const char *)data + 2, *end = (const char *)data + size;
	struct drover_http_header headers[MAX_HEADERS];
	size_t n = 0;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *stop = eol != NULL ? eol + 1 : end;
		if (stop - p <= 2 && (*p == '\n' || *p == '\r')) {
			p = stop;
			break;
		}
		char *name, *value;
		if (n < MAX_HEADERS &&
		    http_header_parse(p, (size_t)(stop - p), &name, &value) == 0) {
			if (name[0] == '\0' || strchr(name, ':') != NULL)
				abort();
			headers[n++] = (struct drover_http_header){name, value};
		}
		p = stop;
	}
	size_t body_len = (size_t)(end - p);
	char *body = malloc(body_len + 1);
	memcpy(body, p, body_len);
	body[body_len] = '\0';
	struct drover_http_response res = {.status = status,
					   .headers = headers,
					   .n_headers = n,
					   .body = body,
					   .body_len = body_len};
	int64_t wait = status_response_wait_ms(&res, 1700000000);
	if (wait < -1 || wait > STATUS_MAX_WAIT_MS)
		abort();
	(void)status_response_is_rate_limit(&res);
	char *msg = status_response_message(&res);
	if (strlen(msg) > 300)
		abort();
	free(msg);
	free(body);
	for (size_t i = 0; i < n; i++) {
		free((char *)headers[i].name);
		free((char *)headers[i].value);
	}
	return 0;
}
