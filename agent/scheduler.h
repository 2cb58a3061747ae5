/*
 * scheduler: runs and their stages. Creates runs for matched events, starts
 * them when their concurrency group and lock allow and a slot is free,
 * checks out the commit, starts stages whose needs succeeded (at most
 * max_parallel stages and checkouts at once), enforces timeouts, retries
 * with backoff, cancels older runs of a group, and records every move in
 * the store before acting on it (one transaction per pass of the
 * scheduler, see scheduler.c). Implements the host services that plugins
 * call.
 */
#ifndef DROVER_SCHEDULER_H
#define DROVER_SCHEDULER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include <drover/plugin.h>

struct agent;
struct pipeline;
struct scheduler;

struct scheduler *scheduler_new(struct agent *a);
/* Kills whatever still runs (without recording) and frees. */
void scheduler_free(struct scheduler *s);

/* The services table handed to plugins. */
const struct drover_host *scheduler_host_services(void);

/*
 * Records a queued run of p for event (and its stages, and the "queued"
 * result) inside the caller's transaction. Returns the run id, or -1.
 */
int64_t scheduler_run_create(struct scheduler *s, const struct pipeline *p, const json_t *event);
/* The same without the "queued" CDEvent: for the run of a held event, which
 * may yet be dropped (claim.h); scheduler_run_announce sends it on release. */
int64_t scheduler_run_create_held(struct scheduler *s, const struct pipeline *p,
				  const json_t *event);
int scheduler_run_announce(struct scheduler *s, int64_t run_id);
/* After the transaction committed: load the run and start it when it may. */
void scheduler_run_enqueue(struct scheduler *s, int64_t run_id);

/*
 * After a restart: every run left queued or running is taken up again.
 * A stage that was running is retried as a new attempt or failed, as its
 * retry policy says. Returns the number of runs taken up, or -1.
 */
int scheduler_recover(struct scheduler *s);

/*
 * An operator's cancel: the run's running stages are told to stop (process
 * groups TERM, then KILL after stage_kill_grace; remote work through the
 * plugin's cancel), its stages not started are cancelled, and the run ends
 * cancelled. reason (may be NULL) goes into the stages' summaries. Returns
 * 0 when the cancel started (or was under way), -1 for an unknown run, -2
 * for a run already finished (also when every stage has ended but the run's
 * end is not recorded yet: it ends with the stages' result, not cancelled),
 * -3 for a run this agent does not hold yet (a held run, see claim.h).
 */
int scheduler_run_cancel(struct scheduler *s, int64_t run_id, const char *reason);

/*
 * An operator's replay (replay.h decided it): a new attempt of a finished
 * run, recorded and queued; it then runs the normal way (checkout of the
 * same sha, group, lock, max_parallel). Returns 0 with *attempt, or
 * REPLAY_CONFLICT (the run is not finished) / REPLAY_FAILED with err.
 */
struct replay_plan;
int scheduler_run_replay(struct scheduler *s, const struct replay_plan *plan, int *attempt,
			 char *err, size_t err_len);
/* The same, recorded only (in the caller's transaction); the caller queues
 * the run with scheduler_run_requeue once that committed. */
int scheduler_run_replay_record(struct scheduler *s, const struct replay_plan *plan, int *attempt,
				char *err, size_t err_len);
/* Loads a run the store holds as queued and queues it, superseding nothing. */
void scheduler_run_requeue(struct scheduler *s, int64_t run_id);

size_t scheduler_active_runs(const struct scheduler *s);
size_t scheduler_running_stages(const struct scheduler *s);
/* Runs waiting for a slot, their group or their lock (not begun yet). */
size_t scheduler_queued_runs(const struct scheduler *s);

/*
 * Orderly stop: no new stage starts; running stages get grace_ms to finish,
 * then their process groups are killed and they are recorded as interrupted
 * (to be retried after the restart if their policy allows). on_idle runs
 * once when nothing runs any more.
 */
void scheduler_drain(struct scheduler *s, int64_t grace_ms, void (*on_idle)(void *arg), void *arg);

#endif
