/*
 * agent: builds the daemon's context, runs the loop, and takes it down in
 * order: stop consuming, drain stages, commit offsets, flush results.
 */
#include "agent.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "http.h"
#include "intake.h"
#include "kafka.h"
#include "log.h"
#include "plugin_host.h"
#include "plugin_services.h"
#include "proc.h"
#include "report.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

static void agent_on_flushed(void *arg)
{
	struct agent *a = arg;
	if (a->has_left_loop)
		return;
	a->has_left_loop = true;
	log_info("agent: no stage running; leaving the loop");
	event_base_loopexit(a->base, NULL);
}

/* A plugin that never says it flushed does not hold the stop past stop_grace. */
static void agent_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct agent *a = arg;
	log_warn("agent: plugins did not finish flushing within stop_grace (%lld ms): stopping "
		 "without them",
		 (long long)a->cfg->stop_grace_ms);
	agent_on_flushed(a);
}

/*
 * The stages are over: plugins get to finish, each within its own bound,
 * and all of them within stop_grace.
 */
static void agent_on_idle(void *arg)
{
	struct agent *a = arg;
	if (a->plugins == NULL) {
		agent_on_flushed(a);
		return;
	}
	a->drain_timer = evtimer_new(a->base, agent_on_drain_timeout, a);
	struct timeval tv = {a->cfg->stop_grace_ms / 1000, (a->cfg->stop_grace_ms % 1000) * 1000};
	evtimer_add(a->drain_timer, &tv);
	plugin_host_drain(a->plugins, agent_on_flushed, a);
}

void agent_stop(struct agent *a)
{
	if (a->is_stopping)
		return;
	a->is_stopping = true;
	log_info("agent: stopping: no new events; running stages get %lld ms to finish",
		 (long long)a->cfg->stop_grace_ms);
	if (a->intake != NULL)
		intake_set_paused(a->intake, true);
	scheduler_drain(a->sched, a->cfg->stop_grace_ms, agent_on_idle, a);
}

static void agent_on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct agent *a = arg;
	if (a->is_stopping) {
		log_warn("agent: second %s: stopping now", strsignal((int)sig));
		event_base_loopexit(a->base, NULL);
		return;
	}
	log_info("agent: %s received", strsignal((int)sig));
	agent_stop(a);
}

/*
 * Loads the pipelines directory into a new set and swaps it in. Runs keep the
 * definition they started with (stored with the run), so replacing the set
 * never changes a run under way. A file with errors is left out and logged;
 * a directory that cannot be read keeps the set there was.
 */
static int agent_load_pipelines(struct agent *a)
{
	struct diags diags = {0};
	struct plugin_catalog catalog = {.has_plugin = plugin_host_has, .arg = a->plugins};
	struct pipeline_set set = {0};
	int rc = pipeline_set_load_dir(&set, a->cfg->pipelines_dir, &catalog, &diags);
	if (rc == 0 || a->pipelines.n == 0) {
		pipeline_set_free(&a->pipelines);
		a->pipelines = set;
	} else {
		log_error("pipelines: keeping the %zu pipeline(s) loaded before", a->pipelines.n);
		pipeline_set_free(&set);
	}
	for (size_t i = 0; i < diags.n; i++)
		log_error("pipelines: %s:%d: %s", diags.items[i].file, diags.items[i].line,
			  diags.items[i].message);
	a->metrics.pipelines_refused += diags.n > 0 ? 1 : 0;
	diags_free(&diags);
	for (size_t i = 0; i < a->pipelines.n; i++)
		log_info("pipelines: loaded %s (%zu stage(s)) from %s", a->pipelines.items[i]->name,
			 a->pipelines.items[i]->n_stages, a->pipelines.items[i]->file);
	return rc;
}

static void agent_on_sighup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig, (void)what;
	struct agent *a = arg;
	log_info("agent: SIGHUP: reloading pipelines from %s (other agent.yaml changes need a "
		 "restart)",
		 a->cfg->pipelines_dir);
	agent_load_pipelines(a);
}

