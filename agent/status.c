/*
 * status: names of run and stage states.
 */
#include "status.h"

#include <string.h>

static const char *const names[] = {
    [STATUS_QUEUED] = "queued", [STATUS_RUNNING] = "running",	  [STATUS_SUCCEEDED] = "succeeded",
    [STATUS_FAILED] = "failed", [STATUS_CANCELLED] = "cancelled", [STATUS_TIMED_OUT] = "timed_out",
    [STATUS_ERROR] = "error",	[STATUS_SKIPPED] = "skipped",
};

const char *status_name(enum status s)
{
	if ((unsigned)s >= sizeof names / sizeof names[0])
		return "unknown";
	return names[s];
}

int status_parse(const char *name)
{
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

bool status_is_terminal(enum status s)
{
	return s != STATUS_QUEUED && s != STATUS_RUNNING;
}
