/*
 * plugin_services: the agent's table of host services (struct drover_host)
 * for its plugins. The stage services come from the scheduler; this part
 * appends the ones bound to no stage (HTTP, timers, log) with the agent as
 * their context, so each agent has its own table and nothing is global.
 */
#ifndef DROVER_PLUGIN_SERVICES_H
#define DROVER_PLUGIN_SERVICES_H

#include <drover/plugin.h>

struct agent;
struct plugin_services;

/* The table for agent a (a->base must be set; a->http may be NULL: then
 * http_request refuses). */
struct plugin_services *plugin_services_new(struct agent *a);
/* Frees timers still pending (without running them), then the table. Call
 * after plugin_host_free: plugins use the table until their fini. */
void plugin_services_free(struct plugin_services *ps);

/* What plugin_host_new takes; valid until plugin_services_free. */
const struct drover_host *plugin_services_table(const struct plugin_services *ps);

#endif
