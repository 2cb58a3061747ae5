/*
 * scheduler: the state machine of runs and stages. Every move is written to
 * the store (with its CDEvent in the outbox, same transaction) before it
 * takes effect; the in-memory runs are a cache of the store's truth that a
 * restart rebuilds. Runs are advanced only from one deferred "kick"
 * callback, so no callback chain ever re-enters a run half-way through.
 *
 * Each kick is one pass with (at most) two transactions, whatever it does:
 * what it decides is committed at once before anything is acted on, and
 * what acting on it produced (the process groups just spawned) is committed
 * before the pass returns to the loop. See scheduler_on_kick.
 */
#include "scheduler.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "intake.h"
#include "log.h"
#include "pipeline.h"
#include "plugin_host.h"
#include "proc.h"
#include "replay.h"
#include "report.h"
#include "stagelog.h"
#include "store.h"
#include "util.h"
#include "workspace.h"
#include "wspool.h"

enum run_phase { PHASE_WAITING, PHASE_CHECKOUT, PHASE_STAGES };

struct stage_proc {
	struct drover_stage *st; /* NULL once the stage ended: output and exit are dropped */
	struct proc *proc;
	void (*on_exit)(void *arg, struct drover_stage *stage, int exit_code, int term_signal);
	void *arg;
	struct stage_proc *next;
};

struct stage_timer {
	struct drover_stage *st;
	struct event *ev;
	void (*cb)(void *arg, struct drover_stage *stage);
	void *arg;
	struct stage_timer *next;
};

/* The host's view of a stage; plugins see it as an opaque pointer. */
struct drover_stage {
	struct run *run;
	size_t idx;
	const struct pipeline_stage *def;
	struct store_stage rec;
	void *plugin_data;
	struct stage_proc *procs;
	struct stage_timer *timers;
	struct event *timeout_ev, *retry_ev, *force_ev;
	struct stagelog *log;
	char *outputs_path;
	json_t *outputs; /* earlier stages' outputs, read at start */
	int last_exit_code;
	bool is_active, is_timing_out, is_cancelling, is_interrupted;
	bool needs_resume; /* running at the last stop with a resume token: re-attach */
	bool is_resuming;  /* recorded as re-attaching; stage_launch calls resume() */
	/* Ended (rec holds the result) but not recorded yet: the next pass does. */
	bool is_finish_pending;
};

struct run {
	struct scheduler *s;
	struct store_run rec;
	struct pipeline *pl;
	json_t *event;
	char *dir, *event_path, *workspace;
	struct drover_stage *stages;
	size_t n_stages;
	enum run_phase phase;
	struct workspace_job *checkout;
	struct stagelog *checkout_log;
	char *checkout_error;
	bool is_cancelling;
	char *cancel_why; /* why it is cancelled: the cancelled stages' summaries say it */
	struct run *next;
};

/* A growable array of pointers (the pass's work lists). */
struct ptr_list {
	void **items;
	size_t n, cap;
};

struct kept_workspace {
	struct scheduler *s;
	struct event *ev;
	char *path;
	struct kept_workspace *next;
};

struct scheduler {
	struct agent *agent;
	struct kept_workspace *kept; /* failed runs' workspaces waiting for removal */
	struct wspool *pool;	     /* empty workspaces for `checkout: false` runs */
	struct run *runs;	     /* oldest first */
	size_t n_runs;
	size_t n_running;
	size_t n_checkouts; /* runs begun whose checkout is under way: they hold a slot */
	/* Work of the pass under way (see scheduler_on_kick), empty between passes. */
	struct ptr_list prepare; /* struct run *: begun, workspace to prepare */
	struct ptr_list launch;	 /* struct drover_stage *: recorded as running, to start */
	struct ptr_list settled; /* struct run *: recorded as finished, to clean up and free */
	/* struct drover_stage *: ended, to record (is_finish_pending); filled by any callback */
	struct ptr_list finished;
	struct event *kick_ev;
	struct event *drain_ev;
	struct event *sweep_ev; /* removes kept workspaces past their time */
	bool is_draining;
	void (*on_idle)(void *arg);
	void *idle_arg;
};

static void scheduler_kick(struct scheduler *s);
static void stage_finish(struct drover_stage *st, enum status status, const char *summary);

/* ---- small helpers ---- */

static const char *json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static char *env_name_part(const char *s)
{
	char *out = xstrdup(s);
	for (char *p = out; *p != '\0'; p++)
		*p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
	return out;
}

static void ptr_list_push(struct ptr_list *l, void *p)
{
	if (l->n == l->cap) {
		l->cap = l->cap > 0 ? l->cap * 2 : 16;
		l->items = xrealloc(l->items, l->cap * sizeof *l->items);
	}
	l->items[l->n++] = p;
}

static void ptr_list_free(struct ptr_list *l)
{
	free(l->items);
	memset(l, 0, sizeof *l);
}

static void run_save(struct run *run)
{
	store_run_update(run->s->agent->store, &run->rec);
}

static enum status status_of_result(enum drover_result r)
{
	switch (r) {
	case DROVER_SUCCEEDED:
		return STATUS_SUCCEEDED;
	case DROVER_FAILED:
		return STATUS_FAILED;
	case DROVER_CANCELLED:
		return STATUS_CANCELLED;
	case DROVER_TIMED_OUT:
		return STATUS_TIMED_OUT;
	default:
		return STATUS_ERROR;
	}
}

/* ---- creating and loading runs ---- */

static int64_t scheduler_run_insert(struct scheduler *s, const struct pipeline *p,
				    const json_t *event, bool is_announced);

int64_t scheduler_run_create(struct scheduler *s, const struct pipeline *p, const json_t *event)
{
	return scheduler_run_insert(s, p, event, true);
}

int64_t scheduler_run_create_held(struct scheduler *s, const struct pipeline *p,
				  const json_t *event)
{
	return scheduler_run_insert(s, p, event, false);
}

int scheduler_run_announce(struct scheduler *s, int64_t run_id)
{
	struct store_run run;
	struct store_stage *stages = NULL;
	size_t n_stages = 0;
	if (store_run_load(s->agent->store, run_id, &run, &stages, &n_stages) != 0)
		return -1;
	int rc = report_pipelinerun(s->agent->report, &run, "queued");
	store_run_clear(&run);
	store_stages_free(stages, n_stages);
	return rc;
}

/* Inserts the run and its stages; is_announced: with its "queued" CDEvent. */
static int64_t scheduler_run_insert(struct scheduler *s, const struct pipeline *p,
				    const json_t *event, bool is_announced)
{
	struct agent *a = s->agent;
	char *definition = json_dumps(p->definition, JSON_COMPACT);
	struct store_run run = {
	    .pipeline = p->name,
	    .status = STATUS_QUEUED,
	    .repo = (char *)json_str(event, "repo"),
	    .sha = (char *)json_str(event, "sha"),
	    .branch = (char *)json_str(event, "branch"),
	    .event_id = (char *)json_str(event, "id"),
	    .event_kind = (char *)json_str(event, "kind"),
	    .concurrency_group = pipeline_expand(p->concurrency_group, event),
	    .lock_name = pipeline_expand(p->lock, event),
	    .definition = definition,
	    .attempt = 1,
	    .created_at = now_ms(),
	};
	int64_t id = -1;
	if (store_run_insert(a->store, &run) != 0)
		goto out;
	for (size_t i = 0; i < p->n_stages; i++) {
		struct store_stage st = {.run_id = run.id,
					 .name = p->stages[i].name,
					 .idx = (int)i,
					 .status = STATUS_QUEUED,
					 .exit_code = -1};
		if (store_stage_insert(a->store, &st) != 0)
			goto out;
	}
	if (is_announced && report_pipelinerun(a->report, &run, "queued") != 0)
		goto out;
	a->metrics.runs_created++;
	id = run.id;
out:
	free(run.concurrency_group);
	free(run.lock_name);
	free(definition);
	return id;
}

static void run_free(struct run *run)
{
	for (size_t i = 0; i < run->n_stages; i++) {
		struct drover_stage *st = &run->stages[i];
		while (st->procs != NULL) {
			struct stage_proc *sp = st->procs;
			st->procs = sp->next;
			proc_detach(sp->proc);
			free(sp);
		}
		while (st->timers != NULL) {
			struct stage_timer *t = st->timers;
			st->timers = t->next;
			event_free(t->ev);
			free(t);
		}
		if (st->timeout_ev != NULL)
			event_free(st->timeout_ev);
		if (st->retry_ev != NULL)
			event_free(st->retry_ev);
		if (st->force_ev != NULL)
			event_free(st->force_ev);
		stagelog_close(st->log);
		free(st->outputs_path);
		json_decref(st->outputs);
		free(st->rec.name);
		free(st->rec.summary);
		free(st->rec.resume_token);
	}
	free(run->stages);
	if (run->checkout != NULL)
		workspace_abandon(run->checkout);
	stagelog_close(run->checkout_log);
	store_run_clear(&run->rec);
	pipeline_free(run->pl);
	json_decref(run->event);
	free(run->dir);
	free(run->event_path);
	free(run->workspace);
	free(run->checkout_error);
	free(run->cancel_why);
	free(run);
}

