/*
 * intake: consumer on the loop (DESIGN §7): the consumer queue wakes the
 * loop through a pipe; a timer polls too so an idle consumer keeps its
 * group membership. A record is recorded in SQLite (event, runs or dead
 * letter) before its offset is committed, so a crash redelivers it and the
 * unique event id turns the redelivery into a no-op; the commits themselves,
 * and the runs held until a commit covers them, belong to offsets.c.
 */
#include "intake.h"

#include <event2/event.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "event.h"
#include "kafka.h"
#include "log.h"
#include "offsets.h"
#include "replay.h"
#include "report.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

#define INTAKE_BATCH 256
/* Records taken in one go (a full batch or more) after which an empty queue
 * means librdkafka's prefetch queue may have filled up (intake_after_backlog). */
#define INTAKE_BACKLOG INTAKE_BATCH

struct intake {
	struct agent *agent;
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;
	int wake_fds[2];
	struct event *wake_ev, *poll_timer;
	bool is_paused;
	bool is_assigned;
	size_t n_backlog;	 /* records taken since the consumer queue was last empty */
	struct offsets *offsets; /* commits, claims, held events (owned) */
	int connected;		 /* a broker is up: -1 not known yet, 0 no, 1 yes */
	json_t *lag;		 /* {"<partition>": lag} from the last statistics (owned) */
};

static void intake_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			     rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	(void)rk;
	struct intake *in = opaque;
	if (err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		offsets_on_commit(in->offsets, err, parts);
}

/*
 * This agent's id in the ownership histories: made once per state
 * directory (agent-id, random) and kept, so a restarted agent knows its own
 * claims. NULL with a message when it can be neither read nor made.
 */
static char *intake_agent_id(const char *state_dir, char *err, size_t err_len)
{
	char *path = xasprintf("%s/agent-id", state_dir);
	size_t len = 0;
	char *text = file_read_all(path, 4096, &len);
	if (text != NULL) {
		text[strcspn(text, " \r\n")] = '\0';
		if (text[0] != '\0') {
			free(path);
			return text;
		}
		free(text);
	}
	unsigned char raw[8];
	FILE *r = fopen("/dev/urandom", "rb");
	bool is_ok = r != NULL && fread(raw, 1, sizeof raw, r) == sizeof raw;
	if (r != NULL)
		fclose(r);
	char *id = NULL;
	if (is_ok) {
		id = xasprintf("d%02x%02x%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3],
			       raw[4], raw[5], raw[6], raw[7]);
		FILE *f = fopen(path, "wx");
		is_ok = f != NULL && fprintf(f, "%s\n", id) > 0;
		if (f != NULL && (fflush(f) != 0 || fsync(fileno(f)) != 0))
			is_ok = false;
		if (f != NULL && fclose(f) != 0)
			is_ok = false;
	}
	if (!is_ok) {
		snprintf(err, err_len, "cannot make this agent's id in %s: %m", path);
		free(id);
		id = NULL;
	}
	free(path);
	return id;
}

