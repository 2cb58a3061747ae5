/*
 * metrics: plain counters of what the agent saw and did. Owned by the
 * agent context; the admin API exposes them.
 */
#ifndef DROVER_METRICS_H
#define DROVER_METRICS_H

#include <stdint.h>

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
};

#endif