/* Builds the in-memory run from the store. NULL when it cannot be (logged). */
static struct run *run_load(struct scheduler *s, int64_t id)
{
	struct agent *a = s->agent;
	struct run *run = xcalloc(1, sizeof *run);
	run->s = s;
	struct store_stage *stages = NULL;
	size_t n = 0;
	if (store_run_load(a->store, id, &run->rec, &stages, &n) != 0) {
		log_error("scheduler: run %lld cannot be loaded", (long long)id);
		free(run);
		return NULL;
	}
	json_t *def = json_loads(run->rec.definition, 0, NULL);
	struct diags diags = {0};
	run->pl = def != NULL ? pipeline_from_json(def, "(stored)", NULL, &diags) : NULL;
	json_decref(def);
	run->event = store_event_get(a->store, run->rec.event_id);
	if (run->pl == NULL || run->event == NULL || run->pl->n_stages != n) {
		log_error("scheduler: run %lld: stored pipeline or event is unreadable",
			  (long long)id);
		diags_free(&diags);
		store_stages_free(stages, n);
		run->n_stages = 0;
		run_free(run);
		return NULL;
	}
	diags_free(&diags);
	/* One directory per run: its logs, event file and stages' outputs. */
	run->dir = xasprintf("%s/logs/%lld", a->cfg->state_dir, (long long)id);
	run->event_path = xasprintf("%s/event.json", run->dir);
	run->workspace = xasprintf("%s/workspaces/%lld", a->cfg->state_dir, (long long)id);
	run->n_stages = n;
	run->stages = xcalloc(n, sizeof *run->stages);
	for (size_t i = 0; i < n; i++) {
		struct drover_stage *st = &run->stages[i];
		st->run = run;
		st->idx = i;
		st->rec = stages[i];
		st->def = &run->pl->stages[i];
		st->last_exit_code = -1;
	}
	free(stages); /* the strings moved into the stages */
	return run;
}

static bool run_shares_key(const struct run *a, const struct run *b)
{
	if (a->rec.concurrency_group != NULL && b->rec.concurrency_group != NULL &&
	    strcmp(a->rec.concurrency_group, b->rec.concurrency_group) == 0)
		return true;
	return a->rec.lock_name != NULL && b->rec.lock_name != NULL &&
	       strcmp(a->rec.lock_name, b->rec.lock_name) == 0;
}

static bool run_cancel(struct run *run, const char *why);

/* Loads the run and queues it; is_superseding: it cancels the older runs
 * of its group when its pipeline says cancel_in_progress. */
static void run_enqueue(struct scheduler *s, int64_t run_id, bool is_superseding)
{
	struct run *run = run_load(s, run_id);
	if (run == NULL)
		return;
	/* A run made from a replay command (replay.h) is an old run's: it supersedes nothing. */
	is_superseding = is_superseding && json_object_get(run->event, "replay") == NULL;
	if (is_superseding && run->pl->cancel_in_progress && run->rec.concurrency_group != NULL) {
		for (struct run *o = s->runs; o != NULL; o = o->next) {
			if (o->rec.concurrency_group != NULL && !o->is_cancelling &&
			    strcmp(o->rec.concurrency_group, run->rec.concurrency_group) == 0) {
				char *why =
				    xasprintf("superseded by run %lld in group %s",
					      (long long)run->rec.id, o->rec.concurrency_group);
				run_cancel(o, why);
				free(why);
			}
		}
	}
	struct run **tail = &s->runs;
	while (*tail != NULL)
		tail = &(*tail)->next;
	*tail = run;
	s->n_runs++;
	log_info("scheduler: run %lld (%s) queued for %s %s", (long long)run->rec.id,
		 run->rec.pipeline, run->rec.repo != NULL ? run->rec.repo : "-",
		 run->rec.sha != NULL ? run->rec.sha : (run->rec.branch ? run->rec.branch : "-"));
	scheduler_kick(s);
}

void scheduler_run_enqueue(struct scheduler *s, int64_t run_id)
{
	run_enqueue(s, run_id, true);
}

/* ---- stage processes (host service: spawn) ---- */

static void stage_proc_output(void *arg, const char *data, size_t len)
{
	struct stage_proc *sp = arg;
	if (sp->st != NULL && sp->st->log != NULL)
		stagelog_write(sp->st->log, data, len);
}

static void stage_proc_exit(void *arg, int exit_code, int term_signal)
{
	struct stage_proc *sp = arg;
	struct drover_stage *st = sp->st;
	if (st != NULL) {
		for (struct stage_proc **pp = &st->procs; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == sp) {
				*pp = sp->next;
				break;
			}
		}
		st->last_exit_code = exit_code;
		if (st->is_active && sp->on_exit != NULL)
			sp->on_exit(sp->arg, st, exit_code, term_signal);
	}
	free(sp);
}

static void env_add(char ***env, size_t *n, char *entry)
{
	*env = xrealloc(*env, (*n + 2) * sizeof **env);
	(*env)[(*n)++] = entry;
	(*env)[*n] = NULL;
}

/* The whole environment of a stage process: a few of the agent's, DROVER_*,
 * earlier stages' outputs, then the plugin's extras. Caller frees. */
static char **stage_env(struct drover_stage *st, const char *const *extra)
{
	static const char *const passed[] = {"PATH",   "HOME", "USER",	 "LOGNAME", "LANG",
					     "LC_ALL", "TZ",   "TMPDIR", "SHELL"};
	struct run *run = st->run;
	const json_t *ev = run->event;
	char **env = NULL;
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_LEN(passed); i++)
		if (getenv(passed[i]) != NULL)
			env_add(&env, &n, xasprintf("%s=%s", passed[i], getenv(passed[i])));
	const json_t *pr = json_object_get(ev, "pr");
	const json_t *drift = json_object_get(ev, "drift");
	char pr_number[32] = "";
	if (json_is_integer(json_object_get(pr, "number")))
		snprintf(pr_number, sizeof pr_number, "%lld",
			 (long long)json_integer_value(json_object_get(pr, "number")));
	const char *model = json_str(drift, "model");
	env_add(&env, &n, xasprintf("DROVER_RUN_ID=%lld", (long long)run->rec.id));
	env_add(&env, &n, xasprintf("DROVER_PIPELINE=%s", run->rec.pipeline));
	env_add(&env, &n, xasprintf("DROVER_STAGE=%s", st->rec.name));
	env_add(&env, &n, xasprintf("DROVER_ATTEMPT=%d", st->rec.attempt));
	env_add(&env, &n, xasprintf("DROVER_EVENT_KIND=%s", json_str(ev, "kind") ?: ""));
	env_add(&env, &n, xasprintf("DROVER_EVENT_ACTION=%s", json_str(ev, "action") ?: ""));
	env_add(&env, &n, xasprintf("DROVER_EVENT_FILE=%s", run->event_path));
	env_add(&env, &n, xasprintf("DROVER_REPO=%s", run->rec.repo ?: ""));
	env_add(&env, &n, xasprintf("DROVER_SHA=%s", run->rec.sha ?: ""));
	env_add(&env, &n, xasprintf("DROVER_BRANCH=%s", run->rec.branch ?: ""));
	env_add(&env, &n, xasprintf("DROVER_PR=%s", pr_number));
	env_add(&env, &n, xasprintf("DROVER_MODEL=%s", model ?: ""));
	env_add(&env, &n, xasprintf("DROVER_WORKSPACE=%s", run->workspace));
	env_add(&env, &n, xasprintf("DROVER_OUTPUTS=%s", st->outputs_path));
	const char *stage_name;
	json_t *kv;
	json_object_foreach(st->outputs, stage_name, kv)
	{
		const char *key;
		json_t *value;
		char *sname = env_name_part(stage_name);
		json_object_foreach(kv, key, value)
		{
			char *kname = env_name_part(key);
			env_add(&env, &n,
				xasprintf("DROVER_OUTPUT_%s_%s=%s", sname, kname,
					  json_string_value(value) ?: ""));
			free(kname);
		}
		free(sname);
	}
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
		env_add(&env, &n, xstrdup(extra[i]));
	return env;
}