/* Partitions that could not be claimed are not consumed until they are. */
static void intake_pause_unclaimed(struct intake *in, const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++)
		if (!offsets_is_claimed(in->offsets, parts->elems[i].partition))
			rd_kafka_topic_partition_list_add(l, parts->elems[i].topic,
							  parts->elems[i].partition);
	if (l->cnt > 0) {
		rd_kafka_pause_partitions(in->rk, l);
		log_warn("intake: %d partition(s) not claimed yet: not consumed until they are",
			 l->cnt);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

static void intake_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			     rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct intake *in = opaque;
	bool is_cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("intake: assigned %d partition(s)", parts->cnt);
		/* Claimed before consumed: the ownership history gets this agent. */
		int n_unclaimed = offsets_claim(in->offsets, parts);
		if (is_cooperative) {
			rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
			if (e != NULL) {
				log_error("intake: incremental assign: %s",
					  rd_kafka_error_string(e));
				rd_kafka_error_destroy(e);
			}
		} else {
			rd_kafka_assign(rk, parts);
		}
		in->is_assigned = true;
		in->connected = 1;
		if (in->is_paused)
			rd_kafka_pause_partitions(rk, parts);
		else if (n_unclaimed > 0)
			intake_pause_unclaimed(in, parts);
	} else {
		bool is_lost = rd_kafka_assignment_lost(rk);
		log_info("intake: %s %d partition(s)", is_lost ? "lost" : "revoked", parts->cnt);
		offsets_revoke(in->offsets, parts, is_lost, in->connected == 1);
		/*
		 * librdkafka keeps a partition's pause flag after the partition
		 * leaves the assignment: one revoked while paused and assigned
		 * back after the intake resumed would never be fetched again (a
		 * real broker showed it: its events stayed in Kafka). Let go of
		 * partitions unpaused; assigning pauses what comes in.
		 */
		if (in->is_paused)
			rd_kafka_resume_partitions(rk, parts);
		if (is_cooperative) {
			rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
			if (e != NULL)
				rd_kafka_error_destroy(e);
		} else {
			rd_kafka_assign(rk, NULL);
			in->is_assigned = false;
		}
	}
}

/*
 * librdkafka's statistics (every second, on the loop): whether any broker
 * is up, for readiness, and the consumer lag of each assigned partition.
 */
static int intake_stats(rd_kafka_t *rk, char *text, size_t len, void *opaque)
{
	(void)rk;
	struct intake *in = opaque;
	bool is_up;
	json_t *lag;
	if (kafka_stats_parse(text, len, in->agent->cfg->kafka.events_topic, &is_up, &lag) != 0)
		return 0;
	if ((int)is_up != in->connected) {
		if (is_up)
			log_info("intake: connected to Kafka at %s",
				 kafka_brokers(in->agent->kafka));
		else
			log_warn("intake: no Kafka broker reachable at %s: retrying (not ready)",
				 kafka_brokers(in->agent->kafka));
		in->connected = is_up;
	}
	json_decref(in->lag);
	in->lag = lag;
	return 0; /* librdkafka frees text */
}

/* The record's headers as event_header views (pointing into the message). */
static size_t intake_headers(const rd_kafka_message_t *m, struct event_header *out, size_t max)
{
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || h == NULL)
		return 0;
	size_t n = 0;
	const char *name;
	const void *value;
	size_t size;
	while (n < max &&
	       rd_kafka_header_get_all(h, n, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		out[n].name = name;
		out[n].value = value != NULL ? value : "";
		out[n].value_len = value != NULL ? size : 0;
		n++;
	}
	return n;
}

/* Sends the record as it came to the dead letter (via the outbox). */
static int intake_dead_letter(struct intake *in, const rd_kafka_message_t *m, const char *why)
{
	rd_kafka_headers_t *h = NULL;
	size_t blob_len = 0;
	void *blob = NULL;
	if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
		blob = kafka_headers_pack(h, &blob_len);
	/* Key and value go as bytes: a key may start with a zero byte (Confluent's
	 * serializers), and a null value (a tombstone) must stay null. */
	int rc = report_dead_letter(in->agent->report, m->key, m->key_len, m->payload, m->len, blob,
				    blob_len, why);
	free(blob);
	return rc;
}

/* What a batch recorded: the runs to queue after the commit, and counts. */
struct intake_runs {
	char **held; /* per record of the batch: the id of its held event, or NULL (owned) */
	size_t *n_held_runs; /* per record: how many runs the held event has */
	uint64_t n_accepted, n_unmatched, n_refused, n_duplicate, n_ignored;
	uint64_t n_malformed, n_unknown, n_too_large;
};

/*
 * Decides what one valid event starts, all inside the caller's transaction.
 * Returns how many runs were created, or -1.
 */
