/*
 * Fuzz harness for pipeline: arbitrary bytes as a pipeline file. Loading
 * must never crash or leak; what loads must survive the JSON round trip,
 * matching and expansion.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

static bool fuzz_has_plugin(void *arg, const char *name)
{
	(void)arg;
	return strcmp(name, "shell") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libyaml reads a sized buffer; the copy keeps a NUL after it for safety. */
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	struct diags diags = {0};
	struct plugin_catalog catalog = {.has_plugin = fuzz_has_plugin};
	struct pipeline *p = pipeline_load_string(text, size, "fuzz.yml", &catalog, &diags);
	if (p != NULL) {
		struct pipeline *q =
		    pipeline_from_json(p->definition, "fuzz.json", &catalog, &diags);
		if (q == NULL || diags.n != 0)
			abort(); /* what loaded once must load again from its definition */
		json_t *event =
		    json_pack("{s:s, s:s, s:s, s:s, s:[s], s:{s:i, s:s}, s:{s:s, s:s, s:s}}",
			      "kind", "push", "action", "pushed", "repo", "o/r", "branch", "master",
			      "paths", "src/a.py", "pr", "number", 1, "base", "master", "drift",
			      "model", "m", "environment", "prod", "severity", "warning");
		char why[128];
		const char *kinds[] = {"push", "pull_request", "drift"};
		for (size_t i = 0; i < 3; i++) {
			json_object_set_new(event, "kind", json_string(kinds[i]));
			pipeline_match(q, event, why, sizeof why);
		}
		free(pipeline_expand(q->concurrency_group, event));
		free(pipeline_expand(q->lock, event));
		for (size_t i = 0; i < q->n_stages; i++)
			pipeline_retry_delay_ms(&q->stages[i].retry, (int)i + 1);
		json_decref(event);
		pipeline_free(q);
		pipeline_free(p);
	}
	diags_free(&diags);
	free(text);
	return 0;
}
