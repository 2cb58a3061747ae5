/*
 * replay: deciding a replay (the stage selection and the plan, from the run
 * as stored) and the check that the run's commit still exists. The check
 * runs git in a child (proc.h) under the repository cache's lock: it
 * fetches the origin into the bare mirror with --prune, so the mirror's
 * refs are the origin's, and the commit exists when some ref contains it.
 * A commit the mirror still holds but no ref of the origin reaches (a
 * force-push, then gc) is gone: the replay is refused, never re-resolved.
 */
#include "replay.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "log.h"
#include "pipeline.h"
#include "proc.h"
#include "scheduler.h"
#include "status.h"
#include "store.h"
#include "util.h"
#include "workspace.h"

/* Exit codes of the check script. */
#define CHECK_GONE 3
#define CHECK_UNREACHABLE 4

/* $1 url, $2 mirror, $3 sha. Prints the first ref containing the commit. */
static const char check_script[] =
    "set -u\n"
    "url=$1 mirror=$2 sha=$3\n"
    "mkdir -p \"$(dirname \"$mirror\")\" || exit 4\n"
    "exec 9>\"$mirror.lock\" || exit 4\n"
    "flock 9 || exit 4\n"
    "if [ ! -d \"$mirror\" ]; then\n"
    "  git clone --quiet --mirror -- \"$url\" \"$mirror.tmp.$$\" || exit 4\n"
    "  mv \"$mirror.tmp.$$\" \"$mirror\" || exit 4\n"
    "else\n"
    "  git --git-dir=\"$mirror\" remote set-url origin \"$url\" || exit 4\n"
    "  git --git-dir=\"$mirror\" fetch --quiet --prune origin || exit 4\n"
    "fi\n"
    "git --git-dir=\"$mirror\" cat-file -e \"$sha^{commit}\" 2>/dev/null || exit 3\n"
    "ref=$(git --git-dir=\"$mirror\" for-each-ref --contains \"$sha\" --count=1 "
    "--format='%(refname)') || exit 4\n"
    "[ -n \"$ref\" ] || exit 3\n"
    "echo \"$ref\"\n";

/* One replay being prepared: its commit check, then the scheduler. */
struct replay_check {
	struct replayer *r;
	struct replay_plan plan;
	char *repo, *sha; /* NULL when there is nothing to check (no checkout) */
	struct proc *proc;
	struct event *ev; /* without a check: applies the plan on the next turn */
	struct strbuf out;
	replay_done_cb cb;
	void *arg;
	struct replay_check *next;
};

struct replayer {
	struct agent *agent;
	struct replay_check *checks;
};

void replay_plan_clear(struct replay_plan *plan)
{
	free(plan->definition);
	json_decref(plan->stages);
	free(plan->reason);
	free(plan->requested_by);
	memset(plan, 0, sizeof *plan);
}

/* ---- selection ---- */

static bool stage_is_unsuccessful(int status)
{
	return status == STATUS_FAILED || status == STATUS_TIMED_OUT || status == STATUS_ERROR ||
	       status == STATUS_CANCELLED;
}

static bool needs_all_succeeded(const struct pipeline *p, const int *status, size_t i)
{
	for (size_t k = 0; k < p->stages[i].n_needs; k++)
		if (status[p->stages[i].needs_idx[k]] != STATUS_SUCCEEDED)
			return false;
	return true;
}

/* Adds every stage downstream of a selected one (needs-closure). */
static void select_downstream(const struct pipeline *p, bool *selected)
{
	bool has_changed = true;
	while (has_changed) {
		has_changed = false;
		for (size_t i = 0; i < p->n_stages; i++) {
			for (size_t k = 0; k < p->stages[i].n_needs && !selected[i]; k++) {
				if (selected[p->stages[i].needs_idx[k]]) {
					selected[i] = true;
					has_changed = true;
				}
			}
		}
	}
}