static int intake_admit(struct intake *in, struct intake_runs *runs, const char *id, json_t *ev,
			const rd_kafka_message_t *m, int64_t **run_ids)
{
	struct agent *a = in->agent;
	const char *repo = json_string_value(json_object_get(ev, "repo"));
	if (a->cfg->n_repos > 0 && (repo == NULL || config_find_repo(a->cfg, repo) == NULL)) {
		log_warn("intake: event %s: repository '%s' is not configured: refused", id,
			 repo != NULL ? repo : "(none)");
		runs->n_refused++;
		metrics_event_seen(&a->metrics, ev, "refused");
		int rc =
		    store_event_insert(a->store, id, ev, "refused", "repository not configured",
				       rd_kafka_topic_name(m->rkt), m->partition, m->offset);
		return rc < 0 ? -1 : 0;
	}
	/* drover's replay command (replay.h) starts no pipeline of its own. */
	if (json_object_get(ev, "replay") != NULL) {
		int64_t run_id = 0;
		bool is_refused = false;
		int rc = replay_admit(a, id, ev, rd_kafka_topic_name(m->rkt), m->partition,
				      m->offset, &run_id, &is_refused);
		runs->n_refused += is_refused ? 1 : 0;
		if (rc == 1) {
			runs->n_accepted++;
			*run_ids = xcalloc(1, sizeof **run_ids);
			(*run_ids)[0] = run_id;
		}
		return rc;
	}
	/* Match once; the runs are created only if the event is new. */
	const struct pipeline **matched = xcalloc(a->pipelines.n, sizeof *matched);
	size_t n_matched = 0;
	/* The reason a pipeline did not match is only formatted to be logged. */
	bool is_why_logged = log_is_enabled(LOG_DEBUG);
	for (size_t i = 0; i < a->pipelines.n; i++) {
		const struct pipeline *p = a->pipelines.items[i];
		char why[256];
		if (pipeline_match(p, ev, is_why_logged ? why : NULL,
				   is_why_logged ? sizeof why : 0))
			matched[n_matched++] = p;
		else
			log_debug("intake: event %s: pipeline %s: %s", id, p->name, why);
	}
	/* An event that starts runs is held until a commit covers it (offsets.h). */
	int rc = store_event_insert_held(a->store, id, ev, n_matched > 0 ? "accepted" : "unmatched",
					 NULL, rd_kafka_topic_name(m->rkt), m->partition, m->offset,
					 n_matched > 0);
	if (rc != 0) {
		free(matched);
		return rc < 0 ? -1 : -2; /* -2: a duplicate */
	}
	*run_ids = xcalloc(n_matched, sizeof **run_ids);
	int n = 0;
	for (size_t i = 0; i < n_matched; i++) {
		int64_t run_id = scheduler_run_create_held(a->sched, matched[i], ev);
		if (run_id < 0) {
			free(matched);
			return -1;
		}
		(*run_ids)[n++] = run_id;
	}
	free(matched);
	if (n == 0)
		runs->n_unmatched++;
	else
		runs->n_accepted++;
	metrics_event_seen(&a->metrics, ev, n == 0 ? "unmatched" : "accepted");
	return n;
}

/*
 * Records one record inside the batch's transaction: its event and runs, or
 * its dead letter. Appends the runs it created to *runs. 0, or -1 when the
 * store failed (the whole batch is then rolled back and redelivered).
 */
