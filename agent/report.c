/*
 * report: builds CDEvents, keeps them in the outbox, publishes the outbox.
 * CDEvent ids are deterministic (run, stage, attempt, phase), so a consumer
 * can drop a duplicate that a crash between produce and delete caused.
 */
#include "report.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "kafka.h"
#include "log.h"
#include "plugin_host.h"
#include "util.h"

#define REPORT_MAX_IN_FLIGHT 512
/* Acknowledged records are deleted together: this long after the first of a
 * batch, at once when nothing is in flight any more or the batch is this big. */
#define REPORT_DELETE_DELAY_MS 5
#define REPORT_DELETE_BATCH 256
/* After a failed delete, the next try. */
#define REPORT_DELETE_RETRY_MS 1000

/*
 * An outbox record Kafka refused for good (kafka_is_refusal: too large). A
 * dead letter is then sent once more without its value; whatever is still
 * refused is skipped (left in the outbox, logged once), so one record never
 * holds up the others.
 */
enum report_refusal {
	REPORT_WITHOUT_VALUE = 1,
	REPORT_SKIP = 2,
};

struct report_refused {
	int64_t outbox_id;
	enum report_refusal what;
};

struct report {
	struct agent *agent;
	struct event *kick_ev;	 /* one-shot, made active by report_kick */
	struct event *retry_ev;	 /* periodic: publish what failed before */
	struct event *delete_ev; /* one-shot: deletes the acknowledged records (report_flush) */
	int64_t cursor;		 /* highest outbox id handed to Kafka */
	size_t in_flight;
	bool has_failed; /* a delivery failed: rewind the cursor */
	struct report_refused *refused;
	size_t n_refused, cap_refused;
	int64_t *acked; /* acknowledged by Kafka, not yet deleted from the outbox */
	size_t n_acked, cap_acked;
	char *source; /* the CDEvents' source, "/drover/<hostname>" (owned) */
};

struct report_delivery {
	struct report *r;
	int64_t outbox_id;
	bool is_dead_letter, is_without_value;
	size_t value_len;
};

static const char *report_outcome(enum status s)
{
	switch (s) {
	case STATUS_SUCCEEDED:
		return "success";
	case STATUS_FAILED:
	case STATUS_TIMED_OUT:
		return "failure";
	case STATUS_CANCELLED:
	case STATUS_SKIPPED:
		return "cancel";
	default:
		return "error";
	}
}

static void report_on_kick(evutil_socket_t fd, short what, void *arg);
static void report_on_delete(evutil_socket_t fd, short what, void *arg);

struct report *report_new(struct agent *a)
{
	struct report *r = xcalloc(1, sizeof *r);
	r->agent = a;
	/* The host name is read once: a CDEvent per stage phase must not cost a uname. */
	char host[256];
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	r->source = xasprintf("/drover/%s", host);
	r->kick_ev = event_new(a->base, -1, 0, report_on_kick, r);
	r->retry_ev = event_new(a->base, -1, EV_PERSIST, report_on_kick, r);
	r->delete_ev = event_new(a->base, -1, 0, report_on_delete, r);
	struct timeval tv = {1, 0};
	event_add(r->retry_ev, &tv);
	return r;
}

/*
 * The loop has stopped and kafka_free ran its last delivery reports: what
 * they acknowledged is deleted now, or it would be published again.
 */
void report_free(struct report *r)
{
	if (r == NULL)
		return;
	if (report_flush(r) != 0)
		log_warn(
		    "report: %zu acknowledged record(s) stay in the outbox; they are published "
		    "again at the next start",
		    r->n_acked);
	event_free(r->kick_ev);
	event_free(r->retry_ev);
	event_free(r->delete_ev);
	free(r->source);
	free(r->refused);
	free(r->acked);
	free(r);
}

int report_flush(struct report *r)
{
	if (r->n_acked == 0)
		return 0;
	if (store_outbox_delete_many(r->agent->store, r->acked, r->n_acked) != 0)
		return -1;
	r->n_acked = 0;
	return 0;
}

static void report_on_delete(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct report *r = arg;
	if (report_flush(r) != 0) {
		log_warn("report: deleting %zu acknowledged record(s) from the outbox failed; "
			 "trying again in %d ms",
			 r->n_acked, REPORT_DELETE_RETRY_MS);
		struct timeval tv = {REPORT_DELETE_RETRY_MS / 1000,
				     REPORT_DELETE_RETRY_MS % 1000 * 1000};
		evtimer_add(r->delete_ev, &tv);
	}
}

