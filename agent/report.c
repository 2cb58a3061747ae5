/*
 * report: builds CDEvents, keeps them in the outbox, publishes the outbox.
 * CDEvent ids are deterministic (run, stage, attempt, phase), so a consumer
 * can drop a duplicate that a crash between produce and delete caused.
 */
#include "report.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "kafka.h"
#include "log.h"
#include "plugin_host.h"
#include "util.h"

#define REPORT_MAX_IN_FLIGHT 512

struct report {
	struct agent *agent;
	struct event *kick_ev;	/* one-shot, made active by report_kick */
	struct event *retry_ev; /* periodic: publish what failed before */
	int64_t cursor;		/* highest outbox id handed to Kafka */
	size_t in_flight;
	bool has_failed; /* a delivery failed: rewind the cursor */
};

struct report_delivery {
	struct report *r;
	int64_t outbox_id;
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

struct report *report_new(struct agent *a)
{
	struct report *r = xcalloc(1, sizeof *r);
	r->agent = a;
	r->kick_ev = event_new(a->base, -1, 0, report_on_kick, r);
	r->retry_ev = event_new(a->base, -1, EV_PERSIST, report_on_kick, r);
	struct timeval tv = {1, 0};
	event_add(r->retry_ev, &tv);
	return r;
}

void report_free(struct report *r)
{
	if (r == NULL)
		return;
	event_free(r->kick_ev);
	event_free(r->retry_ev);
	free(r);
}

static char *report_hostname(void)
{
	char host[256];
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	return xstrdup(host);
}

/* Wraps a CDEvent (context + subject) into a structured CloudEvent and puts it in the outbox. */
static int report_emit(struct report *r, const char *type, const char *id, const char *chain_id,
		       const char *key, json_t *subject)
{
	char ts[32];
	time_format_iso8601(now_ms(), ts, sizeof ts);
	char *host = report_hostname();
	char *source = xasprintf("/drover/%s", host);
	free(host);
	json_t *cdevent = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s?},s:o}", "context", "version",
				    "0.5.0", "id", id, "source", source, "type", type, "timestamp",
				    ts, "chainId", chain_id, "subject", subject);
	json_t *ce = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "specversion", "1.0", "id", id,
			       "source", source, "type", type, "time", ts, "datacontenttype",
			       "application/json", "data", cdevent);
	free(source);
	if (r->agent->plugins != NULL)
		plugin_host_notify(r->agent->plugins, ce);
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
	int rc = report_emit(r, type, id, run->event_id, run->repo, subject);
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
	int rc = report_emit(r, type, id, run->event_id, run->repo, subject);
	free(id);
	free(type);
	free(subject_id);
	free(run_id);
	free(url);
	return rc;
}

int report_dead_letter(struct report *r, const char *key, const void *value, size_t value_len,
		       const void *headers, size_t headers_len, const char *error)
{
	rd_kafka_headers_t *h = kafka_headers_unpack(headers, headers_len);
	rd_kafka_header_add(h, "x-drover-error", -1, error, -1);
	size_t packed_len;
	void *packed = kafka_headers_pack(h, &packed_len);
	rd_kafka_headers_destroy(h);
	int64_t oid = store_outbox_add_full(r->agent->store, r->agent->cfg->kafka.dead_letter_topic,
					    key, value, value_len, packed, packed_len);
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
		if (store_outbox_delete(r->agent->store, d->outbox_id) == 0)
			r->agent->metrics.results_published++;
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

static void report_publish(struct report *r)
{
	if (r->agent->kafka == NULL)
		return;
	if (r->has_failed && r->in_flight == 0) {
		/* Everything still in the outbox is re-sent, oldest first. */
		r->cursor = 0;
		r->has_failed = false;
	}
	while (r->in_flight < REPORT_MAX_IN_FLIGHT) {
		struct store_outbox_item *items;
		size_t n;
		if (store_outbox_next(r->agent->store, r->cursor, 64, &items, &n) != 0 || n == 0)
			return;
		for (size_t i = 0; i < n; i++) {
			struct report_delivery *d = xmalloc(sizeof *d);
			d->r = r;
			d->outbox_id = items[i].id;
			rd_kafka_headers_t *h =
			    items[i].headers_len > 0
				? kafka_headers_unpack(items[i].headers, items[i].headers_len)
				: NULL;
			if (kafka_produce(r->agent->kafka, items[i].topic, items[i].key,
					  items[i].value, items[i].value_len, h, report_delivered,
					  d) != 0) {
				if (h != NULL)
					rd_kafka_headers_destroy(h);
				free(d);
				store_outbox_items_free(items, n);
				return; /* queue full or broker trouble: the timer tries again */
			}
			r->in_flight++;
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
