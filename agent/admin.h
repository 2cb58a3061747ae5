/*
 * admin: the HTTP API on evhttp (127.0.0.1:8470 by default): health, runs,
 * stage logs, metrics, and POST /api/v1/events, which produces the body to
 * the events topic and answers only after Kafka acknowledged it, and the
 * webhook receivers /hooks/{github,gitlab,azure-devops} (admin_hooks.h).
 */
#ifndef DROVER_ADMIN_H
#define DROVER_ADMIN_H

#include <stddef.h>

struct agent;
struct admin;

struct admin *admin_new(struct agent *a, char *err, size_t err_len);
void admin_free(struct admin *ad);

#endif