int replay_select(const struct pipeline *p, const int *status, const struct replay_request *req,
		  bool *selected, char *err, size_t err_len)
{
	size_t n = p->n_stages;
	for (size_t i = 0; i < n; i++)
		selected[i] = false;
	if (req->is_all && req->n_stages > 0) {
		snprintf(err, err_len, "choose either all stages or named stages, not both");
		return REPLAY_BAD_REQUEST;
	}
	if (req->is_downstream && req->n_stages == 0) {
		snprintf(err, err_len, "downstream needs at least one named stage");
		return REPLAY_BAD_REQUEST;
	}
	for (size_t k = 0; k < req->n_stages; k++) {
		int idx = pipeline_stage_index(p, req->stages[k]);
		if (idx < 0) {
			snprintf(err, err_len, "pipeline %s has no stage '%s'", p->name,
				 req->stages[k]);
			return REPLAY_BAD_REQUEST;
		}
		selected[idx] = true;
	}
	for (size_t i = 0; i < n; i++) {
		/* A stage the run never had has no result to keep. */
		if (req->is_all || status[i] == REPLAY_STAGE_NEW)
			selected[i] = true;
		else if (req->n_stages == 0)
			selected[i] =
			    stage_is_unsuccessful(status[i]) ||
			    (status[i] == STATUS_SKIPPED && needs_all_succeeded(p, status, i));
	}
	if (req->n_stages == 0 || req->is_downstream)
		select_downstream(p, selected);
	size_t n_selected = 0;
	for (size_t i = 0; i < n; i++) {
		if (!selected[i])
			continue;
		n_selected++;
		for (size_t k = 0; k < p->stages[i].n_needs; k++) {
			size_t need = p->stages[i].needs_idx[k];
			if (!selected[need] && status[need] != STATUS_SUCCEEDED) {
				snprintf(err, err_len,
					 "stage %s needs %s, which did not succeed and would not "
					 "run again: re-run %s too",
					 p->stages[i].name, p->stages[need].name,
					 p->stages[need].name);
				return REPLAY_CONFLICT;
			}
		}
	}
	if (n_selected == 0) {
		snprintf(err, err_len,
			 "nothing to re-run: no stage failed, timed out, errored or was cancelled "
			 "(name stages or ask for all)");
		return REPLAY_CONFLICT;
	}
	return 0;
}

/* ---- the plan ---- */

static const struct store_stage *stage_find(const struct store_stage *stages, size_t n,
					    const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(stages[i].name, name) == 0)
			return &stages[i];
	return NULL;
}

/*
 * Decides the replay of run_id from the store: the plan, and what the
 * commit check needs (*repo, *sha, *url: all NULL when the pipeline checks
 * nothing out). Returns 0 or an error code with err.
 */
static int replay_plan_make(struct agent *a, int64_t run_id, const struct replay_request *req,
			    struct replay_plan *plan, char **repo, char **sha, char **url,
			    char *err, size_t err_len)
{
	json_t *probe = store_run_json(a->store, run_id);
	if (probe == NULL) {
		snprintf(err, err_len, "no run %lld", (long long)run_id);
		return REPLAY_NOT_FOUND;
	}
	json_decref(probe);
	struct store_run run;
	struct store_stage *stages = NULL;
	size_t n = 0;
	struct pipeline *owned = NULL;
	const struct pipeline *p = NULL;
	json_t *event = NULL;
	int *status = NULL;
	bool *selected = NULL;
	int rc = REPLAY_FAILED;
	if (store_run_load(a->store, run_id, &run, &stages, &n) != 0) {
		snprintf(err, err_len, "run %lld cannot be read from the store", (long long)run_id);
		return REPLAY_FAILED;
	}
	if (!status_is_terminal(run.status)) {
		snprintf(err, err_len,
			 "run %lld is still %s: a replay starts only once it has finished "
			 "(cancel it first)",
			 (long long)run_id, status_name(run.status));
		rc = REPLAY_CONFLICT;
		goto out;
	}
	if (req->is_latest_pipeline) {
		p = pipeline_set_find(&a->pipelines, run.pipeline);
		if (p == NULL) {
			snprintf(err, err_len,
				 "pipeline %s is no longer loaded: there is no latest definition "
				 "to replay run %lld with",
				 run.pipeline, (long long)run_id);
			rc = REPLAY_CONFLICT;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (pipeline_stage_index(p, stages[i].name) < 0 &&
			    stages[i].status == STATUS_SUCCEEDED) {
				snprintf(err, err_len,
					 "stage %s of run %lld succeeded and would be kept, but "
					 "the latest pipeline %s has no such stage",
					 stages[i].name, (long long)run_id, run.pipeline);
				rc = REPLAY_CONFLICT;
				goto out;
			}
		}
	} else {
		json_t *def = json_loads(run.definition, 0, NULL);
		struct diags diags = {0};
		owned = def != NULL ? pipeline_from_json(def, "(stored)", NULL, &diags) : NULL;
		json_decref(def);
		diags_free(&diags);
		p = owned;
		if (p == NULL) {
			snprintf(err, err_len, "the stored definition of run %lld is unreadable",
				 (long long)run_id);
			goto out;
		}
	}
	status = xcalloc(p->n_stages + 1, sizeof *status);
	selected = xcalloc(p->n_stages + 1, sizeof *selected);
	for (size_t i = 0; i < p->n_stages; i++) {
		const struct store_stage *st = stage_find(stages, n, p->stages[i].name);
		status[i] = st != NULL ? (int)st->status : REPLAY_STAGE_NEW;
	}
	rc = replay_select(p, status, req, selected, err, err_len);
	if (rc != 0)
		goto out;
	plan->run_id = run_id;
	plan->definition = json_dumps(p->definition, JSON_COMPACT);
	plan->stages = json_array();
	for (size_t i = 0; i < p->n_stages; i++)
		if (selected[i])
			json_array_append_new(plan->stages, json_string(p->stages[i].name));
	plan->mode = req->is_all ? "all" : req->n_stages > 0 ? "stages" : "failed";
	plan->is_latest_pipeline = req->is_latest_pipeline;
	plan->reason = req->reason != NULL ? xstrdup(req->reason) : NULL;
	plan->requested_by = req->requested_by != NULL ? xstrdup(req->requested_by) : NULL;
	if (p->checkout) {
		event = store_event_get(a->store, run.event_id);
		const struct repo_config *rcfg =
		    run.repo != NULL ? config_find_repo(a->cfg, run.repo) : NULL;
		const char *u = rcfg != NULL
				    ? rcfg->url
				    : json_string_value(json_object_get(event, "clone_url"));
		if (run.sha == NULL || run.repo == NULL || u == NULL) {
			snprintf(err, err_len,
				 "run %lld has no commit or repository recorded (its checkout "
				 "never resolved one): a replay would have to re-resolve it",
				 (long long)run_id);
			replay_plan_clear(plan);
			rc = REPLAY_CONFLICT;
			goto out;
		}
		*repo = xstrdup(run.repo);
		*sha = xstrdup(run.sha);
		*url = xstrdup(u);
	}
	rc = 0;
out:
	json_decref(event);
	free(status);
	free(selected);
	pipeline_free(owned);
	store_run_clear(&run);
	store_stages_free(stages, n);
	return rc;
}