static void env_free(char **env)
{
	for (size_t i = 0; env != NULL && env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

static int host_spawn(struct drover_stage *st, const struct drover_spawn *spec)
{
	struct agent *a = st->run->s->agent;
	if (!st->is_active) {
		log_warn("scheduler: a plugin spawned for stage %s after it ended", st->rec.name);
		return -1;
	}
	char **env = stage_env(st, spec->env);
	struct stage_proc *sp = xcalloc(1, sizeof *sp);
	sp->st = st;
	sp->on_exit = spec->on_exit;
	sp->arg = spec->arg;
	struct proc_spec ps = {.argv = spec->argv,
			       .envp = (const char *const *)env,
			       .cwd = spec->cwd != NULL ? spec->cwd : st->run->workspace};
	char err[256];
	sp->proc =
	    proc_spawn(a->procs, &ps, stage_proc_output, stage_proc_exit, sp, err, sizeof err);
	env_free(env);
	if (sp->proc == NULL) {
		stagelog_printf(st->log, "cannot start %s: %s", spec->argv[0], err);
		free(sp);
		return -1;
	}
	sp->next = st->procs;
	st->procs = sp;
	/* Recorded so that an agent started after a crash of this one finds the group. */
	struct store_stage_proc rec = {.run_id = st->run->rec.id,
				       .stage = st->rec.name,
				       .attempt = st->rec.attempt,
				       .pgid = proc_pid(sp->proc),
				       .start_time = proc_start_time(sp->proc)};
	if (rec.start_time == 0 || store_stage_proc_add(a->store, &rec) != 0)
		log_warn("scheduler: run %lld stage %s: process group %ld not recorded: a crash "
			 "of the agent would leave it running",
			 (long long)rec.run_id, rec.stage, (long)rec.pgid);
	return 0;
}

static void stage_kill_procs(struct drover_stage *st, int64_t grace_ms)
{
	for (struct stage_proc *sp = st->procs; sp != NULL; sp = sp->next)
		proc_kill(sp->proc, grace_ms);
}

/* ---- the other host services ---- */

static const json_t *host_stage_with(struct drover_stage *st)
{
	return st->def->with;
}

static const char *host_stage_param(struct drover_stage *st, const char *name)
{
	return json_string_value(json_object_get(st->def->with, name));
}

static const json_t *host_stage_event(struct drover_stage *st)
{
	return st->run->event;
}

static const char *host_stage_name(struct drover_stage *st)
{
	return st->rec.name;
}

static const char *host_stage_workspace(struct drover_stage *st)
{
	return st->run->workspace;
}

static int host_stage_attempt(struct drover_stage *st)
{
	return st->rec.attempt;
}

static void *host_stage_get_data(struct drover_stage *st)
{
	return st->plugin_data;
}

static void host_stage_set_data(struct drover_stage *st, void *data)
{
	st->plugin_data = data;
}

static void host_log(struct drover_stage *st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (st->log != NULL)
		stagelog_printf(st->log, "%s", msg);
	free(msg);
}

static void stage_timer_fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct stage_timer *t = arg;
	struct drover_stage *st = t->st;
	for (struct stage_timer **pp = &st->timers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	event_free(t->ev);
	void (*cb)(void *, struct drover_stage *) = t->cb;
	void *cb_arg = t->arg;
	free(t);
	if (st->is_active)
		cb(cb_arg, st);
}

static int host_set_timer(struct drover_stage *st, int64_t delay_ms,
			  void (*cb)(void *arg, struct drover_stage *stage), void *arg)
{
	if (!st->is_active)
		return -1;
	struct stage_timer *t = xcalloc(1, sizeof *t);
	t->st = st;
	t->cb = cb;
	t->arg = arg;
	t->ev = evtimer_new(st->run->s->agent->base, stage_timer_fire, t);
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
	evtimer_add(t->ev, &tv);
	t->next = st->timers;
	st->timers = t;
	return 0;
}

static int host_save_resume_token(struct drover_stage *st, const char *token)
{
	free(st->rec.resume_token);
	st->rec.resume_token = token != NULL ? xstrdup(token) : NULL;
	return store_stage_update(st->run->s->agent->store, &st->rec);
}

static int host_set_output(struct drover_stage *st, const char *key, const char *value)
{
	return store_output_set(st->run->s->agent->store, st->run->rec.id, st->rec.name, key,
				value);
}

static void host_done(struct drover_stage *st, enum drover_result result, const char *summary)
{
	if (!st->is_active) {
		log_warn("scheduler: stage %s of run %lld ended twice; the second is ignored",
			 st->rec.name, (long long)st->run->rec.id);
		return;
	}
	enum status status = status_of_result(result);
	char *why = NULL;
	if (st->is_timing_out) {
		status = STATUS_TIMED_OUT;
	} else if (st->is_cancelling) {
		status = STATUS_CANCELLED;
		/* The reason of the cancel, rather than the signal that ended it. */
		if (st->run->cancel_why != NULL)
			summary = why = xasprintf("cancelled: %s", st->run->cancel_why);
	} else if (st->is_interrupted) {
		status = STATUS_ERROR;
	}
	stage_finish(st, status, summary);
	free(why);
}

static const struct drover_host host_services = {
    .abi = DROVER_PLUGIN_ABI,
    .size = sizeof(struct drover_host),
    .stage_with = host_stage_with,
    .stage_param = host_stage_param,
    .stage_event = host_stage_event,
    .stage_name = host_stage_name,
    .stage_workspace = host_stage_workspace,
    .stage_attempt = host_stage_attempt,
    .stage_get_data = host_stage_get_data,
    .stage_set_data = host_stage_set_data,
    .log = host_log,
    .spawn = host_spawn,
    .set_timer = host_set_timer,
    .save_resume_token = host_save_resume_token,
    .set_output = host_set_output,
    .done = host_done,
};

const struct drover_host *scheduler_host_services(void)
{
	return &host_services;
}

/* ---- stage state machine ---- */

static void stage_on_force(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct drover_stage *st = arg;
	if (!st->is_active)
		return;
	stagelog_printf(st->log, "the plugin did not end the stage after it was told to stop");
	host_done(st, DROVER_ERROR, "did not stop when told to");
}

/* Tells a running stage to stop (timeout, cancel, agent stop). It still ends through done(). */
static void stage_stop(struct drover_stage *st)
{
	struct agent *a = st->run->s->agent;
	const struct loaded_plugin *lp = plugin_host_find(a->plugins, st->def->uses);
	if (lp != NULL && lp->desc->cancel != NULL)
		lp->desc->cancel(lp->state, st);
	if (!st->is_active)
		return;
	stage_kill_procs(st, a->cfg->stage_kill_grace_ms);
	if (st->force_ev == NULL)
		st->force_ev = evtimer_new(a->base, stage_on_force, st);
	struct timeval tv = {(a->cfg->stage_kill_grace_ms + 5000) / 1000, 0};
	evtimer_add(st->force_ev, &tv);
}

static void stage_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct drover_stage *st = arg;
	if (!st->is_active)
		return;
	char dur[32];
	duration_format(st->def->timeout_ms, dur, sizeof dur);
	stagelog_printf(st->log, "timed out after %s: stopping the stage's processes", dur);
	log_warn("scheduler: run %lld stage %s timed out after %s", (long long)st->run->rec.id,
		 st->rec.name, dur);
	st->is_timing_out = true;
	stage_stop(st);
}

static void stage_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct drover_stage *st = arg;
	scheduler_kick(st->run->s);
}

/* Reads key=value lines a stage appended to DROVER_OUTPUTS into the store. */
static void stage_collect_outputs(struct drover_stage *st)
{
	char *text = file_read_all(st->outputs_path, 1024 * 1024, NULL);
	if (text == NULL)
		return;
	struct store *store = st->run->s->agent->store;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (eq == NULL || eq == line)
			continue;
		*eq = '\0';
		bool is_ok = !isdigit((unsigned char)line[0]);
		for (char *p = line; *p != '\0'; p++)
			is_ok = is_ok && (isalnum((unsigned char)*p) || *p == '_');
		if (!is_ok) {
			stagelog_printf(st->log, "output key '%s' ignored: use letters, digits, _",
					line);
			continue;
		}
		store_output_set(store, st->run->rec.id, st->rec.name, line, eq + 1);
	}
	free(text);
}

static void stage_record(struct drover_stage *st, const char *phase)
{
	struct agent *a = st->run->s->agent;
	store_begin(a->store);
	store_stage_update(a->store, &st->rec);
	if (phase != NULL)
		report_taskrun(a->report, &st->run->rec, &st->rec, phase);
	store_commit(a->store);
}

