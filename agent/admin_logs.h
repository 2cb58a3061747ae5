/*
 * admin_logs: GET /api/v1/runs/{id}/stages/{name}/log, a stage attempt's
 * log: the whole file, or with follow=1 a chunked response that follows
 * the file while the stage writes it and ends when the attempt is over.
 * Internal to admin.
 */
#ifndef DROVER_ADMIN_LOGS_H
#define DROVER_ADMIN_LOGS_H

#include <stddef.h>

struct agent;
struct admin_logs;
struct evbuffer;
struct evhttp_request;

struct admin_logs *admin_logs_new(struct agent *a);
/* Drops every follower without answering it: call before evhttp_free, which
 * frees their connections and requests. */
void admin_logs_free(struct admin_logs *al);

/* Answers the route (stage is the decoded name); query: attempt=N, follow=1. */
void admin_logs_get(struct admin_logs *al, struct evhttp_request *req, long long run_id,
		    const char *stage);

#endif
