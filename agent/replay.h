/*
 * replay: an operator's new attempt of a finished run. Chooses the stages
 * to run again (replay_select), plans the attempt from the run as stored
 * (same event, same sha, same definition unless the latest pipeline is
 * asked for), checks that the run's commit still exists in the repository
 * (a git child process, never blocking the loop), then hands the plan to
 * the scheduler (scheduler_run_replay).
 */
#ifndef DROVER_REPLAY_H
#define DROVER_REPLAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent;
struct pipeline;
struct replayer;

/* What the operator asked for. Strings are borrowed. */
struct replay_request {
	const char *const *stages; /* --stage names; none: the default selection */
	size_t n_stages;
	bool is_downstream; /* with stages: their dependents too */
	bool is_all;	    /* every stage */
	bool is_latest_pipeline;
	const char *reason;	  /* may be NULL */
	const char *requested_by; /* may be NULL */
};

/* Answers, as HTTP status codes. */
enum {
	REPLAY_ACCEPTED = 202,
	REPLAY_BAD_REQUEST = 400,
	REPLAY_NOT_FOUND = 404,
	REPLAY_CONFLICT = 409,
	REPLAY_FAILED = 500,
	REPLAY_UNAVAILABLE = 503,
};

/* The status a stage of the run had, for replay_select: an enum status, or this. */
#define REPLAY_STAGE_NEW (-1) /* in the pipeline, never in the run (latest pipeline) */

/*
 * Which stages of p run again. status[i] is the run's status of p's stage i
 * (or REPLAY_STAGE_NEW). The default selection: every stage that failed,
 * timed out, errored or was cancelled, every new stage, every skipped stage
 * whose needs all succeeded (skipped for another reason, e.g. a failed
 * checkout), and everything downstream of them. req->stages: exactly those
 * (and their dependents with is_downstream); is_all: every stage. A selected
 * stage whose need is neither selected nor succeeded is refused. Fills
 * selected[i]; returns 0, or REPLAY_BAD_REQUEST / REPLAY_CONFLICT with one
 * line in err.
 */
int replay_select(const struct pipeline *p, const int *status, const struct replay_request *req,
		  bool *selected, char *err, size_t err_len);

/* A replay decided, for scheduler_run_replay. Owns everything in it. */
struct replay_plan {
	int64_t run_id;
	char *definition; /* the pipeline definition (JSON text) the attempt runs with */
	json_t *stages;	  /* the names it re-runs, in pipeline order (array) */
	const char *mode; /* "failed", "stages", "all" (static) */
	bool is_latest_pipeline;
	char *reason, *requested_by; /* may be NULL */
};
void replay_plan_clear(struct replay_plan *plan);

/* After the replay was decided: code REPLAY_ACCEPTED and {"id","attempt",
 * "stages"}, or an error code and {"error"}. reply is the callee's. */
typedef void (*replay_done_cb)(void *arg, int code, json_t *reply);

struct replayer *replayer_new(struct agent *a);
/* Checks under way are killed; their callbacks do not run. */
void replayer_free(struct replayer *r);

/*
 * Starts a replay of run_id. Returns REPLAY_ACCEPTED when the commit check
 * started (cb runs once, later, with the outcome), or an error code with
 * one line in err (cb never runs): no such run (404), an unknown stage or a
 * bad request (400), a run still queued or running, a replay of it already
 * being prepared, nothing to re-run, a pipeline gone (409).
 */
int replayer_start(struct replayer *r, int64_t run_id, const struct replay_request *req,
		   replay_done_cb cb, void *arg, char *err, size_t err_len);

#endif
