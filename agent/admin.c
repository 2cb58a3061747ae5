/*
 * admin: evhttp routes. Reads the store and the metrics; writes nothing but
 * Kafka records (events) and, through the scheduler, an operator's cancel. Every route but /healthz
 * and /readyz needs the bearer token when one is configured; bodies and headers are size-capped by
 * evhttp.
 */
#include "admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "event.h"
#include "intake.h"
#include "kafka.h"
#include "log.h"
#include "replay.h"
#include "report.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

struct pending_event {
	struct admin *ad;
	struct evhttp_request *req; /* NULL once the client went away */
	struct evhttp_connection *conn;
	char *key;
	struct pending_event *next;
};

/* A replay request waiting for its commit check (replay.h). */
struct pending_replay {
	struct admin *ad;
	struct evhttp_request *req; /* NULL once the client went away */
	struct evhttp_connection *conn;
	struct pending_replay *next;
};

struct admin {
	struct agent *agent;
	struct replayer *replayer;
	struct pending_replay *replays;
	struct evhttp *http;
	struct pending_event *pending;
};

static void admin_reply_json(struct evhttp_request *req, int code, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *text = json_dumps(body, JSON_COMPACT);
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\n", 1);
	free(text);
	json_decref(body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evhttp_send_reply(req, code, NULL, out);
	evbuffer_free(out);
}

static void admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	admin_reply_json(req, code, json_pack("{s:s}", "error", msg));
	free(msg);
}

/* Constant-time comparison of the presented token with the configured one. */
static bool admin_is_authorized(const struct admin *ad, struct evhttp_request *req)
{
	const char *token = ad->agent->cfg->admin.token;
	if (token == NULL)
		return true;
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (h == NULL || strncmp(h, "Bearer ", 7) != 0)
		return false;
	const char *given = h + 7;
	size_t a = strlen(token), b = strlen(given);
	unsigned char diff = (unsigned char)(a != b);
	for (size_t i = 0; i < a; i++)
		diff |= (unsigned char)(token[i] ^ (i < b ? given[i] : 0));
	return diff == 0;
}

/* ---- POST /api/v1/events ---- */