/* ---- the check and the hand-over ---- */

static void check_free(struct replay_check *c)
{
	if (c->ev != NULL)
		event_free(c->ev);
	replay_plan_clear(&c->plan);
	strbuf_free(&c->out);
	free(c->repo);
	free(c->sha);
	free(c);
}

static void check_unlink(struct replay_check *c)
{
	for (struct replay_check **pp = &c->r->checks; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			return;
		}
	}
}

/* Hands the plan to the scheduler and tells the caller; frees the check. */
static void check_apply(struct replay_check *c)
{
	struct agent *a = c->r->agent;
	char err[512];
	int attempt = 0;
	check_unlink(c);
	int rc = scheduler_run_replay(a->sched, &c->plan, &attempt, err, sizeof err);
	if (rc == 0) {
		log_info("replay: run %lld attempt %d queued (requested by %s: %s)",
			 (long long)c->plan.run_id, attempt,
			 c->plan.requested_by != NULL ? c->plan.requested_by : "-",
			 c->plan.reason != NULL ? c->plan.reason : "no reason given");
		c->cb(c->arg, REPLAY_ACCEPTED,
		      json_pack("{s:I,s:i,s:O}", "id", (json_int_t)c->plan.run_id, "attempt",
				attempt, "stages", c->plan.stages));
	} else {
		log_warn("replay: run %lld refused: %s", (long long)c->plan.run_id, err);
		c->cb(c->arg, rc, json_pack("{s:s}", "error", err));
	}
	check_free(c);
}

static void check_on_output(void *arg, const char *data, size_t len)
{
	struct replay_check *c = arg;
	if (c->out.len < 4096)
		strbuf_add(&c->out, data, len);
}

/* The last non-empty line of the script's output, for messages. */
static const char *check_last_line(struct replay_check *c)
{
	char *s = c->out.data != NULL ? c->out.data : "";
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		s[--len] = '\0';
	char *nl = strrchr(s, '\n');
	return nl != NULL ? nl + 1 : s;
}

