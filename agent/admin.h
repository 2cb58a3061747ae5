/*
 * admin: the HTTP API on evhttp (127.0.0.1:8470 by default): health, runs,
 * stage logs, metrics, and POST /api/v1/events, which produces the body to
 * the events topic and answers only after Kafka acknowledged it, and the
 * webhook receivers /hooks/{github,gitlab,azure-devops} (admin_hooks.h).
 */
#ifndef DROVER_ADMIN_H
#define DROVER_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct agent;
struct admin;

/* What a route's pattern captured: {id} (a run id) and {name} (one segment, decoded). */
struct admin_path {
	long long run_id;
	char *name; /* owned by the caller of admin_path_match */
};

/*
 * Whether a request path (foreign input) matches a route pattern, whose
 * segments are literal, "{id}" (digits only, 1..INT64_MAX) or "{name}" (one
 * segment, percent-decoded, neither empty nor holding a '/'). On a match
 * out gets what was captured (out->name allocated when the pattern has
 * {name}; the caller frees it); on none out->name is NULL.
 */
bool admin_path_match(const char *pattern, const char *path, struct admin_path *out);

struct admin *admin_new(struct agent *a, char *err, size_t err_len);
void admin_free(struct admin *ad);

#endif