/* The stage's first attempt in the current run attempt: its retries count from it. */
static int stage_first_attempt(const struct drover_stage *st)
{
	return st->rec.first_attempt > 0 ? st->rec.first_attempt : 1;
}

static void stage_set_summary(struct drover_stage *st, const char *summary)
{
	free(st->rec.summary);
	st->rec.summary = summary != NULL ? xstrdup(summary) : NULL;
}

/*
 * Ends an attempt in memory: its timers and whatever its plugin left running
 * go now, and the result waits on the stage (is_finish_pending) for the next
 * pass to record (stage_record_finish), together with everything else that
 * ended in the same turn of the loop (one SIGCHLD often reaps several): one
 * transaction for the lot instead of one each. Until then the store still
 * says "running", which is what a crash in between would have left anyway
 * (the attempt is then recorded as interrupted); nothing of the end has been
 * reported yet, so nothing was promised.
 */
static void stage_finish(struct drover_stage *st, enum status status, const char *summary)
{
	struct run *run = st->run;
	struct scheduler *s = run->s;
	struct agent *a = s->agent;
	st->is_active = false;
	s->n_running--;
	a->metrics.stages_finished++;
	metrics_stage_finished(&a->metrics, run->rec.pipeline, status,
			       now_ms() - st->rec.started_at);
	if (st->timeout_ev != NULL)
		evtimer_del(st->timeout_ev);
	if (st->force_ev != NULL)
		evtimer_del(st->force_ev);
	while (st->timers != NULL) {
		struct stage_timer *t = st->timers;
		st->timers = t->next;
		event_free(t->ev);
		free(t);
	}
	/* Whatever the plugin left running goes now; its output is dropped. */
	for (struct stage_proc *sp = st->procs; sp != NULL; sp = sp->next) {
		proc_kill(sp->proc, 0);
		sp->st = NULL;
	}
	st->procs = NULL;

	st->rec.status = status;
	st->rec.finished_at = now_ms();
	st->rec.exit_code = st->last_exit_code;
	stage_set_summary(st, summary);
	log_info("scheduler: run %lld stage %s attempt %d %s%s%s", (long long)run->rec.id,
		 st->rec.name, st->rec.attempt, status_name(status), summary != NULL ? ": " : "",
		 summary != NULL ? summary : "");
	st->is_finish_pending = true;
	ptr_list_push(&s->finished, st);
	scheduler_kick(s);
}

/* An ended attempt (its end recorded or not) that its retry policy runs again. */
static bool stage_will_retry(const struct drover_stage *st)
{
	enum status status = st->rec.status;
	bool is_retryable =
	    status == STATUS_FAILED || status == STATUS_TIMED_OUT || status == STATUS_ERROR;
	return is_retryable && st->rec.attempt - stage_first_attempt(st) < st->def->retry.attempts;
}

/*
 * Records an ended attempt inside the pass's transaction: its outputs (read
 * from the file while the stage log is still open for complaints), the
 * attempt with its "finished" CDEvent, and the end of its process groups;
 * then decides on a retry.
 */
static void stage_record_finish(struct drover_stage *st)
{
	struct run *run = st->run;
	struct agent *a = run->s->agent;
	enum status status = st->rec.status;
	st->is_finish_pending = false;
	if (status == STATUS_SUCCEEDED)
		stage_collect_outputs(st);
	if (st->log != NULL) {
		stagelog_printf(st->log, "stage %s attempt %d %s%s%s", st->rec.name,
				st->rec.attempt, status_name(status),
				st->rec.summary != NULL ? ": " : "",
				st->rec.summary != NULL ? st->rec.summary : "");
		stagelog_close(st->log);
		st->log = NULL;
	}
	/* Its processes ended or were just told to go: nothing for a restart to kill. */
	store_stage_procs_delete(a->store, run->rec.id, st->rec.name);
	stage_record(st, "finished");

	int retries_used = st->rec.attempt - stage_first_attempt(st);
	if (stage_will_retry(st) && !run->is_cancelling) {
		int64_t delay = pipeline_retry_delay_ms(&st->def->retry, retries_used + 1);
		st->rec.attempt++;
		st->rec.status = STATUS_QUEUED;
		st->rec.started_at = 0;
		st->rec.finished_at = 0;
		st->rec.exit_code = -1;
		stage_set_summary(st, NULL);
		stage_record(st, NULL);
		log_info("scheduler: run %lld stage %s: attempt %d in %lld ms",
			 (long long)run->rec.id, st->rec.name, st->rec.attempt, (long long)delay);
		if (st->retry_ev == NULL)
			st->retry_ev = evtimer_new(a->base, stage_on_retry, st);
		struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
		evtimer_add(st->retry_ev, &tv);
	}
}

/* Records every stage that ended since the last time (see stage_finish). */
static void scheduler_record_finished(struct scheduler *s)
{
	for (size_t i = 0; i < s->finished.n; i++)
		stage_record_finish(s->finished.items[i]);
	s->finished.n = 0;
}

/* A stage that will not run (its needs failed, the run was cancelled, ...). */
static void stage_settle(struct drover_stage *st, enum status status, const char *summary)
{
	st->rec.status = status;
	stage_set_summary(st, summary);
	stage_record(st, NULL);
}

/*
 * Makes a stage active, the first half (in the pass's first transaction): a
 * new attempt (start) or, after a restart, the attempt that was running, to
 * be re-attached through the plugin's resume(). It is recorded as running
 * (with its "started" CDEvent) and counts against max_parallel now; the
 * pass calls stage_launch once that record is committed.
 */
static void stage_activate(struct drover_stage *st, bool is_resume)
{
	struct run *run = st->run;
	struct scheduler *s = run->s;
	struct agent *a = s->agent;
	if (!is_resume) {
		if (st->rec.attempt == 0)
			st->rec.attempt = 1;
		st->rec.started_at = now_ms();
		free(st->rec.resume_token);
		st->rec.resume_token = NULL;
	}
	st->needs_resume = false;
	st->rec.status = STATUS_RUNNING;
	st->rec.finished_at = 0;
	st->rec.exit_code = -1;
	st->last_exit_code = -1;
	st->is_timing_out = st->is_cancelling = st->is_interrupted = false;
	stage_set_summary(st, NULL);
	st->is_active = true;
	st->is_resuming = is_resume;
	s->n_running++;
	a->metrics.stages_started++;
	stage_record(st, is_resume ? NULL : "started");
	ptr_list_push(&s->launch, st);
}

/*
 * The second half: after the record of its start is durable, opens the
 * stage log and has the plugin start (or re-attach to) the work. The
 * processes the plugin spawns are recorded by host_spawn, in the pass's
 * second transaction.
 */
static void stage_launch(struct drover_stage *st)
{
	struct run *run = st->run;
	struct agent *a = run->s->agent;
	bool is_resume = st->is_resuming;
	st->is_resuming = false;
	char *log_path = xasprintf("%s/logs/%lld/%s.%d.log", a->cfg->state_dir,
				   (long long)run->rec.id, st->rec.name, st->rec.attempt);
	st->log =
	    stagelog_open(log_path, a->cfg->max_log_bytes, a->cfg->secrets, a->cfg->n_secrets);
	free(log_path);
	free(st->outputs_path);
	/* In the run's directory, next to the logs; the stage makes it if it writes. */
	st->outputs_path = xasprintf("%s/%s.%d.env", run->dir, st->rec.name, st->rec.attempt);
	if (!is_resume)
		unlink(st->outputs_path);
	json_decref(st->outputs);
	st->outputs = store_outputs_get(a->store, run->rec.id);
	log_info("scheduler: run %lld stage %s attempt %d %s (%s)", (long long)run->rec.id,
		 st->rec.name, st->rec.attempt, is_resume ? "re-attaching" : "started",
		 st->def->uses);
	if (st->log == NULL) {
		stage_finish(st, STATUS_ERROR, "cannot open the stage log");
		return;
	}
	stagelog_printf(st->log, "stage %s attempt %d of run %lld (%s) on %s%s", st->rec.name,
			st->rec.attempt, (long long)run->rec.id, run->rec.pipeline,
			run->rec.sha != NULL ? run->rec.sha : "-",
			is_resume ? ": re-attaching after an agent restart" : "");

	const struct loaded_plugin *lp = plugin_host_find(a->plugins, st->def->uses);
	char err[256];
	if (lp == NULL) {
		snprintf(err, sizeof err, "plugin '%s' is not loaded", st->def->uses);
		stage_finish(st, STATUS_ERROR, err);
		return;
	}
	if (plugin_check_with(lp->desc, st->def->with, err, sizeof err) != 0) {
		stage_finish(st, STATUS_ERROR, err);
		return;
	}
	if (st->timeout_ev == NULL)
		st->timeout_ev = evtimer_new(a->base, stage_on_timeout, st);
	struct timeval tv = {st->def->timeout_ms / 1000, (st->def->timeout_ms % 1000) * 1000};
	evtimer_add(st->timeout_ev, &tv);
	int rc = is_resume ? lp->desc->resume(lp->state, st, st->rec.resume_token)
			   : lp->desc->start(lp->state, st);
	if (rc != 0 && st->is_active)
		stage_finish(st, STATUS_ERROR,
			     is_resume ? "the plugin could not re-attach to the stage's work"
				       : "the plugin could not start the stage");
}

