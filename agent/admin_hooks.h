/*
 * admin_hooks: the webhook receivers of the admin API, POST /hooks/github,
 * /hooks/gitlab and /hooks/azure-devops. Each checks its provider's secret
 * (never the admin token) and produces what it accepts to the events topic.
 */
#ifndef DROVER_ADMIN_HOOKS_H
#define DROVER_ADMIN_HOOKS_H

#include <event2/buffer.h>
#include <event2/http.h>

struct admin;
struct agent;
struct admin_hooks;

struct admin_hooks *admin_hooks_new(struct agent *a);
void admin_hooks_free(struct admin_hooks *h);

/* Answers a request to /hooks/<provider>; provider is the rest of the path. */
void admin_hooks_route(struct admin_hooks *h, struct admin *ad, struct evhttp_request *req,
		       const char *provider);

#endif
