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
	bool is_via_kafka;	  /* as a command event on the events topic (see below) */
	bool is_force;		  /* via Kafka: send although a command was sent (a new id) */
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
	int expected_attempt;	     /* > 0: refused unless the run's next attempt is this */
	bool is_via_kafka;	     /* produce a command event instead of replaying here */
	int n_sent;		     /* via Kafka: commands sent before for this attempt */
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

/*
 * Replay via Kafka. A request with is_via_kafka is checked as above, then
 * the agent produces a command (a CloudEvent of REPLAY_COMMAND_TYPE, id
 * drover-replay-<agent>-<run>-a<attempt>: a redelivery is a duplicate) to
 * the events topic keyed by the run's repository, and answers once Kafka
 * acknowledged it: {"id","attempt","stages","command","topic","partition",
 * "offset"}. The command is recorded (store_replay_command_add): while the
 * run's attempt is unchanged, a second request is refused (409, naming the
 * command and when it was sent), since the executing agent would drop it as
 * a duplicate; with is_force it is sent with a new id (the id above with
 * -r<n> for the n-th command of that attempt), for a command that went to
 * another agent (the run here never gets that attempt) or was refused. The agent that consumes it
 * executes it (replay_admit): the one that holds the run (its agent id is the command's origin)
 * makes a new attempt of it when the event is released (replay_release); another one makes a local
 * run from the command's snapshot.
 */
#define REPLAY_COMMAND_TYPE "dev.cdeventsx.drover-replay.requested.0.1.0"

/*
 * drover_replays_total{via,outcome} counts both sides. The side asked:
 * via "api" (replayed here) queued, refused (4xx), failed (5xx); via
 * "kafka" sent (Kafka acknowledged the command), refused, failed. The side
 * executing a command (via "kafka"): queued (its new attempt or local run),
 * command_refused, duplicate (dropped: its id was seen before).
 */

/*
 * Intake, inside the batch's transaction: records the command event (held)
 * and, from another agent, its local run. Returns 1 (held; *run_id is the
 * run), 0 when refused (recorded with why, *is_refused), -2 for a
 * duplicate, -1 on a store error.
 */
int replay_admit(struct agent *a, const char *id, const json_t *ev, const char *topic,
		 int32_t partition, int64_t offset, int64_t *run_id, bool *is_refused);
/*
 * Offsets, when the command's event is released (in its transaction): when
 * this agent holds the run, the new attempt is recorded and *run_id set (the
 * caller queues it with scheduler_run_requeue after the commit); a refusal
 * (the run moved on meanwhile) is logged, counted and recorded as the
 * event's outcome. Returns 1 (queue *run_id), 0 (nothing to do), -1.
 */
int replay_release(struct agent *a, const char *id, int64_t *run_id);

#endif
