/*
 * logpump: the reading side of a followed stage log. Reads only the local
 * file, a bounded amount per call; the end of the stream is decided by the
 * store's record of the attempt, never by the file's contents.
 */
#include "logpump.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

enum logpump_attempt logpump_classify(int wanted, int stage_attempt, enum status stage_status,
				      enum status run_status)
{
	if (stage_attempt > wanted)
		return LOGPUMP_OVER;
	if (stage_attempt == wanted && stage_status == STATUS_RUNNING)
		return LOGPUMP_RUNNING;
	if (stage_attempt == wanted && stage_status != STATUS_QUEUED)
		return LOGPUMP_OVER;
	/* Not started: it may still start while the run goes on and the stage waits. */
	if (status_is_terminal(run_status) ||
	    (stage_status != STATUS_QUEUED && status_is_terminal(stage_status)))
		return LOGPUMP_NEVER;
	return LOGPUMP_PENDING;
}

void logpump_init(struct logpump *p, const char *path, enum logpump_attempt (*probe)(void *arg),
		  void *probe_arg)
{
	memset(p, 0, sizeof *p);
	p->path = xstrdup(path);
	p->fd = -1;
	p->probe = probe;
	p->probe_arg = probe_arg;
}

static enum logpump_result logpump_end(struct logpump *p, enum logpump_result r)
{
	p->is_done = true;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	return r;
}

/* Opens the log once the attempt started: true, or false with what to answer meanwhile. */
static bool logpump_open(struct logpump *p, enum logpump_result *r)
{
	enum logpump_attempt st = p->probe(p->probe_arg);
	*r = LOGPUMP_WAIT;
	if (st == LOGPUMP_NEVER) {
		*r = logpump_end(p, LOGPUMP_END);
		return false;
	}
	if (st == LOGPUMP_PENDING)
		return false;
	p->fd = open(p->path, O_RDONLY | O_CLOEXEC);
	if (p->fd < 0) {
		if (errno != ENOENT) {
			log_warn("logpump: cannot open %s: %s", p->path, strerror(errno));
			*r = logpump_end(p, LOGPUMP_ERROR);
		} else if (st == LOGPUMP_OVER) {
			/* Ended without a log (it could not be opened): nothing to give. */
			*r = logpump_end(p, LOGPUMP_END);
		}
		return false;
	}
	p->is_over = st == LOGPUMP_OVER;
	return true;
}

enum logpump_result logpump_next(struct logpump *p, void *buf, size_t max, size_t *len)
{
	*len = 0;
	if (p->is_done)
		return LOGPUMP_END;
	enum logpump_result r;
	if (p->fd < 0 && !logpump_open(p, &r))
		return r;
	/* The probe comes between an empty read and the last one: whatever
	 * was written before the attempt was recorded as over is read. */
	for (int reads = 0; reads < 2; reads++) {
		ssize_t n;
		do
			n = pread(p->fd, buf, max, (off_t)p->offset);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			log_warn("logpump: reading %s at %llu: %s", p->path,
				 (unsigned long long)p->offset, strerror(errno));
			return logpump_end(p, LOGPUMP_ERROR);
		}
		if (n > 0) {
			p->offset += (uint64_t)n;
			*len = (size_t)n;
			return LOGPUMP_DATA;
		}
		if (p->is_over)
			return logpump_end(p, LOGPUMP_END);
		enum logpump_attempt st = p->probe(p->probe_arg);
		if (st == LOGPUMP_RUNNING || st == LOGPUMP_PENDING)
			return LOGPUMP_WAIT;
		p->is_over = true;
	}
	return logpump_end(p, LOGPUMP_END); /* not reached: the second read ends it */
}

void logpump_close(struct logpump *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	free(p->path);
	p->path = NULL;
}
