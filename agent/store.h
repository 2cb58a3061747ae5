/*
 * store: drover's durable state in SQLite (WAL mode, schema migrations by
 * PRAGMA user_version). The only part that speaks SQL. Every function runs
 * on the event-loop thread; transactions are short.
 *
 * Tables: events (id unique), runs, stages (current state of each stage of
 * a run), stage_attempts (every attempt ever), outputs, outbox, stage_procs
 * (process groups of the stage attempts running now).
 * Times are epoch milliseconds; 0 means "not yet".
 */
#ifndef DROVER_STORE_H
#define DROVER_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct store;

struct store_run {
	int64_t id; /* set by store_run_insert */
	char *pipeline;
	enum status status;
	char *repo, *sha, *branch; /* may be NULL */
	char *event_id;
	char *event_kind;
	char *concurrency_group; /* expanded, or NULL */
	char *lock_name;	 /* expanded, or NULL */
	char *definition;	 /* the pipeline definition as JSON text */
	char *workspace;	 /* path, or NULL */
	int attempt;		 /* run attempt (replays add one), starts at 1 */
	int64_t created_at, started_at, finished_at;
};

struct store_stage {
	int64_t run_id;
	char *name;
	int idx; /* position in the pipeline */
	enum status status;
	int attempt;   /* 0 before the first start */
	int exit_code; /* -1: none */
	int64_t started_at, finished_at;
	char *summary;	    /* may be NULL */
	char *resume_token; /* may be NULL */
	int run_attempt;    /* the run attempt this state belongs to; 0 reads as 1 */
	int first_attempt;  /* its first attempt in that run attempt (retries count
			     * from it); 0 reads as 1 */
};

/* One attempt of a run: 1 is the original, each replay adds one. */
struct store_run_attempt {
	int64_t run_id;
	int attempt;
	const char *requested_by, *reason; /* may be NULL */
	int64_t requested_at;
	const char *mode;     /* "original", "failed", "stages", "all" */
	const json_t *stages; /* the names it re-ran (array), or NULL: all (the original) */
	bool is_latest_pipeline;
	const char *replaced_definition; /* with is_latest_pipeline: the definition before */
	const char *origin; /* JSON {"agent","run"}: a run made from another agent's run */
};

/* Opens (creating and migrating) state_dir/drover.db. NULL and a message. */
struct store *store_open(const char *state_dir, char *err, size_t err_len);
void store_close(struct store *s);

/*
 * Whether the database takes a write now (disk full, I/O errors, a
 * read-only file system, a write lock held elsewhere all say no): commits
 * one row of the probe table. 0, or -1 with SQLite's reason in err.
 */
int store_check_writable(struct store *s, char *err, size_t err_len);

/* Transactions nest by counting: only the outermost begin/commit reach SQLite. */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/*
 * Records an event. outcome is "accepted", "unmatched", "refused",
 * "dead-lettered", ...; body is the canonical event or NULL. Returns 0 when
 * inserted, 1 when an event with this id already exists (nothing changed),
 * -1 on error.
 */
int store_event_insert(struct store *s, const char *id, const json_t *body, const char *outcome,
		       const char *error, const char *topic, int32_t partition, int64_t offset);
/* The stored canonical event (new reference) or NULL. */
/* The same, held (is_held): its runs wait until the event is released. */
int store_event_insert_held(struct store *s, const char *id, const json_t *body,
			    const char *outcome, const char *error, const char *topic,
			    int32_t partition, int64_t offset, bool is_held);

/* An event whose runs wait for the offset commit covering it (claim.h). */
struct store_held_event {
	char *id, *topic; /* owned */
	int32_t partition;
	int64_t offset;
};

/* Every held event, by topic, partition and offset. 0 or -1. */
int store_events_held(struct store *s, struct store_held_event **events, size_t *n);
void store_held_events_free(struct store_held_event *events, size_t n);
/* Marks the event not held and gives its runs (caller frees *run_ids). 0 or -1. */
int store_event_release(struct store *s, const char *id, int64_t **run_ids, size_t *n);
/* Forgets the event and its runs, as if it had never been consumed. 0 or -1. */
int store_event_drop(struct store *s, const char *id);

json_t *store_event_get(struct store *s, const char *id);
bool store_event_exists(struct store *s, const char *id);

/* Inserts the run and its first run attempt (the original). */
int store_run_insert(struct store *s, struct store_run *run);
/* Records a run attempt (a replay). 0 or -1. */
int store_run_attempt_add(struct store *s, const struct store_run_attempt *attempt);
/* Rewrites what is recorded of an existing run attempt. 0 or -1. */
int store_run_attempt_describe(struct store *s, const struct store_run_attempt *attempt);
/* Sets an event's recorded outcome and error (a command refused after it was recorded). */
int store_event_set_outcome(struct store *s, const char *id, const char *outcome,
			    const char *error);
/* Replaces the definition a run runs with (a replay with the latest pipeline). */
int store_run_set_definition(struct store *s, int64_t run_id, const char *definition);
/* Forgets a stage's current state (a replay with a pipeline that lost it);
 * its attempts stay in the history. */
int store_stage_delete(struct store *s, int64_t run_id, const char *stage);
/* Writes status, sha, workspace, attempt, started_at, finished_at. */
int store_run_update(struct store *s, const struct store_run *run);
int store_stage_insert(struct store *s, const struct store_stage *stage);
/* Writes the stage row and upserts its (run, name, attempt) history row. */
int store_stage_update(struct store *s, const struct store_stage *stage);

