/*
 * admin_logs: stage logs over the admin API. A follower reads the log file
 * the stage appends to, one bounded chunk at a time, and sends the next
 * chunk only when the previous one reached the socket: a slow client gets
 * data as fast as it reads and costs the agent one chunk of memory, never
 * more. It reads nothing but the local file and the store, never blocks.
 *
 * An idle follower looks again every LOGS_POLL_MS rather than being told
 * by stagelog when it appends: the writer's path stays untouched (no
 * registry of open logs to keep in step with attempts, retries and
 * restarts), the cost is bounded by admin.max_log_followers (each look is
 * one pread, and a store read only at the end of the file), and 100 ms is
 * below what a person watching a log notices. While there is data, no
 * timer runs: the next chunk follows the previous one's delivery.
 */
#include "admin_logs.h"
#include "admin_http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "logpump.h"
#include "store.h"
#include "util.h"

enum {
	LOGS_CHUNK_BYTES = 64 * 1024,	  /* read per callback: a follower's whole buffer */
	LOGS_POLL_MS = 100,		  /* an idle follower looks at the file again */
	LOGS_WRITE_TIMEOUT_S = 60,	  /* a client that takes nothing for this long is dropped */
	LOGS_INPUT_MAX_BYTES = 16 * 1024, /* what a follower's client may send and have buffered */
};

struct follower {
	struct admin_logs *al;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;	/* owned: the next look while idle */
	struct evbuffer *chunk; /* owned: the chunk being filled */
	struct logpump pump;
	long long run_id;
	char *stage; /* owned */
	int attempt;
	uint64_t sent_bytes;
	struct follower *next;
};

struct admin_logs {
	struct agent *agent;
	struct follower *followers; /* owned */
	size_t n_followers;
	struct metric_family *followers_gauge; /* drover_log_followers */
	struct metric_family *refused;	       /* drover_log_followers_refused_total */
};

/* Counts a follower in (+1) or out (-1), on the gauge too. */
static void logs_count_follower(struct admin_logs *al, int delta)
{
	al->n_followers = (size_t)((ssize_t)al->n_followers + delta);
	metric_set(al->followers_gauge, NULL, (double)al->n_followers);
}

static const char *logs_query(struct evkeyvalq *q, const char *name)
{
	const char *v = evhttp_find_header(q, name);
	return v != NULL && *v != '\0' ? v : NULL;
}

static char *logs_path(const struct admin_logs *al, long long run_id, const char *stage,
		       int attempt)
{
	return xasprintf("%s/logs/%lld/%s.%d.log", al->agent->cfg->state_dir, run_id, stage,
			 attempt);
}

/* ---- the whole file ---- */

static void logs_send_whole(struct admin_logs *al, struct evhttp_request *req, long long run_id,
			    const char *stage, const char *attempt_arg)
{
	json_t *run = store_run_json(al->agent->store, run_id);
	if (run == NULL) {
		admin_reply_error(req, 404, "no run %lld", run_id);
		return;
	}
	int attempt = -1;
	json_t *st;
	size_t i;
	json_array_foreach(json_object_get(run, "stages"), i, st)
	{
		if (strcmp(json_string_value(json_object_get(st, "name")), stage) == 0)
			attempt = (int)json_integer_value(json_object_get(st, "attempt"));
	}
	json_decref(run);
	if (attempt < 0) {
		admin_reply_error(req, 404, "run %lld has no stage '%s'", run_id, stage);
		return;
	}
	if (attempt_arg != NULL)
		attempt = atoi(attempt_arg);
	char *path = logs_path(al, run_id, stage, attempt);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		admin_reply_error(req, 404, "no log for stage '%s' attempt %d (not started?)",
				  stage, attempt);
		return;
	}
	struct stat sb;
	struct evbuffer *out = evbuffer_new();
	if (fstat(fd, &sb) == 0 && sb.st_size > 0)
		evbuffer_add_file(out, fd, 0, sb.st_size); /* takes the fd */
	else
		close(fd);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; charset=utf-8");
	evhttp_send_reply(req, 200, NULL, out);
	evbuffer_free(out);
}

/* ---- following ---- */

/*
 * The stage's current attempt and status and its run's status. 0, -1 for
 * an unknown run, -2 for a stage the run does not have.
 */
