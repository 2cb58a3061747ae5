/*
 * offsets: drover's own offset commits on the events topic. Each commit
 * carries the partition's ownership history (claim.h). A partition is
 * claimed when assigned (the history gets this agent, committed before
 * anything is consumed); an event that starts runs is recorded held and its
 * runs start only once Kafka acknowledged a commit past it. Held events an
 * agent could not see committed (it was killed, or lost the partition) are
 * resolved from the committed offset and history: run, or forgotten so
 * that whoever consumes the partition records them afresh. Together with
 * the store's unique event ids this makes one run per event across agents,
 * whichever of them dies.
 */
#ifndef DROVER_OFFSETS_H
#define DROVER_OFFSETS_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

struct agent;
struct offsets;

/* agent_id: this agent's stable id (survives restarts of the same state dir). */
struct offsets *offsets_new(struct agent *a, rd_kafka_t *rk, const char *topic,
			    const char *agent_id);
void offsets_free(struct offsets *o);

/*
 * Partitions assigned to this agent: resolves their held events, appends
 * this agent to their history and commits it, synchronously (blocking up
 * to a few seconds; called from the rebalance callback before they are
 * consumed). Returns how many could not be claimed: those are marked and
 * must not be consumed until offsets_tick claimed them (the caller pauses
 * them; offsets_is_claimed tells).
 */
int offsets_claim(struct offsets *o, const rd_kafka_topic_partition_list_t *parts);
bool offsets_is_claimed(const struct offsets *o, int32_t partition);

/*
 * Partitions leaving: what was recorded is committed (synchronously, when
 * not lost and a broker is reachable) and its held events released; what
 * stays held is resolved later by offsets_tick.
 */
void offsets_revoke(struct offsets *o, const rd_kafka_topic_partition_list_t *parts, bool is_lost,
		    bool is_connected);

/*
 * After the batch holding it committed to SQLite: the record at offset was
 * recorded; held_event_id (or NULL) names its event if that is held, with
 * its n_runs runs.
 */
void offsets_recorded(struct offsets *o, int32_t partition, int64_t offset,
		      const char *held_event_id, size_t n_runs);

/* Runs waiting for their commit (they count against max_queued_runs). */
size_t offsets_held_runs(const struct offsets *o);

/* Starts an asynchronous commit of what was recorded, unless one is in flight. */
void offsets_commit(struct offsets *o);

/* The offset-commit callback's result (librdkafka's offset_commit_cb). */
void offsets_on_commit(struct offsets *o, rd_kafka_resp_err_t err,
		       const rd_kafka_topic_partition_list_t *parts);

/*
 * Periodic: retries commits, claims partitions not yet claimed (returns
 * how many became claimed: the caller resumes them), and resolves held
 * events of partitions this agent does not own (blocking briefly on the
 * broker, only when there are such events).
 */
int offsets_tick(struct offsets *o, bool is_connected);

/* At stop: commits what was recorded (synchronously) and releases it. */
void offsets_flush(struct offsets *o, bool is_connected);

#endif