static void admin_forget_pending(struct admin *ad, struct pending_event *p)
{
	for (struct pending_event **pp = &ad->pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	free(p->key);
	free(p);
}

static void admin_on_conn_close(struct evhttp_connection *conn, void *arg)
{
	struct admin *ad = arg;
	for (struct pending_event *p = ad->pending; p != NULL; p = p->next)
		if (p->conn == conn)
			p->req = NULL;
	for (struct pending_replay *p = ad->replays; p != NULL; p = p->next)
		if (p->conn == conn)
			p->req = NULL;
}

static void admin_event_delivered(void *arg, rd_kafka_resp_err_t err, int32_t partition,
				  int64_t offset)
{
	struct pending_event *p = arg;
	struct admin *ad = p->ad;
	if (p->req != NULL) {
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			admin_reply_json(p->req, 202,
					 json_pack("{s:s,s:i,s:I,s:s?}", "topic",
						   ad->agent->cfg->kafka.events_topic, "partition",
						   (int)partition, "offset", (json_int_t)offset,
						   "key", p->key));
		else
			admin_reply_error(p->req, 503, "Kafka did not take the event: %s",
					  rd_kafka_err2str(err));
	}
	admin_forget_pending(ad, p);
}

/* Request headers that become record headers, with their Kafka names. */
static rd_kafka_headers_t *admin_event_headers(struct evhttp_request *req,
					       struct event_header *views, size_t *n_views,
					       size_t max_views)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	*n_views = 0;
	for (struct evkeyval *kv = in->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		char name[128];
		if (strncasecmp(kv->key, "ce-", 3) == 0 && strlen(kv->key) < sizeof name) {
			snprintf(name, sizeof name, "ce_%s", kv->key + 3);
		} else if (strcasecmp(kv->key, "X-GitHub-Event") == 0 ||
			   strcasecmp(kv->key, "X-GitHub-Delivery") == 0 ||
			   strcasecmp(kv->key, "X-Drover-Event") == 0 ||
			   strcasecmp(kv->key, "Content-Type") == 0) {
			snprintf(name, sizeof name, "%s", kv->key);
		} else {
			continue;
		}
		for (char *c = name; *c != '\0'; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		rd_kafka_header_add(h, name, -1, kv->value, -1);
	}
	const char *hname;
	const void *hval;
	size_t hsize;
	for (size_t i = 0;
	     *n_views < max_views &&
	     rd_kafka_header_get_all(h, i, &hname, &hval, &hsize) == RD_KAFKA_RESP_ERR_NO_ERROR;
	     i++) {
		views[*n_views].name = hname;
		views[*n_views].value = hval;
		views[*n_views].value_len = hsize;
		(*n_views)++;
	}
	return h;
}

static void admin_post_event(struct admin *ad, struct evhttp_request *req)
{
	struct agent *a = ad->agent;
	if (a->is_stopping) {
		admin_reply_error(req, 503, "the agent is stopping");
		return;
	}
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	const char *data = (const char *)evbuffer_pullup(body, -1);
	if (len == 0) {
		admin_reply_error(req, 400, "empty body");
		return;
	}
	struct event_header views[32];
	size_t n_views;
	rd_kafka_headers_t *headers = admin_event_headers(req, views, &n_views, ARRAY_LEN(views));
	/* The record is keyed by repository so one repository's events stay in order. */
	struct event_input input = {.headers = views,
				    .n_headers = n_views,
				    .payload = data,
				    .payload_len = len,
				    .received_at_ms = now_ms()};
	struct event_options opt;
	config_event_options(a->cfg, &opt);
	json_t *ev = NULL;
	char err[256];
	event_normalize(&input, &opt, &ev, err, sizeof err);
	struct pending_event *p = xcalloc(1, sizeof *p);
	p->ad = ad;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	const char *repo = json_string_value(json_object_get(ev, "repo"));
	p->key = repo != NULL ? xstrdup(repo) : NULL;
	json_decref(ev);
	evhttp_connection_set_closecb(p->conn, admin_on_conn_close, ad);
	if (kafka_produce(a->kafka, a->cfg->kafka.events_topic, p->key, data, len, headers,
			  admin_event_delivered, p) != 0) {
		rd_kafka_headers_destroy(headers);
		free(p->key);
		free(p);
		admin_reply_error(req, 503, "Kafka refused the event (queue full or broker down)");
		return;
	}
	p->next = ad->pending;
	ad->pending = p;
}

/* ---- POST /api/v1/runs/{id}/cancel ---- */

/* Starts the cancel of a run (optional body {"reason": "..."}): 202, 404, 409. */
static void admin_post_cancel(struct admin *ad, struct evhttp_request *req, long long run_id)
{
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	json_t *doc = NULL;
	const char *reason = NULL;
	if (len > 0) {
		doc = json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, NULL);
		const json_t *r = json_object_get(doc, "reason");
		if (!json_is_object(doc) || (r != NULL && !json_is_string(r))) {
			json_decref(doc);
			admin_reply_error(req, 400, "the body must be {\"reason\": \"...\"}");
			return;
		}
		reason = json_string_value(r);
	}
	int rc = scheduler_run_cancel(ad->agent->sched, run_id, reason);
	json_decref(doc);
	if (rc == 0)
		admin_reply_json(
		    req, 202,
		    json_pack("{s:I,s:s}", "id", (json_int_t)run_id, "status", "cancelling"));
	else if (rc == -1)
		admin_reply_error(req, 404, "no run %lld", run_id);
	else if (rc == -2)
		admin_reply_error(req, 409, "run %lld already finished: nothing to cancel", run_id);
	else
		admin_reply_error(req, 409,
				  "run %lld is not taken up by this agent yet (its event is held "
				  "until Kafka acknowledges it): try again shortly",
				  run_id);
}

/* ---- POST /api/v1/runs/{id}/replay ---- */