static int logs_stage_state(struct store *store, long long run_id, const char *stage, int *attempt,
			    enum status *stage_status, enum status *run_status)
{
	json_t *run = store_run_json(store, run_id);
	if (run == NULL)
		return -1;
	int rc = -2;
	*run_status = (enum status)status_parse(json_string_value(json_object_get(run, "status")));
	json_t *st;
	size_t i;
	json_array_foreach(json_object_get(run, "stages"), i, st)
	{
		if (strcmp(json_string_value(json_object_get(st, "name")), stage) != 0)
			continue;
		*attempt = (int)json_integer_value(json_object_get(st, "attempt"));
		*stage_status =
		    (enum status)status_parse(json_string_value(json_object_get(st, "status")));
		rc = 0;
	}
	json_decref(run);
	return rc;
}

/* The pump's probe: where the followed attempt is now. */
static enum logpump_attempt follower_probe(void *arg)
{
	struct follower *f = arg;
	int attempt = 0;
	enum status stage_status = STATUS_QUEUED, run_status = STATUS_QUEUED;
	if (logs_stage_state(f->al->agent->store, f->run_id, f->stage, &attempt, &stage_status,
			     &run_status) != 0)
		return LOGPUMP_NEVER; /* the run is gone (a dropped held event) */
	return logpump_classify(f->attempt, attempt, stage_status, run_status);
}

static void follower_free(struct follower *f)
{
	struct admin_logs *al = f->al;
	for (struct follower **pp = &al->followers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			logs_count_follower(al, -1);
			break;
		}
	}
	event_free(f->timer);
	evbuffer_free(f->chunk);
	logpump_close(&f->pump);
	free(f->stage);
	free(f);
}

/* The stream is complete: the terminating chunk goes out, the server closes. */
static void follower_end(struct follower *f)
{
	log_info("admin: log of run %lld stage %s attempt %d sent (%llu bytes followed)", f->run_id,
		 f->stage, f->attempt, (unsigned long long)f->sent_bytes);
	evhttp_connection_set_closecb(f->conn, NULL, NULL);
	evhttp_send_reply_end(f->req);
	follower_free(f);
}

/*
 * The client went away (or stopped reading for LOGS_WRITE_TIMEOUT_S). When
 * the server let go of the unfinished request it is ours to free; when the
 * server frees the connection with the request on it, the server frees it.
 */
static void follower_on_close(struct evhttp_connection *conn, void *arg)
{
	struct follower *f = arg;
	(void)conn;
	log_info("admin: follower of run %lld stage %s attempt %d left after %llu bytes", f->run_id,
		 f->stage, f->attempt, (unsigned long long)f->sent_bytes);
	if (evhttp_request_get_connection(f->req) == NULL)
		evhttp_request_free(f->req);
	follower_free(f);
}

static void follower_on_sent(struct evhttp_connection *conn, void *arg);

/*
 * One step: the next chunk of at most LOGS_CHUNK_BYTES goes out (and the
 * next step runs when it has reached the socket), or the timer is set when
 * there is nothing yet, or the stream ends.
 */
static void follower_pump(struct follower *f)
{
	struct evbuffer_iovec vec;
	if (evbuffer_reserve_space(f->chunk, LOGS_CHUNK_BYTES, &vec, 1) < 1) {
		log_error("admin: no buffer for a log chunk");
		follower_end(f);
		return;
	}
	size_t len = 0;
	enum logpump_result r = logpump_next(&f->pump, vec.iov_base, LOGS_CHUNK_BYTES, &len);
	vec.iov_len = len;
	evbuffer_commit_space(f->chunk, &vec, 1);
	switch (r) {
	case LOGPUMP_DATA:
		f->sent_bytes += len;
		evhttp_send_reply_chunk_with_cb(f->req, f->chunk, follower_on_sent, f);
		return;
	case LOGPUMP_WAIT: {
		struct timeval tv = {0, LOGS_POLL_MS * 1000};
		evtimer_add(f->timer, &tv);
		return;
	}
	case LOGPUMP_END:
	case LOGPUMP_ERROR:
		follower_end(f);
		return;
	}
}

static void follower_on_sent(struct evhttp_connection *conn, void *arg)
{
	(void)conn;
	follower_pump(arg);
}

static void follower_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	follower_pump(arg);
}

/* attempt: "" or a positive number. */
static int logs_parse_attempt(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 1000000)
		return -1;
	*out = (int)v;
	return 0;
}