static void stage_start(struct drover_stage *st)
{
	stage_activate(st, false);
}

/* ---- run state machine ---- */

/* Over: every stage ended, and every end was recorded (a retry decided). */
static bool run_is_settled(const struct run *run)
{
	for (size_t i = 0; i < run->n_stages; i++)
		if (!status_is_terminal(run->stages[i].rec.status) || run->stages[i].is_active ||
		    run->stages[i].is_finish_pending)
			return false;
	return true;
}

static enum status run_outcome(const struct run *run)
{
	if (run->is_cancelling)
		return STATUS_CANCELLED;
	if (run->checkout_error != NULL)
		return STATUS_ERROR;
	static const enum status order[] = {STATUS_FAILED, STATUS_TIMED_OUT, STATUS_ERROR,
					    STATUS_CANCELLED};
	for (size_t k = 0; k < ARRAY_LEN(order); k++)
		for (size_t i = 0; i < run->n_stages; i++)
			if (run->stages[i].rec.status == order[k])
				return order[k];
	return STATUS_SUCCEEDED;
}

static void kept_workspace_free(struct kept_workspace *k)
{
	event_free(k->ev);
	free(k->path);
	free(k);
}

static void kept_workspace_expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct kept_workspace *k = arg;
	for (struct kept_workspace **pp = &k->s->kept; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	}
	wspool_put(k->s->pool, k->path);
	kept_workspace_free(k);
}

/* Records the run's outcome and its "finished" CDEvent (in the pass's first transaction). */
static void run_finish(struct run *run)
{
	struct agent *a = run->s->agent;
	run->rec.status = run_outcome(run);
	run->rec.finished_at = now_ms();
	run_save(run);
	report_pipelinerun(a->report, &run->rec, "finished");
	a->metrics.runs_finished++;
	metrics_run_finished(&a->metrics, run->rec.pipeline, run->rec.status);
}

/* After the outcome is committed: the workspace goes (or is kept a while after a failure). */
static void run_clean_up(struct run *run)
{
	struct agent *a = run->s->agent;
	log_info("scheduler: run %lld (%s) %s", (long long)run->rec.id, run->rec.pipeline,
		 status_name(run->rec.status));
	if (run->rec.status == STATUS_SUCCEEDED || run->rec.status == STATUS_CANCELLED) {
		wspool_put(run->s->pool, run->workspace);
	} else if (a->cfg->keep_failed_workspace_ms > 0) {
		/* Kept for a post-mortem, then removed (or by the sweep at the next start). */
		struct kept_workspace *k = xcalloc(1, sizeof *k);
		k->s = run->s;
		k->path = xstrdup(run->workspace);
		k->ev = evtimer_new(a->base, kept_workspace_expire, k);
		int64_t ms = a->cfg->keep_failed_workspace_ms;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(k->ev, &tv);
		k->next = run->s->kept;
		run->s->kept = k;
	} else {
		wspool_put(run->s->pool, run->workspace);
	}
}

static void run_on_checkout(void *arg, int rc, const char *sha, const char *error)
{
	struct run *run = arg;
	struct store *store = run->s->agent->store;
	run->checkout = NULL;
	stagelog_close(run->checkout_log);
	run->checkout_log = NULL;
	if (run->phase == PHASE_CHECKOUT)
		run->s->n_checkouts--;
	bool is_tx = store_begin(store) == 0;
	if (rc != 0 || run->is_cancelling) {
		run->checkout_error = xstrdup(error != NULL ? error : "cancelled");
		log_warn("scheduler: run %lld: checkout failed: %s", (long long)run->rec.id,
			 run->checkout_error);
		for (size_t i = 0; i < run->n_stages; i++)
			if (run->stages[i].rec.status == STATUS_QUEUED) {
				char *why = xasprintf("checkout failed: %s", run->checkout_error);
				stage_settle(&run->stages[i],
					     run->is_cancelling ? STATUS_CANCELLED : STATUS_SKIPPED,
					     why);
				free(why);
			}
	} else if (run->rec.sha == NULL || strcmp(run->rec.sha, sha) != 0) {
		free(run->rec.sha);
		run->rec.sha = xstrdup(sha);
		run_save(run);
	}
	if (is_tx)
		store_commit(store);
	run->phase = PHASE_STAGES;
	scheduler_kick(run->s);
}

/*
 * Leaves the queue, the first half (in the pass's first transaction): the
 * start is recorded with its "started" CDEvent; run_prepare makes the
 * workspace once that is committed. A run waiting for its checkout holds a
 * slot of max_parallel meanwhile.
 */
static void run_begin(struct run *run)
{
	struct scheduler *s = run->s;
	struct agent *a = s->agent;
	run->rec.status = STATUS_RUNNING;
	if (run->rec.started_at == 0)
		run->rec.started_at = now_ms();
	free(run->rec.workspace);
	run->rec.workspace = xstrdup(run->workspace);
	run_save(run);
	report_pipelinerun(a->report, &run->rec, "started");
	if (run->pl->checkout) {
		run->phase = PHASE_CHECKOUT;
		s->n_checkouts++;
	} else {
		run->phase = PHASE_STAGES;
	}
	ptr_list_push(&s->prepare, run);
}

/* The second half: the run's directory, its event file, and its workspace or checkout. */
static void run_prepare(struct run *run)
{
	struct agent *a = run->s->agent;
	mkdir_p(run->dir, 0750);
	char *text = json_dumps(run->event, JSON_INDENT(2));
	FILE *f = fopen(run->event_path, "we");
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
	free(text);

	if (!run->pl->checkout) {
		if (wspool_take(run->s->pool, run->workspace) != 0)
			log_warn("scheduler: run %lld: workspace %s: %s", (long long)run->rec.id,
				 run->workspace, strerror(errno));
	} else {
		char *workspaces = xasprintf("%s/workspaces", a->cfg->state_dir);
		mkdir_p(workspaces, 0750);
		free(workspaces);
		const struct repo_config *rc =
		    run->rec.repo != NULL ? config_find_repo(a->cfg, run->rec.repo) : NULL;
		const char *url = rc != NULL ? rc->url : json_str(run->event, "clone_url");
		char *log_path = xasprintf("%s/checkout.log", run->dir);
		run->checkout_log = stagelog_open(log_path, a->cfg->max_log_bytes, a->cfg->secrets,
						  a->cfg->n_secrets);
		free(log_path);
		if (url == NULL || run->rec.repo == NULL || run->checkout_log == NULL) {
			run_on_checkout(run, -1, NULL, "the event names no repository to fetch");
		} else {
			run->checkout = workspace_checkout(a, run->rec.repo, url, run->rec.sha,
							   run->rec.branch, run->workspace,
							   run->checkout_log, run_on_checkout, run);
			if (run->checkout == NULL)
				run_on_checkout(run, -1, NULL, "the checkout could not start");
		}
	}
	log_info("scheduler: run %lld (%s) started", (long long)run->rec.id, run->rec.pipeline);
}

/*
 * Every stage of the run has ended for good, though the last ends may not
 * be recorded yet (stage_finish batches them): nothing runs, nothing waits,
 * no retry will follow. A cancel then would only rename the stages' true
 * result.
 */
static bool run_has_ended(const struct run *run)
{
	if (run->checkout != NULL)
		return false;
	for (size_t i = 0; i < run->n_stages; i++) {
		const struct drover_stage *st = &run->stages[i];
		if (st->is_active || !status_is_terminal(st->rec.status) ||
		    (st->is_finish_pending && stage_will_retry(st)))
			return false;
	}
	return true;
}