static int intake_handle(struct intake *in, const rd_kafka_message_t *m, size_t idx,
			 struct intake_runs *runs)
{
	struct agent *a = in->agent;
	struct event_header headers[64];
	struct event_input input = {
	    .topic = rd_kafka_topic_name(m->rkt),
	    .partition = m->partition,
	    .offset = m->offset,
	    .headers = headers,
	    .n_headers = intake_headers(m, headers, ARRAY_LEN(headers)),
	    .payload = m->payload != NULL ? m->payload : "",
	    .payload_len = m->len,
	    .received_at_ms = now_ms(),
	};
	struct event_options opt;
	config_event_options(a->cfg, &opt);
	json_t *ev = NULL;
	char err[512];
	enum event_outcome outcome = event_normalize(&input, &opt, &ev, err, sizeof err);
	int rc = 0;
	switch (outcome) {
	case EVENT_OK: {
		const char *id = json_string_value(json_object_get(ev, "id"));
		int64_t *run_ids = NULL;
		int n = intake_admit(in, runs, id, ev, m, &run_ids);
		if (n == -2) {
			runs->n_duplicate++;
			metrics_event_seen(&a->metrics, ev, "duplicate");
			log_info("intake: event %s seen before: nothing new started", id);
		} else if (n >= 0) {
			/* Events that start nothing are counted and stored (drover plan
			 * says why); only at debug level do they get a line each. */
			log_msg(n > 0 ? LOG_INFO : LOG_DEBUG,
				"intake: event %s (%s %s %s) from %s[%d]@%lld: %d run(s)", id,
				json_string_value(json_object_get(ev, "kind")),
				json_string_value(json_object_get(ev, "action")),
				json_string_value(json_object_get(ev, "repo")), input.topic,
				m->partition, (long long)m->offset, n);
			if (n > 0) {
				runs->held[idx] = xstrdup(id);
				runs->n_held_runs[idx] = (size_t)n;
			}
		} else {
			rc = -1;
		}
		free(run_ids);
		break;
	}
	case EVENT_IGNORED:
		runs->n_ignored++;
		metrics_event_seen(&a->metrics, ev, "ignored");
		log_info("intake: %s[%d]@%lld ignored: %s", input.topic, m->partition,
			 (long long)m->offset, err);
		break;
	default:
		log_warn("intake: %s[%d]@%lld dead-lettered (%s): %s", input.topic, m->partition,
			 (long long)m->offset, event_outcome_name(outcome), err);
		if (intake_dead_letter(in, m, err) != 0) {
			rc = -1;
			break;
		}
		metrics_event_seen(&a->metrics, ev, event_outcome_name(outcome));
		if (outcome == EVENT_MALFORMED)
			runs->n_malformed++;
		else if (outcome == EVENT_UNKNOWN)
			runs->n_unknown++;
		else
			runs->n_too_large++;
		break;
	}
	json_decref(ev);
	return rc;
}