static void logs_follow(struct admin_logs *al, struct evhttp_request *req, long long run_id,
			const char *stage, const char *attempt_arg)
{
	struct agent *a = al->agent;
	int attempt = 0;
	if (attempt_arg != NULL && logs_parse_attempt(attempt_arg, &attempt) != 0) {
		admin_reply_error(req, 400, "attempt must be a positive number");
		return;
	}
	int current = 0;
	enum status stage_status = STATUS_QUEUED, run_status = STATUS_QUEUED;
	int rc = logs_stage_state(a->store, run_id, stage, &current, &stage_status, &run_status);
	if (rc == -1) {
		admin_reply_error(req, 404, "no run %lld", run_id);
		return;
	}
	if (rc == -2) {
		admin_reply_error(req, 404, "run %lld has no stage '%s'", run_id, stage);
		return;
	}
	if (attempt == 0)
		attempt = current > 0 ? current : 1; /* the current one, or the first to come */
	if (logpump_classify(attempt, current, stage_status, run_status) == LOGPUMP_NEVER) {
		admin_reply_error(req, 404,
				  "stage '%s' of run %lld has no attempt %d and will not get one",
				  stage, run_id, attempt);
		return;
	}
	if (al->n_followers >= (size_t)a->cfg->admin.max_log_followers) {
		metric_add(al->refused, NULL, 1);
		admin_reply_error(req, 503,
				  "%zu clients follow logs already (admin.max_log_followers): try "
				  "again later",
				  al->n_followers);
		return;
	}
	struct follower *f = xcalloc(1, sizeof *f);
	f->al = al;
	f->req = req;
	f->conn = evhttp_request_get_connection(req);
	f->run_id = run_id;
	f->stage = xstrdup(stage);
	f->attempt = attempt;
	f->timer = evtimer_new(a->base, follower_on_timer, f);
	f->chunk = evbuffer_new();
	char *path = logs_path(al, run_id, stage, attempt);
	logpump_init(&f->pump, path, follower_probe, f);
	free(path);
	f->next = al->followers;
	al->followers = f;
	logs_count_follower(al, +1);

	evhttp_connection_set_closecb(f->conn, follower_on_close, f);
	/* The client sends nothing while it follows: no read timeout; one that
	 * takes nothing for LOGS_WRITE_TIMEOUT_S while there is data goes. */
	struct bufferevent *bev = evhttp_connection_get_bufferevent(f->conn);
	struct timeval write_tv = {LOGS_WRITE_TIMEOUT_S, 0};
	bufferevent_set_timeouts(bev, NULL, &write_tv);
	/* The server keeps reading only to notice a close, and keeps what it
	 * reads: a client that sends more while it follows gets this much
	 * buffered, then is simply not read (the connection closes after the
	 * stream, so the next request is not affected). */
	bufferevent_setwatermark(bev, EV_READ, 0, LOGS_INPUT_MAX_BYTES);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char attempt_text[16];
	snprintf(attempt_text, sizeof attempt_text, "%d", attempt);
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Drover-Attempt", attempt_text);
	evhttp_add_header(h, "Connection", "close");
	evhttp_send_reply_start(req, 200, NULL);
	log_info("admin: following run %lld stage %s attempt %d (%zu followers)", run_id, stage,
		 attempt, al->n_followers);
	follower_pump(f);
}

void admin_logs_get(struct admin_logs *al, struct evhttp_request *req, long long run_id,
		    const char *stage)
{
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
		admin_reply_error(req, 400, "bad query string");
		return;
	}
	const char *follow = logs_query(&q, "follow");
	const char *attempt = logs_query(&q, "attempt");
	if (follow == NULL || strcmp(follow, "0") == 0)
		logs_send_whole(al, req, run_id, stage, attempt);
	else if (strcmp(follow, "1") == 0)
		logs_follow(al, req, run_id, stage, attempt);
	else
		admin_reply_error(req, 400, "follow must be 0 or 1");
	evhttp_clear_headers(&q);
}

struct admin_logs *admin_logs_new(struct agent *a)
{
	struct admin_logs *al = xcalloc(1, sizeof *al);
	al->agent = a;
	al->followers_gauge =
	    metric_family_new(&a->metrics, METRIC_GAUGE, "drover_log_followers",
			      "Clients following a stage log now", NULL, NULL, 0, 0);
	al->refused = metric_family_new(
	    &a->metrics, METRIC_COUNTER, "drover_log_followers_refused_total",
	    "Log follow requests refused at admin.max_log_followers", NULL, NULL, 0, 0);
	metric_set(al->followers_gauge, NULL, 0);
	metric_add(al->refused, NULL, 0);
	return al;
}

void admin_logs_free(struct admin_logs *al)
{
	if (al == NULL)
		return;
	if (al->n_followers > 0)
		log_info("admin: the agent stops: dropping %zu log follower(s)", al->n_followers);
	while (al->followers != NULL) {
		evhttp_connection_set_closecb(al->followers->conn, NULL, NULL);
		follower_free(al->followers);
	}
	free(al);
}
