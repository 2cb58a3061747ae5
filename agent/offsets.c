/*
 * offsets: per-partition progress of the events topic, commits with the
 * ownership history, held events and their resolution (see offsets.h and
 * claim.h). Runs on the loop; the blocking calls (committed offsets,
 * synchronous commits) happen only at assignment, revocation, stop, and
 * when events of partitions this agent lost wait to be resolved.
 */
#include "offsets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "claim.h"
#include "log.h"
#include "replay.h"
#include "scheduler.h"
#include "store.h"
#include "util.h"

#define OFFSETS_QUERY_MS 5000	      /* committed offsets and watermarks */
#define OFFSETS_COMMIT_STALE_MS 10000 /* a commit without an answer for this long is retried */
#define OFFSETS_RESOLVE_EVERY_MS 2000

struct offsets_held {
	int64_t offset;
	char *event_id; /* owned */
	size_t n_runs;
};

struct offsets_part {
	int32_t partition;
	bool is_assigned, is_claimed;
	int64_t next;	   /* offset after the last record recorded, or -1 */
	int64_t committed; /* last offset Kafka acknowledged from this agent, or -1 */
	char *metadata;	   /* the history our commits carry (owned) */
	struct offsets_held *held;
	size_t n_held, cap_held;
};

struct offsets {
	struct agent *agent;
	rd_kafka_t *rk;
	char *topic, *agent_id;
	struct offsets_part *parts;
	size_t n_parts;
	bool is_committing;
	int64_t commit_started_ms, last_resolve_ms;
	rd_kafka_resp_err_t last_error; /* logged once until it changes */
	size_t n_held_runs;		/* runs of the held events in memory */
};

struct offsets *offsets_new(struct agent *a, rd_kafka_t *rk, const char *topic,
			    const char *agent_id)
{
	struct offsets *o = xcalloc(1, sizeof *o);
	o->agent = a;
	o->rk = rk;
	o->topic = xstrdup(topic);
	o->agent_id = xstrdup(agent_id);
	return o;
}

static void part_forget_held(struct offsets *o, struct offsets_part *p)
{
	for (size_t i = 0; i < p->n_held; i++) {
		free(p->held[i].event_id);
		o->n_held_runs -= p->held[i].n_runs;
	}
	p->n_held = 0;
}

void offsets_free(struct offsets *o)
{
	if (o == NULL)
		return;
	for (size_t i = 0; i < o->n_parts; i++) {
		part_forget_held(o, &o->parts[i]);
		free(o->parts[i].held);
		free(o->parts[i].metadata);
	}
	free(o->parts);
	free(o->topic);
	free(o->agent_id);
	free(o);
}

static struct offsets_part *part_find(const struct offsets *o, int32_t partition)
{
	for (size_t i = 0; i < o->n_parts; i++)
		if (o->parts[i].partition == partition)
			return &o->parts[i];
	return NULL;
}

static struct offsets_part *part_get(struct offsets *o, int32_t partition)
{
	struct offsets_part *p = part_find(o, partition);
	if (p != NULL)
		return p;
	o->parts = xrealloc(o->parts, (o->n_parts + 1) * sizeof *o->parts);
	p = &o->parts[o->n_parts++];
	memset(p, 0, sizeof *p);
	p->partition = partition;
	p->next = p->committed = -1;
	return p;
}

bool offsets_is_claimed(const struct offsets *o, int32_t partition)
{
	const struct offsets_part *p = part_find(o, partition);
	return p != NULL && p->is_claimed;
}

/*
 * Applies verdicts to held events in one transaction: released events'
 * runs are announced, then queued once it committed; dropped events are
 * forgotten. ids[i] is released when is_mine[i], else dropped. 0 or -1.
 */
static int offsets_apply(struct offsets *o, char *const *ids, const bool *is_mine, size_t n)
{
	struct agent *a = o->agent;
	int64_t *runs = NULL, *replays = NULL;
	size_t n_runs = 0, cap_runs = 0, n_replays = 0, cap_replays = 0;
	bool is_ok = store_begin(a->store) == 0;
	for (size_t i = 0; is_ok && i < n; i++) {
		if (!is_mine[i]) {
			is_ok = store_event_drop(a->store, ids[i]) == 0;
			continue;
		}
		int64_t *ev_runs = NULL;
		size_t n_ev_runs = 0;
		is_ok = store_event_release(a->store, ids[i], &ev_runs, &n_ev_runs) == 0;
		for (size_t k = 0; is_ok && k < n_ev_runs; k++) {
			is_ok = scheduler_run_announce(a->sched, ev_runs[k]) == 0;
			runs = xgrow(runs, &cap_runs, n_runs, sizeof *runs);
			runs[n_runs++] = ev_runs[k];
		}
		free(ev_runs);
		/* An event held without runs is a replay command for a run of this agent:
		 * its new attempt, now (replay.h). */
		int64_t replayed = 0;
		int rr = is_ok && n_ev_runs == 0 ? replay_release(a, ids[i], &replayed) : 0;
		is_ok = is_ok && rr >= 0;
		if (rr == 1) {
			replays = xgrow(replays, &cap_replays, n_replays, sizeof *replays);
			replays[n_replays++] = replayed;
		}
	}
	if (!is_ok || store_commit(a->store) != 0) {
		store_rollback(a->store);
		free(runs);
		free(replays);
		log_error("offsets: could not record the fate of %zu held event(s); trying again "
			  "later",
			  n);
		return -1;
	}
	for (size_t i = 0; i < n_runs; i++)
		scheduler_run_enqueue(a->sched, runs[i]);
	for (size_t i = 0; i < n_replays; i++)
		scheduler_run_requeue(a->sched, replays[i]);
	free(runs);
	free(replays);
	return 0;
}

