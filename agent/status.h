/*
 * status: the states of runs and stages, and their names on the wire.
 */
#ifndef DROVER_STATUS_H
#define DROVER_STATUS_H

#include <stdbool.h>

enum status {
	STATUS_QUEUED,
	STATUS_RUNNING,
	STATUS_SUCCEEDED,
	STATUS_FAILED,
	STATUS_CANCELLED,
	STATUS_TIMED_OUT,
	STATUS_ERROR,
	STATUS_SKIPPED,
};

/* "queued", "running", "succeeded", "failed", "cancelled", "timed_out", "error", "skipped" */
const char *status_name(enum status s);
/* -1 for an unknown name. */
int status_parse(const char *name);
bool status_is_terminal(enum status s);

#endif