/*
 * Notes that Kafka acknowledged outbox record id; it is deleted with the
 * others of its batch, never before the acknowledgement. A crash before
 * that only publishes it again (with the same CDEvent id).
 */
static void report_acked(struct report *r, int64_t id)
{
	if (r->n_acked == r->cap_acked) {
		r->cap_acked = r->cap_acked == 0 ? 64 : r->cap_acked * 2;
		r->acked = xrealloc(r->acked, r->cap_acked * sizeof *r->acked);
	}
	r->acked[r->n_acked++] = id;
	if (r->in_flight == 0 || r->n_acked >= REPORT_DELETE_BATCH) {
		event_active(r->delete_ev, EV_TIMEOUT, 0); /* once, after this loop pass */
	} else if (!evtimer_pending(r->delete_ev, NULL)) {
		struct timeval tv = {0, REPORT_DELETE_DELAY_MS * 1000};
		evtimer_add(r->delete_ev, &tv);
	}
}

static struct report_refused *report_refused_find(struct report *r, int64_t outbox_id)
{
	for (size_t i = 0; i < r->n_refused; i++)
		if (r->refused[i].outbox_id == outbox_id)
			return &r->refused[i];
	return NULL;
}

static void report_refused_forget(struct report *r, int64_t outbox_id)
{
	struct report_refused *rf = report_refused_find(r, outbox_id);
	if (rf != NULL)
		*rf = r->refused[--r->n_refused];
}

/*
 * Kafka refused record outbox_id for good (why): decides what to do next
 * time (a dead letter with a value: send it without; else: skip it) and
 * says so in the log, once per step.
 */
static void report_refuse(struct report *r, int64_t outbox_id, bool is_dead_letter,
			  bool was_without_value, size_t value_len, const char *why)
{
	enum report_refusal what = is_dead_letter && !was_without_value && value_len > 0
				       ? REPORT_WITHOUT_VALUE
				       : REPORT_SKIP;
	struct report_refused *rf = report_refused_find(r, outbox_id);
	if (rf == NULL) {
		if (r->n_refused == r->cap_refused) {
			r->cap_refused = r->cap_refused == 0 ? 8 : r->cap_refused * 2;
			r->refused = xrealloc(r->refused, r->cap_refused * sizeof *r->refused);
		}
		rf = &r->refused[r->n_refused++];
		rf->outbox_id = outbox_id;
	} else if (rf->what >= what) {
		return;
	}
	rf->what = what;
	r->agent->metrics.kafka_errors++;
	if (what == REPORT_WITHOUT_VALUE)
		log_warn("report: Kafka refuses dead letter %lld (value of %zu bytes): %s; "
			 "publishing its headers without the value",
			 (long long)outbox_id, value_len, why);
	else
		log_error("report: Kafka refuses outbox record %lld: %s; it stays in the outbox "
			  "and is not sent again until a restart",
			  (long long)outbox_id, why);
}

/*
 * Hands ce to the notify plugins, with one member more than what is
 * published: "drover" (README, "Commit status"), the facts a reporter needs
 * and a CDEvent does not carry: {run, run_attempt, pipeline, stage,
 * stage_attempt, phase, status, sha, url, event (the canonical event, or
 * null)}. The published CloudEvent is left as it is.
 */
static void report_notify(struct report *r, const json_t *ce, const struct store_run *run,
			  const struct store_stage *stage, const char *phase, const char *url)
{
	struct agent *a = r->agent;
	if (a->plugins == NULL || !plugin_host_has_notify(a->plugins))
		return;
	json_t *event = run->event_id != NULL ? store_event_get(a->store, run->event_id) : NULL;
	const char *sha = run->sha;
	if (sha == NULL)
		sha = json_string_value(json_object_get(event, "sha"));
	json_t *facts = json_pack(
	    "{s:I,s:i,s:s,s:s?,s:i,s:s,s:s,s:s?,s:s,s:o}", "run", (json_int_t)run->id,
	    "run_attempt", run->attempt, "pipeline", run->pipeline, "stage",
	    stage != NULL ? stage->name : NULL, "stage_attempt", stage != NULL ? stage->attempt : 0,
	    "phase", phase, "status", status_name(stage != NULL ? stage->status : run->status),
	    "sha", sha, "url", url, "event", event != NULL ? event : json_null());
	json_t *copy = json_copy((json_t *)ce); /* shallow: members shared, not changed */
	json_object_set_new(copy, "drover", facts);
	plugin_host_notify(a->plugins, copy);
	json_decref(copy);
}