/* Loads one run and its stages (caller frees with the *_free below). */
int store_run_load(struct store *s, int64_t id, struct store_run *run, struct store_stage **stages,
		   size_t *n_stages);
void store_run_clear(struct store_run *run);
void store_stages_free(struct store_stage *stages, size_t n);
/* Ids of runs whose status is queued or running, oldest first, except the runs
 * of held events (caller frees). */
int store_runs_unfinished(struct store *s, int64_t **ids, size_t *n);

/*
 * A process group a stage attempt started, recorded while it may run so that
 * an agent started after a crash can find it and take it down. start_time
 * is the leader's (proc_read_start_time): with it a reused pid is told apart.
 */
struct store_stage_proc {
	int64_t run_id;
	char *stage;
	int attempt;
	int64_t pgid;
	uint64_t start_time;
};
int store_stage_proc_add(struct store *s, const struct store_stage_proc *proc);
/* Forgets the process groups of a stage (its attempt ended; they are killed). */
int store_stage_procs_delete(struct store *s, int64_t run_id, const char *stage);
/* Every recorded group, oldest first (caller frees with store_stage_procs_free). */
int store_stage_procs_list(struct store *s, struct store_stage_proc **procs, size_t *n);
void store_stage_procs_free(struct store_stage_proc *procs, size_t n);
/* Forgets every recorded group (at start-up, once they were dealt with). */
int store_stage_procs_clear(struct store *s);

int store_output_set(struct store *s, int64_t run_id, const char *stage, const char *key,
		     const char *value);
/* Forgets every output of one stage of a run (it runs again). */
int store_outputs_delete(struct store *s, int64_t run_id, const char *stage);
/* {"stage": {"key": "value"}} for a run (new reference). */
json_t *store_outputs_get(struct store *s, int64_t run_id);

/* The API shape of a run: {"id","pipeline","status","repo","sha","branch",
 * "event_id","event_kind","created_at","finished_at","stages":[{"name",
 * "status","attempt","exit_code","started_at","finished_at","summary"}]},
 * times as ISO-8601 strings or null. NULL when there is no such run.
 * One run also has "attempt", "attempts":[{"attempt","requested_by",
 * "reason","requested_at","mode","stages","latest_pipeline","origin"}] and, on each
 * stage, "run_attempt" and "attempts":[{"attempt","run_attempt","status",
 * "exit_code","started_at","finished_at"}]. */
json_t *store_run_json(struct store *s, int64_t id);

struct store_run_filter {
	const char *pipeline; /* NULL: any */
	const char *status;
	const char *repo;
	int64_t before_id; /* 0: from the newest */
	int limit;	   /* 0: 100 */
};
/* Newest first; an array of run JSON as above (new reference). */
json_t *store_runs_json(struct store *s, const struct store_run_filter *filter);

/*
 * Outbox: records waiting for Kafka's acknowledgement. Keys and values are
 * bytes (a dead letter's key may start with a zero byte); NULL stays NULL: a
 * record without a key, or with a null value (a tombstone).
 */
/* A result: a text key (the repository name) or NULL. */
int64_t store_outbox_add(struct store *s, const char *topic, const char *key, const char *value,
			 size_t value_len);
/* Any record: key_len bytes of key (NULL: no key), value (NULL: a null value)
 * and headers (a blob packed by kafka_headers_pack, NULL: none). */
int64_t store_outbox_add_full(struct store *s, const char *topic, const void *key, size_t key_len,
			      const void *value, size_t value_len, const void *headers,
			      size_t headers_len);
struct store_outbox_item {
	int64_t id;
	char *topic;
	char *key; /* key_len bytes and a NUL after them, or NULL for no key */
	size_t key_len;
	char *value; /* value_len bytes and a NUL after them; "" when the value is null */
	size_t value_len;
	bool is_value_null; /* a null value (tombstone), not an empty one */
	void *headers;	    /* NULL when none */
	size_t headers_len;
};
/* Up to max items with id > after_id, oldest first (caller frees). */
int store_outbox_next(struct store *s, int64_t after_id, size_t max,
		      struct store_outbox_item **items, size_t *n);
void store_outbox_items_free(struct store_outbox_item *items, size_t n);
int store_outbox_delete(struct store *s, int64_t id);
/* Deletes the n items of ids (acknowledged by Kafka) in one transaction: all
 * or none. Ids that are not there are not an error. 0 or -1. */
int store_outbox_delete_many(struct store *s, const int64_t *ids, size_t n);
int64_t store_outbox_count(struct store *s);

/* A replay command this agent produced to the events topic (replay.h). */
struct store_replay_command {
	char *id; /* owned (store_replay_command_clear) */
	int64_t run_id;
	int attempt; /* the run attempt the command asks for */
	int64_t sent_at;
	char *topic; /* owned */
	int32_t partition;
	int64_t offset;
};
/* Records a command Kafka acknowledged (an id recorded before: nothing). 0 or -1. */
int store_replay_command_add(struct store *s, const struct store_replay_command *c);
/* How many commands asked for attempt of run_id (*n), and the latest (*last,
 * cleared with store_replay_command_clear; zeroed when none). 0 or -1. */
int store_replay_command_last(struct store *s, int64_t run_id, int attempt,
			      struct store_replay_command *last, int *n);
void store_replay_command_clear(struct store_replay_command *c);

#endif
