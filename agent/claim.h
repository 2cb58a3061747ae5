/*
 * claim: which agent owned a partition of the events topic at an offset.
 * Every offset commit of drover carries the partition's ownership history
 * in its metadata ("drover1 <agent>@<start> ..."), oldest first: each new
 * owner appends itself, with the offset it starts at, before it consumes.
 * An agent that recorded an event but did not see the commit covering it
 * acknowledged (it was killed, or lost the partition) decides from the
 * committed offset and that history whether the event is its own to run or
 * another agent's. Pure functions; no Kafka, no I/O.
 */
#ifndef DROVER_CLAIM_H
#define DROVER_CLAIM_H

#include <stddef.h>
#include <stdint.h>

#define CLAIM_MAX_OWNERS 16 /* history entries kept; older ones are dropped */
#define CLAIM_AGENT_MAX 40  /* longest agent id kept */

struct claim_owner {
	char agent[CLAIM_AGENT_MAX + 1];
	int64_t start; /* first offset the agent consumed as owner */
};

struct claim_history {
	struct claim_owner owners[CLAIM_MAX_OWNERS];
	size_t n;
};

/*
 * Reads commit metadata (len bytes, not NUL-terminated; NULL or anything
 * else than drover's format gives an empty history: an offset committed by
 * another tool tells nothing about owners). Never fails.
 */
void claim_history_parse(const void *metadata, size_t len, struct claim_history *h);

/* The metadata text of h (caller frees). */
char *claim_history_format(const struct claim_history *h);

/*
 * Appends agent@start (dropping the oldest entry when full) unless the last
 * entry already is agent@start. An agent id is cut to CLAIM_AGENT_MAX and
 * may not contain spaces or '@' (they are replaced by '_').
 */
void claim_history_append(struct claim_history *h, const char *agent, int64_t start);

enum claim_verdict {
	CLAIM_MINE,    /* the commit covering it landed while `agent` owned it: run it */
	CLAIM_OTHERS,  /* another agent owned the partition there and consumed it: drop it */
	CLAIM_PENDING, /* no commit covers it: whoever consumes the partition next gets it
			  again, so drop the record of it and let that happen */
	CLAIM_UNKNOWN, /* covered, but the history no longer reaches back to it */
};

/*
 * The verdict on an event at offset, recorded by agent, given the
 * partition's committed offset (negative: none) and its history.
 */
enum claim_verdict claim_decide(const struct claim_history *h, int64_t committed, const char *agent,
				int64_t offset);

const char *claim_verdict_name(enum claim_verdict v);

#endif