/* Not recorded: rewinds each partition to its first record of the batch. */
static void intake_rewind(struct intake *in, rd_kafka_message_t **batch, size_t n)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	for (size_t i = 0; i < n; i++) {
		const char *topic = rd_kafka_topic_name(batch[i]->rkt);
		if (rd_kafka_topic_partition_list_find(l, topic, batch[i]->partition) != NULL)
			continue;
		rd_kafka_topic_partition_list_add(l, topic, batch[i]->partition)->offset =
		    batch[i]->offset;
		log_error("intake: could not record %s[%d] from offset %lld; it will be "
			  "redelivered",
			  topic, batch[i]->partition, (long long)batch[i]->offset);
	}
	rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, l, 0);
	if (e != NULL) {
		log_error("intake: rewinding: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

static void intake_runs_clear(struct intake_runs *runs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(runs->held[i]);
	free(runs->held);
	free(runs->n_held_runs);
}

/*
 * Records a batch of records in ONE transaction (one fsync however many
 * records), then hands their offsets to offsets.c, which commits them and
 * starts the held runs once Kafka acknowledged the commit: an offset moves
 * only after its record is durable, and a run starts only after its offset
 * moved.
 */
static void intake_record_batch(struct intake *in, rd_kafka_message_t **batch, size_t n)
{
	struct agent *a = in->agent;
	struct intake_runs runs = {.held = xcalloc(n, sizeof *runs.held),
				   .n_held_runs = xcalloc(n, sizeof *runs.n_held_runs)};
	bool is_ok = store_begin(a->store) == 0;
	for (size_t i = 0; is_ok && i < n; i++)
		is_ok = intake_handle(in, batch[i], i, &runs) == 0;
	if (!is_ok || store_commit(a->store) != 0) {
		store_rollback(a->store);
		metrics_events_settle(&a->metrics, false);
		intake_rewind(in, batch, n);
		intake_runs_clear(&runs, n);
		return;
	}
	a->metrics.events_received += n;
	a->metrics.events_duplicate += runs.n_duplicate;
	a->metrics.events_ignored += runs.n_ignored;
	a->metrics.events_malformed += runs.n_malformed;
	a->metrics.events_unknown += runs.n_unknown;
	a->metrics.events_too_large += runs.n_too_large;
	a->metrics.events_dead_lettered += runs.n_malformed + runs.n_unknown + runs.n_too_large;
	a->metrics.events_accepted += runs.n_accepted;
	a->metrics.events_unmatched += runs.n_unmatched;
	a->metrics.events_refused += runs.n_refused;
	metrics_events_settle(&a->metrics, true);
	for (size_t i = 0; i < n; i++)
		offsets_recorded(in->offsets, batch[i]->partition, batch[i]->offset, runs.held[i],
				 runs.n_held_runs[i]);
	intake_runs_clear(&runs, n);
	offsets_commit(in->offsets);
}

static bool intake_is_full(const struct intake *in, size_t n_pending_runs)
{
	const struct agent *a = in->agent;
	return scheduler_active_runs(a->sched) + offsets_held_runs(in->offsets) + n_pending_runs >=
	       (size_t)a->cfg->max_queued_runs;
}

/*
 * Takes what the consumer queue holds (up to INTAKE_BATCH records) and
 * records it as one batch. The high-water mark is checked for every record,
 * counting the runs the batch would add.
 */
static void intake_wake_fetcher(struct intake *in, rd_kafka_topic_partition_list_t *parts);

/*
 * The queue ran dry after a backlog: librdkafka 2.0 stops fetching while its
 * prefetch queue is full and looks again only about a second later, so an
 * agent that drains 4 MiB in a tenth of a second would idle for the rest.
 * Restarting the fetch (as a resume does) avoids the wait.
 */
static void intake_after_backlog(struct intake *in)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	if (in->is_paused || rd_kafka_assignment(in->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	intake_wake_fetcher(in, parts);
	rd_kafka_topic_partition_list_destroy(parts);
}

static void intake_poll(struct intake *in)
{
	rd_kafka_message_t *batch[INTAKE_BATCH];
	size_t n = 0, n_runs_estimate = 0;
	bool is_more = false, is_dry_after_backlog = false;
	while (n < INTAKE_BATCH) {
		if (!in->is_paused && intake_is_full(in, n_runs_estimate)) {
			log_info("intake: %zu runs queued or running (high-water mark %d): pausing",
				 scheduler_active_runs(in->agent->sched) +
				     offsets_held_runs(in->offsets) + n_runs_estimate,
				 in->agent->cfg->max_queued_runs);
			intake_set_paused(in, true);
		}
		/* Paused partitions deliver nothing; polling still serves the group. */
		rd_kafka_message_t *m = rd_kafka_consumer_poll(in->rk, 0);
		if (m == NULL) {
			if (in->n_backlog + n >= INTAKE_BACKLOG)
				is_dry_after_backlog = true;
			in->n_backlog = 0;
			break;
		}
		if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			batch[n++] = m;
			/* Every record may start a run: a cheap upper bound per record. */
			n_runs_estimate++;
			continue;
		}
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			in->agent->metrics.kafka_errors++;
			log_warn("intake: %s", rd_kafka_message_errstr(m));
		}
		rd_kafka_message_destroy(m);
		if (in->agent->is_stopping)
			break;
	}
	is_more = n == INTAKE_BATCH;
	if (is_more)
		in->n_backlog += n;
	if (n > 0)
		intake_record_batch(in, batch, n);
	if (is_dry_after_backlog)
		intake_after_backlog(in);
	for (size_t i = 0; i < n; i++)
		rd_kafka_message_destroy(batch[i]);
	/* A full batch: yield to the loop, then continue. */
	if (is_more && !in->agent->is_stopping)
		event_active(in->wake_ev, EV_READ, 0);
}

static void intake_on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	char buf[64];
	while (read(fd, buf, sizeof buf) > 0)
		;
	intake_poll(arg);
}

