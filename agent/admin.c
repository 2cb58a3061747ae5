/*
 * admin: the evhttp server and its route table (admin_routes: one row per
 * path and method; other methods get 405 with Allow). Reads the store and
 * the metrics; writes nothing but Kafka records (events), the /readyz probe
 * row and, through the scheduler, an operator's cancel. Every route but
 * /healthz and /readyz needs the bearer token when one is configured, except
 * the webhook receivers (admin_hooks.c), which check their own secrets;
 * bodies and headers are size-capped by evhttp.
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

#include "admin_hooks.h"
#include "admin_http.h"
#include "admin_logs.h"
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
	struct admin *ad; /* NULL once the admin API is gone: its delivery report frees it */
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
	struct admin_hooks *hooks; /* owned: POST /hooks/<provider> (admin_hooks.c) */
	struct admin_logs *logs;   /* owned: GET .../log, its followers (admin_logs.c) */
	/* gauges read at each scrape (families of agent->metrics) */
	struct metric_family *runs_active, *runs_queued, *stages_running, *outbox_depth;
	struct metric_family *consumer_lag, *intake_paused;
};

enum {
	ADMIN_RUNS_LIMIT_DEFAULT = 100,
	ADMIN_RUNS_LIMIT_MAX = 500,
};

void admin_reply_json(struct evhttp_request *req, int code, json_t *body)
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

void admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	admin_reply_json(req, code, json_pack("{s:s}", "error", msg));
	free(msg);
}

/* Link: <...>; rel="next" and X-Next-Before for the page after the run last_id. */
static void admin_add_next_page(struct evhttp_request *req, const struct store_run_filter *f,
				long long last_id, int limit)
{
	struct strbuf sb;
	strbuf_init(&sb);
	strbuf_addf(&sb, "</api/v1/runs?limit=%d&before=%lld", limit, last_id);
	const char *names[] = {"pipeline", "status", "repo"};
	const char *values[] = {f->pipeline, f->status, f->repo};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		if (values[i] == NULL)
			continue;
		char *esc = evhttp_uriencode(values[i], -1, 0);
		strbuf_addf(&sb, "&%s=%s", names[i], esc);
		free(esc);
	}
	strbuf_adds(&sb, ">; rel=\"next\"");
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Link", sb.data);
	char before[24];
	snprintf(before, sizeof before, "%lld", last_id);
	evhttp_add_header(out, "X-Next-Before", before);
	strbuf_free(&sb);
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
	if (ad == NULL) { /* the admin API is gone (the agent stops): nobody to answer */
		free(p->key);
		free(p);
		return;
	}
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
rd_kafka_headers_t *admin_event_headers(struct evhttp_request *req, struct event_header *views,
					size_t *n_views, size_t max_views)
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
			   strcasecmp(kv->key, "X-Gitlab-Event") == 0 ||
			   strcasecmp(kv->key, "X-Gitlab-Event-UUID") == 0 ||
			   strcasecmp(kv->key, "Idempotency-Key") == 0 ||
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

enum event_outcome admin_event_read(struct admin *ad, struct evhttp_request *req, const char *data,
				    size_t len, rd_kafka_headers_t **headers, json_t **ev,
				    char *err, size_t err_len)
{
	struct event_header views[32];
	size_t n_views;
	*headers = admin_event_headers(req, views, &n_views, ARRAY_LEN(views));
	struct event_input input = {.headers = views,
				    .n_headers = n_views,
				    .payload = data,
				    .payload_len = len,
				    .received_at_ms = now_ms()};
	struct event_options opt;
	config_event_options(ad->agent->cfg, &opt);
	return event_normalize(&input, &opt, ev, err, err_len);
}

static void admin_post_event(struct admin *ad, struct evhttp_request *req,
			     const struct admin_path *match)
{
	(void)match;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	const char *data = (const char *)evbuffer_pullup(body, -1);
	if (len == 0) {
		admin_reply_error(req, 400, "empty body");
		return;
	}
	rd_kafka_headers_t *headers;
	json_t *ev = NULL;
	char err[256];
	admin_event_read(ad, req, data, len, &headers, &ev, err, sizeof err);
	/* The record is keyed by repository so one repository's events stay in order. */
	admin_produce_event(ad, req, data, len, headers,
			    json_string_value(json_object_get(ev, "repo")));
	json_decref(ev);
}