/* Releases the held events of p that the acknowledged commit covers. */
static void part_release_covered(struct offsets *o, struct offsets_part *p)
{
	size_t n = 0;
	while (n < p->n_held && p->held[n].offset < p->committed)
		n++;
	if (n == 0)
		return;
	char **ids = xcalloc(n, sizeof *ids);
	bool *is_mine = xcalloc(n, sizeof *is_mine);
	for (size_t i = 0; i < n; i++) {
		ids[i] = p->held[i].event_id;
		is_mine[i] = true;
	}
	if (offsets_apply(o, ids, is_mine, n) == 0) {
		for (size_t i = 0; i < n; i++) {
			free(p->held[i].event_id);
			o->n_held_runs -= p->held[i].n_runs;
		}
		memmove(p->held, p->held + n, (p->n_held - n) * sizeof *p->held);
		p->n_held -= n;
	}
	free(ids);
	free(is_mine);
}

/*
 * Decides the held events (of the store's list held) that lie on the
 * partitions of committed, from those partitions' committed offsets and
 * histories as librdkafka gave them, and applies the verdicts.
 */
static void offsets_resolve(struct offsets *o, const struct store_held_event *held, size_t n_held,
			    const rd_kafka_topic_partition_list_t *committed)
{
	char **ids = xcalloc(n_held + 1, sizeof *ids);
	bool *is_mine = xcalloc(n_held + 1, sizeof *is_mine);
	size_t n = 0;
	for (size_t i = 0; i < n_held; i++) {
		const struct store_held_event *e = &held[i];
		if (e->topic == NULL || strcmp(e->topic, o->topic) != 0)
			continue;
		const rd_kafka_topic_partition_t *c = NULL;
		for (int k = 0; k < committed->cnt; k++)
			if (committed->elems[k].partition == e->partition)
				c = &committed->elems[k];
		if (c == NULL || c->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			continue;
		struct claim_history h;
		claim_history_parse(c->metadata, c->metadata_size, &h);
		enum claim_verdict v = claim_decide(&h, c->offset, o->agent_id, e->offset);
		if (v == CLAIM_UNKNOWN)
			log_warn("offsets: event %s (%s[%d]@%lld): the ownership history no longer "
				 "reaches back to it; running it (it may have run elsewhere too)",
				 e->id, e->topic, e->partition, (long long)e->offset);
		else
			log_info("offsets: held event %s (%s[%d]@%lld) is %s: %s", e->id, e->topic,
				 e->partition, (long long)e->offset, claim_verdict_name(v),
				 v == CLAIM_MINE ? "running it" : "forgetting it");
		ids[n] = e->id;
		is_mine[n] = v == CLAIM_MINE || v == CLAIM_UNKNOWN;
		n++;
	}
	if (n > 0)
		offsets_apply(o, ids, is_mine, n);
	free(ids);
	free(is_mine);
}

/* The first offset of a partition (where a group without a commit starts). */
static int offsets_low(struct offsets *o, int32_t partition, int64_t *low)
{
	int64_t high;
	rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(o->rk, o->topic, partition, low,
								   &high, OFFSETS_QUERY_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("offsets: the first offset of %s[%d]: %s", o->topic, partition,
			 rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

int offsets_claim(struct offsets *o, const rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_new(parts->cnt);
	for (int i = 0; i < parts->cnt; i++) {
		rd_kafka_topic_partition_list_add(c, parts->elems[i].topic,
						  parts->elems[i].partition);
		part_get(o, parts->elems[i].partition)->is_assigned = true;
	}
	int n_unclaimed = parts->cnt;
	rd_kafka_resp_err_t err = rd_kafka_committed(o->rk, c, OFFSETS_QUERY_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("offsets: reading the committed offsets of %d partition(s): %s; claiming "
			 "them later",
			 parts->cnt, rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_destroy(c);
		return n_unclaimed;
	}
	/* Held events of these partitions are decided before anything is consumed. */
	struct store_held_event *held = NULL;
	size_t n_held = 0;
	if (store_events_held(o->agent->store, &held, &n_held) == 0) {
		offsets_resolve(o, held, n_held, c);
		store_held_events_free(held, n_held);
	}
	rd_kafka_topic_partition_list_t *claims = rd_kafka_topic_partition_list_new(c->cnt);
	for (int i = 0; i < c->cnt; i++) {
		const rd_kafka_topic_partition_t *e = &c->elems[i];
		int64_t start = e->offset;
		if (e->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
		    (start < 0 && offsets_low(o, e->partition, &start) != 0))
			continue;
		struct claim_history h;
		claim_history_parse(e->metadata, e->metadata_size, &h);
		claim_history_append(&h, o->agent_id, start);
		char *text = claim_history_format(&h);
		rd_kafka_topic_partition_t *t =
		    rd_kafka_topic_partition_list_add(claims, e->topic, e->partition);
		t->offset = start;
		t->metadata = text; /* the list owns it now */
		t->metadata_size = strlen(text);
	}
	rd_kafka_topic_partition_list_destroy(c);
	if (claims->cnt > 0) {
		err = rd_kafka_commit(o->rk, claims, 0);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_warn("offsets: claiming %d partition(s): %s; trying again later",
				 claims->cnt, rd_kafka_err2str(err));
		} else {
			for (int i = 0; i < claims->cnt; i++) {
				const rd_kafka_topic_partition_t *t = &claims->elems[i];
				struct offsets_part *p = part_get(o, t->partition);
				p->is_claimed = true;
				p->next = p->committed = t->offset;
				free(p->metadata);
				p->metadata = xstrndup(t->metadata, t->metadata_size);
				part_forget_held(o, p);
				log_info("offsets: claimed %s[%d] from offset %lld", o->topic,
					 t->partition, (long long)t->offset);
				n_unclaimed--;
			}
		}
	}
	rd_kafka_topic_partition_list_destroy(claims);
	return n_unclaimed;
}

/* The commit list of what was recorded and not yet acknowledged (NULL: nothing). */
static rd_kafka_topic_partition_list_t *offsets_pending(struct offsets *o,
							const rd_kafka_topic_partition_list_t *only)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	for (size_t i = 0; i < o->n_parts; i++) {
		struct offsets_part *p = &o->parts[i];
		if (!p->is_claimed || p->next <= p->committed)
			continue;
		if (only != NULL &&
		    rd_kafka_topic_partition_list_find(only, o->topic, p->partition) == NULL)
			continue;
		if (l == NULL)
			l = rd_kafka_topic_partition_list_new(4);
		rd_kafka_topic_partition_t *t =
		    rd_kafka_topic_partition_list_add(l, o->topic, p->partition);
		t->offset = p->next;
		t->metadata = xstrdup(p->metadata);
		t->metadata_size = strlen(p->metadata);
	}
	return l;
}

/* A synchronous commit of what was recorded on the partitions (all: NULL). */
static void offsets_commit_now(struct offsets *o, const rd_kafka_topic_partition_list_t *only)
{
	rd_kafka_topic_partition_list_t *l = offsets_pending(o, only);
	if (l == NULL)
		return;
	rd_kafka_resp_err_t err = rd_kafka_commit(o->rk, l, 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("offsets: committing %d partition(s): %s", l->cnt, rd_kafka_err2str(err));
	} else {
		for (int i = 0; i < l->cnt; i++) {
			struct offsets_part *p = part_find(o, l->elems[i].partition);
			p->committed = l->elems[i].offset;
			part_release_covered(o, p);
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
}

void offsets_revoke(struct offsets *o, const rd_kafka_topic_partition_list_t *parts, bool is_lost,
		    bool is_connected)
{
	if (!is_lost && is_connected)
		offsets_commit_now(o, parts);
	for (int i = 0; i < parts->cnt; i++) {
		struct offsets_part *p = part_find(o, parts->elems[i].partition);
		if (p == NULL)
			continue;
		if (p->n_held > 0)
			log_info("offsets: %s[%d] leaves with %zu held event(s); they are decided "
				 "once its next owner is known",
				 o->topic, p->partition, p->n_held);
		part_forget_held(o, p);
		p->is_assigned = p->is_claimed = false;
		p->next = p->committed = -1;
	}
}

void offsets_recorded(struct offsets *o, int32_t partition, int64_t offset,
		      const char *held_event_id, size_t n_runs)
{
	struct offsets_part *p = part_get(o, partition);
	if (offset + 1 > p->next)
		p->next = offset + 1;
	if (held_event_id == NULL)
		return;
	p->held = xgrow(p->held, &p->cap_held, p->n_held, sizeof *p->held);
	p->held[p->n_held].offset = offset;
	p->held[p->n_held].event_id = xstrdup(held_event_id);
	p->held[p->n_held].n_runs = n_runs;
	p->n_held++;
	o->n_held_runs += n_runs;
}

void offsets_commit(struct offsets *o)
{
	if (o->is_committing && mono_ms() - o->commit_started_ms < OFFSETS_COMMIT_STALE_MS)
		return;
	rd_kafka_topic_partition_list_t *l = offsets_pending(o, NULL);
	if (l == NULL)
		return;
	rd_kafka_resp_err_t err = rd_kafka_commit(o->rk, l, 1);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		o->is_committing = true;
		o->commit_started_ms = mono_ms();
	} else {
		log_warn("offsets: committing: %s", rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(l);
}

void offsets_on_commit(struct offsets *o, rd_kafka_resp_err_t err,
		       const rd_kafka_topic_partition_list_t *parts)
{
	o->is_committing = false;
	for (int i = 0; parts != NULL && i < parts->cnt; i++) {
		const rd_kafka_topic_partition_t *t = &parts->elems[i];
		if (strcmp(t->topic, o->topic) != 0)
			continue;
		rd_kafka_resp_err_t e = err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : t->err;
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (e != o->last_error)
				log_warn("offsets: a commit of %s[%d] failed: %s (retrying)",
					 o->topic, t->partition, rd_kafka_err2str(e));
			o->last_error = e;
			continue;
		}
		o->last_error = RD_KAFKA_RESP_ERR_NO_ERROR;
		struct offsets_part *p = part_find(o, t->partition);
		if (p == NULL || !p->is_claimed || t->offset <= p->committed)
			continue;
		p->committed = t->offset;
		part_release_covered(o, p);
	}
	/* What was recorded meanwhile goes at once. */
	if (o->last_error == RD_KAFKA_RESP_ERR_NO_ERROR)
		offsets_commit(o);
}

/* Held events of partitions this agent does not hold: decided from the broker. */
static void offsets_resolve_unowned(struct offsets *o)
{
	struct store_held_event *held = NULL;
	size_t n_held = 0;
	if (store_events_held(o->agent->store, &held, &n_held) != 0)
		return;
	rd_kafka_topic_partition_list_t *l = NULL;
	for (size_t i = 0; i < n_held; i++) {
		const struct store_held_event *e = &held[i];
		if (e->topic == NULL || strcmp(e->topic, o->topic) != 0 || e->partition < 0)
			continue;
		const struct offsets_part *p = part_find(o, e->partition);
		if (p != NULL && p->is_assigned)
			continue; /* its own claim decides it */
		if (l == NULL)
			l = rd_kafka_topic_partition_list_new(4);
		if (rd_kafka_topic_partition_list_find(l, o->topic, e->partition) == NULL)
			rd_kafka_topic_partition_list_add(l, o->topic, e->partition);
	}
	if (l != NULL) {
		rd_kafka_resp_err_t err = rd_kafka_committed(o->rk, l, OFFSETS_QUERY_MS);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			offsets_resolve(o, held, n_held, l);
		else
			log_warn("offsets: reading committed offsets to decide held events: %s",
				 rd_kafka_err2str(err));
		rd_kafka_topic_partition_list_destroy(l);
	}
	store_held_events_free(held, n_held);
}

int offsets_tick(struct offsets *o, bool is_connected)
{
	if (!is_connected)
		return 0;
	offsets_commit(o);
	int n_claimed = 0;
	rd_kafka_topic_partition_list_t *unclaimed = NULL;
	for (size_t i = 0; i < o->n_parts; i++) {
		struct offsets_part *p = &o->parts[i];
		if (p->is_claimed)
			part_release_covered(o, p);
		if (p->is_assigned && !p->is_claimed) {
			if (unclaimed == NULL)
				unclaimed = rd_kafka_topic_partition_list_new(4);
			rd_kafka_topic_partition_list_add(unclaimed, o->topic, p->partition);
		}
	}
	if (unclaimed != NULL) {
		n_claimed = unclaimed->cnt - offsets_claim(o, unclaimed);
		rd_kafka_topic_partition_list_destroy(unclaimed);
	}
	int64_t now = mono_ms();
	if (now - o->last_resolve_ms >= OFFSETS_RESOLVE_EVERY_MS) {
		o->last_resolve_ms = now;
		offsets_resolve_unowned(o);
	}
	return n_claimed;
}

void offsets_flush(struct offsets *o, bool is_connected)
{
	if (is_connected)
		offsets_commit_now(o, NULL);
}

size_t offsets_held_runs(const struct offsets *o)
{
	return o->n_held_runs;
}