static void check_on_exit(void *arg, int exit_code, int term_signal)
{
	struct replay_check *c = arg;
	c->proc = NULL;
	if (exit_code == 0) {
		log_info("replay: run %lld: commit %s of %s is still in %s",
			 (long long)c->plan.run_id, c->sha, c->repo, check_last_line(c));
		check_apply(c);
		return;
	}
	char err[768];
	int code = REPLAY_UNAVAILABLE;
	if (exit_code == CHECK_GONE) {
		snprintf(err, sizeof err,
			 "commit %s no longer exists in %s (no branch or tag of its origin "
			 "contains it, e.g. after a force-push): a replay runs the same commit "
			 "or nothing",
			 c->sha, c->repo);
		code = REPLAY_CONFLICT;
	} else if (exit_code < 0) {
		snprintf(err, sizeof err, "the check of commit %s was killed by signal %d", c->sha,
			 term_signal);
	} else {
		snprintf(err, sizeof err,
			 "cannot check that commit %s still exists in %s (fetching its origin "
			 "failed: %.200s): try again later",
			 c->sha, c->repo, check_last_line(c));
	}
	log_warn("replay: run %lld refused: %s", (long long)c->plan.run_id, err);
	check_unlink(c);
	c->cb(c->arg, code, json_pack("{s:s}", "error", err));
	check_free(c);
}

static void check_on_next_turn(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	check_apply(arg);
}

/* Starts the git check of c (repo, sha) against url. 0 or -1 with err. */
static int check_spawn(struct replay_check *c, const char *url, char *err, size_t err_len)
{
	struct agent *a = c->r->agent;
	char *mirror = workspace_mirror_path(a->cfg->state_dir, c->repo);
	const char *argv[] = {"/bin/sh", "-c",	 check_script, "drover-replay-check",
			      url,	 mirror, c->sha,       NULL};
	char *path_env =
	    xasprintf("PATH=%s", getenv("PATH") != NULL ? getenv("PATH") : "/usr/bin:/bin");
	char *home_env = xasprintf("HOME=%s", getenv("HOME") != NULL ? getenv("HOME") : "/");
	const char *envp[] = {path_env,
			      home_env,
			      "GIT_TERMINAL_PROMPT=0",
			      "GIT_ALLOW_PROTOCOL=file:git:http:https:ssh",
			      "GIT_CONFIG_NOSYSTEM=1",
			      "LANG=C",
			      NULL};
	struct proc_spec spec = {.argv = argv, .envp = envp};
	char perr[256];
	c->proc = proc_spawn(a->procs, &spec, check_on_output, check_on_exit, c, perr, sizeof perr);
	free(mirror);
	free(path_env);
	free(home_env);
	if (c->proc == NULL) {
		snprintf(err, err_len, "the commit check could not start: %s", perr);
		return -1;
	}
	return 0;
}

struct replayer *replayer_new(struct agent *a)
{
	struct replayer *r = xcalloc(1, sizeof *r);
	r->agent = a;
	return r;
}

void replayer_free(struct replayer *r)
{
	if (r == NULL)
		return;
	while (r->checks != NULL) {
		struct replay_check *c = r->checks;
		r->checks = c->next;
		if (c->proc != NULL) {
			proc_kill(c->proc, 0);
			proc_detach(c->proc);
		}
		check_free(c);
	}
	free(r);
}

int replayer_start(struct replayer *r, int64_t run_id, const struct replay_request *req,
		   replay_done_cb cb, void *arg, char *err, size_t err_len)
{
	struct agent *a = r->agent;
	if (a->is_stopping) {
		snprintf(err, err_len, "the agent is stopping");
		return REPLAY_UNAVAILABLE;
	}
	for (struct replay_check *c = r->checks; c != NULL; c = c->next) {
		if (c->plan.run_id == run_id) {
			snprintf(err, err_len, "a replay of run %lld is already being prepared",
				 (long long)run_id);
			return REPLAY_CONFLICT;
		}
	}
	struct replay_check *c = xcalloc(1, sizeof *c);
	c->r = r;
	c->cb = cb;
	c->arg = arg;
	strbuf_init(&c->out);
	char *url = NULL;
	int rc = replay_plan_make(a, run_id, req, &c->plan, &c->repo, &c->sha, &url, err, err_len);
	if (rc == 0 && c->sha != NULL && check_spawn(c, url, err, err_len) != 0)
		rc = REPLAY_FAILED;
	free(url);
	if (rc != 0) {
		check_free(c);
		return rc;
	}
	if (c->sha == NULL) {
		/* Nothing checked out, nothing to check: the answer comes on the next turn. */
		c->ev = evtimer_new(a->base, check_on_next_turn, c);
		struct timeval now = {0, 0};
		evtimer_add(c->ev, &now);
	}
	c->next = r->checks;
	r->checks = c;
	return REPLAY_ACCEPTED;
}