void admin_produce_event(struct admin *ad, struct evhttp_request *req, const char *data, size_t len,
			 rd_kafka_headers_t *headers, const char *key)
{
	struct agent *a = ad->agent;
	if (a->is_stopping) {
		rd_kafka_headers_destroy(headers);
		admin_reply_error(req, 503, "the agent is stopping");
		return;
	}
	struct pending_event *p = xcalloc(1, sizeof *p);
	p->ad = ad;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	p->key = key != NULL ? xstrdup(key) : NULL;
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
static void admin_post_cancel(struct admin *ad, struct evhttp_request *req,
			      const struct admin_path *match)
{
	long long run_id = match->run_id;
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
 * "via_kafka":bool,"force":bool,"reason":"..","requested_by":".."} (every field
 * optional). The answer waits for the check that the run's commit still
 * exists (and, via Kafka, for Kafka's acknowledgement of the command): 202
 * {"id","attempt","stages"[,"command","topic","partition","offset"]}, or
 * 400, 404, 409, 503 with {"error"}.
 */
static void admin_post_replay(struct admin *ad, struct evhttp_request *req,
			      const struct admin_path *match)
{
	long long run_id = match->run_id;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	json_t *doc = len > 0 ? json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, NULL)
			      : json_object();
	json_t *stages = json_object_get(doc, "stages");
	json_t *reason = json_object_get(doc, "reason"), *by = json_object_get(doc, "requested_by");
	static const char *const flags[] = {"downstream", "all", "latest_pipeline", "via_kafka",
					    "force"};
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
				  "\"force\": bool, "
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
	    .is_force = json_is_true(json_object_get(doc, "force")),
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

/* A decimal integer in [min, max], nothing else (no sign, no spaces). */
static bool admin_parse_int(const char *s, long long min, long long max, long long *out)
{
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/*
 * GET /api/v1/runs: newest first, at most limit (1..500, default 100) runs
 * with an id below before. When more match, the Link header (rel="next")
 * and X-Next-Before say where the next page starts.
 */
static void admin_get_runs(struct admin *ad, struct evhttp_request *req,
			   const struct admin_path *match)
{
	(void)match;
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
	long long n_limit = ADMIN_RUNS_LIMIT_DEFAULT, before_id = 0;
	if (limit != NULL && !admin_parse_int(limit, 1, ADMIN_RUNS_LIMIT_MAX, &n_limit)) {
		admin_reply_error(req, 400, "limit must be an integer from 1 to %d",
				  ADMIN_RUNS_LIMIT_MAX);
	} else if (before != NULL && !admin_parse_int(before, 1, INT64_MAX, &before_id)) {
		admin_reply_error(req, 400, "before must be a positive run id");
	} else if (f.status != NULL && status_parse(f.status) < 0) {
		admin_reply_error(req, 400, "unknown status '%s'", f.status);
	} else {
		f.limit = (int)n_limit + 1; /* one more tells whether a next page exists */
		f.before_id = before_id;
		json_t *runs = store_runs_json(ad->agent->store, &f);
		if (runs == NULL) {
			admin_reply_error(req, 500, "cannot read runs");
		} else {
			if (json_array_size(runs) > (size_t)n_limit) {
				json_array_remove(runs, (size_t)n_limit);
				admin_add_next_page(
				    req, &f,
				    json_integer_value(json_object_get(
					json_array_get(runs, (size_t)n_limit - 1), "id")),
				    (int)n_limit);
			}
			admin_reply_json(req, 200, runs);
		}
	}
	evhttp_clear_headers(&q);
}

/* GET .../stages/{name}/log[?attempt=N&follow=1]: admin_logs.c answers. */
static void admin_get_log(struct admin *ad, struct evhttp_request *req,
			  const struct admin_path *match)
{
	admin_logs_get(ad->logs, req, match->run_id, match->name);
}

static void admin_get_run(struct admin *ad, struct evhttp_request *req,
			  const struct admin_path *match)
{
	json_t *run = store_run_json(ad->agent->store, match->run_id);
	if (run == NULL)
		admin_reply_error(req, 404, "no run %lld", match->run_id);
	else
		admin_reply_json(req, 200, run);
}

/* The gauges read at scrape time, then every family as Prometheus text. */
static void admin_get_metrics(struct admin *ad, struct evhttp_request *req,
			      const struct admin_path *match)
{
	(void)match;
	struct agent *a = ad->agent;
	metric_set(ad->runs_active, NULL, (double)scheduler_active_runs(a->sched));
	metric_set(ad->runs_queued, NULL, (double)scheduler_queued_runs(a->sched));
	metric_set(ad->stages_running, NULL, (double)scheduler_running_stages(a->sched));
	metric_set(ad->outbox_depth, NULL, (double)store_outbox_count(a->store));
	metric_set(ad->intake_paused, NULL, a->intake != NULL && intake_is_paused(a->intake));
	metric_clear(ad->consumer_lag);
	const json_t *lag = a->intake != NULL ? intake_lag(a->intake) : NULL;
	const char *part;
	json_t *v;
	json_object_foreach((json_t *)lag, part, v)
	    metric_set(ad->consumer_lag, (const char *[]){part}, (double)json_integer_value(v));
	char *text = metrics_render(&a->metrics);
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, text, strlen(text));
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, NULL, out);
	evbuffer_free(out);
}

/*
 * /healthz: the agent is alive (always 200) and says whether it is ready;
 * /readyz answers 503 unless Kafka assigned partitions and the store takes
 * a write (store_check_writable, done only for /readyz: it costs a sync).
 */
static void admin_get_health(struct admin *ad, struct evhttp_request *req,
			     const struct admin_path *match)
{
	(void)match;
	struct agent *a = ad->agent;
	bool is_readyz =
	    strcmp(evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), "/readyz") == 0;
	bool is_connected = a->intake != NULL && intake_is_connected(a->intake);
	bool is_assigned = a->intake != NULL && intake_is_assigned(a->intake);
	bool is_ready = is_connected && is_assigned && !a->is_stopping;
	char why[256] = "";
	json_t *body = json_pack("{s:b,s:b,s:b}", "kafka_connected", is_connected, "kafka_assigned",
				 is_assigned, "intake_paused",
				 a->intake != NULL && intake_is_paused(a->intake));
	if (is_readyz) {
		bool is_writable = store_check_writable(a->store, why, sizeof why) == 0;
		if (!is_writable)
			log_warn("admin: /readyz: the store does not take a write: %s", why);
		is_ready = is_ready && is_writable;
		json_object_set_new(body, "store_writable", json_boolean(is_writable));
		if (!is_writable)
			json_object_set_new(body, "store_error", json_string(why));
	}
	json_object_set_new(body, "ready", json_boolean(is_ready));
	json_object_set_new(body, "status", json_string(is_ready ? "ok" : "not_ready"));
	admin_reply_json(req, is_readyz && !is_ready ? 503 : 200, body);
}

