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
#include "kafka.h"
#include "log.h"
#include "metrics.h"
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
	replay_done_cb cb; /* NULL once its owner went away (a produce still pending) */
	void *arg;
	char *command_id; /* via Kafka: the command event's id, once produced */
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

/* ---- drover_replays_total ---- */

/* drover_replays_total{via,outcome} (registered by the first call; NULL without metrics). */
static struct metric_family *replays_family(struct agent *a)
{
	return metric_family_new(&a->metrics, METRIC_COUNTER, "drover_replays_total",
				 "Replay requests answered and replay commands executed, by way "
				 "and outcome",
				 (const char *[]){"via", "outcome", NULL}, NULL, 0, 0);
}

static void replays_count(struct agent *a, const char *via, const char *outcome)
{
	metric_add(replays_family(a), (const char *[]){via, outcome}, 1);
}

/* The side asked: an answer with its HTTP code. */
static void replays_count_answer(struct agent *a, bool is_via_kafka, int code)
{
	const char *outcome = code == REPLAY_ACCEPTED ? (is_via_kafka ? "sent" : "queued")
			      : code < 500	      ? "refused"
						      : "failed";
	replays_count(a, is_via_kafka ? "kafka" : "api", outcome);
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

/* Whether run's event is held (recorded, its offset commit not acknowledged yet). */
static bool replay_run_is_held(struct agent *a, const struct store_run *run)
{
	struct store_held_event *held = NULL;
	size_t n = 0;
	bool is_held = false;
	if (run->event_id == NULL || store_events_held(a->store, &held, &n) != 0)
		return false;
	for (size_t i = 0; i < n && !is_held; i++)
		is_held = strcmp(held[i].id, run->event_id) == 0;
	store_held_events_free(held, n);
	return is_held;
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
	if (!status_is_terminal(run.status) && replay_run_is_held(a, &run)) {
		snprintf(err, err_len,
			 "run %lld has not started: its event is not yet committed to Kafka; try "
			 "again in a moment",
			 (long long)run_id);
		rc = REPLAY_CONFLICT;
		goto out;
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
	plan->is_via_kafka = req->is_via_kafka;
	plan->expected_attempt = run.attempt + 1;
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
	free(c->command_id);
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

static void check_produce(struct replay_check *c);

/* Gives the caller its answer (when it is still there) and counts it. */
static void check_answer(struct replay_check *c, int code, json_t *reply)
{
	if (c->r != NULL)
		replays_count_answer(c->r->agent, c->plan.is_via_kafka, code);
	if (c->cb != NULL)
		c->cb(c->arg, code, reply);
	else
		json_decref(reply);
}

/* Hands the plan to the scheduler and tells the caller; frees the check. */
static void check_apply(struct replay_check *c)
{
	struct agent *a = c->r->agent;
	char err[512];
	int attempt = 0;
	if (c->plan.is_via_kafka) {
		check_produce(c);
		return;
	}
	check_unlink(c);
	int rc = scheduler_run_replay(a->sched, &c->plan, &attempt, err, sizeof err);
	if (rc == 0) {
		log_info("replay: run %lld attempt %d queued (requested by %s: %s)",
			 (long long)c->plan.run_id, attempt,
			 c->plan.requested_by != NULL ? c->plan.requested_by : "-",
			 c->plan.reason != NULL ? c->plan.reason : "no reason given");
		check_answer(c, REPLAY_ACCEPTED,
			     json_pack("{s:I,s:i,s:O}", "id", (json_int_t)c->plan.run_id, "attempt",
				       attempt, "stages", c->plan.stages));
	} else {
		log_warn("replay: run %lld refused: %s", (long long)c->plan.run_id, err);
		check_answer(c, rc, json_pack("{s:s}", "error", err));
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
	check_answer(c, code, json_pack("{s:s}", "error", err));
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
	struct workspace_git_env env;
	workspace_git_env_init(&env);
	struct proc_spec spec = {.argv = argv, .envp = env.envp};
	char perr[256];
	c->proc = proc_spawn(a->procs, &spec, check_on_output, check_on_exit, c, perr, sizeof perr);
	free(mirror);
	workspace_git_env_clear(&env);
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
	/* Every series at 0, so that a scrape lists them all. */
	static const char *const series[][2] = {
	    {"api", "queued"},	 {"api", "refused"},	       {"api", "failed"},
	    {"kafka", "sent"},	 {"kafka", "refused"},	       {"kafka", "failed"},
	    {"kafka", "queued"}, {"kafka", "command_refused"}, {"kafka", "duplicate"}};
	struct metric_family *f = replays_family(a);
	for (size_t i = 0; i < ARRAY_LEN(series); i++)
		metric_add(f, series[i], 0);
	return r;
}

void replayer_free(struct replayer *r)
{
	if (r == NULL)
		return;
	while (r->checks != NULL) {
		struct replay_check *c = r->checks;
		r->checks = c->next;
		if (c->command_id != NULL) {
			/* Kafka's delivery report still comes (kafka is freed later): it frees c.
			 */
			c->r = NULL;
			c->cb = NULL;
			continue;
		}
		if (c->proc != NULL) {
			proc_kill(c->proc, 0);
			proc_detach(c->proc);
		}
		check_free(c);
	}
	free(r);
}

/*
 * Via Kafka: refuses (409) a request for an attempt a command was already
 * sent for, unless is_force; sets plan->n_sent (the new command's id).
 */
static int replay_check_sent(struct agent *a, struct replay_plan *plan, bool is_force, char *err,
			     size_t err_len)
{
	struct store_replay_command last;
	int n = 0;
	if (store_replay_command_last(a->store, plan->run_id, plan->expected_attempt, &last, &n) !=
	    0) {
		snprintf(err, err_len, "the replay commands of run %lld cannot be read",
			 (long long)plan->run_id);
		return REPLAY_FAILED;
	}
	int rc = 0;
	if (n > 0 && !is_force) {
		char when[40];
		time_format_iso8601(last.sent_at, when, sizeof when);
		snprintf(err, err_len,
			 "replay command %s (attempt %d of run %lld) was already sent at %s to "
			 "%s[%d]@%lld: a second would be dropped as a duplicate; if it went to "
			 "another agent or was refused, use --force (\"force\": true) for a new id",
			 last.id, plan->expected_attempt, (long long)plan->run_id, when,
			 last.topic != NULL ? last.topic : "?", (int)last.partition,
			 (long long)last.offset);
		rc = REPLAY_CONFLICT;
	}
	plan->n_sent = n;
	store_replay_command_clear(&last);
	return rc;
}

int replayer_start(struct replayer *r, int64_t run_id, const struct replay_request *req,
		   replay_done_cb cb, void *arg, char *err, size_t err_len)
{
	struct agent *a = r->agent;
	if (a->is_stopping) {
		snprintf(err, err_len, "the agent is stopping");
		replays_count_answer(a, req->is_via_kafka, REPLAY_UNAVAILABLE);
		return REPLAY_UNAVAILABLE;
	}
	if (req->is_force && !req->is_via_kafka) {
		snprintf(err, err_len, "force applies only to a replay via Kafka");
		replays_count_answer(a, false, REPLAY_BAD_REQUEST);
		return REPLAY_BAD_REQUEST;
	}
	for (struct replay_check *c = r->checks; c != NULL; c = c->next) {
		if (c->plan.run_id == run_id) {
			snprintf(err, err_len, "a replay of run %lld is already being prepared",
				 (long long)run_id);
			replays_count_answer(a, req->is_via_kafka, REPLAY_CONFLICT);
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
	if (rc == 0 && req->is_via_kafka)
		rc = replay_check_sent(a, &c->plan, req->is_force, err, err_len);
	if (rc == 0 && c->sha != NULL && check_spawn(c, url, err, err_len) != 0)
		rc = REPLAY_FAILED;
	free(url);
	if (rc != 0) {
		replays_count_answer(a, req->is_via_kafka, rc);
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

/* ---- replay as a command event on the events topic ---- */

/* This agent's id (state_dir/agent-id, made by intake), or NULL. Caller frees. */
static char *replay_agent_id(const struct agent *a)
{
	char *path = xasprintf("%s/agent-id", a->cfg->state_dir);
	char *text = file_read_all(path, 4096, NULL);
	free(path);
	if (text != NULL)
		text[strcspn(text, " \r\n")] = '\0';
	if (text != NULL && text[0] == '\0') {
		free(text);
		text = NULL;
	}
	return text;
}

/*
 * The command (a CloudEvent, structured) for plan: what to re-run and a
 * snapshot of the run (its stored event, sha, definition, the stages'
 * results and the outputs) from which an agent that does not hold the run
 * can make it. Its id names the origin agent, the run and the attempt, so
 * a redelivery is a duplicate. NULL with err.
 */
static json_t *command_build(struct agent *a, const struct replay_plan *plan, const char *agent,
			     char **id, char *err, size_t err_len)
{
	struct store_run run;
	struct store_stage *stages = NULL;
	size_t n = 0;
	if (store_run_load(a->store, plan->run_id, &run, &stages, &n) != 0) {
		snprintf(err, err_len, "run %lld cannot be read from the store",
			 (long long)plan->run_id);
		return NULL;
	}
	json_t *event = store_event_get(a->store, run.event_id);
	json_t *definition = json_loads(plan->definition, 0, NULL);
	json_t *outputs = store_outputs_get(a->store, plan->run_id);
	json_t *ce = NULL;
	if (event == NULL || definition == NULL || outputs == NULL) {
		snprintf(err, err_len, "run %lld: its event, definition or outputs are unreadable",
			 (long long)plan->run_id);
		goto out;
	}
	json_t *snap_stages = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
		    snap_stages,
		    json_pack(
			"{s:s,s:s,s:i,s:o,s:o}", "name", stages[i].name, "status",
			status_name(stages[i].status), "attempt", stages[i].attempt, "exit_code",
			stages[i].exit_code < 0 ? json_null() : json_integer(stages[i].exit_code),
			"summary",
			stages[i].summary != NULL ? json_string(stages[i].summary) : json_null()));
	json_t *data = json_pack(
	    "{s:s,s:I,s:i,s:O,s:s,s:b,s:o,s:o,s:{s:s,s:o,s:O,s:O,s:o,s:O}}", "origin_agent", agent,
	    "run_id", (json_int_t)plan->run_id, "attempt", plan->expected_attempt, "stages",
	    plan->stages, "mode", plan->mode, "latest_pipeline", plan->is_latest_pipeline, "reason",
	    plan->reason != NULL ? json_string(plan->reason) : json_null(), "requested_by",
	    plan->requested_by != NULL ? json_string(plan->requested_by) : json_null(), "snapshot",
	    "pipeline", run.pipeline, "sha", run.sha != NULL ? json_string(run.sha) : json_null(),
	    "event", event, "definition", definition, "stages", snap_stages, "outputs", outputs);
	*id = plan->n_sent == 0
		  ? xasprintf("drover-replay-%s-%lld-a%d", agent, (long long)plan->run_id,
			      plan->expected_attempt)
		  : xasprintf("drover-replay-%s-%lld-a%d-r%d", agent, (long long)plan->run_id,
			      plan->expected_attempt, plan->n_sent + 1);
	char *source = xasprintf("/drover/%s", agent);
	ce = data == NULL ? NULL
			  : json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "specversion", "1.0", "type",
				      REPLAY_COMMAND_TYPE, "source", source, "id", *id,
				      "datacontenttype", "application/json", "data", data);
	free(source);
	if (ce == NULL)
		snprintf(err, err_len, "run %lld: the command cannot be encoded",
			 (long long)plan->run_id);
out:
	json_decref(event);
	json_decref(definition);
	json_decref(outputs);
	store_run_clear(&run);
	store_stages_free(stages, n);
	return ce;
}

static void check_delivered(void *arg, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	struct replay_check *c = arg;
	if (c->r != NULL)
		check_unlink(c);
	if (c->r != NULL && err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* Remembered, so that a second request for this attempt is refused. */
		struct agent *a = c->r->agent;
		struct store_replay_command sent = {.id = c->command_id,
						    .run_id = c->plan.run_id,
						    .attempt = c->plan.expected_attempt,
						    .sent_at = now_ms(),
						    .topic = a->cfg->kafka.events_topic,
						    .partition = partition,
						    .offset = offset};
		if (store_replay_command_add(a->store, &sent) != 0)
			log_warn("replay: command %s could not be recorded: a second request for "
				 "run %lld attempt %d is not refused",
				 c->command_id, (long long)c->plan.run_id,
				 c->plan.expected_attempt);
	}
	if (c->cb != NULL) {
		struct agent *a = c->r->agent;
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_info("replay: run %lld: command %s on %s[%d]@%lld",
				 (long long)c->plan.run_id, c->command_id,
				 a->cfg->kafka.events_topic, (int)partition, (long long)offset);
			check_answer(c, REPLAY_ACCEPTED,
				     json_pack("{s:I,s:i,s:O,s:s,s:s,s:i,s:I}", "id",
					       (json_int_t)c->plan.run_id, "attempt",
					       c->plan.expected_attempt, "stages", c->plan.stages,
					       "command", c->command_id, "topic",
					       a->cfg->kafka.events_topic, "partition",
					       (int)partition, "offset", (json_int_t)offset));
		} else {
			check_answer(c, REPLAY_UNAVAILABLE,
				     json_pack("{s:s}", "error", rd_kafka_err2str(err)));
		}
	}
	check_free(c);
}

/* Produces the command of c to the events topic keyed by the run's repository. */
static void check_produce(struct replay_check *c)
{
	struct agent *a = c->r->agent;
	char err[512];
	char *agent = replay_agent_id(a);
	char *id = NULL;
	json_t *ce = agent != NULL ? command_build(a, &c->plan, agent, &id, err, sizeof err) : NULL;
	if (agent == NULL)
		snprintf(err, sizeof err, "this agent has no id yet (state_dir/agent-id)");
	char *text = ce != NULL ? json_dumps(ce, JSON_COMPACT) : NULL;
	const char *repo = json_string_value(json_object_get(
	    json_object_get(json_object_get(json_object_get(ce, "data"), "snapshot"), "event"),
	    "repo"));
	c->command_id = id;
	if (text != NULL && kafka_produce(a->kafka, a->cfg->kafka.events_topic, repo, text,
					  strlen(text), NULL, check_delivered, c) == 0) {
		json_decref(ce);
		free(text);
		free(agent);
		return; /* check_delivered answers and frees c */
	}
	if (text != NULL)
		snprintf(err, sizeof err, "Kafka refused the command (queue full or broker down)");
	c->command_id = NULL;
	free(id);
	json_decref(ce);
	free(text);
	free(agent);
	check_unlink(c);
	log_warn("replay: run %lld via Kafka refused: %s", (long long)c->plan.run_id, err);
	check_answer(c, text != NULL ? REPLAY_UNAVAILABLE : REPLAY_FAILED,
		     json_pack("{s:s}", "error", err));
	check_free(c);
}

/* ---- executing a command (intake, offsets) ---- */

static bool name_in(const json_t *names, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
			return true;
	}
	return false;
}

/*
 * A local run from another agent's snapshot (inside the caller's
 * transaction): the snapshot's stages not re-run keep their result and
 * outputs, the others are queued as their next attempt, stages the
 * definition has and the snapshot not are queued; the run's first attempt
 * says where it came from. Its event is the command, so it is held like
 * any run, of the snapshot's pipeline p. The run id, or -1 (the store failed).
 */
static int64_t command_make_run(struct agent *a, const char *id, const json_t *ev, const json_t *r,
				const struct pipeline *p)
{
	const json_t *snap = json_object_get(r, "snapshot");
	const json_t *names = json_object_get(r, "stages");
	char *definition = json_dumps(p->definition, JSON_COMPACT);
	struct store_run run = {
	    .pipeline = p->name,
	    .status = STATUS_QUEUED,
	    .repo = (char *)json_string_value(json_object_get(ev, "repo")),
	    .sha = (char *)json_string_value(json_object_get(snap, "sha")),
	    .branch = (char *)json_string_value(json_object_get(ev, "branch")),
	    .event_id = (char *)id,
	    .event_kind = (char *)json_string_value(json_object_get(ev, "kind")),
	    .concurrency_group = pipeline_expand(p->concurrency_group, ev),
	    .lock_name = pipeline_expand(p->lock, ev),
	    .definition = definition,
	    .attempt = 1,
	};
	int64_t run_id = -1;
	json_t *o = json_pack("{s:O,s:O}", "agent", json_object_get(r, "origin_agent"), "run",
			      json_object_get(r, "run_id"));
	char *origin = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (store_run_insert(a->store, &run) != 0)
		goto out;
	struct store_run_attempt first = {
	    .run_id = run.id,
	    .attempt = 1,
	    .requested_by = json_string_value(json_object_get(r, "requested_by")),
	    .reason = json_string_value(json_object_get(r, "reason")),
	    .requested_at = run.created_at,
	    .mode = json_string_value(json_object_get(r, "mode")),
	    .stages = names,
	    .is_latest_pipeline = json_is_true(json_object_get(r, "latest_pipeline")),
	    .origin = origin,
	};
	if (first.mode == NULL)
		first.mode = "stages";
	if (store_run_attempt_describe(a->store, &first) != 0)
		goto out;
	const json_t *outputs = json_object_get(snap, "outputs");
	for (size_t i = 0; i < p->n_stages; i++) {
		const char *name = p->stages[i].name;
		const json_t *old = NULL;
		size_t k;
		json_t *v;
		json_array_foreach(json_object_get(snap, "stages"), k, v)
		{
			if (json_is_string(json_object_get(v, "name")) &&
			    strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
				old = v;
		}
		int old_attempt = (int)json_integer_value(json_object_get(old, "attempt"));
		int status = old != NULL
				 ? status_parse(json_string_value(json_object_get(old, "status")))
				 : -1;
		bool is_rerun = old == NULL || status < 0 || name_in(names, name);
		struct store_stage st = {.run_id = run.id, .name = (char *)name, .idx = (int)i};
		if (is_rerun) {
			st.status = STATUS_QUEUED;
			st.exit_code = -1;
			st.attempt = old != NULL && old_attempt > 0 ? old_attempt + 1 : 0;
			st.first_attempt = st.attempt > 0 ? st.attempt : 1;
		} else {
			const json_t *code = json_object_get(old, "exit_code");
			st.status = (enum status)status;
			st.attempt = old_attempt;
			st.exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
			st.summary = (char *)json_string_value(json_object_get(old, "summary"));
		}
		if (store_stage_insert(a->store, &st) != 0)
			goto out;
		const char *key;
		json_t *value;
		json_object_foreach((json_t *)json_object_get(outputs, name), key, value)
		{
			if (!is_rerun && json_is_string(value) &&
			    store_output_set(a->store, run.id, name, key,
					     json_string_value(value)) != 0)
				goto out;
		}
	}
	run_id = run.id;
	a->metrics.runs_created++;
out:
	free(origin);
	free(run.concurrency_group);
	free(run.lock_name);
	free(definition);
	return run_id;
}

int replay_admit(struct agent *a, const char *id, const json_t *ev, const char *topic,
		 int32_t partition, int64_t offset, int64_t *run_id, bool *is_refused)
{
	const json_t *r = json_object_get(ev, "replay");
	const char *origin = json_string_value(json_object_get(r, "origin_agent"));
	char *agent_id = replay_agent_id(a);
	bool is_mine = agent_id != NULL && origin != NULL && strcmp(origin, agent_id) == 0;
	free(agent_id);
	*run_id = 0;
	*is_refused = false;
	if (store_event_exists(a->store, id)) {
		replays_count(a, "kafka", "duplicate");
		return -2;
	}
	if (is_mine) {
		/* The run is this agent's: a new attempt of it once the event is released. */
		int rc = store_event_insert_held(a->store, id, ev, "accepted", NULL, topic,
						 partition, offset, true);
		*run_id = (int64_t)json_integer_value(json_object_get(r, "run_id"));
		return rc < 0 ? -1 : rc == 1 ? -2 : 1;
	}
	/*
	 * Decided before anything is written: a rollback here would doom the
	 * whole batch. Whoever can produce to the events topic could send a
	 * command, so its definition runs only when it is this agent's own
	 * pipeline of that name, exactly: a command never brings code.
	 */
	const json_t *snap = json_object_get(r, "snapshot");
	const char *name = json_string_value(json_object_get(snap, "pipeline"));
	const struct pipeline *mine = name != NULL ? pipeline_set_find(&a->pipelines, name) : NULL;
	struct pipeline *p = NULL;
	char why[256] = "";
	if (mine == NULL) {
		snprintf(why, sizeof why, "pipeline %s is not loaded on this agent",
			 name != NULL ? name : "(none)");
	} else if (!json_equal(mine->definition, json_object_get(snap, "definition"))) {
		snprintf(why, sizeof why,
			 "the snapshot's pipeline definition differs from this agent's pipeline %s "
			 "(only a definition this agent runs anyway is accepted)",
			 name);
	} else {
		struct diags diags = {0};
		p = pipeline_from_json(mine->definition, "(replay command)", NULL, &diags);
		diags_free(&diags);
		if (p == NULL)
			snprintf(why, sizeof why, "the pipeline definition is not valid");
	}
	if (p == NULL) {
		log_warn("replay: command %s (run %lld of agent %s) refused: %s", id,
			 (long long)json_integer_value(json_object_get(r, "run_id")),
			 origin != NULL ? origin : "?", why);
		*is_refused = true;
		replays_count(a, "kafka", "command_refused");
		int rc =
		    store_event_insert(a->store, id, ev, "refused", why, topic, partition, offset);
		return rc < 0 ? -1 : rc == 1 ? -2 : 0;
	}
	int rc = store_event_insert_held(a->store, id, ev, "accepted", NULL, topic, partition,
					 offset, true);
	if (rc == 0)
		*run_id = command_make_run(a, id, ev, r, p);
	pipeline_free(p);
	if (rc != 0)
		return rc < 0 ? -1 : -2;
	if (*run_id > 0)
		replays_count(a, "kafka", "queued");
	return *run_id > 0 ? 1 : -1;
}

int replay_release(struct agent *a, const char *id, int64_t *run_id)
{
	*run_id = 0;
	json_t *ev = store_event_get(a->store, id);
	const json_t *r = json_object_get(ev, "replay");
	const char *origin = json_string_value(json_object_get(r, "origin_agent"));
	char *agent_id = r != NULL ? replay_agent_id(a) : NULL;
	bool is_mine = agent_id != NULL && origin != NULL && strcmp(origin, agent_id) == 0;
	free(agent_id);
	if (!is_mine) {
		json_decref(ev);
		return 0;
	}
	/* The definition is the run's own, or this agent's loaded pipeline with
	 * latest_pipeline: never the command's (it could be forged). */
	int64_t target = (int64_t)json_integer_value(json_object_get(r, "run_id"));
	struct store_run run = {0};
	char *definition = NULL;
	if (store_run_load(a->store, target, &run, NULL, NULL) == 0) {
		const struct pipeline *mine = pipeline_set_find(&a->pipelines, run.pipeline);
		if (!json_is_true(json_object_get(r, "latest_pipeline")))
			definition = xstrdup(run.definition);
		else if (mine != NULL)
			definition = json_dumps(mine->definition, JSON_COMPACT);
	}
	store_run_clear(&run);
	struct replay_plan plan = {
	    .run_id = target,
	    .definition = definition,
	    .stages = json_incref(json_object_get(r, "stages")),
	    .mode = "stages",
	    .is_latest_pipeline = json_is_true(json_object_get(r, "latest_pipeline")),
	    .expected_attempt = (int)json_integer_value(json_object_get(r, "attempt")),
	};
	const char *mode = json_string_value(json_object_get(r, "mode"));
	if (mode != NULL && (strcmp(mode, "failed") == 0 || strcmp(mode, "all") == 0))
		plan.mode = strcmp(mode, "all") == 0 ? "all" : "failed";
	const char *s;
	if ((s = json_string_value(json_object_get(r, "reason"))) != NULL)
		plan.reason = xstrdup(s);
	if ((s = json_string_value(json_object_get(r, "requested_by"))) != NULL)
		plan.requested_by = xstrdup(s);
	char err[512] = "";
	int attempt = 0;
	int rc = plan.definition != NULL
		     ? scheduler_run_replay_record(a->sched, &plan, &attempt, err, sizeof err)
		     : REPLAY_FAILED;
	if (rc == 0) {
		*run_id = plan.run_id;
		log_info("replay: command %s: run %lld attempt %d queued", id,
			 (long long)plan.run_id, attempt);
		replays_count(a, "kafka", "queued");
	} else {
		if (err[0] == '\0')
			snprintf(err, sizeof err,
				 "run %lld or (latest pipeline) its pipeline is not here any more",
				 (long long)target);
		log_warn("replay: command %s refused: %s", id, err);
		a->metrics.events_refused++;
		replays_count(a, "kafka", "command_refused");
		rc = store_event_set_outcome(a->store, id, "refused", err);
	}
	replay_plan_clear(&plan);
	json_decref(ev);
	return rc == 0 && *run_id > 0 ? 1 : rc == 0 ? 0 : -1;
}
