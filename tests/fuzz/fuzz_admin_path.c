/*
 * Fuzz harness for admin_path_match, the admin API's matcher of request
 * paths (foreign input) against the route patterns. Checks what the
 * dispatcher relies on: a match captures a positive run id where the
 * pattern has {id}, a non-empty name without '/' where it has {name}, and
 * nothing is left allocated when there is no match.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

static const char *const patterns[] = {
    "/healthz",
    "/api/v1/runs",
    "/api/v1/runs/{id}",
    "/api/v1/runs/{id}/cancel",
    "/api/v1/runs/{id}/stages/{name}/log",
    "/{name}",
    "/{id}/{id}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path = malloc(size + 1);
	memcpy(path, data, size);
	path[size] = '\0';
	for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
		struct admin_path p;
		bool is_match = admin_path_match(patterns[i], path, &p);
		if (!is_match) {
			if (p.name != NULL)
				abort();
			continue;
		}
		if (strstr(patterns[i], "{id}") != NULL && p.run_id < 1)
			abort();
		if (strstr(patterns[i], "{name}") != NULL &&
		    (p.name == NULL || p.name[0] == '\0' || strchr(p.name, '/') != NULL))
			abort();
		if (strstr(patterns[i], "{") == NULL && strcmp(path, patterns[i]) != 0)
			abort();
		free(p.name);
	}
	free(path);
	return 0;
}