/* POST /hooks/<provider>: admin_hooks.c answers every method (it counts its refusals too). */
static void admin_route_hooks(struct admin *ad, struct evhttp_request *req,
			      const struct admin_path *match)
{
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
	admin_hooks_route(ad->hooks, ad, req, match->name);
}

/* ---- routing ---- */

/* A route whose handler takes every method and answers 405 itself. */
#define ADMIN_ANY_METHOD ((enum evhttp_cmd_type)0)

/*
 * The routes. A pattern's segments are literal, "{id}" (a run id: digits,
 * at least 1) or "{name}" (any one segment, percent-decoded). One line per
 * method a path takes; other methods get 405 with Allow. is_public: no
 * bearer token (health probes; webhooks check their own secret).
 */
static const struct admin_route {
	const char *pattern;
	enum evhttp_cmd_type method;
	bool is_public;
	void (*handle)(struct admin *ad, struct evhttp_request *req,
		       const struct admin_path *match);
} admin_routes[] = {
    {"/healthz", EVHTTP_REQ_GET, true, admin_get_health},
    {"/readyz", EVHTTP_REQ_GET, true, admin_get_health},
    {"/metrics", EVHTTP_REQ_GET, false, admin_get_metrics},
    {"/api/v1/events", EVHTTP_REQ_POST, false, admin_post_event},
    {"/api/v1/runs", EVHTTP_REQ_GET, false, admin_get_runs},
    {"/api/v1/runs/{id}", EVHTTP_REQ_GET, false, admin_get_run},
    {"/api/v1/runs/{id}/cancel", EVHTTP_REQ_POST, false, admin_post_cancel},
    {"/api/v1/runs/{id}/replay", EVHTTP_REQ_POST, false, admin_post_replay},
    {"/api/v1/runs/{id}/stages/{name}/log", EVHTTP_REQ_GET, false, admin_get_log},
    {"/hooks/{name}", ADMIN_ANY_METHOD, true, admin_route_hooks},
};

bool admin_path_match(const char *pattern, const char *path, struct admin_path *out)
{
	out->run_id = 0;
	out->name = NULL;
	while (*pattern != '\0' && *path != '\0') {
		size_t n_pat = strcspn(pattern + 1, "/") + 1, n_seg = strcspn(path + 1, "/") + 1;
		if (*pattern != '/' || *path != '/')
			break;
		if (strncmp(pattern, "/{id}", n_pat) == 0 && n_pat == 5) {
			char digits[20];
			long long id;
			if (n_seg - 1 >= sizeof digits)
				break;
			memcpy(digits, path + 1, n_seg - 1);
			digits[n_seg - 1] = '\0';
			if (!admin_parse_int(digits, 1, INT64_MAX, &id))
				break;
			out->run_id = id;
		} else if (strncmp(pattern, "/{name}", n_pat) == 0 && n_pat == 7) {
			char *seg = xstrndup(path + 1, n_seg - 1);
			free(out->name);
			out->name = evhttp_uridecode(seg, 0, NULL);
			free(seg);
			if (out->name == NULL || *out->name == '\0' ||
			    strchr(out->name, '/') != NULL)
				break;
		} else if (n_pat != n_seg || strncmp(pattern, path, n_pat) != 0) {
			break;
		}
		pattern += n_pat;
		path += n_seg;
	}
	if (*pattern == '\0' && *path == '\0')
		return true;
	free(out->name);
	out->name = NULL;
	return false;
}

