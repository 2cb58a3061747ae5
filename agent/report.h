/*
 * report: everything drover tells the world through Kafka. Results
 * (CloudEvents carrying CDEvents v0.5) and dead letters are first written to
 * the SQLite outbox, in the caller's transaction, and published from there;
 * a record leaves the outbox only when Kafka acknowledged it.
 */
#ifndef DROVER_REPORT_H
#define DROVER_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct agent;
struct report;

struct report *report_new(struct agent *a);
/* Deletes the records Kafka acknowledged (report_flush), then frees. Call
 * it after kafka_free, whose last delivery reports may still acknowledge. */
void report_free(struct report *r);
/*
 * Deletes from the outbox, in one transaction, the records Kafka has
 * acknowledged since the last time (this also runs on the loop a few ms
 * after an acknowledgement). 0, or -1 when the store failed: they are kept
 * for the next try, and at worst published again after a restart.
 */
int report_flush(struct report *r);

/* phase: "queued", "started", "finished". Adds to the outbox; publishes soon. */
int report_pipelinerun(struct report *r, const struct store_run *run, const char *phase);
/* phase: "started", "finished". */
int report_taskrun(struct report *r, const struct store_run *run, const struct store_stage *stage,
		   const char *phase);
/* The original record, with its headers (packed blob) and x-drover-error:
 * key_len bytes of key (NULL: none) and the value (NULL: a null value, which
 * stays null). One Kafka refuses as too large is published without its
 * value, with an x-drover-value-omitted header, rather than holding up the
 * outbox. */
int report_dead_letter(struct report *r, const void *key, size_t key_len, const void *value,
		       size_t value_len, const void *headers, size_t headers_len,
		       const char *error);

/* Publishes what is waiting (also runs on a timer). */
void report_kick(struct report *r);
/* Records handed to Kafka and not yet acknowledged. */
size_t report_in_flight(const struct report *r);

#endif