/* Wraps a CDEvent (context + subject) into a structured CloudEvent, shows it
 * to the notify plugins and puts it in the outbox. */
static int report_emit(struct report *r, const char *type, const char *id, const char *chain_id,
		       const char *key, json_t *subject, const struct store_run *run,
		       const struct store_stage *stage, const char *phase, const char *url)
{
	char ts[32];
	time_format_iso8601(now_ms(), ts, sizeof ts);
	const char *source = r->source;
	json_t *cdevent = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s?},s:o}", "context", "version",
				    "0.5.0", "id", id, "source", source, "type", type, "timestamp",
				    ts, "chainId", chain_id, "subject", subject);
	json_t *ce = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "specversion", "1.0", "id", id,
			       "source", source, "type", type, "time", ts, "datacontenttype",
			       "application/json", "data", cdevent);
	report_notify(r, ce, run, stage, phase, url);
	char *text = json_dumps(ce, JSON_COMPACT);
	json_decref(ce);
	int64_t oid = store_outbox_add(r->agent->store, r->agent->cfg->kafka.results_topic, key,
				       text, strlen(text));
	free(text);
	if (oid < 0)
		return -1;
	report_kick(r);
	return 0;
}

static char *report_run_url(struct report *r, int64_t run_id)
{
	return xasprintf("http://%s/api/v1/runs/%lld", r->agent->cfg->admin.listen,
			 (long long)run_id);
}

int report_pipelinerun(struct report *r, const struct store_run *run, const char *phase)
{
	char *id = xasprintf("drover-run-%lld-a%d-%s", (long long)run->id, run->attempt, phase);
	char *type = xasprintf("dev.cdevents.pipelinerun.%s.0.3.0", phase);
	char *subject_id = xasprintf("%lld", (long long)run->id);
	char *url = report_run_url(r, run->id);
	json_t *content = json_pack("{s:s,s:s}", "pipelineName", run->pipeline, "url", url);
	if (strcmp(phase, "finished") == 0) {
		json_object_set_new(content, "outcome", json_string(report_outcome(run->status)));
		if (run->status != STATUS_SUCCEEDED)
			json_object_set_new(content, "errors",
					    json_string(status_name(run->status)));
	}
	json_t *subject =
	    json_pack("{s:s,s:s,s:o}", "id", subject_id, "source", "/drover", "content", content);
	int rc = report_emit(r, type, id, run->event_id, run->repo, subject, run, NULL, phase, url);
	free(id);
	free(type);
	free(subject_id);
	free(url);
	return rc;
}

int report_taskrun(struct report *r, const struct store_run *run, const struct store_stage *stage,
		   const char *phase)
{
	char *id = xasprintf("drover-run-%lld-%s-a%d-%s", (long long)run->id, stage->name,
			     stage->attempt, phase);
	char *type = xasprintf("dev.cdevents.taskrun.%s.0.3.0", phase);
	char *subject_id = xasprintf("%lld/%s/%d", (long long)run->id, stage->name, stage->attempt);
	char *run_id = xasprintf("%lld", (long long)run->id);
	char *url = report_run_url(r, run->id);
	json_t *content = json_pack("{s:s,s:{s:s,s:s},s:s}", "taskName", stage->name, "pipelineRun",
				    "id", run_id, "source", "/drover", "url", url);
	if (strcmp(phase, "finished") == 0) {
		json_object_set_new(content, "outcome", json_string(report_outcome(stage->status)));
		if (stage->summary != NULL)
			json_object_set_new(content, "errors", json_string(stage->summary));
	}
	json_t *subject =
	    json_pack("{s:s,s:s,s:o}", "id", subject_id, "source", "/drover", "content", content);
	int rc =
	    report_emit(r, type, id, run->event_id, run->repo, subject, run, stage, phase, url);
	free(id);
	free(type);
	free(subject_id);
	free(run_id);
	free(url);
	return rc;
}

int report_dead_letter(struct report *r, const void *key, size_t key_len, const void *value,
		       size_t value_len, const void *headers, size_t headers_len, const char *error)
{
	rd_kafka_headers_t *h = kafka_headers_unpack(headers, headers_len);
	rd_kafka_header_add(h, "x-drover-error", -1, error, -1);
	size_t packed_len;
	void *packed = kafka_headers_pack(h, &packed_len);
	rd_kafka_headers_destroy(h);
	int64_t oid = store_outbox_add_full(r->agent->store, r->agent->cfg->kafka.dead_letter_topic,
					    key, key_len, value, value_len, packed, packed_len);
	free(packed);
	if (oid < 0)
		return -1;
	report_kick(r);
	return 0;
}