static const char *admin_method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	default:
		return "?";
	}
}

/*
 * Finds the route of the request: 404 when no pattern matches, 401 without
 * the token (unless public), 405 with Allow when the path does not take the
 * method. The token is checked before 404 and 405, so a client without it
 * learns nothing about the routes.
 */
static void admin_dispatch(struct evhttp_request *req, void *arg)
{
	struct admin *ad = arg;
	struct agent *a = ad->agent;
	a->metrics.api_requests++;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	if (path == NULL || *path == '\0')
		path = "/";
	const struct admin_route *route = NULL;
	struct admin_path captured = {0};
	bool is_known = false, is_public = false;
	char allow[64] = "";
	for (size_t i = 0; i < ARRAY_LEN(admin_routes); i++) {
		struct admin_path p;
		if (!admin_path_match(admin_routes[i].pattern, path, &p))
			continue;
		is_known = true;
		is_public = is_public || admin_routes[i].is_public;
		size_t len = strlen(allow);
		if (admin_routes[i].method != ADMIN_ANY_METHOD)
			snprintf(allow + len, sizeof allow - len, "%s%s", len > 0 ? ", " : "",
				 admin_method_name(admin_routes[i].method));
		if (route == NULL && (admin_routes[i].method == method ||
				      admin_routes[i].method == ADMIN_ANY_METHOD)) {
			route = &admin_routes[i];
			captured = p;
		} else {
			free(p.name);
		}
	}
	if (!is_public && !admin_is_authorized(ad, req)) {
		a->metrics.api_unauthorized++;
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer");
		admin_reply_error(req, 401, "a valid bearer token is needed");
	} else if (!is_known) {
		admin_reply_error(req, 404, "no such route: %s", path);
	} else if (route == NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
		admin_reply_error(req, 405, "%s takes %s", path, allow);
	} else {
		route->handle(ad, req, &captured);
	}
	free(captured.name);
}

struct admin *admin_new(struct agent *a, char *err, size_t err_len)
{
	struct admin *ad = xcalloc(1, sizeof *ad);
	ad->agent = a;
	ad->hooks = admin_hooks_new(a);
	ad->logs = admin_logs_new(a);
	ad->http = evhttp_new(a->base);
	ad->replayer = replayer_new(a);
	evhttp_set_max_body_size(ad->http, (ev_ssize_t)a->cfg->admin.max_body_bytes);
	evhttp_set_max_headers_size(ad->http, (ev_ssize_t)a->cfg->admin.max_header_bytes);
	/* Every method reaches the dispatcher, which answers 405 with Allow. */
	evhttp_set_allowed_methods(ad->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(ad->http, 60);
	evhttp_set_gencb(ad->http, admin_dispatch, ad);
	ad->runs_active = metric_family_new(&a->metrics, METRIC_GAUGE, "drover_runs_active",
					    "Runs queued or running", NULL, NULL, 0, 0);
	ad->runs_queued = metric_family_new(&a->metrics, METRIC_GAUGE, "drover_runs_queued",
					    "Runs waiting for a slot, their group or their lock",
					    NULL, NULL, 0, 0);
	ad->stages_running = metric_family_new(&a->metrics, METRIC_GAUGE, "drover_stages_running",
					       "Stages running", NULL, NULL, 0, 0);
	ad->outbox_depth = metric_family_new(&a->metrics, METRIC_GAUGE, "drover_outbox_depth",
					     "Results waiting for Kafka", NULL, NULL, 0, 0);
	ad->consumer_lag =
	    metric_family_new(&a->metrics, METRIC_GAUGE, "drover_consumer_lag",
			      "Records of the events topic not yet consumed, per partition",
			      (const char *[]){"partition", NULL}, NULL, 0, 0);
	ad->intake_paused =
	    metric_family_new(&a->metrics, METRIC_GAUGE, "drover_intake_paused",
			      "1 while backpressure pauses the intake", NULL, NULL, 0, 0);
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
	/* Delivery reports of pending produces still come (kafka is freed later, and
	 * flushes): each record's pending_event is handed to its report, which frees
	 * it without touching ad. */
	for (struct pending_event *p = ad->pending; p != NULL; p = p->next) {
		p->req = NULL;
		p->ad = NULL;
	}
	ad->pending = NULL;
	admin_logs_free(ad->logs); /* before the connections its followers use go */
	evhttp_free(ad->http);
	admin_hooks_free(ad->hooks);
	free(ad);
}