static void admin_replay_done(void *arg, int code, json_t *reply)
{
	struct pending_replay *p = arg;
	struct admin *ad = p->ad;
	if (p->req != NULL)
		admin_reply_json(p->req, code, reply);
	else
		json_decref(reply);
	for (struct pending_replay **pp = &ad->replays; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	free(p);
}

/*
 * Body {"stages":[..],"downstream":bool,"all":bool,"latest_pipeline":bool,
 * "via_kafka":bool,"reason":"..","requested_by":".."} (every field
 * optional). The answer waits for the check that the run's commit still
 * exists (and, via Kafka, for Kafka's acknowledgement of the command): 202
 * {"id","attempt","stages"[,"command","topic","partition","offset"]}, or
 * 400, 404, 409, 503 with {"error"}.
 */
static void admin_post_replay(struct admin *ad, struct evhttp_request *req, long long run_id)
{
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	json_t *doc = len > 0 ? json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, NULL)
			      : json_object();
	json_t *stages = json_object_get(doc, "stages");
	json_t *reason = json_object_get(doc, "reason"), *by = json_object_get(doc, "requested_by");
	static const char *const flags[] = {"downstream", "all", "latest_pipeline", "via_kafka"};
	bool is_ok = json_is_object(doc) && (stages == NULL || json_is_array(stages)) &&
		     (reason == NULL || json_is_string(reason)) &&
		     (by == NULL || json_is_string(by));
	for (size_t i = 0; is_ok && i < ARRAY_LEN(flags); i++) {
		json_t *f = json_object_get(doc, flags[i]);
		is_ok = f == NULL || json_is_boolean(f);
	}
	size_t n = json_array_size(stages);
	const char **names = xcalloc(n + 1, sizeof *names);
	for (size_t i = 0; is_ok && i < n; i++) {
		names[i] = json_string_value(json_array_get(stages, i));
		is_ok = names[i] != NULL;
	}
	if (!is_ok) {
		admin_reply_error(req, 400,
				  "the body must be {\"stages\": [names], \"downstream\": bool, "
				  "\"all\": bool, \"latest_pipeline\": bool, \"via_kafka\": bool, "
				  "\"reason\": \"...\", \"requested_by\": \"...\"}");
		goto out;
	}
	struct replay_request r = {
	    .stages = names,
	    .n_stages = n,
	    .is_downstream = json_is_true(json_object_get(doc, "downstream")),
	    .is_all = json_is_true(json_object_get(doc, "all")),
	    .is_latest_pipeline = json_is_true(json_object_get(doc, "latest_pipeline")),
	    .is_via_kafka = json_is_true(json_object_get(doc, "via_kafka")),
	    .reason = json_string_value(reason),
	    .requested_by = by != NULL ? json_string_value(by) : "admin API",
	};
	struct pending_replay *p = xcalloc(1, sizeof *p);
	p->ad = ad;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	char err[512];
	int code = replayer_start(ad->replayer, run_id, &r, admin_replay_done, p, err, sizeof err);
	if (code != REPLAY_ACCEPTED) {
		free(p);
		admin_reply_error(req, code, "%s", err);
		goto out;
	}
	evhttp_connection_set_closecb(p->conn, admin_on_conn_close, ad);
	p->next = ad->replays;
	ad->replays = p;
out:
	free(names);
	json_decref(doc);
}

/* ---- GET routes ---- */

static const char *admin_query(struct evkeyvalq *q, const char *name)
{
	const char *v = evhttp_find_header(q, name);
	return v != NULL && *v != '\0' ? v : NULL;
}

static void admin_get_runs(struct admin *ad, struct evhttp_request *req)
{
	struct evkeyvalq q;
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
		admin_reply_error(req, 400, "bad query string");
		return;
	}
	struct store_run_filter f = {
	    .pipeline = admin_query(&q, "pipeline"),
	    .status = admin_query(&q, "status"),
	    .repo = admin_query(&q, "repo"),
	};
	const char *limit = admin_query(&q, "limit"), *before = admin_query(&q, "before");
	if (limit != NULL)
		f.limit = atoi(limit);
	if (before != NULL)
		f.before_id = atoll(before);
	if (f.status != NULL && status_parse(f.status) < 0) {
		admin_reply_error(req, 400, "unknown status '%s'", f.status);
	} else {
		json_t *runs = store_runs_json(ad->agent->store, &f);
		if (runs == NULL)
			admin_reply_error(req, 500, "cannot read runs");
		else
			admin_reply_json(req, 200, runs);
	}
	evhttp_clear_headers(&q);
}