static void intake_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	struct intake *in = arg;
	intake_poll(in);
	if (offsets_tick(in->offsets, in->connected == 1) > 0 && !in->is_paused) {
		/* Partitions claimed late: consume them now. */
		in->is_paused = true;
		intake_set_paused(in, false);
	}
}

struct intake *intake_new(struct agent *a, char *err, size_t err_len)
{
	struct intake *in = xcalloc(1, sizeof *in);
	in->agent = a;
	in->wake_fds[0] = in->wake_fds[1] = -1;
	in->connected = -1;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_opaque(conf, in);
	rd_kafka_conf_set_rebalance_cb(conf, intake_rebalance);
	rd_kafka_conf_set_stats_cb(conf, intake_stats);
	rd_kafka_conf_set_offset_commit_cb(conf, intake_committed);
	/*
	 * Defaults kafka.properties may change: the prefetch queue is capped at
	 * 4 MiB (not 64 MiB), so a paused intake holds little in memory.
	 */
	/* A member that died is noticed after 10 s (librdkafka: 45 s); the same
	 * bound holds a stop during a broker outage. */
	rd_kafka_conf_set(conf, "session.timeout.ms", "10000", NULL, 0);
	rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "4096", NULL, 0);
	rd_kafka_conf_set(conf, "queued.min.messages", "10000", NULL, 0);
	if (kafka_conf_apply(conf, a->cfg, kafka_brokers(a->kafka), err, err_len) != 0 ||
	    rd_kafka_conf_set(conf, "statistics.interval.ms", "1000", err, err_len) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "group.id", a->cfg->kafka.group, err, err_len) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, err_len) !=
		RD_KAFKA_CONF_OK ||
	    /* drover commits itself, with the ownership history (offsets.h) */
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, err_len) !=
		RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, err_len) !=
		RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(conf);
		free(in);
		return NULL;
	}
	in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, err_len);
	if (in->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		free(in);
		return NULL;
	}
	char *agent_id = intake_agent_id(a->cfg->state_dir, err, err_len);
	if (agent_id == NULL) {
		rd_kafka_destroy(in->rk);
		free(in);
		return NULL;
	}
	in->offsets = offsets_new(a, in->rk, a->cfg->kafka.events_topic, agent_id);
	free(agent_id);
	rd_kafka_poll_set_consumer(in->rk);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, a->cfg->kafka.events_topic,
					  RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t e = rd_kafka_subscribe(in->rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, err_len, "subscribe to %s: %s", a->cfg->kafka.events_topic,
			 rd_kafka_err2str(e));
		rd_kafka_destroy(in->rk);
		offsets_free(in->offsets);
		free(in);
		return NULL;
	}
	if (pipe2(in->wake_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, err_len, "pipe: %m");
		rd_kafka_destroy(in->rk);
		offsets_free(in->offsets);
		free(in);
		return NULL;
	}
	in->queue = rd_kafka_queue_get_consumer(in->rk);
	rd_kafka_queue_io_event_enable(in->queue, in->wake_fds[1], "1", 1);
	in->wake_ev = event_new(a->base, in->wake_fds[0], EV_READ | EV_PERSIST, intake_on_wake, in);
	event_add(in->wake_ev, NULL);
	in->poll_timer = event_new(a->base, -1, EV_PERSIST, intake_on_timer, in);
	struct timeval tv = {0, 250 * 1000};
	event_add(in->poll_timer, &tv);
	log_info("intake: consuming %s as group %s from %s", a->cfg->kafka.events_topic,
		 a->cfg->kafka.group, kafka_brokers(a->kafka));
	return in;
}

/*
 * Leaves the group with the final offsets committed, but never for longer
 * than INTAKE_CLOSE_MS: a broker that is down must not keep the agent from
 * stopping (the offsets not committed are redelivered and deduplicated).
 */
#define INTAKE_CLOSE_MS 10000