/* Cancels the run; false (nothing done) when every stage had already ended. */
static bool run_cancel(struct run *run, const char *why)
{
	if (run->is_cancelling)
		return true;
	if (run_has_ended(run)) {
		log_info("scheduler: run %lld not cancelled (%s): every stage had already ended",
			 (long long)run->rec.id, why);
		return false;
	}
	run->is_cancelling = true;
	run->cancel_why = xstrdup(why);
	log_info("scheduler: cancelling run %lld: %s", (long long)run->rec.id, why);
	struct store *store = run->s->agent->store;
	bool is_tx = store_begin(store) == 0; /* the queued stages settle together */
	if (run->checkout != NULL)
		workspace_cancel(run->checkout);
	for (size_t i = 0; i < run->n_stages; i++) {
		struct drover_stage *st = &run->stages[i];
		if (st->is_active) {
			st->is_cancelling = true;
			if (st->log != NULL)
				stagelog_printf(st->log, "cancelled: %s", why);
			stage_stop(st);
		} else if (st->rec.status == STATUS_QUEUED) {
			if (st->retry_ev != NULL)
				evtimer_del(st->retry_ev);
			char *summary = xasprintf("cancelled: %s", why);
			stage_settle(st, STATUS_CANCELLED, summary);
			free(summary);
		}
	}
	if (is_tx)
		store_commit(store);
	scheduler_kick(run->s);
	return true;
}

int scheduler_run_cancel(struct scheduler *s, int64_t run_id, const char *reason)
{
	for (struct run *run = s->runs; run != NULL; run = run->next) {
		if (run->rec.id != run_id)
			continue;
		bool is_cancelled = run_cancel(run, reason != NULL && *reason != '\0'
							? reason
							: "requested through the admin API");
		return is_cancelled ? 0 : -2;
	}
	/* Not in memory: finished, unknown, or a held run not taken up yet. */
	json_t *j = store_run_json(s->agent->store, run_id);
	if (j == NULL)
		return -1;
	const char *name = json_string_value(json_object_get(j, "status"));
	int st = name != NULL ? status_parse(name) : -1;
	json_decref(j);
	return st >= 0 && status_is_terminal((enum status)st) ? -2 : -3;
}

static bool plan_has_stage(const struct replay_plan *plan, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(plan->stages, i, v)
	{
		if (strcmp(json_string_value(v), name) == 0)
			return true;
	}
	return false;
}

/*
 * Records the new attempt in the store (one transaction): the run attempt,
 * the definition (latest pipeline), each stage of the plan's pipeline
 * re-queued as a new stage attempt with its outputs dropped (selected),
 * inserted (new), or kept as it is, stages the pipeline lost forgotten,
 * the run queued again with its "queued" CDEvent. 0 or -1.
 */
static int run_replay_record(struct scheduler *s, const struct replay_plan *plan,
			     const struct pipeline *p, struct store_run *run,
			     struct store_stage *stages, size_t n)
{
	struct agent *a = s->agent;
	struct store *store = a->store;
	int attempt = run->attempt + 1;
	struct store_run_attempt ra = {.run_id = run->id,
				       .attempt = attempt,
				       .requested_by = plan->requested_by,
				       .reason = plan->reason,
				       .requested_at = now_ms(),
				       .mode = plan->mode,
				       .stages = plan->stages,
				       .is_latest_pipeline = plan->is_latest_pipeline,
				       .replaced_definition =
					   plan->is_latest_pipeline ? run->definition : NULL};
	if (store_begin(store) != 0)
		return -1;
	if (store_run_attempt_add(store, &ra) != 0 ||
	    (plan->is_latest_pipeline &&
	     store_run_set_definition(store, run->id, plan->definition) != 0))
		goto fail;
	for (size_t i = 0; i < p->n_stages; i++) {
		const char *name = p->stages[i].name;
		struct store_stage *st = NULL;
		for (size_t k = 0; k < n && st == NULL; k++)
			if (strcmp(stages[k].name, name) == 0)
				st = &stages[k];
		if (st == NULL) {
			struct store_stage fresh = {.run_id = run->id,
						    .name = (char *)name,
						    .idx = (int)i,
						    .status = STATUS_QUEUED,
						    .exit_code = -1,
						    .run_attempt = attempt};
			if (store_stage_insert(store, &fresh) != 0)
				goto fail;
			continue;
		}
		st->idx = (int)i;
		if (plan_has_stage(plan, name)) {
			st->attempt++;
			st->first_attempt = st->attempt;
			st->run_attempt = attempt;
			st->status = STATUS_QUEUED;
			st->exit_code = -1;
			st->started_at = st->finished_at = 0;
			free(st->summary);
			free(st->resume_token);
			st->summary = st->resume_token = NULL;
			if (store_outputs_delete(store, run->id, name) != 0)
				goto fail;
		}
		if (store_stage_update(store, st) != 0)
			goto fail;
	}
	for (size_t k = 0; k < n; k++) {
		if (pipeline_stage_index(p, stages[k].name) < 0 &&
		    (store_stage_delete(store, run->id, stages[k].name) != 0 ||
		     store_outputs_delete(store, run->id, stages[k].name) != 0))
			goto fail;
	}
	run->status = STATUS_QUEUED;
	run->attempt = attempt;
	run->started_at = run->finished_at = 0;
	if (store_run_update(store, run) != 0 || report_pipelinerun(a->report, run, "queued") != 0)
		goto fail;
	return store_commit(store);
fail:
	store_rollback(store);
	return -1;
}

int scheduler_run_replay(struct scheduler *s, const struct replay_plan *plan, int *attempt,
			 char *err, size_t err_len)
{
	int rc = scheduler_run_replay_record(s, plan, attempt, err, err_len);
	if (rc == 0)
		run_enqueue(s, plan->run_id, false); /* an old run's replay supersedes nothing */
	return rc;
}

void scheduler_run_requeue(struct scheduler *s, int64_t run_id)
{
	run_enqueue(s, run_id, false);
}

int scheduler_run_replay_record(struct scheduler *s, const struct replay_plan *plan, int *attempt,
				char *err, size_t err_len)
{
	struct agent *a = s->agent;
	for (struct run *run = s->runs; run != NULL; run = run->next) {
		if (run->rec.id == plan->run_id) {
			snprintf(err, err_len, "run %lld is in progress again",
				 (long long)plan->run_id);
			return REPLAY_CONFLICT;
		}
	}
	struct store_run run;
	struct store_stage *stages = NULL;
	size_t n = 0;
	if (store_run_load(a->store, plan->run_id, &run, &stages, &n) != 0) {
		snprintf(err, err_len, "run %lld cannot be read from the store",
			 (long long)plan->run_id);
		return REPLAY_FAILED;
	}
	int rc = REPLAY_FAILED;
	json_t *def = json_loads(plan->definition, 0, NULL);
	struct diags diags = {0};
	struct pipeline *p = def != NULL ? pipeline_from_json(def, "(replay)", NULL, &diags) : NULL;
	json_decref(def);
	diags_free(&diags);
	if (!status_is_terminal(run.status)) {
		snprintf(err, err_len, "run %lld is %s again", (long long)run.id,
			 status_name(run.status));
		rc = REPLAY_CONFLICT;
	} else if (plan->expected_attempt > 0 && run.attempt + 1 != plan->expected_attempt) {
		snprintf(err, err_len,
			 "run %lld is at attempt %d: the command was for attempt %d (another "
			 "replay came first)",
			 (long long)run.id, run.attempt, plan->expected_attempt);
		rc = REPLAY_CONFLICT;
	} else if (p == NULL) {
		snprintf(err, err_len, "the replay's pipeline definition is unreadable");
	} else if (run_replay_record(s, plan, p, &run, stages, n) != 0) {
		snprintf(err, err_len, "the store could not record the replay of run %lld",
			 (long long)run.id);
	} else {
		/* A failure's workspace kept for a post-mortem is the replay's now. */
		char *path = xasprintf("%s/workspaces/%lld", a->cfg->state_dir, (long long)run.id);
		for (struct kept_workspace **pp = &s->kept; *pp != NULL; pp = &(*pp)->next) {
			if (strcmp((*pp)->path, path) == 0) {
				struct kept_workspace *k = *pp;
				*pp = k->next;
				kept_workspace_free(k);
				break;
			}
		}
		free(path);
		*attempt = run.attempt;
		rc = 0;
	}
	pipeline_free(p);
	store_run_clear(&run);
	store_stages_free(stages, n);
	return rc;
}