static void admin_get_log(struct admin *ad, struct evhttp_request *req, long long run_id,
			  const char *stage)
{
	json_t *run = store_run_json(ad->agent->store, run_id);
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
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (query != NULL && evhttp_parse_query_str(query, &q) == 0 &&
	    admin_query(&q, "attempt") != NULL)
		attempt = atoi(admin_query(&q, "attempt"));
	evhttp_clear_headers(&q);
	char *path =
	    xasprintf("%s/logs/%lld/%s.%d.log", ad->agent->cfg->state_dir, run_id, stage, attempt);
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

static void admin_get_metrics(struct admin *ad, struct evhttp_request *req)
{
	const struct metrics *m = &ad->agent->metrics;
	struct evbuffer *out = evbuffer_new();
	struct {
		const char *name, *help;
		uint64_t value;
	} counters[] = {
	    {"drover_events_received_total", "Records read from the events topic",
	     m->events_received},
	    {"drover_events_accepted_total", "Events that started runs", m->events_accepted},
	    {"drover_events_unmatched_total", "Events no pipeline matched", m->events_unmatched},
	    {"drover_events_duplicate_total", "Redelivered events (nothing new started)",
	     m->events_duplicate},
	    {"drover_events_ignored_total", "Events understood and ignored (ping)",
	     m->events_ignored},
	    {"drover_events_refused_total", "Events of repositories not configured",
	     m->events_refused},
	    {"drover_events_dead_lettered_total", "Records sent to the dead-letter topic",
	     m->events_dead_lettered},
	    {"drover_events_malformed_total", "Malformed records", m->events_malformed},
	    {"drover_events_unknown_total", "Records of unknown type", m->events_unknown},
	    {"drover_events_too_large_total", "Records over max_event_bytes", m->events_too_large},
	    {"drover_runs_created_total", "Runs created", m->runs_created},
	    {"drover_runs_finished_total", "Runs finished", m->runs_finished},
	    {"drover_stages_started_total", "Stage attempts started", m->stages_started},
	    {"drover_stages_finished_total", "Stage attempts finished", m->stages_finished},
	    {"drover_results_published_total", "Outbox records acknowledged by Kafka",
	     m->results_published},
	    {"drover_kafka_errors_total", "Kafka errors", m->kafka_errors},
	    {"drover_api_requests_total", "Admin API requests", m->api_requests},
	    {"drover_api_unauthorized_total", "Admin API requests refused for the token",
	     m->api_unauthorized},
	    {"drover_plugins_refused_total", "Plugins refused at load", m->plugins_refused},
	    {"drover_pipelines_refused_total", "Pipeline files refused at load",
	     m->pipelines_refused},
	};
	for (size_t i = 0; i < ARRAY_LEN(counters); i++)
		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
				    counters[i].name, counters[i].help, counters[i].name,
				    counters[i].name, (unsigned long long)counters[i].value);
	evbuffer_add_printf(out,
			    "# HELP drover_runs_active Runs queued or running\n"
			    "# TYPE drover_runs_active gauge\ndrover_runs_active %zu\n"
			    "# HELP drover_stages_running Stages running\n"
			    "# TYPE drover_stages_running gauge\ndrover_stages_running %zu\n"
			    "# HELP drover_outbox_depth Results waiting for Kafka\n"
			    "# TYPE drover_outbox_depth gauge\ndrover_outbox_depth %lld\n",
			    scheduler_active_runs(ad->agent->sched),
			    scheduler_running_stages(ad->agent->sched),
			    (long long)store_outbox_count(ad->agent->store));
	const json_t *lag = ad->agent->intake != NULL ? intake_lag(ad->agent->intake) : NULL;
	if (lag != NULL && json_object_size(lag) > 0) {
		evbuffer_add_printf(out,
				    "# HELP drover_consumer_lag Records of the events topic not "
				    "yet consumed, per partition\n"
				    "# TYPE drover_consumer_lag gauge\n");
		const char *part;
		json_t *v;
		json_object_foreach((json_t *)lag, part, v)
		    evbuffer_add_printf(out, "drover_consumer_lag{partition=\"%s\"} %lld\n", part,
					(long long)json_integer_value(v));
	}
	evbuffer_add_printf(out,
			    "# HELP drover_intake_paused 1 while backpressure pauses the intake\n"
			    "# TYPE drover_intake_paused gauge\ndrover_intake_paused %d\n",
			    ad->agent->intake != NULL && intake_is_paused(ad->agent->intake));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, NULL, out);
	evbuffer_free(out);
}

