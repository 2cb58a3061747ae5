/*
 * logpump: reads one stage attempt's log while the stage writes it, one
 * bounded chunk per call, and says when everything the attempt will ever
 * write was read. Knows nothing of HTTP or the event loop: the caller asks
 * for the next chunk once the previous one is gone, and waits (a timer)
 * when the pump says there is nothing yet.
 */
#ifndef DROVER_LOGPUMP_H
#define DROVER_LOGPUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Where the followed attempt is, as the store says. */
enum logpump_attempt {
	LOGPUMP_PENDING, /* not started yet: its log may not exist */
	LOGPUMP_RUNNING, /* the stage writes its log */
	LOGPUMP_OVER,	 /* ended: its log is complete */
	LOGPUMP_NEVER,	 /* it will not run: the run (or the stage) ended first, or is gone */
};

/*
 * Where attempt `wanted` of a stage is, from the stage's current attempt
 * and status and its run's status. A stage records its end only after it
 * closed its log, so OVER means the file holds everything.
 */
enum logpump_attempt logpump_classify(int wanted, int stage_attempt, enum status stage_status,
				      enum status run_status);

enum logpump_result {
	LOGPUMP_DATA,  /* *len > 0 bytes in buf */
	LOGPUMP_WAIT,  /* nothing now: ask again later */
	LOGPUMP_END,   /* everything was given: end the stream */
	LOGPUMP_ERROR, /* the log cannot be read (logged once): end the stream */
};

struct logpump {
	char *path; /* owned */
	int fd;	    /* -1 until the log is opened */
	uint64_t offset;
	bool is_over; /* the attempt ended: what the file holds now is all */
	bool is_done;
	/* Asked only when the file gives nothing more (and before it is opened). */
	enum logpump_attempt (*probe)(void *arg);
	void *probe_arg;
};

void logpump_init(struct logpump *p, const char *path, enum logpump_attempt (*probe)(void *arg),
		  void *probe_arg);
/*
 * The next piece of the log: at most max bytes into buf. Does at most two
 * reads of the local file and one probe, never blocks on anything else.
 */
enum logpump_result logpump_next(struct logpump *p, void *buf, size_t max, size_t *len);
void logpump_close(struct logpump *p);

#endif