static void report_delivered(void *arg, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
	(void)partition, (void)offset;
	struct report_delivery *d = arg;
	struct report *r = d->r;
	r->in_flight--;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		report_refused_forget(r, d->outbox_id);
		r->agent->metrics.results_published++;
		report_acked(r, d->outbox_id);
	} else if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
		   err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
		/* Purged at stop: kafka_free counted them; the next start sends them. */
		r->has_failed = true;
	} else if (kafka_is_refusal(err)) {
		r->has_failed = true;
		report_refuse(r, d->outbox_id, d->is_dead_letter, d->is_without_value, d->value_len,
			      rd_kafka_err2str(err));
	} else {
		r->agent->metrics.kafka_errors++;
		r->has_failed = true;
		log_warn("report: outbox record %lld not delivered (%s); will retry",
			 (long long)d->outbox_id, rd_kafka_err2str(err));
	}
	free(d);
	if (r->in_flight == 0)
		report_kick(r);
}

/*
 * Hands one outbox item to Kafka (without its value, plus a header saying
 * so, when is_without_value). kafka_produce's result: 0, -1 (try later) or
 * -2 (refused).
 */
static int report_send(struct report *r, const struct store_outbox_item *item,
		       bool is_without_value)
{
	struct report_delivery *d = xmalloc(sizeof *d);
	d->r = r;
	d->outbox_id = item->id;
	d->is_dead_letter = strcmp(item->topic, r->agent->cfg->kafka.dead_letter_topic) == 0;
	d->is_without_value = is_without_value;
	d->value_len = item->value_len;
	rd_kafka_headers_t *h =
	    item->headers_len > 0 ? kafka_headers_unpack(item->headers, item->headers_len) : NULL;
	if (is_without_value) {
		char note[96];
		snprintf(note, sizeof note, "%zu bytes: too large for Kafka", item->value_len);
		if (h == NULL)
			h = rd_kafka_headers_new(1);
		rd_kafka_header_add(h, "x-drover-value-omitted", -1, note, -1);
	}
	/* A null value (a tombstone's dead letter) stays null, an empty one empty. */
	bool is_null = is_without_value || item->is_value_null;
	int rc = kafka_produce_bytes(r->agent->kafka, item->topic, item->key, item->key_len,
				     is_null ? NULL : item->value, is_null ? 0 : item->value_len, h,
				     report_delivered, d);
	if (rc != 0) {
		if (h != NULL)
			rd_kafka_headers_destroy(h);
		if (rc == -2)
			report_refuse(r, item->id, d->is_dead_letter, is_without_value,
				      item->value_len, "too large for the producer");
		free(d);
		return rc;
	}
	r->in_flight++;
	return 0;
}

static void report_publish(struct report *r)
{
	if (r->agent->kafka == NULL)
		return;
	if (r->has_failed && r->in_flight == 0) {
		/* Everything still in the outbox is re-sent, oldest first: what
		 * was acknowledged must be gone first, or it would go twice. */
		if (report_flush(r) != 0)
			return; /* report_on_delete tries again; so does the timer */
		r->cursor = 0;
		r->has_failed = false;
	}
	while (r->in_flight < REPORT_MAX_IN_FLIGHT) {
		struct store_outbox_item *items;
		size_t n;
		if (store_outbox_next(r->agent->store, r->cursor, 64, &items, &n) != 0 || n == 0)
			return;
		for (size_t i = 0; i < n; i++) {
			int rc = 0;
			/* A refused record may go again without its value, or not at all. */
			for (int tries = 0; tries < 2; tries++) {
				const struct report_refused *rf =
				    report_refused_find(r, items[i].id);
				if (rf != NULL && rf->what == REPORT_SKIP)
					break;
				rc = report_send(r, &items[i], rf != NULL);
				if (rc != -2)
					break;
			}
			if (rc == -1) {
				store_outbox_items_free(items, n);
				return; /* queue full: the timer tries again */
			}
			r->cursor = items[i].id;
		}
		store_outbox_items_free(items, n);
	}
}

static void report_on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	report_publish(arg);
}

void report_kick(struct report *r)
{
	event_active(r->kick_ev, EV_TIMEOUT, 0); /* once per loop pass, however often asked */
}

size_t report_in_flight(const struct report *r)
{
	return r->in_flight;
}