/* Starts what can start. Returns true when the run is over. */
static bool run_advance(struct run *run)
{
	struct scheduler *s = run->s;
	struct agent *a = s->agent;
	for (size_t i = 0; i < run->n_stages && !s->is_draining; i++)
		if (run->stages[i].needs_resume && !run->stages[i].is_active)
			stage_activate(&run->stages[i], true);
	bool has_changed = true;
	while (has_changed) {
		has_changed = false;
		for (size_t i = 0; i < run->n_stages; i++) {
			struct drover_stage *st = &run->stages[i];
			if (st->rec.status != STATUS_QUEUED || st->is_active ||
			    (st->retry_ev != NULL && evtimer_pending(st->retry_ev, NULL)))
				continue;
			bool is_ready = true;
			const char *failed_need = NULL;
			for (size_t k = 0; k < st->def->n_needs; k++) {
				enum status ns = run->stages[st->def->needs_idx[k]].rec.status;
				if (ns == STATUS_SUCCEEDED)
					continue;
				if (status_is_terminal(ns) &&
				    !run->stages[st->def->needs_idx[k]].is_active)
					failed_need = st->def->needs[k];
				is_ready = false;
			}
			if (failed_need != NULL) {
				char *why =
				    xasprintf("needs %s, which did not succeed", failed_need);
				stage_settle(st, STATUS_SKIPPED, why);
				free(why);
				has_changed = true;
				continue;
			}
			if (is_ready && !s->is_draining &&
			    s->n_running < (size_t)a->cfg->max_parallel) {
				stage_start(st);
				has_changed = true;
			}
		}
	}
	return run_is_settled(run);
}

/* ---- the kick: the one place runs move ---- */

static void scheduler_update_backpressure(struct scheduler *s)
{
	struct agent *a = s->agent;
	if (a->intake == NULL || a->is_stopping)
		return;
	size_t mark = (size_t)a->cfg->max_queued_runs;
	if (s->n_runs >= mark) {
		if (!intake_is_paused(a->intake))
			log_info("scheduler: %zu runs queued or running (high-water mark %zu): "
				 "pausing intake",
				 s->n_runs, mark);
		intake_set_paused(a->intake, true);
	} else if (s->n_runs <= mark / 2) {
		intake_set_paused(a->intake, false);
	}
}

/* Taken up after a restart with remote work to re-attach to: that work runs
 * anyway, so the run begins without waiting for a slot. */
static bool run_is_remote_resume(const struct run *run)
{
	for (size_t i = 0; i < run->n_stages; i++)
		if (run->stages[i].needs_resume)
			return true;
	return false;
}

/* While draining: once nothing runs any more, on_idle (once). */
static void scheduler_check_idle(struct scheduler *s)
{
	if (s->is_draining && s->n_running == 0 && s->on_idle != NULL) {
		void (*cb)(void *) = s->on_idle;
		s->on_idle = NULL;
		cb(s->idle_arg);
	}
}

/*
 * The pass's decisions: records the stages that ended, then walks the runs
 * oldest first, beginning waiting runs while a slot of max_parallel is free
 * (a run in checkout holds one; at most max_parallel begin per pass),
 * starting ready stages and finishing settled runs, all in the caller's
 * transaction. Returns true when it stopped beginning runs only because of
 * the per-pass bound (another pass should follow).
 */
static bool scheduler_decide(struct scheduler *s)
{
	size_t max_parallel = (size_t)s->agent->cfg->max_parallel;
	size_t n_begun = 0;
	bool is_bounded = false;
	scheduler_record_finished(s);
	/* Keys (groups, locks) held by earlier runs, or wanted by an earlier waiting run. */
	struct run **holders = xcalloc(s->n_runs + 1, sizeof *holders);
	size_t n_holders = 0;
	for (struct run **pp = &s->runs; *pp != NULL;) {
		struct run *run = *pp;
		if (run->phase == PHASE_WAITING && !run->is_cancelling && !s->is_draining &&
		    (s->n_running + s->n_checkouts < max_parallel || run_is_remote_resume(run))) {
			bool is_blocked = false;
			for (size_t i = 0; i < n_holders && !is_blocked; i++)
				is_blocked = run_shares_key(holders[i], run);
			if (!is_blocked && n_begun == max_parallel) {
				is_bounded = true;
			} else if (!is_blocked) {
				run_begin(run);
				n_begun++;
			}
		}
		if (run->rec.concurrency_group != NULL || run->rec.lock_name != NULL)
			holders[n_holders++] = run;
		/* A run cancelled while it waited has nothing left to wait for. */
		bool may_advance = run->phase == PHASE_STAGES ||
				   (run->phase == PHASE_WAITING && run->is_cancelling);
		if (!may_advance || !run_advance(run)) {
			pp = &run->next;
			continue;
		}
		/* Settled: remove it (and from the holders, so later runs may start). */
		run_finish(run);
		for (size_t i = 0; i < n_holders; i++)
			if (holders[i] == run)
				holders[i] = holders[--n_holders];
		*pp = run->next;
		s->n_runs--;
		ptr_list_push(&s->settled, run); /* freed once the outcome is committed */
		if (run->rec.concurrency_group != NULL || run->rec.lock_name != NULL)
			scheduler_kick(s); /* its key may let an earlier-skipped run start */
	}
	free(holders);
	return is_bounded;
}

/*
 * One pass, in this order:
 *
 *  1. Decide, in ONE transaction: the ends of stages since the last pass
 *     (and their retries), the runs that begin, the stages that start (each
 *     recorded as a running attempt with its "started" CDEvent), the runs
 *     that finish. COMMIT. Nothing of it was acted on yet: a crash before
 *     this commit leaves the store as it was, and no process was started.
 *  2. Act, in a second transaction: prepare the begun runs' workspaces
 *     (or start their checkouts), then have the plugins start the stages.
 *     host_spawn records each process group right after its posix_spawn,
 *     in this transaction; stages that could not start are recorded here
 *     too. COMMIT before returning to the loop: no other callback (an
 *     exit, the outbox, intake, the API) ever runs while a spawned group is
 *     not durably recorded.
 *  3. Free the finished runs and clean up their workspaces.
 *
 * The one window left is inside step 2, between a posix_spawn and that
 * commit, as it always was (the group's pid and start time exist only after
 * the spawn): a crash there leaves groups the next agent does not know. It
 * knows their stages were running (step 1), so their attempts are recorded
 * as interrupted; only those groups' processes are not killed. The window
 * is one fsync plus at most max_parallel spawns long.
 *
 * CDEvents enter the outbox within these transactions and are published
 * (report_kick runs after this callback) only once committed.
 */
static void scheduler_on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct scheduler *s = arg;
	struct store *store = s->agent->store;
	if (store_begin(store) != 0) {
		/* Nothing may be decided that cannot be recorded: try again in a second. */
		log_error("scheduler: the store cannot begin a transaction; next try in 1 s");
		struct timeval tv = {1, 0};
		event_add(s->kick_ev, &tv);
		scheduler_check_idle(s);
		return;
	}
	bool is_bounded = scheduler_decide(s);
	bool is_recorded = store_commit(store) == 0;
	if (!is_recorded)
		log_error("scheduler: the pass's decisions could not be recorded: %zu stage(s) "
			  "not started",
			  s->launch.n);

	if (s->prepare.n > 0 || s->launch.n > 0 || s->finished.n > 0) {
		/* If this one cannot begin, each process group is committed on its own. */
		bool is_tx = store_begin(store) == 0;
		for (size_t i = 0; i < s->prepare.n; i++)
			run_prepare(s->prepare.items[i]);
		for (size_t i = 0; i < s->launch.n; i++) {
			struct drover_stage *st = s->launch.items[i];
			if (!st->is_active)
				continue;
			if (is_recorded)
				stage_launch(st);
			else
				stage_finish(st, STATUS_ERROR,
					     "the store could not record the start");
		}
		scheduler_record_finished(s); /* those that could not start */
		if (is_tx && store_commit(store) != 0)
			log_error("scheduler: the process groups just started could not be "
				  "recorded: a crash of the agent would leave them running");
		s->prepare.n = s->launch.n = 0;
	}

	for (size_t i = 0; i < s->settled.n; i++) {
		run_clean_up(s->settled.items[i]);
		run_free(s->settled.items[i]);
	}
	s->settled.n = 0;
	if (is_bounded)
		scheduler_kick(s); /* more runs may begin: after the loop served the others */
	scheduler_update_backpressure(s);
	scheduler_check_idle(s);
}

static void scheduler_kick(struct scheduler *s)
{
	event_active(s->kick_ev, EV_TIMEOUT, 0);
}

static void scheduler_sweep_workspaces(struct scheduler *s);

static void scheduler_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	scheduler_sweep_workspaces(arg);
}