static void admin_route(struct evhttp_request *req, void *arg)
{
	struct admin *ad = arg;
	struct agent *a = ad->agent;
	a->metrics.api_requests++;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	if (path == NULL)
		path = "/";
	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
		/* /healthz: the agent is alive (200) and says whether it is ready;
		 * /readyz answers 503 while it is not. */
		bool is_connected = a->intake != NULL && intake_is_connected(a->intake);
		bool is_assigned = a->intake != NULL && intake_is_assigned(a->intake);
		bool is_ready = is_connected && is_assigned && !a->is_stopping;
		int code = strcmp(path, "/readyz") == 0 && !is_ready ? 503 : 200;
		admin_reply_json(req, code,
				 json_pack("{s:s,s:b,s:b,s:b,s:b}", "status",
					   is_ready ? "ok" : "not_ready", "ready", is_ready,
					   "kafka_connected", is_connected, "kafka_assigned",
					   is_assigned, "intake_paused",
					   a->intake != NULL && intake_is_paused(a->intake)));
		return;
	}
	if (!admin_is_authorized(ad, req)) {
		a->metrics.api_unauthorized++;
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer");
		admin_reply_error(req, 401, "a valid bearer token is needed");
		return;
	}
	long long run_id;
	int consumed = 0;
	char stage[256];
	if (strcmp(path, "/api/v1/events") == 0) {
		if (method != EVHTTP_REQ_POST)
			admin_reply_error(req, 405, "use POST");
		else
			admin_post_event(ad, req);
	} else if (sscanf(path, "/api/v1/runs/%lld/cancel%n", &run_id, &consumed) == 1 &&
		   path[consumed] == '\0') {
		if (method != EVHTTP_REQ_POST)
			admin_reply_error(req, 405, "use POST");
		else
			admin_post_cancel(ad, req, run_id);
	} else if (sscanf(path, "/api/v1/runs/%lld/replay%n", &run_id, &consumed) == 1 &&
		   path[consumed] == '\0') {
		if (method != EVHTTP_REQ_POST)
			admin_reply_error(req, 405, "use POST");
		else
			admin_post_replay(ad, req, run_id);
	} else if (method != EVHTTP_REQ_GET) {
		admin_reply_error(req, 405, "use GET");
	} else if (strcmp(path, "/metrics") == 0) {
		admin_get_metrics(ad, req);
	} else if (strcmp(path, "/api/v1/runs") == 0) {
		admin_get_runs(ad, req);
	} else if (sscanf(path, "/api/v1/runs/%lld%n", &run_id, &consumed) == 1 &&
		   path[consumed] == '\0') {
		json_t *run = store_run_json(a->store, run_id);
		if (run == NULL)
			admin_reply_error(req, 404, "no run %lld", run_id);
		else
			admin_reply_json(req, 200, run);
	} else if (sscanf(path, "/api/v1/runs/%lld/stages/%255[^/]/log%n", &run_id, stage,
			  &consumed) == 2 &&
		   path[consumed] == '\0') {
		char *name = evhttp_uridecode(stage, 0, NULL);
		admin_get_log(ad, req, run_id, name);
		free(name);
	} else {
		admin_reply_error(req, 404, "no such route: %s", path);
	}
}

struct admin *admin_new(struct agent *a, char *err, size_t err_len)
{
	struct admin *ad = xcalloc(1, sizeof *ad);
	ad->agent = a;
	ad->http = evhttp_new(a->base);
	ad->replayer = replayer_new(a);
	evhttp_set_max_body_size(ad->http, (ev_ssize_t)a->cfg->admin.max_body_bytes);
	evhttp_set_max_headers_size(ad->http, (ev_ssize_t)a->cfg->admin.max_header_bytes);
	evhttp_set_allowed_methods(ad->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_timeout(ad->http, 60);
	evhttp_set_gencb(ad->http, admin_route, ad);
	char *listen = xstrdup(a->cfg->admin.listen);
	char *colon = strrchr(listen, ':');
	int port = colon != NULL ? atoi(colon + 1) : 8470;
	if (colon != NULL)
		*colon = '\0';
	char *host = listen;
	if (host[0] == '[') { /* [::1]:8470 */
		host++;
		host[strcspn(host, "]")] = '\0';
	}
	if (evhttp_bind_socket(ad->http, host, (ev_uint16_t)port) != 0) {
		snprintf(err, err_len, "cannot listen on %s: %s", a->cfg->admin.listen,
			 strerror(errno));
		free(listen);
		admin_free(ad);
		return NULL;
	}
	log_info("admin: listening on http://%s", a->cfg->admin.listen);
	free(listen);
	return ad;
}

void admin_free(struct admin *ad)
{
	if (ad == NULL)
		return;
	/* Replays being checked are dropped (nothing was recorded yet). */
	replayer_free(ad->replayer);
	while (ad->replays != NULL) {
		struct pending_replay *p = ad->replays;
		ad->replays = p->next;
		free(p);
	}
	/* Pending produce callbacks may still run (kafka is freed later): detach them. */
	for (struct pending_event *p = ad->pending; p != NULL; p = p->next)
		p->req = NULL;
	evhttp_free(ad->http);
	free(ad);
}