static void agent_teardown(struct agent *a)
{
	intake_free(a->intake);
	a->intake = NULL;
	admin_free(a->admin);
	kafka_free(a->kafka, 5000);
	a->kafka = NULL;
	report_free(a->report);
	scheduler_free(a->sched);
	/* In-flight requests end (cancelled) while their plugins still live. */
	http_free(a->http);
	a->http = NULL;
	plugin_host_free(a->plugins);
	plugin_services_free(a->services);
	proc_table_free(a->procs);
	pipeline_set_free(&a->pipelines);
	store_close(a->store);
	if (a->sig_term != NULL)
		event_free(a->sig_term);
	if (a->sig_int != NULL)
		event_free(a->sig_int);
	if (a->sig_hup != NULL)
		event_free(a->sig_hup);
	if (a->drain_timer != NULL)
		event_free(a->drain_timer);
	if (a->base != NULL)
		event_base_free(a->base);
	config_free(a->cfg);
	metrics_fini(&a->metrics);
}

int agent_main(const char *config_path)
{
	struct agent agent = {0};
	struct agent *a = &agent;
	struct diags diags = {0};
	a->cfg = config_load(config_path, &diags);
	if (a->cfg == NULL) {
		diags_print(&diags, stderr);
		diags_free(&diags);
		return 2;
	}
	diags_free(&diags);
	metrics_init(&a->metrics);
	signal(SIGPIPE, SIG_IGN);
	char err[512];
	int rc = 1;
	a->base = event_base_new();
	a->sig_term = evsignal_new(a->base, SIGTERM, agent_on_signal, a);
	a->sig_int = evsignal_new(a->base, SIGINT, agent_on_signal, a);
	event_add(a->sig_term, NULL);
	event_add(a->sig_int, NULL);
	a->sig_hup = evsignal_new(a->base, SIGHUP, agent_on_sighup, a);
	event_add(a->sig_hup, NULL);

	log_info("agent: drover %s starting (config %s, state %s)", DROVER_VERSION,
		 config_path != NULL ? config_path : "(embedded default)", a->cfg->state_dir);
	a->store = store_open(a->cfg->state_dir, err, sizeof err);
	if (a->store == NULL) {
		log_error("agent: %s", err);
		goto out;
	}
	/* Stages run in their workspace: every path handed to them must be absolute. */
	char *state_abs = realpath(a->cfg->state_dir, NULL);
	if (state_abs == NULL) {
		log_error("agent: state_dir %s: %s", a->cfg->state_dir, strerror(errno));
		goto out;
	}
	free(a->cfg->state_dir);
	a->cfg->state_dir = state_abs;
	a->procs = proc_table_new(a->base);
	if (a->procs == NULL) {
		log_error("agent: cannot watch child processes");
		goto out;
	}
	a->http = http_new(a->base);
	a->services = plugin_services_new(a);
	a->plugins = plugin_host_new(plugin_services_table(a->services));
	plugin_host_set_config(a->plugins, a->cfg->plugin_config);
	int refused = plugin_host_load_dir(a->plugins, a->cfg->plugins_dir);
	if (refused > 0)
		a->metrics.plugins_refused += (uint64_t)refused;
	agent_load_pipelines(a);
	a->kafka = kafka_new(a->cfg, a->base, err, sizeof err);
	if (a->kafka == NULL) {
		log_error("agent: kafka: %s", err);
		goto out;
	}
	a->report = report_new(a);
	a->sched = scheduler_new(a);
	if (scheduler_recover(a->sched) < 0) {
		log_error("agent: cannot read unfinished runs from the store");
		goto out;
	}
	a->admin = admin_new(a, err, sizeof err);
	if (a->admin == NULL) {
		log_error("agent: admin: %s", err);
		goto out;
	}
	a->intake = intake_new(a, err, sizeof err);
	if (a->intake == NULL) {
		log_error("agent: intake: %s", err);
		goto out;
	}
	log_info("agent: running (ready once Kafka assigns partitions: see /readyz)");
	event_base_dispatch(a->base);
	log_info("agent: committing offsets and flushing results");
	rc = 0;
out:
	agent_teardown(a);
	if (rc == 0)
		log_info("agent: stopped");
	return rc;
}