void intake_free(struct intake *in)
{
	if (in == NULL)
		return;
	event_free(in->wake_ev);
	event_free(in->poll_timer);
	/* What was recorded is committed, and its held runs released, first. */
	offsets_flush(in->offsets, in->connected == 1);
	rd_kafka_queue_io_event_enable(in->queue, -1, NULL, 0);
	rd_kafka_queue_destroy(in->queue);
	rd_kafka_queue_t *q = rd_kafka_queue_new(in->rk);
	rd_kafka_error_t *e = rd_kafka_consumer_close_queue(in->rk, q);
	if (e != NULL) {
		log_warn("intake: closing the consumer: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	} else {
		int64_t deadline = mono_ms() + INTAKE_CLOSE_MS;
		while (!rd_kafka_consumer_closed(in->rk) && mono_ms() < deadline) {
			rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
			if (ev == NULL)
				continue;
			if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
				intake_rebalance(in->rk, rd_kafka_event_error(ev),
						 rd_kafka_event_topic_partition_list(ev), in);
			rd_kafka_event_destroy(ev);
		}
		if (!rd_kafka_consumer_closed(in->rk))
			log_warn("intake: the broker did not answer within %d ms: leaving the "
				 "group without committing (events since the last commit will "
				 "be redelivered and recognised)",
				 INTAKE_CLOSE_MS);
	}
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy_flags(in->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	close(in->wake_fds[0]);
	close(in->wake_fds[1]);
	json_decref(in->lag);
	offsets_free(in->offsets);
	free(in);
}

/*
 * librdkafka 2.0's fetcher notices a resume only at its next wake-up, up to
 * a second later: with a small high-water mark that second dominated every
 * pause/resume cycle. A seek wakes it at once; seeking to the application's
 * position (the next record to handle) neither skips nor repeats anything.
 * Partitions with no position yet (nothing consumed since assigned) are
 * left to the fetcher.
 */
static void intake_wake_fetcher(struct intake *in, rd_kafka_topic_partition_list_t *parts)
{
	if (rd_kafka_position(in->rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *p = &parts->elems[i];
		if (p->offset >= 0)
			rd_kafka_topic_partition_list_add(seek, p->topic, p->partition)->offset =
			    p->offset;
	}
	if (seek->cnt > 0) {
		rd_kafka_error_t *e = rd_kafka_seek_partitions(in->rk, seek, 0);
		if (e != NULL) {
			log_warn("intake: restarting the fetch after resume: %s",
				 rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
		}
	}
	rd_kafka_topic_partition_list_destroy(seek);
}

void intake_set_paused(struct intake *in, bool is_paused)
{
	if (in->is_paused == is_paused)
		return;
	in->is_paused = is_paused;
	rd_kafka_topic_partition_list_t *parts = NULL;
	if (rd_kafka_assignment(in->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (is_paused) {
		rd_kafka_pause_partitions(in->rk, parts);
	} else {
		/* Partitions not claimed yet stay paused (offsets.h). */
		rd_kafka_topic_partition_list_t *claimed =
		    rd_kafka_topic_partition_list_new(parts->cnt);
		for (int i = 0; i < parts->cnt; i++)
			if (offsets_is_claimed(in->offsets, parts->elems[i].partition))
				rd_kafka_topic_partition_list_add(claimed, parts->elems[i].topic,
								  parts->elems[i].partition);
		rd_kafka_resume_partitions(in->rk, claimed);
		intake_wake_fetcher(in, claimed);
		rd_kafka_topic_partition_list_destroy(claimed);
	}
	log_info("intake: %s %d partition(s)", is_paused ? "paused" : "resumed", parts->cnt);
	rd_kafka_topic_partition_list_destroy(parts);
}

bool intake_is_assigned(const struct intake *in)
{
	return in->is_assigned;
}

bool intake_is_paused(const struct intake *in)
{
	return in->is_paused;
}

bool intake_is_connected(const struct intake *in)
{
	return in->connected == 1;
}

const json_t *intake_lag(const struct intake *in)
{
	return in->lag;
}
