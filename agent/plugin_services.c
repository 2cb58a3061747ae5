/*
 * plugin_services: a copy of the scheduler's stage services with the
 * agent-level services appended (drover/plugin.h explains ctx). Plugin
 * timers are libevent timers on the agent's base that this part owns until
 * they fire or are cancelled; plugin metrics are families of the agent's
 * registry (owned by it) under the prefix drover_plugin_<plugin>_.
 */
#include "plugin_services.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "scheduler.h"
#include "util.h"

struct drover_timer {
	struct plugin_services *ps;
	struct event *ev;
	void (*cb)(void *arg);
	void *arg;
	struct drover_timer *prev, *next;
};

struct plugin_services {
	struct drover_host table; /* table.ctx points back here */
	struct agent *agent;
	struct drover_timer *timers; /* pending */
};

static int services_http_request(void *ctx, const struct drover_http_request *req,
				 drover_http_done_fn done, void *arg)
{
	struct plugin_services *ps = ctx;
	if (ps->agent->http == NULL) {
		log_warn("plugins: an HTTP request to %s refused: no HTTP client (stopping?)",
			 req->url != NULL ? req->url : "(none)");
		return -1;
	}
	return http_request_start(ps->agent->http, req, done, arg);
}

static void services_timer_unlink(struct drover_timer *t)
{
	struct plugin_services *ps = t->ps;
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		ps->timers = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	event_free(t->ev);
}

static void services_timer_fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct drover_timer *t = arg;
	void (*cb)(void *) = t->cb;
	void *cb_arg = t->arg;
	services_timer_unlink(t);
	free(t);
	cb(cb_arg);
}

static struct drover_timer *services_timer_start(void *ctx, int64_t delay_ms, void (*cb)(void *arg),
						 void *arg)
{
	struct plugin_services *ps = ctx;
	if (cb == NULL || delay_ms < 0)
		return NULL;
	struct drover_timer *t = xcalloc(1, sizeof *t);
	t->ps = ps;
	t->cb = cb;
	t->arg = arg;
	t->ev = evtimer_new(ps->agent->base, services_timer_fire, t);
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
	evtimer_add(t->ev, &tv);
	t->next = ps->timers;
	if (ps->timers != NULL)
		ps->timers->prev = t;
	ps->timers = t;
	return t;
}

static void services_timer_cancel(void *ctx, struct drover_timer *t)
{
	(void)ctx;
	if (t == NULL)
		return;
	services_timer_unlink(t);
	free(t);
}

static void services_log(void *ctx, enum drover_log_level level, const char *fmt, ...)
{
	(void)ctx;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	enum log_level l = level == DROVER_LOG_DEBUG   ? LOG_DEBUG
			   : level == DROVER_LOG_WARN  ? LOG_WARN
			   : level == DROVER_LOG_ERROR ? LOG_ERROR
						       : LOG_INFO;
	log_msg(l, "%s", msg);
	free(msg);
}

/* Series a plugin's family may hold (label values are the plugin's). */
#define PLUGIN_METRIC_MAX_SERIES 100

/*
 * Registers drover_plugin_<plugin>_<name> in the agent's registry; the
 * handle a plugin gets is the family itself. A plugin name outside
 * [a-z0-9_] is refused, so the prefix stays a prefix.
 */
static struct drover_metric *services_metric_new(void *ctx, const char *plugin,
						 enum drover_metric_type type, const char *name,
						 const char *help, const char *const *labels)
{
	struct plugin_services *ps = ctx;
	if (plugin == NULL || *plugin == '\0' || name == NULL ||
	    strspn(plugin, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(plugin) ||
	    (type != DROVER_METRIC_COUNTER && type != DROVER_METRIC_GAUGE)) {
		log_error("plugins: metric '%s' of plugin '%s' refused: plugin names are "
			  "[a-z0-9_], types counter or gauge",
			  name != NULL ? name : "(null)", plugin != NULL ? plugin : "(null)");
		return NULL;
	}
	char *full = xasprintf("drover_plugin_%s_%s", plugin, name);
	struct metric_family *f = metric_family_new(
	    &ps->agent->metrics, type == DROVER_METRIC_COUNTER ? METRIC_COUNTER : METRIC_GAUGE,
	    full, help, labels, NULL, 0, PLUGIN_METRIC_MAX_SERIES);
	free(full);
	return (struct drover_metric *)f;
}

static void services_metric_add(void *ctx, struct drover_metric *metric, const char *const *values,
				double delta)
{
	(void)ctx;
	metric_add((struct metric_family *)metric, values, delta);
}

static void services_metric_set(void *ctx, struct drover_metric *metric, const char *const *values,
				double value)
{
	(void)ctx;
	metric_set((struct metric_family *)metric, values, value);
}

struct plugin_services *plugin_services_new(struct agent *a)
{
	struct plugin_services *ps = xcalloc(1, sizeof *ps);
	ps->agent = a;
	ps->table = *scheduler_host_services();
	ps->table.size = sizeof(struct drover_host);
	ps->table.ctx = ps;
	ps->table.http_request = services_http_request;
	ps->table.timer_start = services_timer_start;
	ps->table.timer_cancel = services_timer_cancel;
	ps->table.plugin_log = services_log;
	ps->table.metric_new = services_metric_new;
	ps->table.metric_add = services_metric_add;
	ps->table.metric_set = services_metric_set;
	return ps;
}

void plugin_services_free(struct plugin_services *ps)
{
	if (ps == NULL)
		return;
	while (ps->timers != NULL) {
		struct drover_timer *t = ps->timers;
		services_timer_unlink(t);
		free(t);
	}
	free(ps);
}

const struct drover_host *plugin_services_table(const struct plugin_services *ps)
{
	return &ps->table;
}
