/*
 * Fuzz harness for event_normalize. The input is split into headers and a
 * payload: lines up to the first empty line are "name: value" headers (at
 * most 8), the rest is the payload; with no empty line it is all payload.
 * Checks the promises every caller relies on, not just "no crash".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

#define MAX_HEADERS 8

/* Cuts "name: value" lines off the front of data; returns where the payload starts. */
static size_t split_headers(const uint8_t *data, size_t size, char names[][64],
			    struct event_header *headers, size_t *n_headers)
{
	const uint8_t *end = NULL;
	for (size_t i = 0; i + 1 < size; i++)
		if (data[i] == '\n' && data[i + 1] == '\n') {
			end = data + i;
			break;
		}
	*n_headers = 0;
	if (end == NULL)
		return 0;
	const uint8_t *p = data;
	while (p < end && *n_headers < MAX_HEADERS) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		const uint8_t *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon != NULL) {
			size_t name_len = (size_t)(colon - p);
			if (name_len > 63)
				name_len = 63;
			memcpy(names[*n_headers], p, name_len);
			names[*n_headers][name_len] = '\0';
			const uint8_t *value = colon + 1;
			if (value < eol && *value == ' ')
				value++;
			/* The value points into the input: not NUL-terminated, as in Kafka. */
			headers[*n_headers] = (struct event_header){
			    .name = names[*n_headers],
			    .value = (const char *)value,
			    .value_len = (size_t)(eol - value),
			};
			(*n_headers)++;
		}
		p = eol + 1;
	}
	return (size_t)(end - data) + 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct event_alert_map alerts[] = {{"churn feature drift", "churn-model"},
							{"4821", "churn-model"}};
	static const struct event_model_map models[] = {
	    {"churn-model", "acme/churn-model", "master"}};
	const struct event_options opt = {
	    .max_payload_bytes = 1 << 20,
	    .alerts = alerts,
	    .n_alerts = 2,
	    .models = models,
	    .n_models = 1,
	};
	char names[MAX_HEADERS][64];
	struct event_header headers[MAX_HEADERS];
	size_t n_headers;
	size_t start = split_headers(data, size, names, headers, &n_headers);
	struct event_input in = {
	    .topic = (size & 1) ? "drover.events" : NULL,
	    .partition = 1,
	    .offset = (int64_t)size,
	    .headers = headers,
	    .n_headers = n_headers,
	    .payload = (const char *)data + start,
	    .payload_len = size - start,
	    .received_at_ms = 1795000000123,
	};
	json_t *ev = NULL;
	char err[256];
	enum event_outcome rc = event_normalize(&in, &opt, &ev, err, sizeof err);
	if (rc == EVENT_OK) {
		if (ev == NULL || !json_is_object(ev) || err[0] != '\0')
			abort();
		if (!json_is_string(json_object_get(ev, "id")) ||
		    !json_is_string(json_object_get(ev, "kind")))
			abort();
		char *dump = json_dumps(ev, JSON_COMPACT);
		if (dump == NULL)
			abort();
		free(dump);
		json_decref(ev);
	} else {
		if (ev != NULL || err[0] == '\0' || strchr(err, '\n') != NULL)
			abort();
		/* The error line is valid UTF-8, fit for a Kafka header or a JSON string. */
		json_t *line = json_string(err);
		if (line == NULL)
			abort();
		json_decref(line);
	}
	return 0;
}