struct scheduler *scheduler_new(struct agent *a)
{
	struct scheduler *s = xcalloc(1, sizeof *s);
	s->agent = a;
	s->kick_ev = event_new(a->base, -1, 0, scheduler_on_kick, s);
	s->sweep_ev = event_new(a->base, -1, EV_PERSIST, scheduler_on_sweep, s);
	struct timeval tv = {60, 0};
	event_add(s->sweep_ev, &tv);
	char *pool = xasprintf("%s/workspaces/.free", a->cfg->state_dir);
	s->pool = wspool_new(pool, (size_t)a->cfg->max_parallel);
	free(pool);
	return s;
}

void scheduler_free(struct scheduler *s)
{
	if (s == NULL)
		return;
	while (s->runs != NULL) {
		struct run *run = s->runs;
		s->runs = run->next;
		run_free(run);
	}
	while (s->kept != NULL) {
		struct kept_workspace *k = s->kept;
		s->kept = k->next;
		kept_workspace_free(k);
	}
	event_free(s->kick_ev);
	event_free(s->sweep_ev);
	wspool_free(s->pool);
	if (s->drain_ev != NULL)
		event_free(s->drain_ev);
	/* Ends not recorded yet are left as a crash would leave them: the restart
	 * records those attempts as interrupted. */
	ptr_list_free(&s->prepare);
	ptr_list_free(&s->launch);
	ptr_list_free(&s->settled);
	ptr_list_free(&s->finished);
	free(s);
}

size_t scheduler_active_runs(const struct scheduler *s)
{
	return s->n_runs;
}

size_t scheduler_running_stages(const struct scheduler *s)
{
	return s->n_running;
}

size_t scheduler_queued_runs(const struct scheduler *s)
{
	size_t n = 0;
	for (const struct run *run = s->runs; run != NULL; run = run->next)
		n += run->rec.status == STATUS_QUEUED;
	return n;
}

/* ---- restart and stop ---- */

/*
 * Workspaces kept after a failure outlive their removal timer when the agent
 * stops; at start, remove those of finished runs older than the keep time.
 */
static void scheduler_sweep_workspaces(struct scheduler *s)
{
	struct agent *a = s->agent;
	char *dir = xasprintf("%s/workspaces", a->cfg->state_dir);
	DIR *d = opendir(dir);
	if (d == NULL) {
		free(dir);
		return;
	}
	int64_t now = now_ms();
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long long id = strtoll(de->d_name, &end, 10);
		if (de->d_name[0] == '.' || *end != '\0')
			continue;
		bool is_active = false;
		for (struct run *run = s->runs; run != NULL && !is_active; run = run->next)
			is_active = run->rec.id == id;
		char *path = xasprintf("%s/%s", dir, de->d_name);
		struct stat st;
		if (!is_active && stat(path, &st) == 0 &&
		    now - (int64_t)st.st_mtime * 1000 >= a->cfg->keep_failed_workspace_ms) {
			log_info("scheduler: removing the kept workspace of run %lld", id);
			rm_rf(path);
		}
		free(path);
	}
	closedir(d);
	free(dir);
}

/*
 * An agent that died without stopping (kill -9, a crash, the OOM killer)
 * left its stages' process groups running: in their workspaces, unwatched,
 * their output going nowhere. They go before any run is taken up, since
 * their attempts are recorded as interrupted and a retry must not run beside
 * them. SIGTERM first, as for every stage kill (a stage may clean up), then
 * SIGKILL after stage_kill_grace. That wait blocks the start-up, but nothing
 * runs or consumes yet, and it lasts only while a group ignores SIGTERM.
 */
static void scheduler_kill_orphans(struct scheduler *s)
{
	struct agent *a = s->agent;
	struct store_stage_proc *procs = NULL;
	size_t n = 0;
	if (store_stage_procs_list(a->store, &procs, &n) != 0 || n == 0) {
		store_stage_procs_free(procs, n);
		return;
	}
	struct proc_orphan *groups = xcalloc(n, sizeof *groups);
	for (size_t i = 0; i < n; i++) {
		groups[i].pgid = (pid_t)procs[i].pgid;
		groups[i].start_time = procs[i].start_time;
	}
	size_t n_killed = proc_kill_orphans(groups, n, a->cfg->stage_kill_grace_ms);
	for (size_t i = 0; i < n; i++) {
		if (groups[i].is_killed)
			log_warn("scheduler: run %lld stage %s attempt %d: process group %ld "
				 "outlived the previous agent: killed",
				 (long long)procs[i].run_id, procs[i].stage, procs[i].attempt,
				 (long)groups[i].pgid);
		else
			log_debug("scheduler: run %lld stage %s attempt %d: process group %ld is "
				  "gone",
				  (long long)procs[i].run_id, procs[i].stage, procs[i].attempt,
				  (long)groups[i].pgid);
	}
	if (n_killed > 0)
		log_info("scheduler: killed %zu process group(s) the previous agent left running",
			 n_killed);
	store_stage_procs_clear(a->store);
	free(groups);
	store_stage_procs_free(procs, n);
}

int scheduler_recover(struct scheduler *s)
{
	struct agent *a = s->agent;
	int64_t *ids = NULL;
	size_t n = 0;
	scheduler_kill_orphans(s);
	if (store_runs_unfinished(a->store, &ids, &n) != 0)
		return -1;
	/* One transaction for all the interrupted attempts, not one each. */
	bool is_tx = store_begin(a->store) == 0;
	int taken = 0;
	for (size_t i = 0; i < n; i++) {
		struct run *run = run_load(s, ids[i]);
		if (run == NULL)
			continue;
		for (size_t k = 0; k < run->n_stages; k++) {
			struct drover_stage *st = &run->stages[k];
			if (st->rec.status != STATUS_RUNNING)
				continue;
			const struct loaded_plugin *lp =
			    plugin_host_find(a->plugins, st->def->uses);
			if (st->rec.resume_token != NULL && lp != NULL &&
			    lp->desc->resume != NULL) {
				/* Remote work goes on without us: re-attach, never resubmit. */
				st->needs_resume = true;
				log_info("scheduler: run %lld stage %s will re-attach to %s",
					 (long long)run->rec.id, st->rec.name,
					 st->rec.resume_token);
				continue;
			}
			/* Its processes went with the old agent (or were killed above). */
			st->rec.status = STATUS_ERROR;
			st->rec.finished_at = now_ms();
			stage_set_summary(st, "interrupted: the agent stopped while the stage ran");
			stage_record(st, "finished");
			if (st->rec.attempt - stage_first_attempt(st) < st->def->retry.attempts) {
				st->rec.attempt++;
				st->rec.status = STATUS_QUEUED;
				st->rec.started_at = st->rec.finished_at = 0;
				stage_set_summary(st, NULL);
				stage_record(st, NULL);
			}
			log_info("scheduler: run %lld stage %s was running at the last stop: %s",
				 (long long)run->rec.id, st->rec.name,
				 st->rec.status == STATUS_QUEUED ? "retrying as a new attempt"
								 : "failed (no retries left)");
		}
		struct run **tail = &s->runs;
		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = run;
		s->n_runs++;
		taken++;
	}
	free(ids);
	if (is_tx && store_commit(a->store) != 0)
		log_error("scheduler: the interrupted attempts could not be recorded");
	if (taken > 0)
		log_info("scheduler: took up %d unfinished run(s) from the last stop", taken);
	scheduler_sweep_workspaces(s);
	scheduler_kick(s);
	return taken;
}

static void scheduler_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct scheduler *s = arg;
	log_warn("scheduler: stop grace period over: killing %zu running stage(s)", s->n_running);
	for (struct run *run = s->runs; run != NULL; run = run->next) {
		if (run->checkout != NULL)
			workspace_cancel(run->checkout);
		for (size_t i = 0; i < run->n_stages; i++) {
			struct drover_stage *st = &run->stages[i];
			if (!st->is_active)
				continue;
			st->is_interrupted = true;
			stagelog_printf(st->log, "the agent is stopping: killing the stage");
			stage_stop(st);
		}
	}
}

void scheduler_drain(struct scheduler *s, int64_t grace_ms, void (*on_idle)(void *arg), void *arg)
{
	s->is_draining = true;
	s->on_idle = on_idle;
	s->idle_arg = arg;
	if (s->n_running > 0) {
		log_info("scheduler: waiting up to %lld ms for %zu running stage(s)",
			 (long long)grace_ms, s->n_running);
		s->drain_ev = evtimer_new(s->agent->base, scheduler_on_drain_timeout, s);
		struct timeval tv = {grace_ms / 1000, (grace_ms % 1000) * 1000};
		evtimer_add(s->drain_ev, &tv);
	}
	scheduler_kick(s);
}
