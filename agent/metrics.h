/*
 * metrics: what the agent saw and did, for GET /metrics. Two kinds live
 * here: the plain counters of struct metrics (fields bumped in place and
 * rendered without labels under their historical names), and labelled
 * families (counters, gauges, histograms) in a registry, rendered in the
 * Prometheus text exposition format 0.0.4. Label values come from the
 * configuration (pipeline names) and fixed enums: a value from foreign input
 * that is not in its enum becomes "other", and every family holds a bounded
 * number of series (past it, new label sets are counted under "other").
 * Owned by the agent context; everything runs on the event-loop thread.
 */
#ifndef DROVER_METRICS_H
#define DROVER_METRICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct metrics_registry;
struct metric_family;

struct metrics {
	uint64_t events_received;
	uint64_t events_accepted;  /* stored, at least one run */
	uint64_t events_unmatched; /* stored, no pipeline matched */
	uint64_t events_duplicate; /* id seen before: nothing started */
	uint64_t events_ignored;   /* ping and the like */
	uint64_t events_refused;   /* repository not configured */
	uint64_t events_dead_lettered;
	uint64_t events_malformed, events_unknown, events_too_large;
	uint64_t runs_created;
	uint64_t runs_finished;
	uint64_t stages_started;
	uint64_t stages_finished;
	uint64_t results_published;
	uint64_t kafka_errors;
	uint64_t api_requests, api_unauthorized;
	uint64_t plugins_refused;
	uint64_t pipelines_refused;
	/* The labelled families (owned); NULL before metrics_init, and then every
	 * function below does nothing (unit tests of other parts need no init). */
	struct metrics_registry *reg;
};

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

/* Series per family unless metric_family_new is told otherwise. */
#define METRICS_MAX_SERIES_DEFAULT 500

/* Creates the registry with drover's own families; metrics_fini frees it. */
void metrics_init(struct metrics *m);
void metrics_fini(struct metrics *m);

/*
 * Registers a family (or returns the one registered under that name, when
 * its type and labels are the same): labels is a NULL-terminated list of
 * label names (NULL: none); a histogram has n_bounds ascending upper bounds
 * (+Inf is implied). max_series 0 means METRICS_MAX_SERIES_DEFAULT. NULL
 * (logged) for an invalid name or a clash; the metric_* calls accept NULL
 * and do nothing, so a caller never checks.
 */
struct metric_family *metric_family_new(struct metrics *m, enum metric_type type, const char *name,
					const char *help, const char *const *labels,
					const double *bounds, size_t n_bounds, size_t max_series);

/*
 * The label values of one series, as many as the family has label names
 * (NULL when it has none): e.g. (const char *[]){"github", "push"}. A NULL
 * value renders as "".
 */
void metric_add(struct metric_family *f, const char *const *values, double delta);     /* counter,
											   gauge */
void metric_set(struct metric_family *f, const char *const *values, double value);     /* gauge */
void metric_observe(struct metric_family *f, const char *const *values, double value); /* hist. */
/* Forgets every series (a gauge rebuilt at each scrape, e.g. per partition). */
void metric_clear(struct metric_family *f);

/* The whole exposition text (caller frees). */
char *metrics_render(const struct metrics *m);

/* Upper bounds of drover_stage_duration_seconds, 0.1 s to 1 h. */
extern const double metrics_stage_seconds_bounds[];
extern const size_t metrics_stage_seconds_n_bounds;

/*
 * Hooks of the agent's parts, one call each where the plain counters move.
 *
 * metrics_event_seen: one record of an intake batch, ev its canonical event
 * (NULL when it had none), outcome "accepted", "unmatched", "duplicate",
 * "ignored", "refused", or a dead letter's reason ("malformed", "unknown",
 * "too_large"). It is staged: metrics_events_settle counts the batch's
 * records once its transaction committed, or forgets them when it rolled
 * back (the records are then redelivered and seen again).
 */
void metrics_event_seen(struct metrics *m, const json_t *ev, const char *outcome);
void metrics_events_settle(struct metrics *m, bool is_committed);
/* A stage attempt ended after duration_ms; a run ended. */
void metrics_stage_finished(struct metrics *m, const char *pipeline, enum status status,
			    int64_t duration_ms);
void metrics_run_finished(struct metrics *m, const char *pipeline, enum status status);

#endif
